/* json_in.c: the token scan in front of json-c, then json-c itself. */
#include "json_in.h"

#include <json.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "utf8.h"

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Checks one number token t[0..n) against RFC 8259's grammar,
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and that an integer (no fraction, no
 * exponent) fits int64 (negative) or uint64 (positive), where json-c would silently saturate. */
static const char *check_number(const unsigned char *t, size_t n)
{
    size_t i = 0;
    bool neg = false, integer = true;
    if (i < n && t[i] == '-') {
        neg = true;
        i++;
    }
    size_t start = i;
    if (i < n && t[i] == '0')
        i++;
    else if (i < n && t[i] >= '1' && t[i] <= '9')
        while (i < n && is_digit(t[i]))
            i++;
    else
        return "malformed number";
    size_t digits = i - start;
    if (i < n && t[i] == '.') {
        integer = false;
        size_t f = ++i;
        while (i < n && is_digit(t[i]))
            i++;
        if (i == f)
            return "malformed number";
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        integer = false;
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-'))
            i++;
        size_t e = i;
        while (i < n && is_digit(t[i]))
            i++;
        if (i == e)
            return "malformed number";
    }
    if (i != n)
        return "malformed number";
    if (integer) {
        const char *limit = neg ? "9223372036854775808" : "18446744073709551615";
        size_t ld = strlen(limit);
        if (digits > ld || (digits == ld && memcmp(t + start, limit, ld) > 0))
            return "integer out of the 64-bit range";
    }
    return NULL;
}

/* Scans the tokens of s[0..n): strings (no raw control characters, no \u0000), numbers (as
 * above), true/false/null, structural characters and whitespace. Returns what is wrong and sets
 * *at to its offset, or returns NULL. */
static const char *scan_tokens(const unsigned char *s, size_t n, size_t *at)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        *at = i;
        if (is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',') {
            i++;
        } else if (c == '"') {
            for (i++;; i++) {
                if (i >= n)
                    return "unterminated string";
                *at = i;
                if (s[i] == '"')
                    break;
                if (s[i] < 0x20)
                    return "control character inside a string (escape it)";
                if (s[i] == '\\') {
                    if (i + 1 >= n)
                        return "unterminated string";
                    if (s[i + 1] == 'u' && n - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                        return "\\u0000 (NUL) is not allowed";
                    i++; /* the escaped byte; json-c checks the escape itself */
                }
            }
            i++;
        } else if (c == '-' || is_digit(c)) {
            /* The token runs over everything a number could be mistaken for ("1e5", "2.",
             * "0x10", "1true"), so check_number sees it whole. */
            size_t j = i;
            while (j < n && (is_digit(s[j]) || s[j] == '.' || s[j] == '-' || s[j] == '+' ||
                             ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z')))
                j++;
            const char *why = check_number(s + i, j - i);
            if (why)
                return why;
            i = j;
        } else if (c >= 'a' && c <= 'z') {
            size_t j = i;
            while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
                j++;
            size_t len = j - i;
            if (!((len == 4 && memcmp(s + i, "true", 4) == 0) ||
                  (len == 5 && memcmp(s + i, "false", 5) == 0) ||
                  (len == 4 && memcmp(s + i, "null", 4) == 0)))
                return "unexpected word (only true, false and null)";
            i = j;
        } else {
            return "unexpected character";
        }
    }
    return NULL;
}

qi_code qi_json_parse_object(const char *s, size_t n, struct json_object **out, qi_error *err)
{
    const unsigned char *u = (const unsigned char *)s;
    *out = NULL;
    size_t first = 0;
    while (first < n && is_ws(u[first]))
        first++;
    if (first == n)
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "empty line: expected a JSON object");
    if (u[first] != '{')
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "expected a JSON object at byte %zu", first);
    if (n > INT_MAX)
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "line too long to parse");
    /* json-c's own UTF-8 check lets overlong forms and surrogates through. */
    size_t good = qi_utf8_valid_prefix(s, n);
    if (good < n)
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "%s at byte %zu",
                       u[good] ? "invalid UTF-8" : "NUL byte", good);
    size_t at = 0;
    const char *why = scan_tokens(u, n, &at);
    if (why)
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "%s at byte %zu", why, at);

    json_tokener *tok = json_tokener_new_ex(QI_JSON_MAX_DEPTH);
    if (!tok)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, s, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj) {
        if (jerr == json_tokener_continue)
            return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "unterminated JSON object");
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "%s at byte %zu",
                       json_tokener_error_desc(jerr), end);
    }
    for (size_t i = end; i < n; i++) {
        if (!is_ws(u[i])) {
            json_object_put(obj);
            return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "text after the object at byte %zu", i);
        }
    }
    if (!json_object_is_type(obj, json_type_object)) { /* cannot happen after the '{' check */
        json_object_put(obj);
        return qi_fail(err, QI_ERR_INVALID_JSON, NULL, "expected a JSON object");
    }
    *out = obj;
    return QI_OK;
}
