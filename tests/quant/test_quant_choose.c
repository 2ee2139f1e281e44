/* test_quant_choose.c: the search made to choose, on small models built so that the right choice
 * is known.
 *
 * A random model's perplexity on arbitrary tokens says nothing (quantization noise may as well
 * lower it), so the text here is sampled from the f32 model itself, window by window: then the
 * f32 model is the text's true distribution, and a setting's expected NLL exceeds f32's by its
 * KL divergence from it — what the sensitivities measure. The LM head is scaled up so that the
 * model's predictions are sharp enough for that to show on a thousand tokens.
 *
 * A spiking layer's outputs reach the residual stream only through LIF spikes, and the layers
 * of a random model this small fire almost none: quantizing them changes nothing. A block is
 * made to matter — and to mind its quantization — by scaling its matrices up (its sub-blocks
 * fire) and putting an outlier in every 32 weights (a group's scale then follows the outlier,
 * and the other weights lose their precision at few bits). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "hierarchy.h"
#include "local.h"
#include "measure.h"
#include "model.h"
#include "sampler.h"
#include "search.h"
#include "sensitivity.h"
#include "setting.h"
#include "state.h"
#include "synthetic_model.h"
#include "tensor_types.h"

#define CALIB_TOKENS 512
#define VALID_TOKENS 1536
#define WINDOW 64

/* How a model is made fragile (see the top of the file). */
typedef struct {
    const char *fragile_block; /* "blocks.N.": every matrix scaled and given outliers */
    bool one_matrix;           /* instead: block 1's time-mix reads only through att.value */
} recipe;

static void edit(void *arg, const char *name, float *v, size_t rows, size_t cols)
{
    const recipe *r = arg;
    size_t n = rows * cols;
    if (rows < 2)
        return;
    if (strcmp(name, "head.weight") == 0)
        for (size_t i = 0; i < n; i++)
            v[i] *= 4.0f;
    if (r->fragile_block && strncmp(name, r->fragile_block, strlen(r->fragile_block)) == 0)
        for (size_t i = 0; i < n; i++)
            v[i] *= i % 32 == 3 ? 30.0f : 3.0f;
    else if (r->fragile_block && strncmp(name, "blocks.", strlen("blocks.")) == 0)
        for (size_t i = 0; i < n; i++) /* the other layers fire a little: they matter, less */
            v[i] *= 1.35f;
    if (r->one_matrix) {
        /* Key and receptance zero (exact at every type: nothing to lose), the output 6·I (near
         * exact, and it makes the sub-block fire), the value with an outlier in every 16. */
        if (strcmp(name, "blocks.1.att.key.weight") == 0 || strcmp(name, "blocks.1.att.receptance.weight") == 0)
            memset(v, 0, n * sizeof *v);
        if (strcmp(name, "blocks.1.att.output.weight") == 0) {
            memset(v, 0, n * sizeof *v);
            for (size_t i = 0; i < rows && i < cols; i++)
                v[i * cols + i] = 6.0f;
        }
        if (strcmp(name, "blocks.1.att.value.weight") == 0)
            for (size_t i = 0; i < n; i++)
                if (i % 16 == 3)
                    v[i] *= 10.0f;
    }
}

/* Windows of WINDOW tokens sampled from the model at temperature 1, each from a reset state and
 * a uniformly drawn first token: the distribution the evaluator's windows are scored against. */
static void sample_text(const qr_model_file *f, int32_t *out, size_t n, uint64_t seed)
{
    qr_error err;
    qr_model *m;
    qr_runner *r;
    qr_state *st;
    qr_sampler *smp;
    assert_int_equal(qr_model_bind(f, &m, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, 1, &r, &err), QR_OK);
    assert_int_equal(qr_state_new(m, &st, &err), QR_OK);
    qr_sampler_params p = qr_sampler_defaults();
    p.seed = seed;
    assert_int_equal(qr_sampler_new(m->vocab, &p, &smp, &err), QR_OK);
    float *logits = malloc(m->vocab * sizeof *logits);
    assert_non_null(logits);
    for (size_t i = 0; i < n; i++) {
        if (i % WINDOW == 0) {
            qr_state_reset(st);
            out[i] = (int32_t)(qr_sampler_uniform(smp) * (double)m->vocab);
        } else {
            out[i] = qr_sampler_sample(smp, logits, NULL, 0);
        }
        assert_int_equal(qr_forward(r, &st, &out[i], 1, logits, NULL, &err), QR_OK);
    }
    free(logits);
    qr_sampler_free(smp);
    qr_state_free(st);
    qr_runner_free(r);
    qr_model_free(m);
}

