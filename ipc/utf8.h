/* utf8.h: keeping every line on the wire valid UTF-8.
 *
 * Generated text is bytes: a BPE token may end half-way through a character, and a model can
 * emit sequences that are not UTF-8 at all. The protocol promises UTF-8, so the reply builders
 * replace what is invalid with U+FFFD, and a server streaming tokens holds back an unfinished
 * character until the next token completes it (qi_utf8_complete_prefix). Validity is RFC 3629's:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
#ifndef QI_UTF8_H
#define QI_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..n) is entirely valid UTF-8 with no NUL byte. */
bool qi_utf8_valid(const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that is valid UTF-8 with no NUL: the offset of
 * the first bad byte, or n. */
size_t qi_utf8_valid_prefix(const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that does not end inside a character that more
 * bytes could still complete. Invalid bytes count as finished (they will become U+FFFD), so at
 * most 3 bytes are ever held back. */
size_t qi_utf8_complete_prefix(const char *s, size_t n);

/* A malloc'ed, NUL-terminated copy of s[0..n) in which every maximal invalid subsequence (and a
 * truncated character at the end) is replaced by U+FFFD and every NUL byte by U+FFFD, so the
 * result is valid and NUL-free. *out_len (may be NULL) gets its length. NULL if out of memory. */
char *qi_utf8_sanitize(const char *s, size_t n, size_t *out_len);

#endif
