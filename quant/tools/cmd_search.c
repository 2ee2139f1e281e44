/* cmd_search.c: `qslm-quant search MODEL --budget SIZE` — one budget, the chosen setting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "budget.h"
#include "cli.h"
#include "search.h"
#include "tensor_types.h"

static void log_line(void *ctx, const char *line)
{
    qq_session *s = ctx;
    qq_progress_done(s);
    fprintf(stderr, "qslm-quant: [%6.1f s] %s\n", qq_now() - s->start, line);
}

/* Whether the module tier estimates the matrices inside the layers layer-locally (local.h):
 * asked for, or (auto) when measuring each end to end at the 4 types of its window would take
 * over a minute, judged by the f32 calibration run (about a pass; a little more, since it also
 * gathers the quantizer's importance). The default model: 21 matrices, 4 × 21 passes of about
 * 0.1 s, end to end; SpikeGPT-216M: 126, passes of seconds, layer-locally. */
static bool module_tier_local(const qq_session *s, const qq_options *o)
{
    if (o->max_tier != QQ_TIER_MODULE || !s->calib.tokens || o->module_measure == QQ_MODULES_EXACT)
        return false;
    if (o->module_measure == QQ_MODULES_LOCAL)
        return true;
    size_t in_layers = 0, layer;
    for (size_t m = s->h.first_module; m < s->h.first_module + s->h.n_modules; m++)
        in_layers += s->costs.is_matrix[(size_t)s->h.nodes[m].tensor] && qq_block_layer(&s->h, qq_block_of(&s->h, m), &layer);
    return (double)in_layers * 4.0 * s->reference_s > 60.0;
}

/* Whether the search refines its kept setting (refine.h): asked for, or (auto) when the
 * refinement's two runs over the error-compensation text would take at most 30 s, judged by the
 * f32 calibration run. The default model: about 1.5 s; SpikeGPT-216M: minutes per pass, and
 * its sums need several passes. */
#define REFINE_AUTO_FROM 1.0 /* auto: only settings at least this far (percent) over f32's
                                validation perplexity; closer, refinement was never kept on the
                                default model (nine settings between -0.13% and +0.68%; at
                                +1.25% to +1.91%, five of seven kept), and each costs a pass pair */
static bool refine_wanted(const qq_session *s, const qq_options *o)
{
    if (o->refine == QQ_REFINE_OFF || !o->ec_tokens || !s->calib.tokens || !s->n_calib)
        return false;
    if (o->refine == QQ_REFINE_ON)
        return true;
    size_t ne = s->n_calib < o->ec_tokens ? s->n_calib : o->ec_tokens;
    return 2.0 * s->calib_pass_s * (double)ne / (double)s->calib.n_tokens <= 30.0;
}

/* The search context over an open session (shared with build). */
qr_status qq_search_context(qq_session *s, const qq_options *o, qq_search_ctx *ctx, qr_error *err);
qr_status qq_search_context(qq_session *s, const qq_options *o, qq_search_ctx *ctx, qr_error *err)
{
    memset(ctx, 0, sizeof *ctx);
    if (!s->local && module_tier_local(s, o)) {
        qq_progress(s, "keeping every layer's input on the calibration split");
        qr_status st = qq_local_new(s->meas, &s->local, err);
        if (st && o->module_measure == QQ_MODULES_LOCAL)
            return st;
        s->local = st ? NULL : s->local; /* auto, and no LM to run layers on: end to end */
    }
    *ctx = (qq_search_ctx){.master = s->master, .h = &s->h, .costs = &s->costs, .meas = s->meas, .sens = s->sens,
                           .local = s->local, .valid = &s->valid, .refine = refine_wanted(s, o),
                           .refine_from = o->refine == QQ_REFINE_ON ? -1e300 : REFINE_AUTO_FROM,
                           .log = log_line, .log_ctx = s};
    uint32_t *f32 = malloc(s->costs.n_tensors * sizeof *f32);
    if (!f32)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->costs.n_tensors; i++)
        f32[i] = QR_TYPE_F32;
    qq_progress(s, "running the f32 model on the validation split");
    qr_status st = qq_measure_setting(s->meas, f32, &s->valid, &ctx->valid_ref, err);
    free(f32);
    return st;
}

/* The end of search's JSON object: "tasks", each measured head's validation accuracy against
 * f32's. */
