/* target_ipc_request.c: fuzz the request parser (ipc/request.h) and, behind it, the strict
 * JSON front end (ipc/json_in.h). Any bytes must give a valid request or a wire error; never a
 * crash, a leak or an abort below. Checked on the way: an accepted request holds only valid,
 * NUL-free UTF-8 and in-range fields, and builds back to a line that parses to the same request;
 * a refusal names its field in its message and becomes an error reply that the client's parser
 * reads back with the same code and id. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "reply_parse.h"
#include "request.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !qi_utf8_valid(s, n))
        abort();
}

static void check_valid(const qi_request *r, const qi_limits *lim)
{
    if (r->id.kind == QI_ID_NONE)
        abort();
    switch (r->op) {
    case QI_OP_GENERATE: {
        const qi_generate *g = &r->u.generate;
        check_string(g->prompt, SIZE_MAX);
        if (g->max_tokens < 1 || g->max_tokens > lim->max_tokens || !(g->temperature >= 0) ||
            g->temperature > 5 || g->top_k > lim->vocab || !(g->top_p > 0) || g->top_p > 1 ||
            !(g->repetition_penalty >= 1) || g->repetition_penalty > 10 || g->n_stop > QI_STOP_MAX)
            abort();
        for (size_t i = 0; i < g->n_stop; i++)
            check_string(g->stop[i], QI_STOP_MAX_LEN);
        break;
    }
    case QI_OP_CLASSIFY:
        if (r->u.classify.n_texts < 1 || r->u.classify.n_texts > QI_TEXTS_MAX ||
            (r->u.classify.single && r->u.classify.n_texts != 1))
            abort();
        for (size_t i = 0; i < r->u.classify.n_texts; i++)
            check_string(r->u.classify.texts[i], SIZE_MAX);
        if (r->u.classify.task && !qi_task_name_ok(r->u.classify.task))
            abort();
        break;
    case QI_OP_CANCEL:
        if (r->u.cancel.target.kind == QI_ID_NONE)
            abort();
        break;
    case QI_OP_SET_BUDGET: {
        const qi_set_budget *b = &r->u.set_budget;
        if (b->memory == QI_BUDGET_UNCHANGED && b->power == QI_BUDGET_UNCHANGED)
            abort();
        if ((b->memory == QI_BUDGET_SET && b->memory_bytes == 0) ||
            (b->power == QI_BUDGET_SET && (b->power_uw == 0 || b->power_uw > QI_POWER_MAX_UW)))
            abort();
        break;
    }
    case QI_OP_PIN:
        check_string(r->u.pin.variant, QI_VARIANT_NAME_MAX);
        break;
    default:
        if (r->op >= QI_OP_COUNT)
            abort();
        break;
    }
}

static bool same(const qi_request *a, const qi_request *b)
{
    if (!qi_id_equal(&a->id, &b->id) || a->op != b->op)
        return false;
    switch (a->op) {
    case QI_OP_GENERATE: {
        const qi_generate *x = &a->u.generate, *y = &b->u.generate;
        if (strcmp(x->prompt, y->prompt) || x->max_tokens != y->max_tokens ||
            x->temperature != y->temperature || x->top_k != y->top_k || x->top_p != y->top_p ||
            x->repetition_penalty != y->repetition_penalty || x->has_seed != y->has_seed ||
            x->seed != y->seed || x->n_stop != y->n_stop || x->stream != y->stream)
            return false;
        for (size_t i = 0; i < x->n_stop; i++)
            if (strcmp(x->stop[i], y->stop[i]))
                return false;
        return true;
    }
    case QI_OP_CLASSIFY:
        if (a->u.classify.single != b->u.classify.single ||
            a->u.classify.n_texts != b->u.classify.n_texts)
            return false;
        for (size_t i = 0; i < a->u.classify.n_texts; i++)
            if (strcmp(a->u.classify.texts[i], b->u.classify.texts[i]))
                return false;
        if (!a->u.classify.task != !b->u.classify.task ||
            (a->u.classify.task && strcmp(a->u.classify.task, b->u.classify.task)))
            return false;
        return true;
    case QI_OP_CANCEL: return qi_id_equal(&a->u.cancel.target, &b->u.cancel.target);
    case QI_OP_SET_BUDGET: {
        const qi_set_budget *x = &a->u.set_budget, *y = &b->u.set_budget;
        return x->memory == y->memory && x->power == y->power &&
               (x->memory != QI_BUDGET_SET || x->memory_bytes == y->memory_bytes) &&
               (x->power != QI_BUDGET_SET || x->power_uw == y->power_uw);
    }
    case QI_OP_PIN: return strcmp(a->u.pin.variant, b->u.pin.variant) == 0;
    default: return true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qi_limits lim = qi_limits_default();
    lim.vocab = 50;
    qi_request r;
    qi_error err;
    qi_code c = qi_request_parse((const char *)data, size, &lim, &r, &err);
    if (c == QI_OK) {
        check_valid(&r, &lim);
        char *line;
        size_t len;
        qi_request back;
        qi_error e2;
        if (qi_request_build(&r, &line, &len, &e2) != QI_OK)
            abort();
        if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
            abort();
        if (qi_request_parse(line, len - 1, &lim, &back, &e2) != QI_OK || !same(&r, &back))
            abort();
        free(line);
        qi_request_free(&back);
        qi_request_free(&r);
        return 0;
    }
    if (c != QI_ERR_INVALID_JSON && c != QI_ERR_UNKNOWN_OP && c != QI_ERR_INVALID_ARGUMENT &&
        c != QI_ERR_TOO_LARGE && c != QI_ERR_NOMEM)
        abort();
    if (err.code != c || err.msg[0] == '\0')
        abort();
    if (err.field[0] && strncmp(err.msg, err.field, strlen(err.field)) != 0)
        abort();
    if (c == QI_ERR_INVALID_JSON && r.id.kind != QI_ID_NONE)
        abort();
    /* The error reply a server would send, read back as a client would. */
    char *line;
    size_t len;
    qi_reply rep;
    qi_error e2;
    if (qi_reply_error_from(&r.id, &err, &line, &len, &e2) != QI_OK)
        abort();
    if (qi_reply_parse(line, len - 1, &rep, &e2) != QI_OK || rep.kind != QI_REPLY_ERROR ||
        rep.code != c || !qi_id_equal(&rep.id, &r.id))
        abort();
    qi_reply_free(&rep);
    free(line);
    return 0;
}
