/* cmd_report.c: `qslm-quant report MODEL DIR` — how the bundle compares, on the test split.
 *
 * Measures, on the test text and sentences: the f32 model, every uniform group-wise type (one
 * type for every matrix), and the QSLM paper's baseline (per-tensor asymmetric min-max at 4, 8,
 * 12, 16 bits); reads the bundle's variants from its manifest (measured by build the same way).
 * Writes DIR/report.md, DIR/memory-ppl.svg, DIR/memory-accuracy.svg and DIR/sensitivity.svg (the
 * block and module sensitivities known to the cache; grey where the search pruned them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "cli.h"
#include "refine.h"
#include "svg.h"
#include "tensor_types.h"

#define MINMAX_POINTS 4
static const int minmax_bits[MINMAX_POINTS] = {4, 8, 12, 16};

typedef struct {
    char label[64];
    double mib, ppl, acc;
} point;

static int measure_point(qq_session *s, const char *what, qr_status st, const qr_error *err)
{
    if (st) {
        qq_progress_done(s);
        fprintf(stderr, "qslm-quant: %s: %s\n", what, err->msg);
        return -1;
    }
    return 0;
}

/* The rounding comparison: every type whose codes have 2–4 bits, each way it can be rounded. */
#define ROUNDING_TYPES 9
static const uint32_t rounding_types[ROUNDING_TYPES] = {QR_TYPE_Q4_1, QR_TYPE_Q4_0, QR_TYPE_Q4_S,
                                                         QR_TYPE_Q3_1, QR_TYPE_Q3_0, QR_TYPE_Q3_S,
                                                         QR_TYPE_Q2_1, QR_TYPE_Q2_0, QR_TYPE_Q2_S};
typedef struct {
    double ppl[3]; /* by qq_rounding: importance, nearest, error-compensated (NAN: not measured) */
    double refined; /* error-compensated, then refined (quant/refine.h; NAN: not measured) */
    double minmax; /* per-tensor min-max at the same code width */
} rounding_row;

/* Measures every matrix at each of rounding_types, rounded each way the session can (error
 * compensation, and its refinement, only when it was gathered), and per-tensor min-max at 2 and
 * 3 bits (4 bits is mm[0]); leaves the measurer rounding as it found it, with no refined setting. */
static int measure_roundings(qq_session *s, const qq_split *test, uint32_t *types, const point *mm4,
                             rounding_row rows[ROUNDING_TYPES], qr_error *err)
{
    qq_rounding was = qq_measurer_rounding(s->meas);
    double mm23[2];
    for (int bits = 2; bits <= 3; bits++) {
        qq_metrics m;
        qq_progress(s, "test split: per-tensor min-max %d-bit", bits);
        if (measure_point(s, "per-tensor min-max", qq_measure_minmax(s->meas, bits, test, &m, err), err))
            return -1;
        mm23[bits - 2] = m.ppl;
    }
    for (int k = 0; k < ROUNDING_TYPES; k++) {
        rows[k].ppl[QQ_ROUND_IMPORTANCE] = rows[k].ppl[QQ_ROUND_NEAREST] = rows[k].ppl[QQ_ROUND_EC] = NAN;
        rows[k].refined = NAN;
        int bits = (int)qr_type_get(rounding_types[k])->bits;
        rows[k].minmax = bits == 4 ? mm4->ppl : mm23[bits - 2];
    }
    for (int way = 0; way < 3; way++) {
        if (way == QQ_ROUND_EC && was != QQ_ROUND_EC)
            continue;
        if (qq_measurer_set_rounding(s->meas, (qq_rounding)way, err)) {
            fprintf(stderr, "qslm-quant: %s\n", err->msg);
            return -1;
        }
        for (int k = 0; k < ROUNDING_TYPES; k++) {
            for (size_t i = 0; i < s->costs.n_tensors; i++)
                types[i] = s->costs.is_matrix[i] ? rounding_types[k] : QR_TYPE_F32;
            qq_metrics m;
            const char *name = qr_type_get(rounding_types[k])->name;
            qq_progress(s, "test split: every matrix %s, %s rounding", name,
                        way == QQ_ROUND_NEAREST ? "nearest" : way == QQ_ROUND_EC ? "error-compensating" : "importance-weighted");
            if (measure_point(s, name, qq_measure_setting(s->meas, types, test, &m, err), err))
                return -1;
            rows[k].ppl[way] = m.ppl;
            if (way != QQ_ROUND_EC)
                continue;
            qq_refine_stats rs;
            qq_progress(s, "test split: every matrix %s, refined", name);
            if (qq_refine_setting(s->meas, types, &rs, err)) {
                fprintf(stderr, "qslm-quant: %s\n", err->msg);
                return -1;
            }
            if (rs.matrices && measure_point(s, name, qq_measure_setting(s->meas, types, test, &m, err), err))
                return -1;
            rows[k].refined = rs.matrices ? m.ppl : NAN;
            qq_measurer_drop_refined(s->meas);
        }
    }
    if (qq_measurer_set_rounding(s->meas, was, err)) {
        fprintf(stderr, "qslm-quant: %s\n", err->msg);
        return -1;
    }
    return 0;
}

