/* json_out.c: strings, numbers and the final line. */
#include "json_out.h"

#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct json_object *qi_json_string(const char *s, size_t n)
{
    if (n > INT_MAX / 3) /* json-c counts string lengths in int; repair may triple them */
        return NULL;
    if (qi_utf8_valid(s, n))
        return json_object_new_string_len(s, (int)n);
    size_t len;
    char *fixed = qi_utf8_sanitize(s, n, &len);
    if (!fixed)
        return NULL;
    json_object *o = json_object_new_string_len(fixed, (int)len);
    free(fixed);
    return o;
}

/* printf's %g follows LC_NUMERIC; a program that set a locale with a decimal comma must still
 * write JSON. Our numbers only ever hold one separator, so it is put back to '.'. */
static void c_locale_point(char *buf)
{
    for (char *p = buf; *p; p++)
        if (*p == ',')
            *p = '.';
}

void qi_number_text(double v, char buf[QI_NUMBER_TEXT_MAX])
{
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, QI_NUMBER_TEXT_MAX, "%.*g", digits, v);
        c_locale_point(buf);
        if (strtod(buf, NULL) == v)
            break;
    }
}

struct json_object *qi_json_double(double v)
{
    if (!isfinite(v))
        return NULL;
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return json_object_new_int64((int64_t)v);
    char buf[QI_NUMBER_TEXT_MAX];
    qi_number_text(v, buf);
    return json_object_new_double_s(v, buf);
}

struct json_object *qi_json_float(float v)
{
    if (!isfinite(v))
        return NULL;
    if (v == floorf(v) && fabsf(v) < 16777216.0f)
        return json_object_new_int64((int64_t)v);
    char buf[40];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        c_locale_point(buf);
        if (strtof(buf, NULL) == v)
            break;
    }
    return json_object_new_double_s((double)v, buf);
}

struct json_object *qi_json_uint(uint64_t v)
{
    return json_object_new_uint64(v);
}

qi_code qi_json_line(struct json_object *obj, char **line, size_t *len, qi_error *err)
{
    *line = NULL;
    *len = 0;
    if (!obj)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *out = s ? malloc(n + 2) : NULL;
    if (!out) {
        json_object_put(obj);
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    }
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    json_object_put(obj);
    *line = out;
    *len = n + 1;
    return QI_OK;
}
