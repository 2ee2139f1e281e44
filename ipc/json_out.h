/* json_out.h: json-c values to one protocol line.
 *
 * Everything a builder puts on the wire goes through here, so three promises hold for every
 * line: it is valid UTF-8 with no NUL (strings are repaired with U+FFFD, utf8.h), it holds no raw
 * newline (json-c escapes control characters), and its numbers are JSON numbers (a NaN or an
 * infinity is written as null, never as json-c's bare NaN). Numbers are written in the shortest
 * form that reads back to the same value, not json-c's 17 digits. */
#ifndef QI_JSON_OUT_H
#define QI_JSON_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "ipc_error.h"

struct json_object;

/* A JSON string of s[0..n), invalid UTF-8 and NUL replaced by U+FFFD. NULL if out of memory. */
struct json_object *qi_json_string(const char *s, size_t n);

/* A JSON number for v: shortest round-trip form; null (NULL) when v is not finite. */
struct json_object *qi_json_double(double v);

/* The text of v in the shortest form that reads back to the same double ("0.1", "4.65e-06"),
 * with a '.' whatever the locale; v must be finite. For writers of other text formats (qslmd's
 * Prometheus metrics) that want the same numbers as the protocol. */
#define QI_NUMBER_TEXT_MAX 40
void qi_number_text(double v, char buf[QI_NUMBER_TEXT_MAX]);

/* The same for a float: the shortest form that reads back to the same float ("0.1", not
 * "0.10000000149011612"). */
struct json_object *qi_json_float(float v);

/* A JSON integer (json-c writes uint64 values above INT64_MAX correctly). */
struct json_object *qi_json_uint(uint64_t v);

/* Serialises obj (compact, '/' unescaped) into a malloc'ed line ending in '\n' and NUL
 * terminated; *len counts the '\n', not the NUL. Takes obj's reference (puts it), so a builder
 * can hand over what it made. */
qi_code qi_json_line(struct json_object *obj, char **line, size_t *len, qi_error *err);

#endif
