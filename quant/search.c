/* search.c: global → block → module, each tier refining the one before. */
#include "search.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocate.h"
#include "local.h"
#include "tensor_types.h"

#define BLOCK_SPAN 3   /* rungs either side of the global type a block may take */
#define MODULE_UP 1    /* rungs above its block's type a matrix may take */
#define MODULE_DOWN 2  /* rungs below */
#define GLOBAL_TRIES 4 /* global candidates validated, best calibration score first */

typedef struct {
    uint32_t *types;
    uint64_t footprint;
    qq_metrics calib, valid;
    double j_calib, j_valid;
    bool validated, within;
    char why[384];
} candidate;

/* A tier's units: the allocation's table (allocate.h) and, beside it, each unit's node. */
typedef struct {
    qq_alloc_unit *a;
    size_t *node;
    size_t n;
} units;

static void say(const qq_search_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const qq_search_ctx *ctx, const char *fmt, ...)
{
    if (!ctx->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_ctx, line);
}

/* Sets every matrix below node to the rung's type. */
static void set_node(const qq_search_ctx *ctx, uint32_t *types, size_t node, size_t rung)
{
    const qq_node *nd = &ctx->h->nodes[node];
    for (size_t i = nd->mod_first; i < nd->mod_first + nd->mod_count; i++) {
        size_t t = (size_t)ctx->h->nodes[i].tensor;
        if (ctx->costs->is_matrix[t])
            types[t] = qq_rung_type(rung);
    }
}

static uint64_t node_cost(const qq_search_ctx *ctx, size_t node, size_t rung)
{
    const qq_node *nd = &ctx->h->nodes[node];
    uint64_t bytes = 0;
    for (size_t i = nd->mod_first; i < nd->mod_first + nd->mod_count; i++) {
        size_t t = (size_t)ctx->h->nodes[i].tensor;
        if (ctx->costs->is_matrix[t])
            bytes += ctx->costs->tensor_bytes[t * QQ_RUNGS + rung];
    }
    return bytes;
}

/* The rung a node's matrices sit at in a setting (the cheapest of them, if they differ). */
static size_t node_rung(const qq_search_ctx *ctx, const uint32_t *types, size_t node)
{
    const qq_node *nd = &ctx->h->nodes[node];
    size_t rung = 0;
    for (size_t i = nd->mod_first; i < nd->mod_first + nd->mod_count; i++) {
        size_t t = (size_t)ctx->h->nodes[i].tensor;
        size_t r = qq_type_rung(types[t]);
        if (ctx->costs->is_matrix[t] && r < QQ_RUNGS && r > rung)
            rung = r;
    }
    return rung;
}

static bool has_matrix(const qq_search_ctx *ctx, size_t node)
{
    return node_cost(ctx, node, 0) > 0;
}

static qr_status measure_candidate(const qq_search_ctx *ctx, const qq_constraints *c, candidate *cd,
                                   bool on_valid, qr_error *err)
{
    uint64_t f32 = ctx->costs->f32_footprint;
    qr_status st;
    if (!on_valid) {
        if ((st = qq_measure_setting(ctx->meas, cd->types, NULL, &cd->calib, err)))
            return st;
        cd->j_calib = qq_objective(qq_calib_loss(&cd->calib, qq_measurer_reference(ctx->meas)),
                                   cd->footprint, f32, c->lambda);
        return QR_OK;
    }
    if ((st = qq_measure_setting(ctx->meas, cd->types, ctx->valid, &cd->valid, err)))
        return st;
    cd->validated = true;
    cd->j_valid = qq_objective(qq_performance_loss(&cd->valid, &ctx->valid_ref), cd->footprint, f32, c->lambda);
    cd->within = qq_within_floors(&cd->valid, &ctx->valid_ref, &c->floors, cd->why, sizeof cd->why);
    return QR_OK;
}

static qq_scores scores_of(const candidate *cd)
{
    return (qq_scores){cd->j_valid, cd->within};
}

/* The kept setting refined (refine.h) and measured as a whole: kept refined when that is better
 * by the tiers' rule, else its refined copies are dropped. Refining changes the values, not the
 * bytes, so the footprint stays. A refinement that fails (a matrix whose drifted inputs cannot
 * be factorised, memory) leaves the plain setting, which was already good: it is said, not fatal. */