/* A model, its data and everything a search needs, built once per group of tests. */
typedef struct {
    char path[64];
    recipe rc;
    qr_model_file *file;
    int32_t tokens[CALIB_TOKENS + VALID_TOKENS];
    qq_split calib, valid;
    qq_measurer *meas;
    qq_hierarchy h;
    qq_costs costs;
    qq_sensitivity *sens;
    qq_search_ctx ctx;
    char log[8192];            /* the search's progress lines of the last search */
} world;

static void keep_line(void *arg, const char *line)
{
    world *w = arg;
    size_t used = strlen(w->log);
    snprintf(w->log + used, sizeof w->log - used, "%s\n", line);
}

static world *world_new(const recipe *rc, uint64_t seed)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->rc = *rc;
    snprintf(w->path, sizeof w->path, "/tmp/qslm-choose-XXXXXX");
    int fd = mkstemp(w->path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {3, 64, 256, 96, QR_TYPE_F32, seed};
    shape.edit = edit;
    shape.edit_ctx = &w->rc;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, w->path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(w->path, &w->file, &err), QR_OK);
    sample_text(w->file, w->tokens, CALIB_TOKENS + VALID_TOKENS, 5);
    w->calib = (qq_split){w->tokens, CALIB_TOKENS, NULL, 0, WINDOW};
    w->valid = (qq_split){w->tokens + CALIB_TOKENS, VALID_TOKENS, NULL, 0, WINDOW};
    assert_int_equal(qq_measurer_new(w->file, NULL, &w->calib, WINDOW, 8, &w->meas, &err), QR_OK);
    assert_int_equal(qq_hierarchy_build(w->file, &w->h, &err), QR_OK);
    assert_int_equal(qq_costs_new(w->file, 1, &w->costs, &err), QR_OK);
    assert_int_equal(qq_sensitivity_new(w->meas, w->file, &w->h, NULL, "k", NULL, NULL, &w->sens, &err), QR_OK);
    w->ctx = (qq_search_ctx){.master = w->file, .h = &w->h, .costs = &w->costs, .meas = w->meas, .sens = w->sens,
                             .valid = &w->valid, .log = keep_line, .log_ctx = w};
    uint32_t *f32 = malloc(w->costs.n_tensors * sizeof *f32);
    for (size_t i = 0; i < w->costs.n_tensors; i++)
        f32[i] = QR_TYPE_F32;
    assert_int_equal(qq_measure_setting(w->meas, f32, &w->valid, &w->ctx.valid_ref, &err), QR_OK);
    free(f32);
    return w;
}

static void world_free(world *w)
{
    qq_sensitivity_free(w->sens);
    qq_costs_free(&w->costs);
    qq_hierarchy_free(&w->h);
    qq_measurer_free(w->meas);
    qr_model_file_close(w->file);
    unlink(w->path);
    free(w);
}

/* The served footprint of every matrix at one type. */
static uint64_t uniform_footprint(const world *w, uint32_t type)
{
    uint32_t *t = malloc(w->costs.n_tensors * sizeof *t);
    for (size_t i = 0; i < w->costs.n_tensors; i++)
        t[i] = w->costs.is_matrix[i] ? type : QR_TYPE_F32;
    uint64_t fp = qq_setting_footprint(&w->costs, t);
    free(t);
    return fp;
}

static qq_result search(world *w, uint64_t budget, double max_ppl, double lambda, qq_tier tier)
{
    qq_constraints c = {budget, {max_ppl, 100.0, 0, {NULL}}, lambda, tier};
    qq_result r;
    qr_error err;
    w->log[0] = '\0';
    if (qq_search(&w->ctx, &c, &r, &err) != QR_OK)
        fail_msg("search: %s", err.msg);
    return r;
}

