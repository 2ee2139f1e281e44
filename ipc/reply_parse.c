/* reply_parse.c: decoding token, done and error replies; everything else stays as json. */
#include "reply_parse.h"

#include <json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_in.h"

static qi_code bad(qi_error *err, const char *field, const char *what)
{
    return qi_fail(err, QI_ERR_PROTOCOL, field, "%s", what);
}

static bool get(json_object *o, const char *key, enum json_type type, json_object **v)
{
    return json_object_object_get_ex(o, key, v) && json_object_is_type(*v, type);
}

/* An integer member in lo..hi. */
static bool get_int(json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    json_object *v;
    if (!get(o, key, json_type_int, &v))
        return false;
    int64_t x = json_object_get_int64(v);
    if (x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

/* A number member (integer or not), or null (read as NAN). */
static bool get_number(json_object *o, const char *key, double *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return false;
    if (!v) {
        *out = NAN;
        return true;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return false;
    *out = json_object_get_double(v);
    return true;
}

static qi_code parse_error(json_object *e, qi_reply *r, qi_error *err)
{
    json_object *v;
    if (!json_object_is_type(e, json_type_object))
        return bad(err, "error", "must be an object");
    if (!get(e, "code", json_type_string, &v))
        return bad(err, "error.code", "must be a string");
    r->code_name = json_object_get_string(v);
    r->code = qi_code_from_name(r->code_name);
    if (!get(e, "message", json_type_string, &v))
        return bad(err, "error.message", "must be a string");
    r->message = json_object_get_string(v);
    if (json_object_object_get_ex(e, "field", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return bad(err, "error.field", "must be a string");
        r->field = json_object_get_string(v);
    }
    r->retry_after_ms = -1;
    if (json_object_object_get_ex(e, "retry_after_ms", &v)) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
            return bad(err, "error.retry_after_ms", "must be a non-negative integer");
        r->retry_after_ms = json_object_get_int64(v);
    }
    r->kind = QI_REPLY_ERROR;
    return QI_OK;
}

static qi_code parse_text(json_object *o, qi_reply *r, qi_error *err)
{
    json_object *v;
    if (!get(o, "text", json_type_string, &v))
        return bad(err, "text", "must be a string");
    r->text = json_object_get_string(v);
    r->text_len = (size_t)json_object_get_string_len(v);
    return QI_OK;
}

static qi_code parse_stats(json_object *o, qi_reply *r, qi_error *err)
{
    json_object *s, *v;
    int64_t n;
    qi_gen_stats *st = &r->stats;
    if (!get(o, "stats", json_type_object, &s))
        return bad(err, "stats", "must be an object");
    if (!get_int(s, "prompt_tokens", 0, UINT32_MAX, &n))
        return bad(err, "stats.prompt_tokens", "must be an integer in 0..2^32-1");
    st->prompt_tokens = (uint32_t)n;
    if (!get_int(s, "tokens", 0, UINT32_MAX, &n))
        return bad(err, "stats.tokens", "must be an integer in 0..2^32-1");
    st->tokens = (uint32_t)n;
    if (!get_number(s, "ms", &st->ms))
        return bad(err, "stats.ms", "must be a number or null");
    if (!get_number(s, "tokens_per_s", &st->tokens_per_s))
        return bad(err, "stats.tokens_per_s", "must be a number or null");
    if (!get(s, "stop_reason", json_type_string, &v) ||
        !qi_stop_reason_from_name(json_object_get_string(v), &st->stop_reason))
        return bad(err, "stats.stop_reason", "must be length, stop, eos or cancelled");
    if (!get_int(s, "switches", 0, UINT32_MAX, &n))
        return bad(err, "stats.switches", "must be an integer in 0..2^32-1");
    st->switches = (uint32_t)n;
    st->switch_wait_ms = 0; /* optional: servers before it was added leave it out */
    if (json_object_object_get_ex(s, "switch_wait_ms", NULL) && !get_number(s, "switch_wait_ms", &st->switch_wait_ms))
        return bad(err, "stats.switch_wait_ms", "must be a number or null");
    json_object *spans;
    if (!get(s, "spans", json_type_array, &spans))
        return bad(err, "stats.spans", "must be an array");
    size_t count = json_object_array_length(spans);
    if (count == 0)
        return QI_OK;
    qi_span *out = calloc(count, sizeof *out);
    if (!out)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    st->spans = out;
    st->n_spans = count;
    for (size_t i = 0; i < count; i++) {
        json_object *sp = json_object_array_get_idx(spans, i);
        int64_t from, to;
        if (!json_object_is_type(sp, json_type_object) ||
            !get(sp, "variant", json_type_string, &v) ||
            !get_int(sp, "from", 0, UINT32_MAX, &from) || !get_int(sp, "to", from, UINT32_MAX, &to))
            return bad(err, "stats.spans",
                       "each must be {\"variant\":name,\"from\":i,\"to\":j} with i <= j");
        out[i].variant = json_object_get_string(v);
        out[i].from = (uint32_t)from;
        out[i].to = (uint32_t)to;
    }
    return QI_OK;
}

/* Reads everything but the id into r, by the reply's kind. */
static qi_code parse_body(json_object *o, qi_reply *r, qi_error *err)
{
    json_object *v;
    if (json_object_object_get_ex(o, "error", &v))
        return parse_error(v, r, err);
    if (!json_object_object_get_ex(o, "event", &v)) {
        r->kind = QI_REPLY_RESULT;
        return QI_OK;
    }
    if (!json_object_is_type(v, json_type_string))
        return bad(err, "event", "must be a string");
    const char *event = json_object_get_string(v);
    qi_code c;
    if (strcmp(event, "token") == 0) {
        int64_t n;
        r->kind = QI_REPLY_TOKEN;
        if ((c = parse_text(o, r, err)))
            return c;
        if (!get_int(o, "token", INT32_MIN, INT32_MAX, &n))
            return bad(err, "token", "must be a 32-bit integer");
        r->token = (int32_t)n;
        if (!get_int(o, "index", 0, UINT32_MAX, &n))
            return bad(err, "index", "must be an integer in 0..2^32-1");
        r->index = (uint32_t)n;
        return QI_OK;
    }
    if (strcmp(event, "done") == 0) {
        r->kind = QI_REPLY_DONE;
        if ((c = parse_text(o, r, err)))
            return c;
        return parse_stats(o, r, err);
    }
    return bad(err, "event", "must be token or done");
}

qi_code qi_reply_parse(const char *line, size_t len, qi_reply *out, qi_error *err)
{
    memset(out, 0, sizeof *out);
    json_object *o;
    qi_error jerr;
    qi_code c = qi_json_parse_object(line, len, &o, &jerr);
    if (c == QI_ERR_INVALID_JSON)
        return qi_fail(err, QI_ERR_PROTOCOL, NULL, "reply is not JSON: %s", jerr.msg);
    if (c)
        return qi_fail(err, c, NULL, "%s", jerr.msg);
    qi_reply r;
    memset(&r, 0, sizeof r);
    r.body = o;
    json_object *v;
    if (!json_object_object_get_ex(o, "id", &v)) {
        c = bad(err, "id", "missing");
    } else if (v) {
        qi_error e;
        if (qi_id_from_json(v, "id", &r.id, &e) != QI_OK)
            c = bad(err, "id", "must be null, a string of 1..64 printable ASCII characters or "
                               "an integer in 0..2^53-1");
    }
    if (!c && r.id.kind == QI_ID_NONE && json_object_object_get_ex(o, "duplicate_id", &v) && v) {
        qi_error e;
        if (qi_id_from_json(v, "duplicate_id", &r.duplicate_id, &e) != QI_OK)
            c = bad(err, "duplicate_id", "must be null, a string of 1..64 printable ASCII "
                                         "characters or an integer in 0..2^53-1");
    }
    if (!c)
        c = parse_body(o, &r, err);
    if (c) {
        qi_reply_free(&r);
        return c;
    }
    *out = r;
    return QI_OK;
}

void qi_reply_free(qi_reply *r)
{
    if (!r)
        return;
    free((void *)r->stats.spans);
    json_object_put(r->body);
    memset(r, 0, sizeof *r);
}

bool qi_reply_is_final(const qi_reply *r)
{
    return r->kind != QI_REPLY_TOKEN;
}