static qr_status refine_best(const qq_search_ctx *ctx, const qq_constraints *c, candidate *best, size_t *measured,
                             qq_result *out, qr_error *err)
{
    if (100.0 * (best->valid.ppl / ctx->valid_ref.ppl - 1.0) < ctx->refine_from)
        return QR_OK;
    qr_error why;
    if (qq_refine_setting(ctx->meas, best->types, &out->refine, &why)) { /* the plain setting stands */
        say(ctx, "refinement: %s; the plain rounding kept", why.msg);
        out->refine.matrices = 0;
        return QR_OK;
    }
    if (!out->refine.matrices)
        return QR_OK;
    qr_status st;
    candidate r = *best;
    if ((st = measure_candidate(ctx, c, &r, false, err)) || (st = measure_candidate(ctx, c, &r, true, err)))
        return st;
    *measured += 2;
    qq_scores plain = scores_of(best), refined = scores_of(&r);
    bool better = qq_replace_better(&plain, &refined);
    say(ctx, "refinement: %zu matrices fitted to the setting's own inputs (%zu pass%s, %.1f s): validation ppl %+.2f%% "
        "(before %+.2f%%), accuracy %+.1f pts, score %.3f (before %.3f): %s%s%s",
        out->refine.matrices, out->refine.passes, out->refine.passes == 1 ? "" : "es", out->refine.seconds,
        100.0 * (r.valid.ppl / ctx->valid_ref.ppl - 1.0), 100.0 * (best->valid.ppl / ctx->valid_ref.ppl - 1.0),
        100.0 * (r.valid.accuracy - ctx->valid_ref.accuracy), r.j_valid, best->j_valid,
        better ? "kept" : "not better, the plain rounding kept", r.why[0] ? "; " : "", r.why);
    if (!better) {
        qq_measurer_drop_refined(ctx->meas);
        return QR_OK;
    }
    *best = r;
    out->refined = true;
    return QR_OK;
}

/* The tier's allocation (allocate.h) over units, written into types (which holds the rest of the
 * model). False if even the cheapest allowed setting does not fit. */
static bool allocate(const qq_search_ctx *ctx, const qq_constraints *c, units *us, double loss_per_damage,
                     uint32_t *types)
{
    for (size_t u = 0; u < us->n; u++)
        set_node(ctx, types, us->node[u], us->a[u].hi);
    qq_alloc_limits lim = {qq_setting_footprint(ctx->costs, types), c->budget, ctx->costs->f32_footprint,
                           c->lambda, loss_per_damage};
    bool fits = qq_allocate(us->a, us->n, &lim, NULL);
    for (size_t u = 0; u < us->n; u++)
        set_node(ctx, types, us->node[u], us->a[u].cur);
    return fits;
}

/* Fills a unit's allowed range and its damage at each allowed rung: measured end to end, or,
 * given a scale, estimated layer-locally (local.h) as *scale × the unit's layer-local change
 * (f32 is no damage either way). */
static qr_status add_unit(const qq_search_ctx *ctx, units *us, size_t node, size_t centre, size_t up,
                          size_t down, const double *scale, qr_error *err)
{
    qq_alloc_unit *u = &us->a[us->n];
    memset(u, 0, sizeof *u);
    us->node[us->n++] = node;
    u->lo = centre > up ? centre - up : 0;
    u->hi = centre + down < QQ_RUNGS - 1 ? centre + down : QQ_RUNGS - 1;
    for (size_t r = u->lo; r <= u->hi; r++) {
        qr_status st;
        if (scale && r > 0) {
            double change;
            if ((st = qq_local_node_change(ctx->local, ctx->h, ctx->costs, node, r, &change, err)))
                return st;
            u->damage[r] = *scale * change;
        } else if (!scale) {
            qq_sens s;
            if ((st = qq_sensitivity_get(ctx->sens, node, qq_rung_type(r), &s, err)))
                return st;
            u->damage[r] = s.damage;
        }
        u->cost[r] = node_cost(ctx, node, r);
    }
    return QR_OK;
}