/* The rung (0: f32, more is fewer bits) of the named tensor in a setting. */
static size_t rung_of(const world *w, const uint32_t *types, const char *name)
{
    for (size_t i = 0; i < w->costs.n_tensors; i++)
        if (strcmp(qr_model_file_tensor(w->file, i)->name, name) == 0)
            return qq_type_rung(types[i]);
    fail_msg("no tensor %s", name);
    return QQ_RUNGS;
}

/* The rung of a block's matrices (one type per block at the block tier). */
static size_t block_rung(const world *w, const uint32_t *types, size_t layer)
{
    char name[64];
    snprintf(name, sizeof name, "blocks.%zu.att.key.weight", layer);
    size_t r = rung_of(w, types, name);
    static const char *const m[] = {"att.value", "att.receptance", "att.output", "ffn.receptance", "ffn.key",
                                    "ffn.value"};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        snprintf(name, sizeof name, "blocks.%zu.%s.weight", layer, m[i]);
        assert_int_equal(rung_of(w, types, name), r);
    }
    return r;
}

static int setup_fragile_block(void **state)
{
    recipe rc = {"blocks.1.", false};
    *state = world_new(&rc, 7);
    return 0;
}

static int teardown(void **state)
{
    world_free(*state);
    return 0;
}

/* Block tier: with half the way from all-q2_0 to all-q8_0 to spend, the fragile block 1 gets
 * more bits than the two other layers, which have the same matrices and sizes and differ only in
 * how much they mind quantization. The sensitivities say so first (block 1's damage is the
 * largest at every type, and the others' is not nothing at the coarsest four: the allocation has
 * a choice to make),
 * then the setting kept: block 1 at least two rungs above both. (Over 18 model and text seeds
 * it is 4 to 6 rungs. An allocation that buys the cheapest upgrade saving anything at all,
 * instead of the most damage saved per byte, fails this on 12 of those 18, these among them.) */
static void test_fragile_block_gets_more_bits(void **state)
{
    world *w = *state;
    qr_error err;
    size_t b1 = w->h.first_block + 2;
    assert_string_equal(w->h.nodes[b1].name, "block 1");
    for (size_t r = 2; r < QQ_RUNGS; r++) {
        qq_sens s0, s1, s2;
        assert_int_equal(qq_sensitivity_get(w->sens, b1 - 1, qq_rung_type(r), &s0, &err), QR_OK);
        assert_int_equal(qq_sensitivity_get(w->sens, b1, qq_rung_type(r), &s1, &err), QR_OK);
        assert_int_equal(qq_sensitivity_get(w->sens, b1 + 1, qq_rung_type(r), &s2, &err), QR_OK);
        assert_true(s1.damage > s0.damage && s1.damage > s2.damage);
        if (r >= QQ_RUNGS - 4) /* at 8 bits a robust block may flip no spike at all: damage 0 */
            assert_true(s0.damage > 0.0 && s2.damage > 0.0);
    }
    uint64_t lo = uniform_footprint(w, QR_TYPE_Q2_0), hi = uniform_footprint(w, QR_TYPE_Q8_0);
    qq_result r = search(w, lo + (hi - lo) / 2, 1e5, 0.0, QQ_TIER_BLOCK);
    assert_true(r.feasible);
    assert_string_equal(r.tier, "block");
    assert_true(r.footprint_est <= lo + (hi - lo) / 2);
    size_t r0 = block_rung(w, r.types, 0), r1 = block_rung(w, r.types, 1), r2 = block_rung(w, r.types, 2);
    if (!(r1 + 2 <= r0 && r1 + 2 <= r2))
        fail_msg("block 1 got %s, blocks 0 and 2 %s and %s:\n%s", qr_type_get(qq_rung_type(r1))->name,
                 qr_type_get(qq_rung_type(r0))->name, qr_type_get(qq_rung_type(r2))->name, w->log);
    qq_result_free(&r);
}

/* λ moves the choice along the front: with the f32 footprint to spend, λ = 0 keeps more memory
 * and a lower validation perplexity than λ = 10, which pays for memory. */
