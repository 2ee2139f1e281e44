/* test_forward_rows.c: the batched forward against decode, and chunks of steps against steps.
 *
 * Every perplexity and every QSLM decision is measured on the batched path (BLAS on dequantized
 * weights, f32 activations), while users are served by decode (one row; quantized types multiply
 * 8-bit rounded activations). So, per storage type:
 *   - rows_match_decode: B = 9, 16 and 64 sequences advanced together give each sequence the
 *     logits it gets decoded alone, within ROWS_TOL relative to the logits' scale (a model without
 *     spikes, so that the difference stays a smooth function of the rounding);
 *   - chunk_equals_steps: T steps of S sequences in one call (T·S rows, what the evaluators do)
 *     give the states and logits of T calls of S rows, within CHUNK_TOL, spikes included: both
 *     sides multiply on the same BLAS path, so a spike that flips would be a bug, not rounding;
 *   - split_between_threads: a call split into parts on a pool's threads equals the same unsplit;
 *   - stages_equal_forward: embed, the layers in two ranges and the output (forward.h's staged
 *     calls, what QSLM's layer-local measurements run) give qr_forward's logits, features and
 *     states to the bit, split between threads or not;
 *   - eval_chunked_equals_unchunked: qr_eval_perplexity and qr_eval_accuracy on a runner made
 *     for qr_eval_rows rows equal the same on a runner of `batch` rows, ragged windows and items
 *     of unequal length included. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "pool.h"
#include "state.h"
#include "synthetic_model.h"
#include "tensor_types.h"

static const uint32_t all_types[] = {QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_0, QR_TYPE_Q8_1, QR_TYPE_Q6_0,
                                     QR_TYPE_Q6_1, QR_TYPE_Q5_0, QR_TYPE_Q5_1, QR_TYPE_Q4_0, QR_TYPE_Q4_1,
                                     QR_TYPE_Q3_0, QR_TYPE_Q3_1, QR_TYPE_Q2_0, QR_TYPE_Q2_1, QR_TYPE_Q4_S,
                                     QR_TYPE_Q3_S, QR_TYPE_Q2_S};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* Batched rows against decode, relative to the largest |logit| of the step. f32 and f16 multiply
 * the same f32 activations on both paths (only the summation order differs); the quantized types
 * decode with activations rounded to 8 bits per group of 32, which the batched path does not do.
 * Measured worst cases (this machine, 6 steps): f32/f16 below 1e-6; quantized types 0.9e-2 to
 * 1.2e-2 of the logits' scale. The bounds leave a margin of 3x or more. */
#define ROWS_TOL_FLOAT 2e-5
#define ROWS_TOL_QUANT 4e-2
/* Chunk against steps, absolute on logits and states of order 1. */
#define CHUNK_TOL 1e-4

typedef struct {
    char path[64];
    qr_model_file *file;
    qr_model *m;
} model_fixture;

