/* id.h: request ids, which a server echoes back exactly as the client gave them.
 *
 * An id is a JSON string of 1..64 printable ASCII characters (0x20..0x7E) or a JSON integer in
 * 0..2^53-1 (exact in every JSON implementation, JavaScript's included). The kind is kept, so a
 * reply carries "7" back as "7" and 7 as 7. A reply to a line whose id could not be read carries
 * null (QI_ID_NONE). Held by value: no allocation. */
#ifndef QI_ID_H
#define QI_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc_error.h"

struct json_object;

#define QI_ID_MAX_LEN 64
#define QI_ID_INT_LIMIT (UINT64_C(1) << 53) /* integer ids are below this */

typedef enum { QI_ID_NONE = 0, QI_ID_STRING, QI_ID_INT } qi_id_kind;

typedef struct {
    qi_id_kind kind;
    uint64_t num;                  /* QI_ID_INT */
    char str[QI_ID_MAX_LEN + 1];   /* QI_ID_STRING, NUL-terminated */
} qi_id;

/* The null id. */
qi_id qi_id_none(void);

/* Sets *out to a string id; false (out untouched) unless s is 1..64 printable ASCII characters. */
bool qi_id_set_string(qi_id *out, const char *s);

/* Sets *out to an integer id; false (out untouched) unless n < 2^53. */
bool qi_id_set_int(qi_id *out, uint64_t n);

/* Same kind and value. Two null ids are equal. */
bool qi_id_equal(const qi_id *a, const qi_id *b);

/* The id as JSON text for logs and messages: "abc" (quoted), 42, or null. Returns buf. */
const char *qi_id_format(const qi_id *id, char *buf, size_t cap);

/* Reads a JSON value as an id. On a bad value: QI_ERR_INVALID_ARGUMENT naming `field`. JSON null
 * is refused too (a request must have an id); v == NULL means the field is absent. */
qi_code qi_id_from_json(struct json_object *v, const char *field, qi_id *out, qi_error *err);

/* A new json-c value for the id (a string, an integer, or NULL, which json-c writes as null). */
struct json_object *qi_id_to_json(const qi_id *id);

#endif