static void test_lambda_moves_along_the_front(void **state)
{
    world *w = *state;
    uint64_t budget = w->costs.f32_footprint;
    qq_result q = search(w, budget, 1e5, 0.0, QQ_TIER_BLOCK), m = search(w, budget, 1e5, 10.0, QQ_TIER_BLOCK);
    assert_true(q.feasible && m.feasible);
    if (!(q.footprint_est > m.footprint_est && q.valid.ppl < m.valid.ppl))
        fail_msg("lambda 0: %llu bytes, ppl %.4f; lambda 10: %llu bytes, ppl %.4f", (unsigned long long)q.footprint_est,
                 q.valid.ppl, (unsigned long long)m.footprint_est, m.valid.ppl);
    /* The objective weighs memory as asked: λ = 10's choice scores better than λ = 0's under λ = 10. */
    double m0 = (double)w->costs.f32_footprint;
    double jq = 100.0 * (q.valid.ppl / w->ctx.valid_ref.ppl - 1.0) + 10.0 * 100.0 * (double)q.footprint_est / m0;
    assert_true(m.objective < jq);
    qq_result_free(&q);
    qq_result_free(&m);
}

/* The validation perplexity increase (percent) of every matrix at one type. */
static double uniform_increase(world *w, uint32_t type)
{
    uint32_t *t = malloc(w->costs.n_tensors * sizeof *t);
    for (size_t i = 0; i < w->costs.n_tensors; i++)
        t[i] = w->costs.is_matrix[i] ? type : QR_TYPE_F32;
    qq_metrics m;
    qr_error err;
    assert_int_equal(qq_measure_setting(w->meas, t, &w->valid, &m, &err), QR_OK);
    free(t);
    return 100.0 * (m.ppl / w->ctx.valid_ref.ppl - 1.0);
}

/* Floors that bind: a perplexity floor halfway between what every matrix at the cheapest rung
 * (q2_s) costs and what the next (q2_0) costs (on this model well over 100% and some tens of
 * points apart) refuses the one and keeps the other. When the budget fits only the cheapest, it
 * is infeasible, the best setting found is the cheapest and the reason gives the numbers. With
 * the f32 footprint to spend and a λ that makes the cheapest setting the best calibration
 * score, the cheapest is validated first and refused (the log says why), and the next is kept. */
static void test_floors_refuse_cheapest(void **state)
{
    world *w = *state;
    const uint32_t CHEAPEST = qq_rung_type(QQ_RUNGS - 1), NEXT = qq_rung_type(QQ_RUNGS - 2);
    double inc0 = uniform_increase(w, CHEAPEST), inc1 = uniform_increase(w, NEXT);
    assert_true(inc0 > inc1 + 10.0);
    double floor = (inc0 + inc1) / 2;
    char want[64];
    snprintf(want, sizeof want, "(floor: +%.2f%%)", floor);
    uint64_t q2 = uniform_footprint(w, CHEAPEST);
    qq_result r = search(w, q2, floor, 0.1, QQ_TIER_BLOCK);
    assert_false(r.feasible);
    assert_non_null(r.types);
    assert_int_equal(r.footprint_est, q2);
    assert_int_equal(block_rung(w, r.types, 1), qq_type_rung(CHEAPEST));
    if (!strstr(r.reason, "no setting within the floors fits") || !strstr(r.reason, "validation perplexity") ||
        !strstr(r.reason, "over f32's") || !strstr(r.reason, want))
        fail_msg("reason: %s", r.reason);
    qq_result_free(&r);
    r = search(w, w->costs.f32_footprint, floor, 1000.0, QQ_TIER_GLOBAL);
    const char *at = strstr(w->log, "global tier: every matrix q2_s:");
    char line[1024] = "";
    if (at)
        snprintf(line, sizeof line, "%.*s", (int)strcspn(at, "\n"), at);
    if (!strstr(line, "validation perplexity") || !strstr(line, "over f32's") || !strstr(line, want))
        fail_msg("q2_s not refused by the floor:\n%s", w->log);
    assert_true(r.feasible);
    assert_int_equal(r.footprint_est, uniform_footprint(w, NEXT));
    assert_int_equal(block_rung(w, r.types, 1), qq_type_rung(NEXT));
    qq_result_free(&r);
}

