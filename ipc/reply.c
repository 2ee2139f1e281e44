/* reply.c: the reply builders. Each makes a json-c object, starting with the id, and hands it
 * to qi_json_line, which owns the guarantees about the line (json_out.h). */
#include "reply.h"

#include <json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json_out.h"

static const char *const stop_names[QI_STOP_COUNT] = {
    [QI_STOP_LENGTH] = "length",
    [QI_STOP_STOP] = "stop",
    [QI_STOP_EOS] = "eos",
    [QI_STOP_CANCELLED] = "cancelled",
};

const char *qi_stop_reason_name(qi_stop_reason r)
{
    return (unsigned)r < QI_STOP_COUNT ? stop_names[r] : NULL;
}

bool qi_stop_reason_from_name(const char *name, qi_stop_reason *r)
{
    for (int i = 0; i < QI_STOP_COUNT; i++) {
        if (strcmp(stop_names[i], name) == 0) {
            *r = (qi_stop_reason)i;
            return true;
        }
    }
    return false;
}

/* A new reply object holding only the id, which always comes first on the line. */
static json_object *head(const qi_id *id)
{
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, "id", qi_id_to_json(id));
    return o;
}

/* A string, or null for NULL. */
static json_object *str_or_null(const char *s)
{
    return s ? qi_json_string(s, strlen(s)) : NULL;
}

static json_object *ok_head(const qi_id *id)
{
    json_object *o = head(id);
    if (o)
        json_object_object_add(o, "ok", json_object_new_boolean(1));
    return o;
}

/* Watts from microwatts, exact to the microwatt in the shortest decimal form. */
static json_object *watts(uint64_t uw)
{
    return qi_json_double((double)uw / 1e6);
}

/* ---------------------------------------------------------------- generation */

qi_code qi_reply_token(const qi_id *id, const char *text, size_t text_len, int32_t token,
                       uint32_t index, char **line, size_t *len, qi_error *err)
{
    json_object *o = head(id);
    if (o) {
        json_object_object_add(o, "event", json_object_new_string("token"));
        json_object_object_add(o, "text", qi_json_string(text, text_len));
        json_object_object_add(o, "token", json_object_new_int(token));
        json_object_object_add(o, "index", qi_json_uint(index));
    }
    return qi_json_line(o, line, len, err);
}

static json_object *stats_object(const qi_gen_stats *s)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "prompt_tokens", qi_json_uint(s->prompt_tokens));
    json_object_object_add(o, "tokens", qi_json_uint(s->tokens));
    json_object_object_add(o, "ms", qi_json_double(s->ms));
    json_object_object_add(o, "tokens_per_s", qi_json_double(s->tokens_per_s));
    const char *reason = qi_stop_reason_name(s->stop_reason);
    json_object_object_add(o, "stop_reason", json_object_new_string(reason ? reason : "length"));
    json_object *spans = json_object_new_array_ext((int)s->n_spans);
    for (size_t i = 0; spans && i < s->n_spans; i++) {
        json_object *sp = json_object_new_object();
        if (!sp)
            break;
        json_object_object_add(sp, "variant", str_or_null(s->spans[i].variant));
        json_object_object_add(sp, "from", qi_json_uint(s->spans[i].from));
        json_object_object_add(sp, "to", qi_json_uint(s->spans[i].to));
        json_object_array_add(spans, sp);
    }
    json_object_object_add(o, "spans", spans);
    json_object_object_add(o, "switches", qi_json_uint(s->switches));
    json_object_object_add(o, "switch_wait_ms", qi_json_double(s->switch_wait_ms));
    return o;
}

qi_code qi_reply_done(const qi_id *id, const char *text, size_t text_len,
                      const qi_gen_stats *stats, char **line, size_t *len, qi_error *err)
{
    json_object *o = head(id);
    if (o) {
        json_object_object_add(o, "event", json_object_new_string("done"));
        json_object_object_add(o, "text", qi_json_string(text, text_len));
        json_object_object_add(o, "stats", stats_object(stats));
    }
    return qi_json_line(o, line, len, err);
}

/* ---------------------------------------------------------------- classification */

