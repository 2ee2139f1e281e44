/* target_ipc_reply.c: fuzz the client's reply parser (ipc/reply_parse.h) on whatever a server
 * (or something pretending to be one) might send. Accepted replies must be self-consistent, and
 * token, done and error replies rebuilt with the server's builders (ipc/reply.h) must parse
 * back to the same fields: the two halves of the protocol agree. */
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
