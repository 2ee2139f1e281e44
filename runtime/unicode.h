/* unicode.h: what the tokenizer needs to know about Unicode: UTF-8 well-formedness, the
 * character classes of the GPT-2 split regex, and the normalization forms of tokenizer.json.
 *
 * Classes and normalization come from libutf8proc (its Unicode version, 15.0 for Debian
 * bookworm's 2.8); this file only maps them onto the tokenizer's terms. It is not a general
 * Unicode library: no case mapping, no segmentation, no other properties. */
#ifndef QR_UNICODE_H
#define QR_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* ---------------------------------------------------------------- UTF-8 */

/* Result of qr_utf8_scan() when s[0..len) is a proper prefix of a well-formed sequence: more
 * bytes could complete it. */
#define QR_UTF8_INCOMPLETE (-1)

/* Looks at the UTF-8 sequence starting at s[0] (len >= 1). Returns its length (1..4) and sets
 * *cp if it is well-formed (RFC 3629: shortest form, no surrogates, at most U+10FFFF); returns
 * 0 if s[0] does not start a well-formed sequence; returns QR_UTF8_INCOMPLETE if len ends the
 * bytes before a so far valid sequence is complete. (utf8proc_iterate() cannot tell the last
 * two apart, which the streaming decoder needs.) */
int qr_utf8_scan(const uint8_t *s, size_t len, uint32_t *cp);

/* ---------------------------------------------------------------- regex classes */

typedef enum {
    QR_UCLASS_OTHER = 0,  /* neither of the below; also every byte of invalid UTF-8 */
    QR_UCLASS_LETTER = 1, /* \p{L}: general category Lu, Ll, Lt, Lm, Lo */
    QR_UCLASS_NUMBER = 2, /* \p{N}: Nd, Nl, No */
    QR_UCLASS_SPACE = 3,  /* \s, as the flavour below says */
} qr_uclass;

/* Which regex engine's \s the split regex follows. The two references differ on two code
 * points only; everything else in \s is general category Zs plus U+0009..U+000D, U+2028 and
 * U+2029. */
typedef enum {
    QR_SPACE_JS = 0,    /* ECMAScript's \s (GPT-2's reference encoder runs under node): + U+FEFF */
    QR_SPACE_ONIG = 1,  /* Oniguruma's \s = Unicode White_Space (Hugging Face tokenizers): + U+0085 */
} qr_space_flavour;

/* The class of code point cp (any value; above U+10FFFF and surrogates are OTHER). */
qr_uclass qr_uclass_of(uint32_t cp, qr_space_flavour flavour);

/* ---------------------------------------------------------------- normalization */

/* One normalization step of a tokenizer.json "normalizer". */
typedef enum {
    QR_NORM_NFC = 1,
    QR_NORM_NFD,
    QR_NORM_NFKC,
    QR_NORM_NFKD,
} qr_norm_form;

/* The form named by a tokenizer.json normalizer type ("NFC", ...), or 0 if it is none of them. */
qr_norm_form qr_norm_form_named(const char *type);

/* Applies forms[0..n_forms) in order to s[0..len) and returns the result in a malloc'ed buffer
 * (*out, NUL-terminated, *out_len not counting the NUL). Input that is not well-formed UTF-8 is
 * normalized piecewise: each maximal well-formed run on its own, every other byte copied as it
 * is (so invalid bytes survive, and never merge with their neighbours). QR_ERR_NOMEM on
 * allocation failure. */
qr_status qr_normalize(const qr_norm_form *forms, size_t n_forms, const uint8_t *s, size_t len,
                       uint8_t **out, size_t *out_len, qr_error *err);

#endif