static void open_model(model_fixture *fx, uint32_t type, bool spikes, size_t n_classes)
{
    snprintf(fx->path, sizeof fx->path, "/tmp/qslm-rows-XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {.n_layer = 2, .d = 64, .f = 256, .vocab = 96, .matrix_type = type, .seed = 11};
    shape.no_spikes = !spikes;
    shape.n_classes = n_classes;
    qr_error err;
    if (synthetic_model_write(&shape, fx->path, &err) || qr_model_file_open(fx->path, &fx->file, &err) ||
        qr_model_bind(fx->file, &fx->m, &err))
        fail_msg("%s: %s", qr_type_get(type)->name, err.msg);
}

static void close_model(model_fixture *fx)
{
    qr_model_free(fx->m);
    qr_model_file_close(fx->file);
    unlink(fx->path);
}

static int32_t token_at(size_t seq, size_t t, size_t vocab)
{
    return (int32_t)((seq * 31 + t * 17 + (seq * t) % 7) % vocab);
}

static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* The largest relative difference between B sequences advanced together and each alone. */
static double rows_vs_decode(const qr_model *m, size_t B, size_t steps)
{
    qr_error err;
    qr_runner *batched = NULL, *single = NULL;
    assert_int_equal(qr_runner_new(m, NULL, B, &batched, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, 1, &single, &err), QR_OK);
    qr_state **together = calloc(B, sizeof *together), **alone = calloc(B, sizeof *alone);
    float *lb = malloc(B * m->vocab * sizeof *lb), *l1 = malloc(m->vocab * sizeof *l1);
    int32_t *toks = malloc(B * sizeof *toks);
    for (size_t b = 0; b < B; b++) {
        assert_int_equal(qr_state_new(m, &together[b], &err), QR_OK);
        assert_int_equal(qr_state_new(m, &alone[b], &err), QR_OK);
    }
    double worst = 0;
    for (size_t t = 0; t < steps; t++) {
        for (size_t b = 0; b < B; b++)
            toks[b] = token_at(b, t, m->vocab);
        assert_int_equal(qr_forward(batched, together, toks, B, lb, NULL, &err), QR_OK);
        for (size_t b = 0; b < B; b++) {
            assert_int_equal(qr_forward(single, &alone[b], &toks[b], 1, l1, NULL, &err), QR_OK);
            double scale = max_abs(l1, m->vocab), diff = 0;
            for (size_t i = 0; i < m->vocab; i++)
                diff = fmax(diff, fabs((double)lb[b * m->vocab + i] - l1[i]));
            worst = fmax(worst, diff / (scale > 1e-6 ? scale : 1e-6));
        }
    }
    for (size_t b = 0; b < B; b++) {
        qr_state_free(together[b]);
        qr_state_free(alone[b]);
    }
    free(together);
    free(alone);
    free(lb);
    free(l1);
    free(toks);
    qr_runner_free(batched);
    qr_runner_free(single);
    return worst;
}

static void test_rows_match_decode(void **state)
{
    (void)state;
    static const size_t rows[] = {9, 16, 64};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        model_fixture fx;
        open_model(&fx, all_types[ti], false, 0);
        double tol = all_types[ti] < QR_TYPE_FIRST_QUANT ? ROWS_TOL_FLOAT : ROWS_TOL_QUANT;
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            double worst = rows_vs_decode(fx.m, rows[r], 6);
            print_message("%-5s B=%-2zu worst relative logit difference from decode: %.2e (bound %.0e)\n",
                          qr_type_get(all_types[ti])->name, rows[r], worst, tol);
            if (!(worst <= tol))
                fail_msg("%s, %zu rows: logits differ from decode by %.3g of their scale (bound %g)",
                         qr_type_get(all_types[ti])->name, rows[r], worst, tol);
        }
        close_model(&fx);
    }
}

/* Advances S sequences T steps twice — one call of T·S rows, and T calls of S rows — and
 * compares every step's logits and the final states; counts spikes that differ (via the trace of
 * row 0) and returns the largest difference. */
