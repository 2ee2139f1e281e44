/* target_ipc_reply.c: fuzz the client's reply parser (ipc/reply_parse.h) on whatever a server
 * (or something pretending to be one) might send. Accepted replies must be self-consistent, and
 * token, done and error replies rebuilt with the server's builders (ipc/reply.h) must parse
 * back to the same fields: the two halves of the protocol agree. */
#include <json.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "reply_parse.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Two doubles that the builders would write the same way (null for non-finite). */
static bool same_number(double a, double b)
{
    if (!isfinite(a))
        return isnan(b);
    return a == b;
}

/* A result shaped like a classify reply (task, labels, results with label_index and probs) is
 * rebuilt with qi_reply_classify; the rebuilt line must parse back to the same task, labels and
 * label names. Other results are left alone. */
static void classify_round_trip(const qi_reply *r)
{
    json_object *task, *labels, *results;
    if (!json_object_object_get_ex(r->body, "task", &task) || !json_object_is_type(task, json_type_string) ||
        !json_object_object_get_ex(r->body, "labels", &labels) || !json_object_is_type(labels, json_type_array) ||
        !json_object_object_get_ex(r->body, "results", &results) || !json_object_is_type(results, json_type_array))
        return;
    size_t k = json_object_array_length(labels), n = json_object_array_length(results);
    if (k == 0 || k > 16 || n > 64 ||
        !qi_utf8_valid(json_object_get_string(task), (size_t)json_object_get_string_len(task)))
        return;
    const char *names[16];
    for (size_t c = 0; c < k; c++) {
        json_object *l = json_object_array_get_idx(labels, c);
        if (!json_object_is_type(l, json_type_string) ||
            !qi_utf8_valid(json_object_get_string(l), (size_t)json_object_get_string_len(l)))
            return;
        names[c] = json_object_get_string(l);
    }
    qi_class_result res[64];
    float probs[64][16];
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_array_get_idx(results, i), *li, *p;
        if (!json_object_object_get_ex(x, "label_index", &li) || !json_object_is_type(li, json_type_int) ||
            !json_object_object_get_ex(x, "probs", &p) || !json_object_is_type(p, json_type_array) ||
            json_object_array_length(p) != k)
            return;
        for (size_t c = 0; c < k; c++)
            probs[i][c] = (float)json_object_get_double(json_object_array_get_idx(p, c));
        int64_t v = json_object_get_int64(li);
        res[i] = (qi_class_result){(int32_t)(v < 0 || v >= (int64_t)k ? -1 : v), probs[i], k};
    }
    const qi_class_head hd = {json_object_get_string(task), names, k};
    char *line = NULL;
    size_t len = 0;
    qi_error err;
    bool in_range = true;
    for (size_t i = 0; i < n; i++)
        in_range &= res[i].label >= 0;
    qi_code c = qi_reply_classify(&r->id, &hd, res, n, &line, &len, &err);
    if (!in_range) { /* an index outside the labels is refused, nothing built */
        if (c == QI_OK || line)
            abort();
        return;
    }
    if (c == QI_ERR_NOMEM)
        return;
    qi_reply x;
    if (c != QI_OK || qi_reply_parse(line, len - 1, &x, &err) != QI_OK)
        abort();
    json_object *xt = NULL, *xl = NULL, *xr = NULL;
    if (!json_object_object_get_ex(x.body, "task", &xt) || strcmp(json_object_get_string(xt), hd.task) ||
        !json_object_object_get_ex(x.body, "labels", &xl) || json_object_array_length(xl) != k ||
        !json_object_object_get_ex(x.body, "results", &xr) || json_object_array_length(xr) != n)
        abort();
    for (size_t i = 0; i < n; i++) {
        json_object *lab = NULL;
        if (!json_object_object_get_ex(json_object_array_get_idx(xr, i), "label", &lab) ||
            strcmp(json_object_get_string(lab), names[res[i].label]))
            abort();
    }
    qi_reply_free(&x);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qi_reply r;
    qi_error err;
    qi_code c = qi_reply_parse((const char *)data, size, &r, &err);
    if (c != QI_OK) {
        if ((c != QI_ERR_PROTOCOL && c != QI_ERR_NOMEM) || r.body != NULL)
            abort();
        return 0;
    }
    if (!r.body)
        abort();
    char *line = NULL;
    size_t len = 0;
    qi_code b = QI_OK;
    switch (r.kind) {
    case QI_REPLY_TOKEN:
        if (!r.text || !qi_utf8_valid(r.text, r.text_len))
            abort();
        b = qi_reply_token(&r.id, r.text, r.text_len, r.token, r.index, &line, &len, &err);
        break;
    case QI_REPLY_DONE:
        if (!r.text || !qi_utf8_valid(r.text, r.text_len) || (r.stats.n_spans && !r.stats.spans))
            abort();
        for (size_t i = 0; i < r.stats.n_spans; i++)
            if (r.stats.spans[i].from > r.stats.spans[i].to || !r.stats.spans[i].variant)
                abort();
        b = qi_reply_done(&r.id, r.text, r.text_len, &r.stats, &line, &len, &err);
        break;
    case QI_REPLY_ERROR:
        if (!r.code_name || !r.message)
            abort();
        if (qi_code_is_wire(r.code))
            b = qi_reply_error(&r.id, r.code, r.field, r.message, &line, &len, &err);
        break;
    case QI_REPLY_RESULT:
        classify_round_trip(&r);
        break;
    default:
        abort();
    }
    if (b != QI_OK)
        abort();
    if (line) {
        qi_reply x;
        if (line[len - 1] != '\n' || memchr(line, '\n', len - 1) || !qi_utf8_valid(line, len) ||
            qi_reply_parse(line, len - 1, &x, &err) != QI_OK)
            abort();
        if (x.kind != r.kind || !qi_id_equal(&x.id, &r.id))
            abort();
        if (r.kind == QI_REPLY_TOKEN &&
            (x.text_len != r.text_len || memcmp(x.text, r.text, r.text_len) || x.token != r.token ||
             x.index != r.index))
            abort();
        if (r.kind == QI_REPLY_DONE) {
            const qi_gen_stats *a = &r.stats, *z = &x.stats;
            if (x.text_len != r.text_len || memcmp(x.text, r.text, r.text_len) ||
                z->tokens != a->tokens || z->prompt_tokens != a->prompt_tokens ||
                !same_number(a->ms, z->ms) || !same_number(a->tokens_per_s, z->tokens_per_s) ||
                z->stop_reason != a->stop_reason || z->switches != a->switches ||
                z->n_spans != a->n_spans)
                abort();
            for (size_t i = 0; i < r.stats.n_spans; i++)
                if (strcmp(x.stats.spans[i].variant, r.stats.spans[i].variant) ||
                    x.stats.spans[i].from != r.stats.spans[i].from ||
                    x.stats.spans[i].to != r.stats.spans[i].to)
                    abort();
        }
        if (r.kind == QI_REPLY_ERROR &&
            (x.code != r.code || strcmp(x.message, r.message) ||
             (r.field && r.field[0] ? !x.field || strcmp(x.field, r.field) : x.field != NULL)))
            abort();
        qi_reply_free(&x);
        free(line);
    }
    qi_reply_free(&r);
    return 0;
}
