/* local.c: one layer at a time, from the f32 inputs kept from one run. */
#include "local.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "forward.h"
#include "model.h"
#include "state.h"

/* One forward call of the plan: steps [t0, t1) of windows [w0, w0 + nw), sequence-major, the
 * rows [row0, row0 + n_rows) of the kept inputs. */
typedef struct {
    size_t w0, nw, t0, t1, row0, n_rows;
} call;

struct qq_local {
    qq_measurer *m;
    qr_runner *r;           /* the measurer's: it runs the view */
    size_t d, n_layer;
    size_t rows;            /* calibration positions */
    float **xs;             /* n_layer + 1: rows × d, the residual stream entering each layer (the
                               last: leaving the last layer) */
    size_t *len;            /* per window: its steps (tokens but the last) */
    size_t window;
    call *calls;
    size_t n_calls;
    qr_state **states;      /* one per window of a call */
    size_t n_states;
    qr_state **active;      /* per row of a call */
    int32_t *tokens;        /* per row of a call */
    float *x;               /* rows of a call × d */
    uint32_t *f32;          /* the all-f32 setting */
    uint32_t *types;        /* scratch setting */
    double *memo;           /* n_memo_nodes × QQ_RUNGS node changes, NAN until run */
    size_t n_memo_nodes;
};

/* The calls that cover every window: groups of windows, each run in chunks of steps that fill
 * the runner's rows (as the evaluator lays them out, eval.h). */
static qr_status plan(qq_local *l, size_t n_windows, size_t max_rows, qr_error *err)
{
    size_t group = max_rows / l->window;
    group = group < 1 ? 1 : group > n_windows ? n_windows : group;
    size_t steps = max_rows / group;
    size_t cap = 0;
    for (size_t w0 = 0; w0 < n_windows; w0 += group)
        cap += (l->window + steps - 1) / steps;
    if (!(l->calls = calloc(cap ? cap : 1, sizeof *l->calls)))
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the layer-local plan");
    size_t row = 0;
    for (size_t w0 = 0; w0 < n_windows; w0 += group) {
        size_t nw = n_windows - w0 < group ? n_windows - w0 : group, longest = 0;
        for (size_t w = w0; w < w0 + nw; w++)
            longest = l->len[w] > longest ? l->len[w] : longest;
        for (size_t t0 = 0; t0 < longest; t0 += steps) {
            call *c = &l->calls[l->n_calls++];
            *c = (call){w0, nw, t0, t0 + steps < longest ? t0 + steps : longest, row, 0};
            for (size_t w = w0; w < w0 + nw; w++)
                c->n_rows += l->len[w] > c->t0 ? (l->len[w] < c->t1 ? l->len[w] : c->t1) - c->t0 : 0;
            row += c->n_rows;
        }
    }
    l->rows = row;
    return QR_OK;
}

/* The row → state table of a call (and its tokens, when tokens is given), resetting the states
 * at the call that starts their windows. */
static void lay_out(qq_local *l, const call *c, const int32_t *tokens)
{
    size_t row = 0;
    for (size_t w = c->w0; w < c->w0 + c->nw; w++) {
        qr_state *s = l->states[w - c->w0];
        if (c->t0 == 0)
            qr_state_reset(s);
        for (size_t t = c->t0; t < c->t1 && t < l->len[w]; t++) {
            l->active[row] = s;
            if (tokens)
                l->tokens[row] = tokens[w * l->window + t];
            row++;
        }
    }
}

void qq_local_free(qq_local *l)
{
    if (!l)
        return;
    for (size_t i = 0; l->xs && i <= l->n_layer; i++)
        free(l->xs[i]);
    free(l->xs);
    for (size_t i = 0; i < l->n_states; i++)
        qr_state_free(l->states[i]);
    free(l->states);
    free(l->len);
    free(l->calls);
    free(l->active);
    free(l->tokens);
    free(l->x);
    free(l->f32);
    free(l->types);
    free(l->memo);
    free(l);
}