/* "## Rounding": the table measure_roundings fills. */
static void write_rounding_table(FILE *f, const qq_session *s, uint32_t *types, const point *f32,
                                 const rounding_row rows[ROUNDING_TYPES])
{
    fprintf(f, "\n## Rounding\n\nTest perplexity with every matrix at one type, rounded three ways: each block to its "
               "nearest levels (scale and minimum fitted with every weight counting the same), weighted by each input "
               "column's mean square on the calibration split (importance), and error-compensating (GPTQ: each column's "
               "rounding error pushed onto the columns not yet rounded, through the inverse of the inputs' second "
               "moments on the calibration text), and that refined (each matrix compensated again under the inputs "
               "the quantized matrices before it give it, towards the weights that keep its f32 outputs: "
               "quant/README.md); beside them the paper's per-tensor min-max at the same code width. The embedding, "
               "a lookup, is compensated through ln0; the classifier head, which no calibration text multiplies, is "
               "rounded with importance in the last two columns.\n\n"
               "| type | bits/weight | served | nearest | importance | error-compensating | refined | per-tensor min-max |\n"
               "|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < ROUNDING_TYPES; k++) {
        for (size_t i = 0; i < s->costs.n_tensors; i++)
            types[i] = s->costs.is_matrix[i] ? rounding_types[k] : QR_TYPE_F32;
        fprintf(f, "| %s | %.2f | %.2f MiB |", qr_type_get(rounding_types[k])->name,
                qr_type_bits_per_weight(rounding_types[k]), (double)qq_setting_footprint(&s->costs, types) / 1048576.0);
        const int order[3] = {QQ_ROUND_NEAREST, QQ_ROUND_IMPORTANCE, QQ_ROUND_EC};
        for (int w = 0; w < 3; w++) {
            double p = rows[k].ppl[order[w]];
            if (isnan(p))
                fprintf(f, " not measured (--ec-tokens 0) |");
            else
                fprintf(f, " %.3f (%+.2f%%) |", p, 100.0 * (p / f32->ppl - 1.0));
        }
        if (isnan(rows[k].refined))
            fprintf(f, " not measured (--ec-tokens 0) |");
        else
            fprintf(f, " %.3f (%+.2f%%) |", rows[k].refined, 100.0 * (rows[k].refined / f32->ppl - 1.0));
        fprintf(f, " %.3f (%+.2f%%) |\n", rows[k].minmax, 100.0 * (rows[k].minmax / f32->ppl - 1.0));
    }
}

/* The paper's memory for a per-tensor b-bit model: matrices at b bits (plus a min and a max per
 * tensor), everything else as served here. */
static uint64_t minmax_footprint(const qq_costs *c, int bits)
{
    uint64_t bytes = c->fixed_bytes;
    for (size_t i = 0; i < c->n_tensors; i++) {
        if (!c->is_matrix[i]) {
            bytes += c->tensor_bytes[i * QQ_RUNGS];
            continue;
        }
        uint64_t params = c->tensor_bytes[i * QQ_RUNGS] / 4;
        bytes += (params * (uint64_t)bits + 7) / 8 + 8;
    }
    return bytes;
}


static void fill_series(qq_svg_series *se, const char *name, const point *p, size_t n, int acc, double *xs,
                        double *ys, const char **labels, const char *colour, int marker, int line)
{
    for (size_t i = 0; i < n; i++) {
        xs[i] = p[i].mib;
        ys[i] = acc ? 100.0 * p[i].acc : p[i].ppl;
        labels[i] = p[i].label;
    }
    *se = (qq_svg_series){name, xs, ys, n, labels, line, colour, marker};
}

/* "## Accuracy per task": each variant's test accuracy per classifier head, from the manifest's
 * accuracy_by_task (written by build for a model whose heads have names); nothing without it. */