/* The scale of the layer-local estimates for a module's block: 0 (measure end to end) without
 * layer-local measurements, outside the layers, or where the block tier measured nothing to
 * fit it on; *fitted says whether a layer-local scale applies (a layer may fit a scale of 0
 * when none of its types changed the outputs: its matrices then cost nothing to lower). */
static qr_status module_scale(const qq_search_ctx *ctx, size_t block, size_t centre, double *scale, bool *fitted,
                              qr_error *err)
{
    size_t layer, pairs = 0;
    *scale = 0.0;
    *fitted = false;
    if (!ctx->local || !qq_block_layer(ctx->h, block, &layer))
        return QR_OK;
    /* Fitted where the module tier chooses (its window around the block's rung) when the block
     * tier measured two rungs or more there, else on every rung it measured. */
    size_t lo = centre > MODULE_UP ? centre - MODULE_UP : 0;
    qr_status st = qq_local_block_scale(ctx->local, ctx->sens, ctx->h, ctx->costs, block, lo, centre + MODULE_DOWN, scale,
                                        &pairs, err);
    if (st == QR_OK && pairs < 2)
        st = qq_local_block_scale(ctx->local, ctx->sens, ctx->h, ctx->costs, block, 0, QQ_RUNGS - 1, scale, &pairs, err);
    *fitted = st == QR_OK && pairs > 0;
    return st;
}

/* Whether a tier's candidate replaces the incumbent (the rule is allocate.h's): within the floors
 * and better on validation (or within when the incumbent is not). Every candidate is validated,
 * whatever its calibration score: on the default model calibration cannot rank the settings a
 * tier compares (every one of them gets all 32 calibration sentences right, as f32 does, and on
 * 1024 tokens their NLL differences are within the noise: down to q3_1, quantized settings score
 * better than f32 there), and a validation pass costs less than a tier's sensitivities. The
 * calibration score is measured for the log only. */
static qr_status try_replace(const qq_search_ctx *ctx, const qq_constraints *c, const char *tier,
                             candidate *cand, candidate *best, size_t *measured, bool *kept,
                             qr_error *err)
{
    *kept = false;
    size_t n = ctx->costs->n_tensors;
    if (memcmp(cand->types, best->types, n * sizeof *cand->types) == 0) {
        say(ctx, "%s tier: same setting as before", tier);
        return QR_OK;
    }
    cand->footprint = qq_setting_footprint(ctx->costs, cand->types);
    qr_status st = measure_candidate(ctx, c, cand, false, err);
    if (st)
        return st;
    ++*measured;
    if ((st = measure_candidate(ctx, c, cand, true, err)))
        return st;
    ++*measured;
    qq_scores inc = scores_of(best), cs = scores_of(cand);
    bool better = qq_replace_better(&inc, &cs);
    say(ctx, "%s tier: %.2f bits/weight, %.2f MB, calibration score %.3f (before: %.3f), validation ppl %+.2f%%, "
        "accuracy %+.1f pts, score %.3f: %s%s%s",
        tier, qq_setting_bits_per_weight(ctx->costs, cand->types), (double)cand->footprint / 1e6, cand->j_calib,
        best->j_calib, 100.0 * (cand->valid.ppl / ctx->valid_ref.ppl - 1.0),
        100.0 * (cand->valid.accuracy - ctx->valid_ref.accuracy), cand->j_valid,
        better ? "kept" : cand->within ? "not better" : "", (better || cand->within) && cand->why[0] ? "; " : "", cand->why);
    if (better) {
        uint32_t *swap = best->types;
        *best = *cand;
        cand->types = swap;
        memcpy(cand->types, best->types, n * sizeof *cand->types);
        *kept = true;
    }
    return QR_OK;
}