/* The f32 run that keeps every layer's input. */
static qr_status keep_inputs(qq_local *l, const int32_t *tokens, qr_error *err)
{
    size_t d = l->d;
    qr_status st = qq_measurer_apply(l->m, l->f32, err);
    for (size_t k = 0; st == QR_OK && k < l->n_calls; k++) {
        const call *c = &l->calls[k];
        lay_out(l, c, tokens);
        if ((st = qr_forward_embed(l->r, l->tokens, c->n_rows, l->x, err)))
            break;
        memcpy(l->xs[0] + c->row0 * d, l->x, c->n_rows * d * sizeof(float));
        for (size_t layer = 0; st == QR_OK && layer < l->n_layer; layer++) {
            st = qr_forward_layers(l->r, l->active, l->x, c->n_rows, layer, layer + 1, err);
            memcpy(l->xs[layer + 1] + c->row0 * d, l->x, c->n_rows * d * sizeof(float));
        }
    }
    return st;
}

qr_status qq_local_new(qq_measurer *m, qq_local **out, qr_error *err)
{
    *out = NULL;
    const qq_split *calib = qq_measurer_calib(m);
    const qr_model *view = qq_measurer_view(m);
    size_t window = qq_measurer_window(m);
    if (!calib->tokens || calib->n_tokens < 2 || !view->has_lm_head || window < 2)
        return qr_fail(err, QR_ERR_INVALID, "layer-local measurements need LM text on calibration and an LM head");
    qq_local *l = calloc(1, sizeof *l);
    if (!l)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for layer-local measurements");
    l->m = m;
    l->r = qq_measurer_runner(m);
    l->d = view->d;
    l->n_layer = view->n_layer;
    l->window = window;
    size_t n_windows = qr_eval_windows(calib->n_tokens, window); /* the evaluator's windows */
    size_t max_rows = qr_runner_max_batch(l->r), n_tensors = qr_model_file_tensor_count(qq_measurer_master(m));
    qr_status st = QR_OK;
    l->len = calloc(n_windows, sizeof *l->len);
    l->f32 = malloc(n_tensors * sizeof *l->f32);
    l->types = malloc(n_tensors * sizeof *l->types);
    if (!l->len || !l->f32 || !l->types) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for layer-local measurements");
        goto fail;
    }
    for (size_t i = 0; i < n_tensors; i++)
        l->f32[i] = qr_model_file_tensor(qq_measurer_master(m), i)->type;
    for (size_t w = 0; w < n_windows; w++) {
        size_t start = w * window;
        l->len[w] = (calib->n_tokens - start < window ? calib->n_tokens - start : window) - 1;
    }
    if ((st = plan(l, n_windows, max_rows, err)))
        goto fail;
    size_t group = l->calls[0].nw;
    l->states = calloc(group, sizeof *l->states);
    l->active = calloc(max_rows, sizeof *l->active);
    l->tokens = calloc(max_rows, sizeof *l->tokens);
    l->x = malloc(max_rows * l->d * sizeof *l->x);
    l->xs = calloc(l->n_layer + 1, sizeof *l->xs);
    bool ok = l->states && l->active && l->tokens && l->x && l->xs;
    for (size_t i = 0; ok && i <= l->n_layer; i++)
        ok = (l->xs[i] = malloc(l->rows * l->d * sizeof(float))) != NULL;
    if (!ok) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the layer inputs (%zu positions x %zu x %zu layers)",
                     l->rows, l->d, l->n_layer + 1);
        goto fail;
    }
    for (; l->n_states < group; l->n_states++)
        if ((st = qr_state_new(view, &l->states[l->n_states], err)))
            goto fail;
    if ((st = keep_inputs(l, calib->tokens, err)))
        goto fail;
    *out = l;
    return QR_OK;
fail:
    qq_local_free(l);
    return st;
}

qr_status qq_local_change(qq_local *l, const uint32_t *types, size_t layer, double *out, qr_error *err)
{
    *out = 0.0;
    if (layer >= l->n_layer)
        return qr_fail(err, QR_ERR_INVALID, "layer %zu: the model has %zu", layer, l->n_layer);
    qr_status st = qq_measurer_apply(l->m, types, err);
    double sum = 0.0;
    size_t d = l->d;
    for (size_t k = 0; st == QR_OK && k < l->n_calls; k++) {
        const call *c = &l->calls[k];
        lay_out(l, c, NULL);
        memcpy(l->x, l->xs[layer] + c->row0 * d, c->n_rows * d * sizeof(float));
        if ((st = qr_forward_layers(l->r, l->active, l->x, c->n_rows, layer, layer + 1, err)))
            break;
        const float *ref = l->xs[layer + 1] + c->row0 * d;
        for (size_t i = 0; i < c->n_rows * d; i++) {
            double e = (double)l->x[i] - ref[i];
            sum += e * e;
        }
    }
    *out = l->rows ? sum / (double)l->rows : 0.0;
    return st;
}