static double chunk_vs_steps(const qr_model *m, size_t S, size_t T, size_t *spike_flips)
{
    qr_error err;
    qr_runner *chunk = NULL, *step = NULL;
    assert_int_equal(qr_runner_new(m, NULL, S * T, &chunk, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, S, &step, &err), QR_OK);
    qr_state **a = calloc(S, sizeof *a), **b = calloc(S, sizeof *b), **rows = calloc(S * T, sizeof *rows);
    int32_t *toks = malloc(S * T * sizeof *toks);
    float *lc = malloc(S * T * m->vocab * sizeof *lc), *ls = malloc(S * m->vocab * sizeof *ls);
    for (size_t s = 0; s < S; s++) {
        assert_int_equal(qr_state_new(m, &a[s], &err), QR_OK);
        assert_int_equal(qr_state_new(m, &b[s], &err), QR_OK);
    }
    for (size_t t = 0; t < T; t++)
        for (size_t s = 0; s < S; s++) {
            rows[t * S + s] = a[s];
            toks[t * S + s] = token_at(s, t, m->vocab);
        }
    assert_int_equal(qr_forward(chunk, rows, toks, S * T, lc, NULL, &err), QR_OK);
    double worst = 0;
    for (size_t t = 0; t < T; t++) {
        assert_int_equal(qr_forward(step, b, toks + t * S, S, ls, NULL, &err), QR_OK);
        for (size_t i = 0; i < S * m->vocab; i++)
            worst = fmax(worst, fabs((double)lc[t * S * m->vocab + i] - ls[i]));
    }
    /* The membranes hold every spike decision: a flip leaves one at 0 (hard reset) and the other
     * not. The WKV's running maximum starts at -1e30: compared like the rest, it is equal. */
    *spike_flips = 0;
    for (size_t s = 0; s < S; s++) {
        size_t n = a[s]->n_layer * a[s]->layer_floats;
        const float *va = a[s]->data, *vb = b[s]->data;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)va[i] - vb[i]);
            worst = fmax(worst, d);
            *spike_flips += (va[i] == 0.0f) != (vb[i] == 0.0f) && d > CHUNK_TOL;
        }
    }
    for (size_t s = 0; s < S; s++) {
        qr_state_free(a[s]);
        qr_state_free(b[s]);
    }
    free(a);
    free(b);
    free(rows);
    free(toks);
    free(lc);
    free(ls);
    qr_runner_free(chunk);
    qr_runner_free(step);
    return worst;
}

static void test_chunk_equals_steps(void **state)
{
    (void)state;
    static const size_t steps[] = {1, 7, 64};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        model_fixture fx;
        open_model(&fx, all_types[ti], true, 0);
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            size_t flips;
            double worst = chunk_vs_steps(fx.m, 9, steps[k], &flips);
            if (!(worst <= CHUNK_TOL) || flips)
                fail_msg("%s, chunk of %zu steps x 9 sequences: differs from step by step by %.3g (bound %g), "
                         "%zu membranes disagree on a spike",
                         qr_type_get(all_types[ti])->name, steps[k], worst, CHUNK_TOL, flips);
        }
        close_model(&fx);
    }
}

/* Perplexity and accuracy on a runner of qr_eval_rows rows (several steps per call) and on one of
 * `batch` rows (a step per call): the same predictions and correct count, NLLs within tol
 * relative. */
static void compare_evaluators(const qr_model *m, const int32_t *toks, size_t n, size_t window, size_t batch,
                               const qr_labelled *items, size_t n_items, size_t item_batch, double tol)
{
    size_t rows = qr_eval_rows(m, batch, window);
    assert_true(rows > batch); /* several steps per call */
    assert_int_equal(rows % batch, 0);
    qr_runner *wide = NULL, *narrow = NULL;
    qr_error err;
    assert_int_equal(qr_runner_new(m, NULL, rows, &wide, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, batch, &narrow, &err), QR_OK);
    qr_ppl_result pw, pn;
    assert_int_equal(qr_eval_perplexity(wide, toks, n, window, batch, NULL, NULL, &pw, &err), QR_OK);
    assert_int_equal(qr_eval_perplexity(narrow, toks, n, window, batch, NULL, NULL, &pn, &err), QR_OK);
    assert_int_equal(pw.predictions, pn.predictions);
    assert_int_equal(pw.predictions, n - (n + window - 1) / window);
    if (!(fabs(pw.nll_sum - pn.nll_sum) <= tol * fabs(pn.nll_sum)))
        fail_msg("chunked NLL %.9g, step by step %.9g (bound %g relative)", pw.nll_sum, pn.nll_sum, tol);
    qr_acc_result aw, an;
    assert_int_equal(qr_eval_accuracy(wide, items, n_items, item_batch, NULL, NULL, &aw, &err), QR_OK);
    assert_int_equal(qr_eval_accuracy(narrow, items, n_items, item_batch, NULL, NULL, &an, &err), QR_OK);
    assert_int_equal(aw.correct, an.correct);
    if (!(fabs(aw.nll_mean - an.nll_mean) <= tol * fabs(an.nll_mean) + 1e-9))
        fail_msg("chunked classifier NLL %.9g, step by step %.9g", aw.nll_mean, an.nll_mean);
    qr_runner_free(wide);
    qr_runner_free(narrow);
}

