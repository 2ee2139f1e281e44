/* test_eval_threads.c: the perplexity evaluator scores a call's rows on the runner's pool, and
 * the sums do not depend on how many threads did it.
 *
 *   - scoring_same_at_any_thread_count: runners without a pool and with pools of 1 to 4 threads,
 *     each made for fewer rows than a split forward call takes (forward.h: 2 × QR_PART_MIN_ROWS),
 *     so the logits are the same and only the scoring is spread: nll_sum, hook_sum and every
 *     per-prediction hook value equal bit for bit; the hook saw each target position once, with
 *     qr_log_sum_exp of its logits, and the NLL is that minus the target's logit.
 *   - ppl_same_at_one_and_two_threads: runners of qr_eval_rows rows (what qslm-eval makes) with
 *     pools of 1 and 2 threads: each prediction whose logits are the same floats at both has
 *     the same NLL and hook value, and the sums are equal when all are (two threads also split
 *     the forward calls into parts, which BLAS may round differently: see the comment there). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "forward.h"
#include "linear.h"
#include "model.h"
#include "model_file.h"
#include "pool.h"
#include "synthetic_model.h"
#include "tensor_types.h"

enum { VOCAB = 301, N_TOKENS = 700, WINDOW = 64, BATCH = 5, STEPS = 12 };

typedef struct {
    char path[64];
    qr_model_file *file;
    qr_model *m;
    int32_t tokens[N_TOKENS];
} fixture;

/* A spiking f32 model with a vocabulary that is no multiple of 8 (the lanes' tails), and a text. */
static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->path, sizeof fx->path, "/tmp/qslm-evthreads-XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {.n_layer = 2, .d = 64, .f = 256, .vocab = VOCAB, .matrix_type = QR_TYPE_F32, .seed = 23};
    qr_error err;
    if (synthetic_model_write(&shape, fx->path, &err) || qr_model_file_open(fx->path, &fx->file, &err) ||
        qr_model_bind(fx->file, &fx->m, &err))
        fail_msg("%s", err.msg);
    for (size_t i = 0; i < N_TOKENS; i++)
        fx->tokens[i] = (int32_t)((i * 37 + (i / 3) * 11 + (i * i) % 13) % VOCAB);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    qr_model_free(fx->m);
    qr_model_file_close(fx->file);
    unlink(fx->path);
    free(fx);
    return 0;
}

/* What the hook saw, per target position (each written only by its own row). */
typedef struct {
    double value[N_TOKENS];
    double nll[N_TOKENS];
    int seen[N_TOKENS];
    int lse_exact[N_TOKENS];
    uint64_t hash[N_TOKENS];
    const int32_t *tokens;
} hook_record;