qr_status qq_local_node_change(qq_local *l, const qq_hierarchy *h, const qq_costs *costs, size_t node,
                               size_t rung, double *out, qr_error *err)
{
    size_t layer;
    if (node >= h->n_nodes || rung >= QQ_RUNGS || !qq_block_layer(h, qq_block_of(h, node), &layer))
        return qr_fail(err, QR_ERR_INVALID, "%s is not inside a layer: it has no layer-local measurement",
                       node < h->n_nodes ? h->nodes[node].name : "that node");
    if (!l->memo) {
        if (!(l->memo = malloc(h->n_nodes * QQ_RUNGS * sizeof *l->memo)))
            return qr_fail(err, QR_ERR_NOMEM, "out of memory for layer-local measurements");
        l->n_memo_nodes = h->n_nodes;
        for (size_t i = 0; i < h->n_nodes * QQ_RUNGS; i++)
            l->memo[i] = NAN;
    }
    double *m = &l->memo[node * QQ_RUNGS + rung];
    if (!isnan(*m)) {
        *out = *m;
        return QR_OK;
    }
    size_t n = qr_model_file_tensor_count(qq_measurer_master(l->m));
    memcpy(l->types, l->f32, n * sizeof *l->types);
    const qq_node *nd = &h->nodes[node];
    for (size_t i = nd->mod_first; i < nd->mod_first + nd->mod_count; i++) {
        size_t t = (size_t)h->nodes[i].tensor;
        if (costs->is_matrix[t])
            l->types[t] = qq_rung_type(rung);
    }
    qr_status st = qq_local_change(l, l->types, layer, out, err);
    if (st == QR_OK)
        *m = *out;
    return st;
}

qr_status qq_local_block_scale(qq_local *l, qq_sensitivity *sens, const qq_hierarchy *h, const qq_costs *costs,
                               size_t block, size_t lo, size_t hi, double *scale, size_t *pairs, qr_error *err)
{
    double damage[QQ_RUNGS], change[QQ_RUNGS];
    size_t n = 0;
    *scale = 0.0;
    for (size_t r = lo > 1 ? lo : 1; r <= hi && r < QQ_RUNGS; r++) {
        qq_sens s;
        if (!qq_sensitivity_lookup(sens, block, qq_rung_type(r), &s))
            continue;
        qr_status st = qq_local_node_change(l, h, costs, block, r, &change[n], err);
        if (st)
            return st;
        damage[n++] = s.damage;
    }
    *pairs = n;
    *scale = qq_local_fit_scale(damage, change, n);
    return QR_OK;
}

double qq_local_fit_scale(const double *damage, const double *change, size_t n)
{
    double log_sum = 0.0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (damage[i] > 0.0 && change[i] > 0.0) {
            log_sum += log(damage[i] / change[i]);
            used++;
        }
    return used ? exp(log_sum / (double)used) : 0.0;
}

/* Ranks 1..n, ties sharing their average rank. */
static void ranks(const double *v, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) {
        size_t below = 0, equal = 0;
        for (size_t j = 0; j < n; j++) {
            below += v[j] < v[i];
            equal += v[j] == v[i];
        }
        out[i] = (double)below + (double)(equal + 1) / 2.0;
    }
}

double qq_rank_correlation(const double *a, const double *b, size_t n)
{
    if (n < 2)
        return 0.0;
    double *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
    double rho = 0.0;
    if (ra && rb) {
        ranks(a, n, ra);
        ranks(b, n, rb);
        double mean = ((double)n + 1.0) / 2.0, sab = 0.0, saa = 0.0, sbb = 0.0;
        for (size_t i = 0; i < n; i++) {
            sab += (ra[i] - mean) * (rb[i] - mean);
            saa += (ra[i] - mean) * (ra[i] - mean);
            sbb += (rb[i] - mean) * (rb[i] - mean);
        }
        rho = saa > 0.0 && sbb > 0.0 ? sab / sqrt(saa * sbb) : 0.0;
    }
    free(ra);
    free(rb);
    return rho;
}