qi_code qi_reply_classify(const qi_id *id, const qi_class_head *hd, const qi_class_result *results,
                          size_t n, char **line, size_t *len, qi_error *err)
{
    *line = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (results[i].label < 0 || (size_t)results[i].label >= hd->n_labels)
            return qi_fail(err, QI_ERR_INTERNAL, NULL, "result %zu has label %d of %zu", i,
                           (int)results[i].label, hd->n_labels);
    json_object *o = head(id);
    json_object *names = o ? json_object_new_array_ext((int)hd->n_labels) : NULL;
    for (size_t k = 0; names && k < hd->n_labels; k++)
        json_object_array_add(names, json_object_new_string(hd->labels[k]));
    if (o && names) {
        json_object_object_add(o, "task", json_object_new_string(hd->task));
        json_object_object_add(o, "labels", names);
    } else {
        json_object_put(o);
        o = NULL;
    }
    json_object *arr = o ? json_object_new_array_ext((int)n) : NULL;
    for (size_t i = 0; arr && i < n; i++) {
        json_object *r = json_object_new_object();
        json_object *probs = json_object_new_array_ext((int)results[i].n_probs);
        if (!r || !probs) {
            json_object_put(r);
            json_object_put(probs);
            json_object_put(arr);
            arr = NULL;
            break;
        }
        for (size_t k = 0; k < results[i].n_probs; k++)
            json_object_array_add(probs, qi_json_float(results[i].probs[k]));
        json_object_object_add(r, "label", json_object_new_string(hd->labels[results[i].label]));
        json_object_object_add(r, "label_index", json_object_new_int(results[i].label));
        json_object_object_add(r, "probs", probs);
        json_object_array_add(arr, r);
    }
    if (o && !arr) {
        json_object_put(o);
        o = NULL;
    }
    if (o)
        json_object_object_add(o, "results", arr);
    return qi_json_line(o, line, len, err);
}

/* ---------------------------------------------------------------- control */

qi_code qi_reply_cancel(const qi_id *id, bool found, char **line, size_t *len, qi_error *err)
{
    json_object *o = ok_head(id);
    if (o)
        json_object_object_add(o, "found", json_object_new_boolean(found));
    return qi_json_line(o, line, len, err);
}

qi_code qi_reply_set_budget(const qi_id *id, bool has_memory, uint64_t memory_bytes,
                            bool has_power, uint64_t power_uw, char **line, size_t *len,
                            qi_error *err)
{
    json_object *o = ok_head(id);
    if (o) {
        json_object_object_add(o, "memory_bytes", has_memory ? qi_json_uint(memory_bytes) : NULL);
        json_object_object_add(o, "power_w", has_power ? watts(power_uw) : NULL);
    }
    return qi_json_line(o, line, len, err);
}

qi_code qi_reply_pin(const qi_id *id, const char *variant, char **line, size_t *len,
                     qi_error *err)
{
    json_object *o = ok_head(id);
    if (o)
        json_object_object_add(o, "variant", str_or_null(variant));
    return qi_json_line(o, line, len, err);
}

qi_code qi_reply_reload(const qi_id *id, uint32_t n_variants, const char *active, char **line,
                        size_t *len, qi_error *err)
{
    json_object *o = ok_head(id);
    if (o) {
        json_object_object_add(o, "variants", qi_json_uint(n_variants));
        json_object_object_add(o, "active", str_or_null(active));
    }
    return qi_json_line(o, line, len, err);
}

/* ---------------------------------------------------------------- metrics */

qi_code qi_reply_metrics(const qi_id *id, const char *text, size_t text_len, char **line, size_t *len,
                         qi_error *err)
{
    json_object *o = head(id);
    if (o) {
        json_object_object_add(o, "content_type", json_object_new_string(QI_METRICS_CONTENT_TYPE));
        json_object_object_add(o, "text", qi_json_string(text, text_len));
    }
    return qi_json_line(o, line, len, err);
}

/* ---------------------------------------------------------------- status */

static json_object *budget_object(bool has, json_object *value, const char *key,
                                  const char *source)
{
    json_object *b = json_object_new_object();
    if (!b) {
        json_object_put(value);
        return NULL;
    }
    json_object_object_add(b, key, has ? value : NULL);
    if (!has)
        json_object_put(value);
    json_object_object_add(b, "source", str_or_null(source));
    return b;
}

static json_object *readings_array(const qi_reading *r, size_t n)
{
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; a && i < n; i++) {
        json_object *x = json_object_new_object();
        if (!x)
            break;
        json_object_object_add(x, "source", str_or_null(r[i].source));
        json_object_object_add(x, "value", r[i].available ? qi_json_double(r[i].value) : NULL);
        json_object_object_add(x, "unit", str_or_null(r[i].unit));
        if (r[i].note)
            json_object_object_add(x, "note", str_or_null(r[i].note));
        json_object_array_add(a, x);
    }
    return a;
}

