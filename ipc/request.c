/* request.c: parsing and validating a request line (PROTOCOL.md, "Requests").
 *
 * The order of checks is part of the protocol, so a line with several faults always gets the
 * same error: JSON, then id, then op, then unknown fields (in the line's order), then each field
 * of the op in the order PROTOCOL.md lists them. */
#include "request.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_in.h"

/* ---------------------------------------------------------------- names and defaults */

static const char *const op_names[QI_OP_COUNT] = {
    [QI_OP_GENERATE] = "generate",     [QI_OP_CLASSIFY] = "classify", [QI_OP_CANCEL] = "cancel",
    [QI_OP_STATUS] = "status",         [QI_OP_VARIANTS] = "variants",
    [QI_OP_SET_BUDGET] = "set-budget", [QI_OP_PIN] = "pin",           [QI_OP_UNPIN] = "unpin",
    [QI_OP_RELOAD] = "reload",         [QI_OP_METRICS] = "metrics",
};

/* The fields each op accepts besides id and op, in the order they are checked. */
static const char *const generate_fields[] = {"prompt", "max_tokens", "temperature", "top_k",
                                              "top_p", "repetition_penalty", "seed", "stop",
                                              "stream", NULL};
static const char *const classify_fields[] = {"text", "texts", "task", NULL};
static const char *const cancel_fields[] = {"target", NULL};
static const char *const budget_fields[] = {"memory", "power", NULL};
static const char *const pin_fields[] = {"variant", NULL};
static const char *const no_fields[] = {NULL};

static const char *const *const op_fields[QI_OP_COUNT] = {
    [QI_OP_GENERATE] = generate_fields, [QI_OP_CLASSIFY] = classify_fields,
    [QI_OP_CANCEL] = cancel_fields,     [QI_OP_STATUS] = no_fields,
    [QI_OP_VARIANTS] = no_fields,       [QI_OP_SET_BUDGET] = budget_fields,
    [QI_OP_PIN] = pin_fields,           [QI_OP_UNPIN] = no_fields,
    [QI_OP_RELOAD] = no_fields,         [QI_OP_METRICS] = no_fields,
};

const char *qi_op_name(qi_op op)
{
    return (unsigned)op < QI_OP_COUNT ? op_names[op] : NULL;
}

bool qi_op_from_name(const char *name, qi_op *op)
{
    for (int i = 0; i < QI_OP_COUNT; i++) {
        if (strcmp(op_names[i], name) == 0) {
            *op = (qi_op)i;
            return true;
        }
    }
    return false;
}

bool qi_op_is_control(qi_op op)
{
    return op == QI_OP_SET_BUDGET || op == QI_OP_PIN || op == QI_OP_UNPIN || op == QI_OP_RELOAD;
}

qi_limits qi_limits_default(void)
{
    return (qi_limits){
        .max_line = QI_DEFAULT_MAX_LINE,
        .max_tokens = QI_DEFAULT_MAX_TOKENS,
        .vocab = 0,
        .queue_depth = QI_DEFAULT_QUEUE_DEPTH,
        .max_in_flight = QI_DEFAULT_MAX_IN_FLIGHT,
    };
}

void qi_request_init(qi_request *r, qi_op op, const qi_id *id, const qi_limits *limits)
{
    qi_limits def = qi_limits_default();
    if (!limits)
        limits = &def;
    memset(r, 0, sizeof *r);
    r->id = id ? *id : qi_id_none();
    r->op = op;
    if (op == QI_OP_GENERATE) {
        qi_generate *g = &r->u.generate;
        g->max_tokens = limits->max_tokens < 64 ? limits->max_tokens : 64;
        g->temperature = 0.8;
        g->top_k = limits->vocab && limits->vocab < 40 ? limits->vocab : 40;
        g->top_p = 0.95;
        g->repetition_penalty = 1.1;
    }
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void qi_request_free(qi_request *r)
{
    if (!r)
        return;
    switch (r->op) {
    case QI_OP_GENERATE:
        free(r->u.generate.prompt);
        free_strings(r->u.generate.stop, r->u.generate.n_stop);
        break;
    case QI_OP_CLASSIFY:
        free_strings(r->u.classify.texts, r->u.classify.n_texts);
        free(r->u.classify.task);
        break;
    case QI_OP_PIN:
        free(r->u.pin.variant);
        break;
    default:
        break;
    }
    memset(r, 0, sizeof *r);
}

bool qi_task_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QI_TASK_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* ---------------------------------------------------------------- typed fields */

/* A key as it may appear in an error: control bytes as '?', so a hostile key cannot forge a
 * line in a log that prints the message. Truncated to the error's field size. */
static void printable_key(const char *key, char *out, size_t cap)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        out[i] = (unsigned char)key[i] < 0x20 || key[i] == 0x7f ? '?' : key[i];
    out[i] = '\0';
}