/* A quantized spiking model where every call has more than 8 rows on both sides (the batched
 * path throughout): equal to rounding. Then ragged windows and items of unequal length on an f32
 * model without spikes, where the step-by-step side also decodes the last few rows. */
static void test_eval_chunked_equals_unchunked(void **state)
{
    (void)state;
    int32_t toks[1152];
    for (size_t i = 0; i < 1152; i++)
        toks[i] = token_at(i % 5, i, 96);
    qr_labelled even[18], ragged[20];
    for (size_t i = 0; i < 18; i++)
        even[i] = (qr_labelled){toks + i * 50, 40, (int)(i % 3)};
    for (size_t i = 0; i < 20; i++)
        ragged[i] = (qr_labelled){toks + i * 13, 5 + i * 3, (int)(i % 3)};
    model_fixture fx;
    open_model(&fx, QR_TYPE_Q4_0, true, 3);
    compare_evaluators(fx.m, toks, 1152, 64, 9, even, 18, 9, 1e-6);
    close_model(&fx);
    open_model(&fx, QR_TYPE_F32, false, 3);
    compare_evaluators(fx.m, toks, 700, 64, 9, ragged, 20, 6, 1e-5);
    close_model(&fx);
}

/* A runner with a 2-thread pool splits a large sequence-major call into parts that run at once;
 * the logits and states equal those of a runner without a pool. A step-major call (a state's rows
 * not consecutive) must not be split, and still be right. */
static void test_split_between_threads(void **state)
{
    (void)state;
    model_fixture fx;
    open_model(&fx, QR_TYPE_Q4_1, true, 0);
    const qr_model *m = fx.m;
    enum { S = 9, T = 8, N = S * T };
    qr_pool *pool = NULL;
    qr_runner *split = NULL, *plain = NULL;
    qr_error err;
    assert_int_equal(qr_pool_new(2, &pool, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, pool, N, &split, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, N, &plain, &err), QR_OK);
    for (int layout = 0; layout < 2; layout++) { /* 0: sequence-major, 1: step-major */
        qr_state *a[S], *b[S], *ra[N], *rb[N];
        int32_t toks[N];
        for (size_t s = 0; s < S; s++) {
            assert_int_equal(qr_state_new(m, &a[s], &err), QR_OK);
            assert_int_equal(qr_state_new(m, &b[s], &err), QR_OK);
        }
        for (size_t s = 0; s < S; s++)
            for (size_t t = 0; t < T; t++) {
                size_t row = layout == 0 ? s * T + t : t * S + s;
                ra[row] = a[s];
                rb[row] = b[s];
                toks[row] = token_at(s, t, m->vocab);
            }
        float *la = malloc(N * m->vocab * sizeof *la), *lb = malloc(N * m->vocab * sizeof *lb);
        uint64_t before = qr_runner_split_calls(split);
        assert_int_equal(qr_forward(split, ra, toks, N, la, NULL, &err), QR_OK);
        assert_int_equal(qr_forward(plain, rb, toks, N, lb, NULL, &err), QR_OK);
        assert_int_equal(qr_runner_split_calls(split) - before, layout == 0 ? 1 : 0);
        double worst = 0;
        for (size_t i = 0; i < (size_t)N * m->vocab; i++)
            worst = fmax(worst, fabs((double)la[i] - lb[i]));
        for (size_t s = 0; s < S; s++)
            for (size_t i = 0; i < a[s]->n_layer * a[s]->layer_floats; i++)
                worst = fmax(worst, fabs((double)a[s]->data[i] - b[s]->data[i]));
        if (!(worst <= 1e-6))
            fail_msg("%s rows: the split runner differs from the plain one by %g",
                     layout == 0 ? "sequence-major" : "step-major", worst);
        for (size_t s = 0; s < S; s++) {
            qr_state_free(a[s]);
            qr_state_free(b[s]);
        }
        free(la);
        free(lb);
    }
    qr_runner_free(split);
    qr_runner_free(plain);
    qr_pool_free(pool);
    close_model(&fx);
}