qr_status qq_search(const qq_search_ctx *ctx, const qq_constraints *c, qq_result *out, qr_error *err)
{
    memset(out, 0, sizeof *out);
    qq_measurer_drop_refined(ctx->meas); /* an earlier search's: this one measures plain settings */
    size_t n = ctx->costs->n_tensors;
    candidate globals[QQ_RUNGS], cand = {0}, best = {0};
    units us = {0};
    size_t n_global = 0, measured = 0;
    qr_status st = QR_OK;
    memset(globals, 0, sizeof globals);
    cand.types = malloc(n * sizeof *cand.types);
    us.a = calloc(ctx->h->n_modules + ctx->h->n_blocks + 1, sizeof *us.a);
    us.node = calloc(ctx->h->n_modules + ctx->h->n_blocks + 1, sizeof *us.node);
    if (!cand.types || !us.a || !us.node) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the search");
        goto out;
    }
    /* Global tier: every rung that fits, scored on calibration (the model's own sensitivity). */
    for (size_t r = 0; r < QQ_RUNGS; r++) {
        candidate *g = &globals[n_global];
        if (!(g->types = malloc(n * sizeof *g->types))) {
            st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the search");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            g->types[i] = QR_TYPE_F32;
        set_node(ctx, g->types, 0, r);
        g->footprint = qq_setting_footprint(ctx->costs, g->types);
        if (g->footprint > c->budget) {
            free(g->types);
            g->types = NULL;
            continue;
        }
        qq_sens s;
        if ((st = qq_sensitivity_get(ctx->sens, 0, qq_rung_type(r), &s, err)))
            goto out;
        const qq_metrics *ref = qq_measurer_reference(ctx->meas);
        g->calib = (qq_metrics){.lm = ref->lm, .cls = ref->cls, .kl = s.kl, .cls_kl = s.cls_kl, .nll = s.nll,
                                .accuracy = s.accuracy};
        g->j_calib = qq_objective(qq_calib_loss(&g->calib, ref), g->footprint, ctx->costs->f32_footprint, c->lambda);
        n_global++;
    }
    if (n_global == 0) {
        for (size_t i = 0; i < n; i++)
            cand.types[i] = QR_TYPE_F32;
        set_node(ctx, cand.types, 0, QQ_RUNGS - 1);
        snprintf(out->reason, sizeof out->reason,
                 "nothing fits: the smallest setting (every matrix %s) is served in %llu bytes, over the budget of %llu",
                 qr_type_get(qq_rung_type(QQ_RUNGS - 1))->name,
                 (unsigned long long)qq_setting_footprint(ctx->costs, cand.types), (unsigned long long)c->budget);
        goto out;
    }
    /* Validate each of the best-scoring global candidates (not only until one is within the
     * floors: the calibration score, on 1024 tokens and 32 sentences, cannot tell which of them
     * does best on validation) and keep the best of them (allocate.h). */
    size_t tried[GLOBAL_TRIES], n_tried = 0;
    qq_scores tried_scores[GLOBAL_TRIES];
    while (n_tried < GLOBAL_TRIES && n_tried < n_global) {
        size_t pick = n_global;
        for (size_t i = 0; i < n_global; i++)
            if (!globals[i].validated && (pick == n_global || globals[i].j_calib < globals[pick].j_calib))
                pick = i;
        candidate *g = &globals[pick];
        if ((st = measure_candidate(ctx, c, g, true, err)))
            goto out;
        measured++;
        say(ctx, "global tier: every matrix %s: %.2f MB, validation ppl %+.2f%%, accuracy %+.1f pts, score %.3f%s%s",
            qr_type_get(qq_rung_type(node_rung(ctx, g->types, 0)))->name,
            (double)g->footprint / 1e6, 100.0 * (g->valid.ppl / ctx->valid_ref.ppl - 1.0),
            100.0 * (g->valid.accuracy - ctx->valid_ref.accuracy), g->j_valid, g->why[0] ? ": " : "", g->why);
        tried_scores[n_tried] = scores_of(g);
        tried[n_tried++] = pick;
    }
    size_t inc = tried[qq_pick_best(tried_scores, n_tried)];
    say(ctx, "global tier: kept every matrix %s, the best of the %zu validated (score %.3f%s)",
        qr_type_get(qq_rung_type(node_rung(ctx, globals[inc].types, 0)))->name, n_tried, globals[inc].j_valid,
        globals[inc].within ? "" : ", outside the floors");
    best = globals[inc];
    globals[inc].types = NULL;
    memcpy(cand.types, best.types, n * sizeof *cand.types);
    out->tier = "global";
    /* How much performance (percent, on calibration) a nat of KL damage costs, fitted on the
     * global candidates: the allocation measures damage in KL, the trade-off in percent. KL
     * overstates it — a distribution can move much while the probability of the right token
     * barely changes — by one to two orders of magnitude on the default model. */
    double loss_sum = 0.0, damage_sum = 0.0;
    for (size_t i = 0; i < n_global; i++) {
        double l = qq_calib_loss(&globals[i].calib, qq_measurer_reference(ctx->meas));
        loss_sum += l > 0 ? l : 0;
        damage_sum += 100.0 * (globals[i].calib.kl + globals[i].calib.cls_kl);
    }
    double loss_per_damage = damage_sum > 0 ? loss_sum / damage_sum : 0.1;
    loss_per_damage = loss_per_damage < 0.01 ? 0.01 : loss_per_damage > 1.0 ? 1.0 : loss_per_damage;
    say(ctx, "1 nat of KL on calibration costs about %.1f%% of performance here", 100.0 * loss_per_damage);
    if (c->max_tier == QQ_TIER_GLOBAL)
        goto done;
    /* Block tier around the global rung. */
    size_t g_rung = node_rung(ctx, best.types, 0);
    for (size_t b = ctx->h->first_block; b < ctx->h->first_block + ctx->h->n_blocks; b++) {
        if (!has_matrix(ctx, b))
            continue;
        if ((st = add_unit(ctx, &us, b, g_rung, BLOCK_SPAN, BLOCK_SPAN, NULL, err)))
            goto out;
    }
    bool kept = false;
    if (allocate(ctx, c, &us, loss_per_damage, cand.types)) {
        if ((st = try_replace(ctx, c, "block", &cand, &best, &measured, &kept, err)))
            goto out;
        if (kept)
            out->tier = "block";
    }
    if (c->max_tier == QQ_TIER_BLOCK)
        goto done;
    /* Module tier around each matrix's block rung: every matrix is a unit, however small (a
     * classifier, or at 216M each attention matrix, is a small share of the weights but may be
     * the one that minds its type most). */
    memcpy(cand.types, best.types, n * sizeof *cand.types);
    us.n = 0;
    size_t n_local = 0;
    for (size_t i = ctx->h->first_module; i < ctx->h->first_module + ctx->h->n_modules; i++) {
        if (!ctx->costs->is_matrix[(size_t)ctx->h->nodes[i].tensor])
            continue;
        size_t block = qq_block_of(ctx->h, i), centre = node_rung(ctx, best.types, block);
        double scale;
        bool fitted;
        if ((st = module_scale(ctx, block, centre, &scale, &fitted, err)))
            goto out;
        if ((st = add_unit(ctx, &us, i, centre, MODULE_UP, MODULE_DOWN, fitted ? &scale : NULL, err)))
            goto out;
        n_local += fitted;
    }
    if (ctx->local)
        say(ctx, "module tier: %zu of %zu matrices estimated layer-locally, the rest measured end to end", n_local,
            us.n);
    if (allocate(ctx, c, &us, loss_per_damage, cand.types)) {
        if ((st = try_replace(ctx, c, "module", &cand, &best, &measured, &kept, err)))
            goto out;
        if (kept)
            out->tier = "module";
    }
done:
    if (ctx->refine && (st = refine_best(ctx, c, &best, &measured, out, err)))
        goto out;
    out->feasible = best.within;
    if (!best.within)
        snprintf(out->reason, sizeof out->reason, "no setting within the floors fits: the best found (%.2f MB) has %s",
                 (double)best.footprint / 1e6, best.why);
    out->types = best.types;
    best.types = NULL;
    out->footprint_est = best.footprint;
    out->calib = best.calib;
    out->valid = best.valid;
    out->objective = best.j_valid;
out:
    out->whole_measurements = measured;
    for (size_t i = 0; i < QQ_RUNGS; i++)
        free(globals[i].types);
    free(cand.types);
    free(best.types);
    free(us.a);
    free(us.node);
    return st;
}

void qq_result_free(qq_result *r)
{
    free(r->types);
    memset(r, 0, sizeof *r);
}