/* FNV-1a over a row's logits: whether two runs gave a prediction the same floats. */
static uint64_t row_hash(const float *logits, size_t n)
{
    const unsigned char *p = (const unsigned char *)logits;
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

/* A value depending on the whole row and its log-sum-exp, like the measurer's KL. */
static double record_hook(void *ctx, size_t pos, const float *logits, double lse)
{
    hook_record *h = ctx;
    double v = 0;
    for (size_t i = 0; i < VOCAB; i++)
        v += ((double)logits[i] - lse) * (double)(i % 7);
    h->value[pos] = v;
    h->nll[pos] = lse - logits[h->tokens[pos]];
    h->seen[pos]++;
    h->hash[pos] = row_hash(logits, VOCAB);
    double again = qr_log_sum_exp(logits, VOCAB);
    h->lse_exact[pos] = memcmp(&again, &lse, sizeof lse) == 0;
    return v;
}

/* The evaluation on a runner over a pool of `threads` (0: no pool) made for `rows` rows. */
static void evaluate(const fixture *fx, int threads, size_t rows, qr_ppl_result *res, hook_record *h)
{
    qr_pool *pool = NULL;
    qr_runner *r = NULL;
    qr_error err;
    if (threads)
        assert_int_equal(qr_pool_new(threads, &pool, &err), QR_OK);
    assert_int_equal(qr_runner_new(fx->m, pool, rows, &r, &err), QR_OK);
    assert_true(qr_runner_pool(r) == pool);
    memset(h, 0, sizeof *h);
    h->tokens = fx->tokens;
    if (qr_eval_perplexity_with(r, fx->tokens, N_TOKENS, WINDOW, BATCH, record_hook, h, NULL, NULL, res, &err))
        fail_msg("%d threads: %s", threads, err.msg);
    qr_runner_free(r);
    qr_pool_free(pool);
}

static void test_scoring_same_at_any_thread_count(void **state)
{
    const fixture *fx = *state;
    size_t rows = BATCH * STEPS;
    assert_true(rows < 2 * QR_PART_MIN_ROWS); /* no forward call is split */
    static hook_record serial, spread;
    qr_ppl_result want, got;
    evaluate(fx, 0, rows, &want, &serial);
    size_t windows = (N_TOKENS + WINDOW - 1) / WINDOW;
    assert_int_equal(want.predictions, N_TOKENS - windows);
    assert_true(want.hook_sum != 0.0);
    for (size_t pos = 0; pos < N_TOKENS; pos++) {
        int target = pos % WINDOW != 0; /* each window's first token is only an input */
        if (serial.seen[pos] != target)
            fail_msg("position %zu scored %d times, want %d", pos, serial.seen[pos], target);
        if (target && !serial.lse_exact[pos])
            fail_msg("position %zu: the hook's log-sum-exp is not qr_log_sum_exp of its logits", pos);
    }
    double nll = 0;
    for (size_t pos = 0; pos < N_TOKENS; pos++)
        nll += serial.nll[pos];
    if (!(fabs(nll - want.nll_sum) <= 1e-12 * fabs(want.nll_sum)))
        fail_msg("nll_sum %.17g, the hook's NLLs add up to %.17g", want.nll_sum, nll);
    for (int threads = 1; threads <= 4; threads++) {
        evaluate(fx, threads, rows, &got, &spread);
        if (memcmp(&got.nll_sum, &want.nll_sum, sizeof(double)) || memcmp(&got.hook_sum, &want.hook_sum, sizeof(double)))
            fail_msg("%d threads: nll_sum %a, hook_sum %a; on the caller alone %a, %a", threads, got.nll_sum,
                     got.hook_sum, want.nll_sum, want.hook_sum);
        assert_int_equal(got.predictions, want.predictions);
        assert_memory_equal(spread.value, serial.value, sizeof serial.value);
        assert_memory_equal(spread.seen, serial.seen, sizeof serial.seen);
    }
}

/* Two threads also split each large forward call into parts, and whether a part's logits are the
 * unsplit call's floats is up to BLAS (with OpenBLAS's Haswell and Prescott kernels, a product's
 * rows can depend on how many rows it has; test_forward_rows bounds the difference at 1e-6).
 * So: every prediction whose logits came out the same at 1 and 2 threads has the same NLL and
 * hook value, and when all did, the sums are equal bit for bit. */
static void test_ppl_same_at_one_and_two_threads(void **state)
{
    const fixture *fx = *state;
    size_t rows = qr_eval_rows(fx->m, BATCH, WINDOW);
    assert_true(rows >= 2 * QR_PART_MIN_ROWS);
    static hook_record one, two;
    qr_ppl_result a, b;
    evaluate(fx, 1, rows, &a, &one);
    evaluate(fx, 2, rows, &b, &two);
    size_t same_logits = 0, scored = 0;
    for (size_t pos = 0; pos < N_TOKENS; pos++) {
        if (!one.seen[pos])
            continue;
        scored++;
        if (one.hash[pos] != two.hash[pos])
            continue;
        same_logits++;
        if (memcmp(&one.value[pos], &two.value[pos], sizeof(double)) || memcmp(&one.nll[pos], &two.nll[pos], sizeof(double)))
            fail_msg("position %zu: the same logits at 1 and 2 threads, scored differently", pos);
    }
    if (same_logits == scored &&
        (memcmp(&a.nll_sum, &b.nll_sum, sizeof(double)) || memcmp(&a.hook_sum, &b.hook_sum, sizeof(double))))
        fail_msg("nll_sum %a (1 thread), %a (2 threads); hook_sum %a, %a", a.nll_sum, b.nll_sum, a.hook_sum,
                 b.hook_sum);
    print_message("1 and 2 threads: %zu of %zu predictions with the same logits; nll_sum %s\n", same_logits,
                  scored, memcmp(&a.nll_sum, &b.nll_sum, sizeof(double)) ? "differs" : "equal");
}

int main(int argc, char **argv)
{
    (void)argc;
    qr_blas_use_capable_core(argv); /* the kernels the tools run, so the second test sees theirs */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scoring_same_at_any_thread_count),
        cmocka_unit_test(test_ppl_same_at_one_and_two_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