/* A JSON string of 1..max bytes, copied. */
static qi_code string_value(json_object *v, const char *field, size_t max, char **out,
                            qi_error *err)
{
    if (!json_object_is_type(v, json_type_string))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be a string");
    size_t len = (size_t)json_object_get_string_len(v);
    if (len == 0)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must not be empty");
    if (len > max)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be at most %zu bytes", max);
    char *s = malloc(len + 1);
    if (!s)
        return qi_fail(err, QI_ERR_NOMEM, field, "out of memory");
    memcpy(s, json_object_get_string(v), len + 1);
    *out = s;
    return QI_OK;
}

/* A JSON integer in lo..hi (hi <= INT64_MAX). */
static qi_code int_value(json_object *v, const char *field, int64_t lo, int64_t hi, int64_t *out,
                         qi_error *err)
{
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < lo ||
        json_object_get_int64(v) > hi)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be an integer in %lld..%lld",
                       (long long)lo, (long long)hi);
    *out = json_object_get_int64(v);
    return QI_OK;
}

bool qi_number_representable(double x)
{
    return isfinite(x) && (x == 0 || fabs(x) >= QI_NUMBER_MIN);
}

/* A JSON number (integer or not) in [lo, hi], or (lo, hi] when lo_open, that the sampler's
 * floats can hold (qi_number_representable): a value checked here must not change class on
 * its way to the model. */
static qi_code number_value(json_object *v, const char *field, double lo, bool lo_open, double hi,
                            double *out, qi_error *err)
{
    double x = 0;
    bool ok = json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
    if (ok) {
        x = json_object_get_double(v);
        ok = isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi;
    }
    if (!ok)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field, "must be a number in %s%g, %g]",
                       lo_open ? "(" : "[", lo, hi);
    if (!qi_number_representable(x))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, field,
                       "must be 0 or at least %g: smaller numbers do not fit a 32-bit float",
                       QI_NUMBER_MIN);
    *out = x == 0 ? 0 : x; /* no -0 */
    return QI_OK;
}

/* Refuses the first key (in the line's order) that is not id, op or one of `known`. */
static qi_code check_fields(json_object *obj, qi_op op, qi_error *err)
{
    const char *const *known = op_fields[op];
    json_object_object_foreach(obj, key, val) {
        (void)val;
        if (strcmp(key, "id") == 0 || strcmp(key, "op") == 0)
            continue;
        bool found = false;
        for (size_t i = 0; known[i] && !found; i++)
            found = strcmp(key, known[i]) == 0;
        if (!found) {
            char name[QI_ERROR_FIELD_MAX] = "\"\""; /* an empty key is named "" */
            if (key[0])
                printable_key(key, name, sizeof name);
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, name, "unknown field for op %s",
                           op_names[op]);
        }
    }
    return QI_OK;
}

/* ---------------------------------------------------------------- ops */

/* stop: one string, or an array of at most QI_STOP_MAX strings; each 1..QI_STOP_MAX_LEN bytes. */
static qi_code parse_stop(json_object *v, qi_generate *g, qi_error *err)
{
    bool one = json_object_is_type(v, json_type_string);
    if (!one && !json_object_is_type(v, json_type_array))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "stop",
                       "must be a string or an array of at most %d strings", QI_STOP_MAX);
    size_t n = one ? 1 : json_object_array_length(v);
    if (n > QI_STOP_MAX)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "stop", "must hold at most %d strings",
                       QI_STOP_MAX);
    if (n == 0)
        return QI_OK;
    g->stop = calloc(n, sizeof *g->stop);
    if (!g->stop)
        return qi_fail(err, QI_ERR_NOMEM, "stop", "out of memory");
    for (size_t i = 0; i < n; i++) {
        char field[16] = "stop";
        if (!one)
            snprintf(field, sizeof field, "stop[%zu]", i);
        qi_code c = string_value(one ? v : json_object_array_get_idx(v, i), field, QI_STOP_MAX_LEN,
                                 &g->stop[i], err);
        if (c)
            return c;
        g->n_stop = i + 1;
    }
    return QI_OK;
}

