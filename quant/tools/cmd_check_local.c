/* cmd_check_local.c: `qslm-quant sensitivity MODEL --check-local` — how well the module tier's
 * layer-local estimates (local.h) rank against end-to-end measurements.
 *
 * For every layer of the model and every type, the layer's block is measured end to end and run
 * layer-locally; the pairs give the layer's scale, as in the search. Then every matrix inside a
 * layer is measured both ways at every type, and the estimate (scale × layer-local change) is
 * ranked against the end-to-end damage: Spearman's ρ over all (matrix, type) pairs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "local.h"
#include "tensor_types.h"

typedef struct {
    size_t node, rung;
    double exact, change, estimate;
} pair_row;

/* The layer-local change and the end-to-end damage of node at rung. */
static int measure_pair(qq_session *s, qq_local *l, size_t node, size_t rung, pair_row *row)
{
    qr_error err;
    qq_sens v;
    row->node = node;
    row->rung = rung;
    if (qq_sensitivity_get(s->sens, node, qq_rung_type(rung), &v, &err) ||
        qq_local_node_change(l, &s->h, &s->costs, node, rung, &row->change, &err)) {
        qq_progress_done(s);
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    row->exact = v.damage;
    return 0;
}

int qq_cmd_check_local(const qq_options *o)
{
    qq_session s;
    int rc = qq_session_open(o, &s);
    if (rc)
        return rc;
    qq_local *l = NULL;
    qr_error err;
    double t0 = qq_now();
    rc = EXIT_FAIL;
    if (qq_local_new(s.meas, &l, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        qq_session_close(&s);
        return EXIT_FAIL;
    }
    double keep_s = qq_now() - t0;
    size_t cap = s.h.n_modules * QQ_RUNGS, n = 0, n_blocks = 0;
    pair_row *rows = calloc(cap ? cap : 1, sizeof *rows);
    double *exact = calloc(cap ? cap : 1, sizeof *exact), *est = calloc(cap ? cap : 1, sizeof *est);
    double *raw = calloc(cap ? cap : 1, sizeof *raw);
    double local_s = 0.0;
    if (!rows || !exact || !est || !raw) {
        fprintf(stderr, "qslm-quant: out of memory\n");
        goto out;
    }
    printf("layer-local estimates against end-to-end damage on the calibration split (%zu tokens); "
           "the layers' inputs kept in %.2f s\n\n", s.calib.n_tokens, keep_s);
    printf("%-10s %12s %6s\n", "layer", "scale", "pairs");
    for (size_t b = s.h.first_block; b < s.h.first_block + s.h.n_blocks; b++) {
        size_t layer, pairs;
        if (!qq_block_layer(&s.h, b, &layer) || !s.h.nodes[b].matrix_params)
            continue;
        for (size_t r = 1; r < QQ_RUNGS; r++) {
            pair_row block_row;
            if (measure_pair(&s, l, b, r, &block_row))
                goto out;
        }
        double scale;
        if (qq_local_block_scale(l, s.sens, &s.h, &s.costs, b, 0, QQ_RUNGS - 1, &scale, &pairs, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
        const qq_node *nd = &s.h.nodes[b];
        for (size_t m = nd->mod_first; m < nd->mod_first + nd->mod_count; m++) {
            if (!s.costs.is_matrix[(size_t)s.h.nodes[m].tensor])
                continue;
            for (size_t r = 1; r < QQ_RUNGS; r++) {
                double t = qq_now();
                if (measure_pair(&s, l, m, r, &rows[n]))
                    goto out;
                local_s += qq_now() - t; /* includes the end-to-end pass when not cached */
                rows[n].estimate = scale * rows[n].change;
                exact[n] = rows[n].exact;
                est[n] = rows[n].estimate;
                raw[n] = rows[n].change;
                n++;
            }
        }
        qq_progress_done(&s);
        printf("%-10s %12.4g %6zu\n", nd->name, scale, pairs);
        n_blocks++;
    }
    (void)local_s;
    printf("\n%-34s %-6s %12s %12s %12s\n", "matrix", "type", "end-to-end", "local", "estimate");
    for (size_t i = 0; i < n; i++)
        printf("%-34s %-6s %12.4e %12.4e %12.4e\n", s.h.nodes[rows[i].node].name,
               qr_type_get(qq_rung_type(rows[i].rung))->name, rows[i].exact, rows[i].change, rows[i].estimate);
    printf("\nSpearman rank correlation over %zu (matrix, type) pairs in %zu layers: %.3f (estimate), "
           "%.3f (unscaled change)\n", n, n_blocks, qq_rank_correlation(est, exact, n),
           qq_rank_correlation(raw, exact, n));
    rc = 0;
out:
    free(rows);
    free(exact);
    free(est);
    free(raw);
    qq_local_free(l);
    qq_session_close(&s);
    return rc;
}
