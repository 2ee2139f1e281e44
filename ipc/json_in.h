/* json_in.h: one line of text to one JSON object, strictly.
 *
 * json-c does the parsing. json-c 0.16's strict mode still lets a few non-JSON forms through
 * (single-quoted strings, raw control characters inside strings, NaN and Infinity, "2.", "00",
 * overlong UTF-8 and encoded surrogates), saturates integers beyond 64 bits without a word, and
 * turns "\u0000" into a NUL that cuts C strings short (a key "op\u0000x" would read as "op").
 * So the line's UTF-8 is checked (utf8.h) and a byte-level scan of its tokens refuses those
 * forms first; the scan checks tokens only, never structure, which stays json-c's job. */
#ifndef QI_JSON_IN_H
#define QI_JSON_IN_H

#include <stddef.h>

#include "ipc_error.h"

struct json_object;

#define QI_JSON_MAX_DEPTH 16

/* Parses s[0..n) (no NUL needed) as one JSON object with only JSON whitespace around it. On
 * failure: QI_ERR_INVALID_JSON with the byte offset and what is wrong, or QI_ERR_NOMEM.
 * On success *out is a new reference (json_object_put it). */
qi_code qi_json_parse_object(const char *s, size_t n, struct json_object **out, qi_error *err);

#endif