static qi_code parse_generate(json_object *obj, const qi_limits *lim, qi_generate *g,
                              qi_error *err)
{
    json_object *v;
    int64_t n;
    qi_code c;
    if (!json_object_object_get_ex(obj, "prompt", &v))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "prompt", "required");
    if ((c = string_value(v, "prompt", SIZE_MAX, &g->prompt, err)))
        return c;
    if (json_object_object_get_ex(obj, "max_tokens", &v)) {
        if ((c = int_value(v, "max_tokens", 1, lim->max_tokens, &n, err)))
            return c;
        g->max_tokens = (uint32_t)n;
    }
    if (json_object_object_get_ex(obj, "temperature", &v) &&
        (c = number_value(v, "temperature", 0, false, 5, &g->temperature, err)))
        return c;
    if (json_object_object_get_ex(obj, "top_k", &v)) {
        if ((c = int_value(v, "top_k", 0, lim->vocab ? lim->vocab : QI_TOP_K_MAX, &n, err)))
            return c;
        g->top_k = (uint32_t)n;
    }
    if (json_object_object_get_ex(obj, "top_p", &v) &&
        (c = number_value(v, "top_p", 0, true, 1, &g->top_p, err)))
        return c;
    if (json_object_object_get_ex(obj, "repetition_penalty", &v) &&
        (c = number_value(v, "repetition_penalty", 1, false, 10, &g->repetition_penalty, err)))
        return c;
    if (json_object_object_get_ex(obj, "seed", &v)) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "seed",
                           "must be an integer in 0..18446744073709551615");
        g->has_seed = true;
        g->seed = json_object_get_uint64(v);
    }
    if (json_object_object_get_ex(obj, "stop", &v) && (c = parse_stop(v, g, err)))
        return c;
    if (json_object_object_get_ex(obj, "stream", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "stream", "must be true or false");
        g->stream = json_object_get_boolean(v);
    }
    return QI_OK;
}

static qi_code parse_classify(json_object *obj, qi_classify *cl, qi_error *err)
{
    json_object *text = NULL, *texts = NULL;
    bool has_text = json_object_object_get_ex(obj, "text", &text);
    bool has_texts = json_object_object_get_ex(obj, "texts", &texts);
    if (has_text && has_texts)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "texts", "give text or texts, not both");
    if (!has_text && !has_texts)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "text", "required (or texts)");
    size_t n = 1;
    if (has_texts) {
        if (!json_object_is_type(texts, json_type_array) ||
            (n = json_object_array_length(texts)) < 1 || n > QI_TEXTS_MAX)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "texts",
                           "must be an array of 1..%d strings", QI_TEXTS_MAX);
    }
    cl->single = has_text;
    cl->texts = calloc(n, sizeof *cl->texts);
    if (!cl->texts)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char field[16] = "text";
        if (!has_text)
            snprintf(field, sizeof field, "texts[%zu]", i);
        qi_code c = string_value(has_text ? text : json_object_array_get_idx(texts, i), field,
                                 SIZE_MAX, &cl->texts[i], err);
        if (c)
            return c;
        cl->n_texts = i + 1;
    }
    json_object *task = NULL;
    if (json_object_object_get_ex(obj, "task", &task)) {
        qi_code c = string_value(task, "task", QI_TASK_MAX, &cl->task, err);
        if (c)
            return c;
        if (!qi_task_name_ok(cl->task))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "task", "must be 1..%d characters of a-z 0-9 _ -",
                           QI_TASK_MAX);
    }
    return QI_OK;
}

/* memory: "auto", a size string (budget.h), or an integer of bytes >= 1. */
static qi_code parse_memory_field(json_object *v, qi_set_budget *b, qi_error *err)
{
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (len == 4 && memcmp(s, "auto", 4) == 0) {
            b->memory = QI_BUDGET_AUTO;
            return QI_OK;
        }
        b->memory = QI_BUDGET_SET;
        return qi_parse_memory(s, len, "memory", &b->memory_bytes, err);
    }
    if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1) {
        b->memory = QI_BUDGET_SET;
        b->memory_bytes = json_object_get_uint64(v);
        return QI_OK;
    }
    return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "memory",
                   "must be \"auto\", a size like \"32M\", or an integer of bytes >= 1");
}