/* The objective on validation of every matrix at one type, under lambda. */
static double uniform_objective(world *w, uint32_t type, double lambda)
{
    uint32_t *t = malloc(w->costs.n_tensors * sizeof *t);
    for (size_t i = 0; i < w->costs.n_tensors; i++)
        t[i] = w->costs.is_matrix[i] ? type : QR_TYPE_F32;
    qq_metrics m;
    qr_error err;
    assert_int_equal(qq_measure_setting(w->meas, t, &w->valid, &m, &err), QR_OK);
    double j = qq_objective(qq_performance_loss(&m, &w->ctx.valid_ref), qq_setting_footprint(&w->costs, t),
                            w->costs.f32_footprint, lambda);
    free(t);
    return j;
}

/* The type named at the start of s (followed by ':', ',' or a space); fails the test if none is. */
static uint32_t type_named(const char *s)
{
    for (size_t r = 0; r < QQ_RUNGS; r++) {
        const char *name = qr_type_get(qq_rung_type(r))->name;
        size_t len = strlen(name);
        if (strncmp(s, name, len) == 0 && (s[len] == ':' || s[len] == ',' || s[len] == ' '))
            return qq_rung_type(r);
    }
    fail_msg("no type at '%.16s'", s);
    return 0;
}

/* Global tier: every one of the best-scoring candidates on calibration (four here, where every
 * rung fits) is validated, and the one kept has the lowest validation objective of them, not the
 * first that is within the floors (all are, here). Over a range of λ the calibration order and
 * the validation order differ somewhere: at least once the pick is not the first validated,
 * which the rule of stopping at the first within the floors would have kept. */
static void test_global_keeps_best_validated(void **state)
{
    world *w = *state;
    static const double lambdas[] = {0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0};
    size_t not_first = 0;
    for (size_t l = 0; l < sizeof lambdas / sizeof *lambdas; l++) {
        qq_result r = search(w, w->costs.f32_footprint, 1e5, lambdas[l], QQ_TIER_GLOBAL);
        assert_true(r.feasible);
        assert_string_equal(r.tier, "global");
        static const char tried_at[] = "global tier: every matrix ", kept_at[] = "global tier: kept every matrix ";
        size_t n = 0;
        uint32_t first = 0;
        double best = 1e300;
        for (const char *at = strstr(w->log, tried_at); at; at = strstr(at + 1, tried_at)) {
            uint32_t t = type_named(at + strlen(tried_at));
            double j = uniform_objective(w, t, lambdas[l]);
            if (n++ == 0)
                first = t;
            best = j < best ? j : best;
        }
        if (n != 4)
            fail_msg("lambda %g: %zu global candidates validated, not 4:\n%s", lambdas[l], n, w->log);
        const char *kept = strstr(w->log, kept_at);
        assert_non_null(kept);
        uint32_t k = type_named(kept + strlen(kept_at));
        if (!(r.objective == best && uniform_objective(w, k, lambdas[l]) == best))
            fail_msg("lambda %g: kept %s at %.4f, the best validated is %.4f:\n%s", lambdas[l], qr_type_get(k)->name,
                     r.objective, best, w->log);
        not_first += k != first;
        qq_result_free(&r);
    }
    printf("the pick was not the first validated at %zu of %zu lambdas\n", not_first, sizeof lambdas / sizeof *lambdas);
    assert_true(not_first > 0);
}

/* Block and module tiers: each tier's pick is validated whatever its calibration score, and kept
 * or not on validation alone. Over three budgets and three λ every tier line names the pick's
 * validation figures (or says the tier found the setting it had), and some picks score no better
 * than the incumbent on calibration yet are kept on validation: the rule that validated only a
 * better calibration score would have passed them over (6 of the 8 such picks here, at 3/8, 5/8
 * and 7/8 of the way from all-q2_0 to all-q8_0). */