qi_code qi_reply_status(const qi_id *id, const qi_server_status *s, char **line, size_t *len,
                        qi_error *err)
{
    json_object *o = head(id);
    if (!o)
        return qi_json_line(NULL, line, len, err);
    json_object_object_add(o, "protocol", json_object_new_int(QI_PROTOCOL_VERSION));

    json_object *active = json_object_new_object();
    if (active) {
        json_object_object_add(active, "variant", str_or_null(s->active));
        json_object_object_add(active, "reason", str_or_null(s->reason));
        json_object_object_add(active, "pinned", json_object_new_boolean(s->pinned));
    }
    json_object_object_add(o, "active", active);
    if (s->bundle_path) {
        json_object *bundle = json_object_new_object();
        if (bundle) {
            json_object_object_add(bundle, "path", str_or_null(s->bundle_path));
            json_object_object_add(bundle, "configured", str_or_null(s->bundle_configured));
            json_object_object_add(bundle, "created", str_or_null(s->bundle_created));
            json_object_object_add(bundle, "signer", str_or_null(s->bundle_signer));
            json_object_object_add(bundle, "manifest_sha256", str_or_null(s->bundle_manifest_sha256));
        }
        json_object_object_add(o, "bundle", bundle);
    }

    json_object *budget = json_object_new_object();
    if (budget) {
        json_object_object_add(budget, "memory",
                               budget_object(s->has_memory_budget,
                                             qi_json_uint(s->memory_budget_bytes), "bytes",
                                             s->memory_budget_source));
        json_object_object_add(budget, "power",
                               budget_object(s->has_power_budget, watts(s->power_budget_uw),
                                             "watts", s->power_budget_source));
    }
    json_object_object_add(o, "budget", budget);
    json_object_object_add(o, "readings", readings_array(s->readings, s->n_readings));

    json_object *queue = json_object_new_object();
    if (queue) {
        json_object_object_add(queue, "waiting", qi_json_uint(s->queue_waiting));
        json_object_object_add(queue, "active", qi_json_uint(s->queue_active));
        json_object_object_add(queue, "limit", qi_json_uint(s->queue_limit));
    }
    json_object_object_add(o, "queue", queue);

    json_object *counters = json_object_new_object();
    if (counters) {
        json_object_object_add(counters, "connections", qi_json_uint(s->connections));
        json_object_object_add(counters, "requests", qi_json_uint(s->requests));
        json_object_object_add(counters, "tokens", qi_json_uint(s->tokens));
        json_object_object_add(counters, "errors", qi_json_uint(s->errors));
        json_object_object_add(counters, "cancelled", qi_json_uint(s->cancelled));
        json_object_object_add(counters, "disconnected", qi_json_uint(s->disconnected));
        json_object_object_add(counters, "switches", qi_json_uint(s->switches));
    }
    json_object_object_add(o, "counters", counters);
    json_object_object_add(o, "uptime_s", qi_json_double(s->uptime_s));
    return qi_json_line(o, line, len, err);
}

static json_object *metric(double v)
{
    return isnan(v) ? NULL : qi_json_double(v);
}

/* [{"name":task,"labels":[…]},…]: what a variant can classify. */
static json_object *tasks_array(const qi_class_head *t, size_t n)
{
    json_object *arr = json_object_new_array_ext((int)n);
    for (size_t i = 0; arr && i < n; i++) {
        json_object *x = json_object_new_object(), *labels = json_object_new_array_ext((int)t[i].n_labels);
        if (!x || !labels) {
            json_object_put(x);
            json_object_put(labels);
            break;
        }
        for (size_t k = 0; k < t[i].n_labels; k++)
            json_object_array_add(labels, json_object_new_string(t[i].labels[k]));
        json_object_object_add(x, "name", json_object_new_string(t[i].task));
        json_object_object_add(x, "labels", labels);
        json_object_array_add(arr, x);
    }
    return arr;
}

