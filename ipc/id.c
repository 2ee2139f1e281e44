/* id.c: request ids: validation, comparison, JSON in and out. */
#include "id.h"

#include <inttypes.h>
#include <json.h>
#include <stdio.h>
#include <string.h>

qi_id qi_id_none(void)
{
    qi_id id;
    memset(&id, 0, sizeof id);
    return id;
}

/* 1..64 bytes, each printable ASCII: such an id prints safely in any log line. */
static bool valid_string(const char *s, size_t len)
{
    if (len < 1 || len > QI_ID_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

bool qi_id_set_string(qi_id *out, const char *s)
{
    size_t len = strnlen(s, QI_ID_MAX_LEN + 1);
    if (!valid_string(s, len))
        return false;
    *out = qi_id_none();
    out->kind = QI_ID_STRING;
    memcpy(out->str, s, len);
    return true;
}

bool qi_id_set_int(qi_id *out, uint64_t n)
{
    if (n >= QI_ID_INT_LIMIT)
        return false;
    *out = qi_id_none();
    out->kind = QI_ID_INT;
    out->num = n;
    return true;
}

bool qi_id_equal(const qi_id *a, const qi_id *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case QI_ID_NONE: return true;
    case QI_ID_INT: return a->num == b->num;
    case QI_ID_STRING: return strcmp(a->str, b->str) == 0;
    }
    return false;
}

const char *qi_id_format(const qi_id *id, char *buf, size_t cap)
{
    if (id->kind == QI_ID_INT)
        snprintf(buf, cap, "%" PRIu64, id->num);
    else if (id->kind == QI_ID_STRING)
        snprintf(buf, cap, "\"%s\"", id->str); /* printable ASCII: no escaping needed for a log */
    else
        snprintf(buf, cap, "null");
    return buf;
}

qi_code qi_id_from_json(struct json_object *v, const char *field, qi_id *out, qi_error *err)
{
    static const char rule[] =
        "must be a string of 1..64 printable ASCII characters or an integer in 0..2^53-1";
    if (!v)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "required (%s)", rule);
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (!valid_string(s, len))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
        *out = qi_id_none();
        out->kind = QI_ID_STRING;
        memcpy(out->str, s, len);
        return QI_OK;
    }
    if (json_object_is_type(v, json_type_int)) {
        /* json-c keeps integers above INT64_MAX as uint64; get_int64 saturates those to
         * INT64_MAX, which is above the limit either way. */
        int64_t n = json_object_get_int64(v);
        if (n < 0 || (uint64_t)n >= QI_ID_INT_LIMIT)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
        return qi_id_set_int(out, (uint64_t)n) ? QI_OK : QI_ERR_INTERNAL;
    }
    return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "%s", rule);
}

struct json_object *qi_id_to_json(const qi_id *id)
{
    switch (id->kind) {
    case QI_ID_STRING: return json_object_new_string(id->str);
    case QI_ID_INT: return json_object_new_int64((int64_t)id->num);
    case QI_ID_NONE: break;
    }
    return NULL;
}
