/* request_build.c: a qi_request to a request line, the client's half of request.c.
 *
 * Written so that qi_request_parse of the line gives back the same request: numbers in their
 * shortest exact form, budgets as their exact strings ("32M", "3.5W"). */
#include "request.h"

#include <json.h>
#include <string.h>

#include "json_out.h"

static json_object *string_of(const char *s)
{
    return qi_json_string(s, strlen(s));
}

static json_object *string_array(char *const *v, size_t n)
{
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; a && i < n; i++)
        json_object_array_add(a, string_of(v[i]));
    return a;
}

static void add_generate(json_object *o, const qi_generate *g)
{
    json_object_object_add(o, "prompt", string_of(g->prompt));
    json_object_object_add(o, "max_tokens", qi_json_uint(g->max_tokens));
    json_object_object_add(o, "temperature", qi_json_double(g->temperature));
    json_object_object_add(o, "top_k", qi_json_uint(g->top_k));
    json_object_object_add(o, "top_p", qi_json_double(g->top_p));
    json_object_object_add(o, "repetition_penalty", qi_json_double(g->repetition_penalty));
    if (g->has_seed)
        json_object_object_add(o, "seed", qi_json_uint(g->seed));
    if (g->n_stop > 0)
        json_object_object_add(o, "stop", string_array(g->stop, g->n_stop));
    json_object_object_add(o, "stream", json_object_new_boolean(g->stream));
}

static void add_budget(json_object *o, const qi_set_budget *b)
{
    char buf[QI_BUDGET_TEXT_MAX];
    if (b->memory == QI_BUDGET_AUTO)
        json_object_object_add(o, "memory", json_object_new_string("auto"));
    else if (b->memory == QI_BUDGET_SET)
        json_object_object_add(o, "memory",
                               string_of(qi_format_memory(b->memory_bytes, buf, sizeof buf)));
    if (b->power == QI_BUDGET_AUTO)
        json_object_object_add(o, "power", json_object_new_string("auto"));
    else if (b->power == QI_BUDGET_SET)
        json_object_object_add(o, "power",
                               string_of(qi_format_power(b->power_uw, buf, sizeof buf)));
}

/* What would make the line unreadable as a request: no id, an op we cannot name, a required
 * string that is missing. Range checks are the server's. */
static qi_code check(const qi_request *r, qi_error *err)
{
    if (r->id.kind == QI_ID_NONE)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "id", "required");
    if (!qi_op_name(r->op))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "op", "not a known op");
    if (r->op == QI_OP_GENERATE) {
        if (!r->u.generate.prompt)
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "prompt", "required");
        for (size_t i = 0; i < r->u.generate.n_stop; i++)
            if (!r->u.generate.stop[i])
                return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "stop", "holds a NULL string");
    }
    if (r->op == QI_OP_CLASSIFY) {
        const qi_classify *c = &r->u.classify;
        if (c->n_texts == 0 || (c->single && c->n_texts != 1))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, c->single ? "text" : "texts",
                           "required");
        for (size_t i = 0; i < c->n_texts; i++)
            if (!c->texts[i])
                return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "texts", "holds a NULL string");
        if (c->task && !qi_task_name_ok(c->task))
            return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "task", "must be 1..%d characters of a-z 0-9 _ -",
                           QI_TASK_MAX);
    }
    if (r->op == QI_OP_PIN && !r->u.pin.variant)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "variant", "required");
    return QI_OK;
}

qi_code qi_request_build(const qi_request *r, char **line, size_t *len, qi_error *err)
{
    *line = NULL;
    *len = 0;
    qi_code c = check(r, err);
    if (c)
        return c;
    json_object *o = json_object_new_object();
    if (!o)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    json_object_object_add(o, "id", qi_id_to_json(&r->id));
    json_object_object_add(o, "op", json_object_new_string(qi_op_name(r->op)));
    switch (r->op) {
    case QI_OP_GENERATE: add_generate(o, &r->u.generate); break;
    case QI_OP_CLASSIFY:
        if (r->u.classify.single)
            json_object_object_add(o, "text", string_of(r->u.classify.texts[0]));
        else
            json_object_object_add(o, "texts",
                                   string_array(r->u.classify.texts, r->u.classify.n_texts));
        if (r->u.classify.task)
            json_object_object_add(o, "task", string_of(r->u.classify.task));
        break;
    case QI_OP_CANCEL:
        json_object_object_add(o, "target", qi_id_to_json(&r->u.cancel.target));
        break;
    case QI_OP_SET_BUDGET: add_budget(o, &r->u.set_budget); break;
    case QI_OP_PIN: json_object_object_add(o, "variant", string_of(r->u.pin.variant)); break;
    default: break;
    }
    return qi_json_line(o, line, len, err);
}