qi_code qi_reply_variants(const qi_id *id, const qi_variant_info *v, size_t n, char **line,
                          size_t *len, qi_error *err)
{
    json_object *o = head(id);
    json_object *arr = o ? json_object_new_array_ext((int)n) : NULL;
    for (size_t i = 0; arr && i < n; i++) {
        json_object *x = json_object_new_object(), *m = json_object_new_object();
        if (!x || !m) {
            json_object_put(x);
            json_object_put(m);
            break;
        }
        json_object_object_add(x, "name", str_or_null(v[i].name));
        json_object_object_add(x, "footprint_bytes", qi_json_uint(v[i].footprint_bytes));
        json_object_object_add(x, "bits_per_weight", metric(v[i].bits_per_weight));
        json_object_object_add(m, "ppl_test", metric(v[i].ppl_test));
        json_object_object_add(m, "ppl_valid", metric(v[i].ppl_valid));
        json_object_object_add(m, "accuracy", metric(v[i].accuracy));
        json_object_object_add(m, "tokens_per_s", metric(v[i].tokens_per_s));
        json_object_object_add(m, "energy_pj_per_token", metric(v[i].energy_pj_per_token));
        json_object_object_add(x, "metrics", m);
        json_object_object_add(x, "verified", json_object_new_boolean(v[i].verified));
        json_object_object_add(x, "active", json_object_new_boolean(v[i].active));
        json_object_object_add(x, "pinned", json_object_new_boolean(v[i].pinned));
        json_object_object_add(x, "tasks", tasks_array(v[i].tasks, v[i].n_tasks));
        json_object_array_add(arr, x);
    }
    if (o)
        json_object_object_add(o, "variants", arr);
    return qi_json_line(o, line, len, err);
}

/* ---------------------------------------------------------------- errors */

/* An error reply whose object o (holding the id, or NULL when out of memory) gets the error. */
static qi_code error_reply(json_object *o, qi_code code, const char *field, const char *message,
                           char **line, size_t *len, qi_error *err)
{
    if (!qi_code_is_wire(code))
        code = QI_ERR_INTERNAL;
    json_object *e = o ? json_object_new_object() : NULL;
    if (e) {
        json_object_object_add(e, "code", json_object_new_string(qi_code_name(code)));
        json_object_object_add(e, "message", str_or_null(message ? message : qi_code_name(code)));
        if (field && field[0])
            json_object_object_add(e, "field", str_or_null(field));
        json_object_object_add(o, "error", e);
    } else if (o) {
        json_object_put(o);
        o = NULL;
    }
    return qi_json_line(o, line, len, err);
}

qi_code qi_reply_error(const qi_id *id, qi_code code, const char *field, const char *message,
                       char **line, size_t *len, qi_error *err)
{
    return error_reply(head(id), code, field, message, line, len, err);
}

qi_code qi_reply_duplicate_id(const qi_id *dup, char **line, size_t *len, qi_error *err)
{
    char shown[QI_ID_MAX_LEN + 8], msg[160];
    snprintf(msg, sizeof msg, "id: %s is still in flight on this connection; this request was not run",
             qi_id_format(dup, shown, sizeof shown));
    qi_id none = qi_id_none();
    json_object *o = head(&none);
    if (o)
        json_object_object_add(o, "duplicate_id", qi_id_to_json(dup));
    return error_reply(o, QI_ERR_INVALID_ARGUMENT, "id", msg, line, len, err);
}

char *qi_reply_errorv(const qi_id *id, qi_code code, const char *field, size_t *len, const char *fmt,
                      va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char *line = NULL;
    return qi_reply_error(id, code, field, msg, &line, len, NULL) == QI_OK ? line : NULL;
}

char *qi_reply_errorf(const qi_id *id, qi_code code, const char *field, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = qi_reply_errorv(id, code, field, len, fmt, ap);
    va_end(ap);
    return line;
}

char *qi_reply_busyf(const qi_id *id, uint64_t retry_ms, size_t *len, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_object *o = head(id);
    json_object *e = o ? json_object_new_object() : NULL;
    if (!e) {
        json_object_put(o);
        return NULL;
    }
    json_object_object_add(e, "code", json_object_new_string(qi_code_name(QI_ERR_BUSY)));
    json_object_object_add(e, "message", str_or_null(msg));
    json_object_object_add(e, "retry_after_ms", json_object_new_int64((int64_t)retry_ms));
    json_object_object_add(o, "error", e);
    char *line = NULL;
    return qi_json_line(o, &line, len, NULL) == QI_OK ? line : NULL;
}

qi_code qi_reply_error_from(const qi_id *id, const qi_error *e, char **line, size_t *len,
                            qi_error *err)
{
    return qi_reply_error(id, e->code, e->field, e->msg, line, len, err);
}