static void write_task_table(FILE *f, const qr_bundle *b)
{
    bool any = false;
    for (size_t v = 0; v < b->n_variants; v++)
        any |= b->variants[v].metrics.n_by_task > 0;
    if (!any)
        return;
    fprintf(f, "\n## Accuracy per task\n\nEach classifier head on its own test sentences (`--classify TASK=DIR`; "
               "the first head's are the accuracy above). The accuracy floor holds for each head.\n\n"
               "| variant | task | test accuracy |\n|---|---|---|\n");
    for (size_t v = 0; v < b->n_variants; v++)
        for (size_t t = 0; t < b->variants[v].metrics.n_by_task; t++) {
            const qr_bundle_task_metric *m = &b->variants[v].metrics.by_task[t];
            if (m->accuracy.known)
                fprintf(f, "| %s | %s | %.1f%% |\n", b->variants[v].name, m->task, 100.0 * m->accuracy.value);
            else
                fprintf(f, "| %s | %s | not measured (no data set) |\n", b->variants[v].name, m->task);
        }
}

int qq_cmd_report(const qq_options *o)
{
    const char *dir = o->rest[1];
    qr_error err;
    qr_bundle *b = NULL;
    if (qr_bundle_load(dir, &b, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_USAGE;
    }
    qq_session s;
    int rc = qq_session_open(o, &s);
    if (rc) {
        qr_bundle_free(b);
        return rc;
    }
    qq_test_data td = {0};
    point f32 = {"f32", 0, 0, 0}, uni[QQ_RUNGS], mm[MINMAX_POINTS], *var = calloc(b->n_variants + 1, sizeof *var);
    uint32_t *types = malloc(s.costs.n_tensors * sizeof *types);
    size_t n_uni = 0;
    rc = EXIT_FAIL;
    if (!var || !types || qq_load_test(o, &s, &td))
        goto out;
    qq_split test = {td.test_ids, td.n_test, td.test_items, td.n_test_items, 1024};
    /* Uniform types, f32 first. */
    for (size_t r = 0; r < QQ_RUNGS; r++) {
        for (size_t i = 0; i < s.costs.n_tensors; i++)
            types[i] = s.costs.is_matrix[i] ? qq_rung_type(r) : QR_TYPE_F32;
        qq_metrics m;
        qq_progress(&s, "test split: every matrix %s (%zu of %d)", qr_type_get(qq_rung_type(r))->name, r + 1, QQ_RUNGS);
        if (measure_point(&s, qr_type_get(qq_rung_type(r))->name, qq_measure_setting(s.meas, types, &test, &m, &err), &err))
            goto out;
        point p = {"", (double)qq_setting_footprint(&s.costs, types) / 1048576.0, m.ppl, m.accuracy};
        snprintf(p.label, sizeof p.label, "%s", qr_type_get(qq_rung_type(r))->name);
        if (r == 0)
            f32 = p, f32.mib = (double)s.costs.f32_footprint / 1048576.0;
        else
            uni[n_uni++] = p;
    }
    for (size_t k = 0; k < MINMAX_POINTS; k++) {
        qq_metrics m;
        char what[64];
        snprintf(what, sizeof what, "per-tensor min-max %d-bit", minmax_bits[k]);
        qq_progress(&s, "test split: %s", what);
        if (measure_point(&s, what, qq_measure_minmax(s.meas, minmax_bits[k], &test, &m, &err), &err))
            goto out;
        mm[k] = (point){"", (double)minmax_footprint(&s.costs, minmax_bits[k]) / 1048576.0, m.ppl, m.accuracy};
        snprintf(mm[k].label, sizeof mm[k].label, "min-max %d", minmax_bits[k]);
    }
    rounding_row rounding[ROUNDING_TYPES];
    if (measure_roundings(&s, &test, types, &mm[0], rounding, &err))
        goto out;
    qq_progress_done(&s);
    for (size_t v = 0; v < b->n_variants; v++) {
        const qr_bundle_variant *bv = &b->variants[v];
        var[v] = (point){"", (double)bv->footprint_bytes / 1048576.0, bv->metrics.ppl_test.known ? bv->metrics.ppl_test.value : NAN,
                         bv->metrics.accuracy.known ? bv->metrics.accuracy.value : NAN};
        snprintf(var[v].label, sizeof var[v].label, "%s", bv->name);
    }
    /* Plots. */
    char path[4400];
    double xs[4][QQ_RUNGS + 64], ys[4][QQ_RUNGS + 64];
    const char *lbl[4][QQ_RUNGS + 64];
    size_t nv = b->n_variants < 64 ? b->n_variants : 64;
    for (int acc = 0; acc < 2; acc++) {
        qq_svg_series se[4];
        fill_series(&se[0], "QSLM variants (this bundle)", var, nv, acc, xs[0], ys[0], lbl[0], "#d62728", 2, 1);
        fill_series(&se[1], "uniform group-wise types", uni, n_uni, acc, xs[1], ys[1], lbl[1], "#1f77b4", 0, 1);
        fill_series(&se[2], "per-tensor min-max (paper)", mm, MINMAX_POINTS, acc, xs[2], ys[2], lbl[2], "#7f7f7f", 1, 1);
        fill_series(&se[3], "f32", &f32, 1, acc, xs[3], ys[3], lbl[3], "#000000", 3, 0);
        snprintf(path, sizeof path, "%s/%s", dir, acc ? "memory-accuracy.svg" : "memory-ppl.svg");
        if (qq_svg_plot(path, acc ? "Test accuracy (imdb) against served memory" : "Test perplexity (SOTU 2009-2021) against served memory",
                        "served memory (MiB, log scale)", acc ? "accuracy (%)" : "perplexity", 1, se, 4, &err)) {
            fprintf(stderr, "qslm-quant: %s\n", err.msg);
            goto out;
        }
    }
    /* Sensitivity heatmap from what is known (no new measurement). */
    size_t rows = 0;
    const char **row_labels = malloc(s.h.n_nodes * sizeof *row_labels), *col_labels[QQ_RUNGS];
    double *cells = malloc(s.h.n_nodes * QQ_RUNGS * sizeof *cells);
    if (!row_labels || !cells) {
        free(row_labels);
        free(cells);
        goto out;
    }
    for (size_t t = 1; t < QQ_RUNGS; t++)
        col_labels[t - 1] = qr_type_get(qq_rung_type(t))->name;
    for (size_t n = 0; n < s.h.n_nodes; n++) {
        const qq_node *nd = &s.h.nodes[n];
        if (!nd->matrix_params || nd->kind == QQ_NODE_SUBBLOCK)
            continue;
        row_labels[rows] = nd->name;
        for (size_t t = 1; t < QQ_RUNGS; t++) {
            qq_sens v;
            cells[rows * (QQ_RUNGS - 1) + t - 1] = qq_sensitivity_lookup(s.sens, n, qq_rung_type(t), &v) ? v.damage : NAN;
        }
        rows++;
    }
    snprintf(path, sizeof path, "%s/sensitivity.svg", dir);
    if (qq_svg_heatmap(path, "QSLM sensitivities known to the cache: KL from f32 on calibration", "KL (nats), log scale",
                       row_labels, rows, col_labels, QQ_RUNGS - 1, cells, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        free(row_labels);
        free(cells);
        goto out;
    }
    free(row_labels);
    free(cells);
    /* The markdown. */
    char md[4400];
    snprintf(md, sizeof md, "%s", o->out ? o->out : "");
    if (!o->out)
        snprintf(md, sizeof md, "%s/report.md", dir);
    FILE *f = fopen(md, "w");
    if (!f) {
        fprintf(stderr, "qslm-quant: %s: cannot create\n", md);
        goto out;
    }
    fprintf(f, "# QSLM report: %s\n\nBundle `%s` built from `%s` (sha256 `%.16s…`) by %s. Every figure below is measured on "
               "the test split (SOTU addresses 2009–2021, perplexity in windows of 1024 tokens; imdb sentences for "
               "accuracy), which the search never sees. Memory is the served footprint (`runtime/footprint.h`).\n\n",
            b->model_name, dir, b->source_file, b->source_sha256, b->created_by);
    fprintf(f, "![perplexity against memory](memory-ppl.svg)\n\n![accuracy against memory](memory-accuracy.svg)\n\n");
    fprintf(f, "## The variants\n\n| variant | budget | served | vs f32 | bits/weight | test ppl | vs f32 | accuracy | vs f32 | tokens/s | energy/token |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t v = 0; v < b->n_variants; v++) {
        const qr_bundle_variant *bv = &b->variants[v];
        fprintf(f, "| %s | %.2f MiB | %.2f MiB | %.1f%% smaller | %.2f | %.3f | %+.2f%% | %.1f%% | %+.1f pts | %.0f | %.3g µJ |\n",
                bv->name, (double)bv->budget_bytes / 1048576.0, var[v].mib, 100.0 * (1.0 - var[v].mib / f32.mib),
                bv->bits_per_weight, var[v].ppl, 100.0 * (var[v].ppl / f32.ppl - 1.0), 100.0 * var[v].acc,
                100.0 * (var[v].acc - f32.acc), bv->metrics.tokens_per_s.value, bv->metrics.energy_pj_per_token.value / 1e6);
    }
    for (size_t i = 0; i < b->n_infeasible; i++)
        fprintf(f, "| (none) | %.2f MiB | infeasible: %s | | | | | | | | |\n", (double)b->infeasible[i].budget_bytes / 1048576.0,
                b->infeasible[i].reason);
    write_task_table(f, b);
    fprintf(f, "\n## Baselines\n\n| setting | served | vs f32 | test ppl | vs f32 | accuracy | vs f32 |\n|---|---|---|---|---|---|---|\n");
    fprintf(f, "| f32 | %.2f MiB | | %.3f | | %.1f%% | |\n", f32.mib, f32.ppl, 100.0 * f32.acc);
    for (size_t k = 0; k < n_uni; k++)
        fprintf(f, "| every matrix %s | %.2f MiB | %.1f%% smaller | %.3f | %+.2f%% | %.1f%% | %+.1f pts |\n", uni[k].label, uni[k].mib,
                100.0 * (1.0 - uni[k].mib / f32.mib), uni[k].ppl, 100.0 * (uni[k].ppl / f32.ppl - 1.0), 100.0 * uni[k].acc,
                100.0 * (uni[k].acc - f32.acc));
    for (size_t k = 0; k < MINMAX_POINTS; k++)
        fprintf(f, "| per-tensor %s | %.2f MiB | %.1f%% smaller | %.3f | %+.2f%% | %.1f%% | %+.1f pts |\n", mm[k].label, mm[k].mib,
                100.0 * (1.0 - mm[k].mib / f32.mib), mm[k].ppl, 100.0 * (mm[k].ppl / f32.ppl - 1.0), 100.0 * mm[k].acc,
                100.0 * (mm[k].acc - f32.acc));
    write_rounding_table(f, &s, types, &f32, rounding);
    /* For each variant: the best baseline that fits in the same memory. */
    fprintf(f, "\n## What the search gains\n\nFor each variant, the best (lowest test perplexity) uniform type and min-max setting "
               "served in no more memory:\n\n| variant | served | test ppl | best uniform type in that memory | its ppl | "
               "best min-max in that memory | its ppl |\n|---|---|---|---|---|---|---|\n");
    for (size_t v = 0; v < b->n_variants; v++) {
        const point *bu = NULL, *bm = NULL;
        for (size_t k = 0; k < n_uni; k++)
            if (uni[k].mib <= var[v].mib && (!bu || uni[k].ppl < bu->ppl))
                bu = &uni[k];
        for (size_t k = 0; k < MINMAX_POINTS; k++)
            if (mm[k].mib <= var[v].mib && (!bm || mm[k].ppl < bm->ppl))
                bm = &mm[k];
        char bu_ppl[32] = "—", bm_ppl[32] = "—";
        if (bu)
            snprintf(bu_ppl, sizeof bu_ppl, "%.3f", bu->ppl);
        if (bm)
            snprintf(bm_ppl, sizeof bm_ppl, "%.3f", bm->ppl);
        fprintf(f, "| %s | %.2f MiB | %.3f | %s | %s | %s | %s |\n", b->variants[v].name, var[v].mib, var[v].ppl,
                bu ? bu->label : "none fits", bu_ppl, bm ? bm->label : "none fits", bm_ppl);
    }
    fprintf(f, "\n## Sensitivity\n\n![sensitivity heatmap](sensitivity.svg)\n\nKL divergence (nats) of the next-token and class "
               "distributions from the f32 model's, on the calibration split, with only that unit at that type. Grey: "
               "not measured (the search prunes types far from each tier's choice).\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "qslm-quant: %s: write error\n", md);
        goto out;
    }
    printf("wrote %s, %s/memory-ppl.svg, %s/memory-accuracy.svg, %s/sensitivity.svg (%.1f s)\n", md, dir, dir, dir,
           qq_now() - s.start);
    rc = 0;
out:
    free(var);
    free(types);
    qq_test_data_free(&td);
    qq_session_close(&s);
    qr_bundle_free(b);
    return rc;
}