/* The staged pass against qr_forward on the same rows: bit-identical, with and without a pool. */
static void test_stages_equal_forward(void **state)
{
    (void)state;
    model_fixture fx;
    open_model(&fx, QR_TYPE_Q4_1, true, 0);
    const qr_model *m = fx.m;
    enum { S = 9, T = 8, N = S * T };
    qr_pool *pool = NULL;
    qr_error err;
    assert_int_equal(qr_pool_new(2, &pool, &err), QR_OK);
    for (int threaded = 0; threaded < 2; threaded++) {
        qr_runner *r = NULL;
        assert_int_equal(qr_runner_new(m, threaded ? pool : NULL, N, &r, &err), QR_OK);
        qr_state *a[S], *b[S], *ra[N], *rb[N];
        int32_t toks[N];
        for (size_t s = 0; s < S; s++) {
            assert_int_equal(qr_state_new(m, &a[s], &err), QR_OK);
            assert_int_equal(qr_state_new(m, &b[s], &err), QR_OK);
            for (size_t t = 0; t < T; t++) {
                ra[s * T + t] = a[s];
                rb[s * T + t] = b[s];
                toks[s * T + t] = token_at(s, t, m->vocab);
            }
        }
        float *la = malloc(N * m->vocab * sizeof *la), *lb = malloc(N * m->vocab * sizeof *lb);
        float *fa = malloc(N * m->d * sizeof *fa), *fb = malloc(N * m->d * sizeof *fb);
        float *x = malloc(N * m->d * sizeof *x);
        assert_int_equal(qr_forward(r, ra, toks, N, la, fa, &err), QR_OK);
        uint64_t before = qr_runner_split_calls(r);
        assert_int_equal(qr_forward_embed(r, toks, N, x, &err), QR_OK);
        assert_int_equal(qr_forward_layers(r, rb, x, N, 0, 1, &err), QR_OK);
        assert_int_equal(qr_forward_layers(r, rb, x, N, 1, m->n_layer, &err), QR_OK);
        assert_int_equal(qr_forward_output(r, x, N, lb, fb, &err), QR_OK);
        assert_int_equal(qr_runner_split_calls(r) - before, threaded ? 4 : 0);
        assert_memory_equal(la, lb, N * m->vocab * sizeof *la);
        assert_memory_equal(fa, fb, N * m->d * sizeof *fa);
        for (size_t s = 0; s < S; s++) {
            assert_memory_equal(a[s]->data, b[s]->data, a[s]->n_layer * a[s]->layer_floats * sizeof *a[s]->data);
            qr_state_free(a[s]);
            qr_state_free(b[s]);
        }
        assert_int_equal(qr_forward_layers(r, rb, x, N, 1, m->n_layer + 1, &err), QR_ERR_INVALID);
        free(la);
        free(lb);
        free(fa);
        free(fb);
        free(x);
        qr_runner_free(r);
    }
    qr_pool_free(pool);
    close_model(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_match_decode),
        cmocka_unit_test(test_chunk_equals_steps),
        cmocka_unit_test(test_eval_chunked_equals_unchunked),
        cmocka_unit_test(test_split_between_threads),
        cmocka_unit_test(test_stages_equal_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