static void print_tasks_json(const qq_session *s, const qq_metrics *m, const qq_metrics *ref)
{
    printf(", \"tasks\": [");
    bool first = true;
    for (size_t h = 0; h < s->n_heads; h++) {
        if (!m->head_measured[h])
            continue;
        printf("%s{\"task\": \"%s\", \"valid_accuracy\": %.6f, \"f32_valid_accuracy\": %.6f}", first ? "" : ", ",
               s->head_task[h], m->head_accuracy[h], ref->head_measured[h] ? ref->head_accuracy[h] : 0.0);
        first = false;
    }
    printf("]}\n");
}


int qq_cmd_search(const qq_options *o)
{
    uint64_t budget;
    qi_error bad;
    if (!o->budget) {
        fprintf(stderr, "qslm-quant: search needs --budget SIZE (e.g. 8M)\n");
        return EXIT_USAGE;
    }
    if (qi_parse_memory(o->budget, strlen(o->budget), NULL, &budget, &bad) != QI_OK) {
        fprintf(stderr, "qslm-quant: --budget: '%s' %s\n", o->budget, bad.msg);
        return EXIT_USAGE;
    }
    qq_session s;
    int rc = qq_session_open(o, &s);
    if (rc)
        return rc;
    qr_error err;
    qq_search_ctx ctx;
    qq_result res = {0};
    qq_constraints c = {budget, o->floors, o->lambda, o->max_tier};
    qq_name_heads(&s, &c.floors);
    rc = EXIT_FAIL;
    if (qq_search_context(&s, o, &ctx, &err) || qq_search(&ctx, &c, &res, &err)) {
        qq_progress_done(&s);
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        goto out;
    }
    qq_progress_done(&s);
    char b1[32], b2[32];
    if (!res.types) {
        printf("budget %s: infeasible: %s\n", qq_format_size(budget, b1, sizeof b1), res.reason);
        goto out;
    }
    char *setting = qq_setting_json(s.master, res.types);
    if (o->json) {
        printf("{\"budget\": %llu, \"feasible\": %s, \"tier\": \"%s\", \"footprint\": %llu, \"bits_per_weight\": %.4f, "
               "\"valid_ppl\": %.6f, \"valid_accuracy\": %.6f, \"objective\": %.6f, \"refined\": %s, \"setting\": %s",
               (unsigned long long)budget, res.feasible ? "true" : "false", res.tier,
               (unsigned long long)res.footprint_est, qq_setting_bits_per_weight(&s.costs, res.types), res.valid.ppl,
               res.valid.accuracy, res.objective, res.refined ? "true" : "false", setting ? setting : "null");
        print_tasks_json(&s, &res.valid, &ctx.valid_ref);
    } else {
        printf("budget %s: %s (kept from the %s tier)\n", qq_format_size(budget, b1, sizeof b1),
               res.feasible ? "feasible" : res.reason, res.tier);
        printf("served footprint (estimate) %s = %.1f%% of f32's %s; %.3f bits per weight\n",
               qq_format_size(res.footprint_est, b1, sizeof b1), 100.0 * (double)res.footprint_est / (double)s.costs.f32_footprint,
               qq_format_size(s.costs.f32_footprint, b2, sizeof b2), qq_setting_bits_per_weight(&s.costs, res.types));
        printf("validation: perplexity %.3f (f32 %.3f, %+.2f%%), accuracy %.2f%% (f32 %.2f%%); objective %.3f\n",
               res.valid.ppl, ctx.valid_ref.ppl, 100.0 * (res.valid.ppl / ctx.valid_ref.ppl - 1.0),
               100.0 * res.valid.accuracy, 100.0 * ctx.valid_ref.accuracy, res.objective);
        if (res.refined)
            printf("refined: %zu matrices quantized again, fitted to the setting's own inputs (%.1f s)\n",
                   res.refine.matrices, res.refine.seconds);
        for (size_t h = 0; h < s.n_heads; h++)
            if (res.valid.head_measured[h] && ctx.valid_ref.head_measured[h] && (h || s.n_heads > 1))
                printf("  task %s: validation accuracy %.2f%% (f32 %.2f%%)\n", s.head_task[h],
                       100.0 * res.valid.head_accuracy[h], 100.0 * ctx.valid_ref.head_accuracy[h]);
        printf("%zu settings measured whole; sensitivities: %zu measured, %zu from the cache\n\nsetting:\n",
               res.whole_measurements, qq_sensitivity_measured(s.sens), qq_sensitivity_cached(s.sens));
        for (size_t i = 0; i < s.costs.n_tensors; i++)
            if (s.costs.is_matrix[i])
                printf("  %-36s %s\n", qr_model_file_tensor(s.master, i)->name, qr_type_get(res.types[i])->name);
    }
    free(setting);
    rc = res.feasible ? 0 : EXIT_FAIL;
out:
    qq_result_free(&res);
    qq_session_close(&s);
    return rc;
}