/* power: "auto", a power string (budget.h), or a number of watts in (0, 1000000]. */
static qi_code parse_power_field(json_object *v, qi_set_budget *b, qi_error *err)
{
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (len == 4 && memcmp(s, "auto", 4) == 0) {
            b->power = QI_BUDGET_AUTO;
            return QI_OK;
        }
        b->power = QI_BUDGET_SET;
        return qi_parse_power(s, len, "power", &b->power_uw, err);
    }
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        double w = json_object_get_double(v);
        if (isfinite(w) && w > 0 && w <= (double)QI_POWER_MAX_UW / 1e6) {
            double uw = nearbyint(w * 1e6);
            if (uw >= 1) {
                b->power = QI_BUDGET_SET;
                b->power_uw = (uint64_t)uw;
                return QI_OK;
            }
        }
    }
    return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "power",
                   "must be \"auto\", a power like \"3.5W\", or a number of watts in "
                   "(0, 1000000] (resolution 1 uW)");
}

static qi_code parse_set_budget(json_object *obj, qi_set_budget *b, qi_error *err)
{
    json_object *m = NULL, *p = NULL;
    bool has_m = json_object_object_get_ex(obj, "memory", &m);
    bool has_p = json_object_object_get_ex(obj, "power", &p);
    if (!has_m && !has_p)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "memory", "required (or power, or both)");
    qi_code c;
    if (has_m && (c = parse_memory_field(m, b, err)))
        return c;
    if (has_p && (c = parse_power_field(p, b, err)))
        return c;
    return QI_OK;
}

/* The bundle's rule for variant names: 1..64 bytes of A-Z a-z 0-9 . _ - */
static bool valid_variant_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > QI_VARIANT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static qi_code parse_pin(json_object *obj, qi_pin *p, qi_error *err)
{
    static const char rule[] = "must be a variant name: 1..64 characters of A-Z a-z 0-9 . _ -";
    json_object *v;
    if (!json_object_object_get_ex(obj, "variant", &v))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "variant", "required");
    if (!json_object_is_type(v, json_type_string) || !valid_variant_name(json_object_get_string(v)))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "variant", "%s", rule);
    return string_value(v, "variant", QI_VARIANT_NAME_MAX, &p->variant, err);
}

/* ---------------------------------------------------------------- the line */

/* Reads id and op: the part of a request every reply depends on. */
static qi_code parse_head(json_object *obj, qi_request *out, qi_error *err)
{
    json_object *v = NULL;
    qi_id id;
    json_object_object_get_ex(obj, "id", &v);
    qi_code c = qi_id_from_json(v, "id", &id, err);
    if (c)
        return c;
    out->id = id;
    if (!json_object_object_get_ex(obj, "op", &v))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "op", "required");
    if (!json_object_is_type(v, json_type_string))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "op", "must be a string");
    if (!qi_op_from_name(json_object_get_string(v), &out->op)) {
        char name[40];
        printable_key(json_object_get_string(v), name, sizeof name);
        return qi_fail(err, QI_ERR_UNKNOWN_OP, "op", "unknown op \"%s\"", name);
    }
    return QI_OK;
}

qi_code qi_request_parse(const char *line, size_t len, const qi_limits *limits, qi_request *out,
                         qi_error *err)
{
    qi_limits def = qi_limits_default();
    if (!limits)
        limits = &def;
    memset(out, 0, sizeof *out);
    out->op = QI_OP_COUNT;
    if (len > limits->max_line)
        return qi_fail(err, QI_ERR_TOO_LARGE, NULL, "line longer than %zu bytes", limits->max_line);
    json_object *obj;
    qi_code c = qi_json_parse_object(line, len, &obj, err);
    if (c)
        return c;
    qi_request r;
    memset(&r, 0, sizeof r);
    r.op = QI_OP_COUNT; /* until the op is read */
    c = parse_head(obj, &r, err);
    if (!c) {
        qi_id id = r.id;
        qi_request_init(&r, r.op, &id, limits);
        c = check_fields(obj, r.op, err);
    }
    if (!c) {
        switch (r.op) {
        case QI_OP_GENERATE: c = parse_generate(obj, limits, &r.u.generate, err); break;
        case QI_OP_CLASSIFY: c = parse_classify(obj, &r.u.classify, err); break;
        case QI_OP_CANCEL: {
            json_object *v = NULL;
            json_object_object_get_ex(obj, "target", &v);
            c = qi_id_from_json(v, "target", &r.u.cancel.target, err);
            break;
        }
        case QI_OP_SET_BUDGET: c = parse_set_budget(obj, &r.u.set_budget, err); break;
        case QI_OP_PIN: c = parse_pin(obj, &r.u.pin, err); break;
        default: break;
        }
    }
    json_object_put(obj);
    if (c) {
        qi_id id = r.id;
        qi_op op = r.op;
        qi_request_free(&r);
        out->id = id;
        out->op = op;
        return c;
    }
    *out = r;
    return QI_OK;
}