static void test_every_tier_pick_validated(void **state)
{
    world *w = *state;
    static const double lambdas[] = {0.0, 0.5, 2.0};
    uint64_t lo = uniform_footprint(w, QR_TYPE_Q2_0), hi = uniform_footprint(w, QR_TYPE_Q8_0);
    size_t tier_lines = 0, not_better_on_calib = 0, kept = 0;
    for (size_t l = 0; l < sizeof lambdas / sizeof *lambdas; l++)
        for (size_t k = 3; k <= 7; k += 2) {
            qq_result r = search(w, lo + (hi - lo) * k / 8, 1e5, lambdas[l], QQ_TIER_MODULE);
            assert_true(r.feasible);
            for (const char *line = w->log, *end; *line; line = *end ? end + 1 : end) {
                end = line + strcspn(line, "\n");
                char one[1024];
                snprintf(one, sizeof one, "%.*s", (int)(end - line), line);
                if (strncmp(one, "block tier: ", 12) != 0 && strncmp(one, "module tier: ", 13) != 0)
                    continue;
                tier_lines++;
                if (strstr(one, "tier: same setting as before"))
                    continue;
                double calib, before;
                const char *at = strstr(one, "calibration score ");
                if (!at || sscanf(at, "calibration score %lf (before: %lf)", &calib, &before) != 2 ||
                    !strstr(one, "validation ppl"))
                    fail_msg("a tier's pick not validated:\n%s", w->log);
                if (calib >= before) {
                    not_better_on_calib++;
                    kept += strstr(one, ": kept") != NULL;
                }
            }
            qq_result_free(&r);
        }
    printf("%zu tier lines; %zu picks no better than the incumbent on calibration validated, %zu of them kept\n",
           tier_lines, not_better_on_calib, kept);
    assert_true(tier_lines >= 2 * 3 * 3);
    assert_true(kept > 0);
}

static int setup_fragile_matrix(void **state)
{
    recipe rc = {NULL, true};
    *state = world_new(&rc, 7);
    return 0;
}

/* Module tier: in block 1 only att.value minds its type (its siblings are zero, exact at any
 * type, or 6·I, near exact), and it gets more bits than every sibling. λ = 0.5 keeps the module
 * tier from spending leftover bytes on matrices that save next to nothing. */
static void fragile_matrix_gets_more_bits(world *w)
{
    uint64_t lo = uniform_footprint(w, QR_TYPE_Q2_0), hi = uniform_footprint(w, QR_TYPE_Q8_0);
    qq_result r = search(w, lo + (hi - lo) / 2, 1e5, 0.5, QQ_TIER_MODULE);
    assert_true(r.feasible);
    assert_string_equal(r.tier, "module");
    static const char *const siblings[] = {"att.key", "att.receptance", "att.output", "ffn.receptance", "ffn.key",
                                           "ffn.value"};
    size_t fragile = rung_of(w, r.types, "blocks.1.att.value.weight");
    for (size_t i = 0; i < sizeof siblings / sizeof *siblings; i++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.1.%s.weight", siblings[i]);
        size_t s = rung_of(w, r.types, name);
        if (!(fragile < s))
            fail_msg("att.value got %s, %s %s:\n%s", qr_type_get(qq_rung_type(fragile))->name, siblings[i],
                     qr_type_get(qq_rung_type(s))->name, w->log);
    }
    qq_result_free(&r);
}

static void test_fragile_matrix_gets_more_bits(void **state)
{
    fragile_matrix_gets_more_bits(*state);
}

/* The same with the module tier's estimates made layer-locally (local.h), as qslm-quant does by
 * default: the layer-local change finds the fragile matrix too, and the log says how many
 * matrices were estimated so. */
static void test_fragile_matrix_gets_more_bits_locally(void **state)
{
    world *w = *state;
    qr_error err;
    qq_local *l = NULL;
    if (qq_local_new(w->meas, &l, &err))
        fail_msg("%s", err.msg);
    w->ctx.local = l;
    fragile_matrix_gets_more_bits(w);
    assert_non_null(strstr(w->log, "matrices estimated layer-locally"));
    w->ctx.local = NULL;
    qq_local_free(l);
}

int main(void)
{
    const struct CMUnitTest fragile_block[] = {
        cmocka_unit_test(test_fragile_block_gets_more_bits),
        cmocka_unit_test(test_lambda_moves_along_the_front),
        cmocka_unit_test(test_floors_refuse_cheapest),
        cmocka_unit_test(test_global_keeps_best_validated),
        cmocka_unit_test(test_every_tier_pick_validated),
    };
    const struct CMUnitTest fragile_matrix[] = {
        cmocka_unit_test(test_fragile_matrix_gets_more_bits),
        cmocka_unit_test(test_fragile_matrix_gets_more_bits_locally),
    };
    int failed = cmocka_run_group_tests_name("fragile block", fragile_block, setup_fragile_block, teardown);
    failed += cmocka_run_group_tests_name("fragile matrix", fragile_matrix, setup_fragile_matrix, teardown);
    return failed;
}
