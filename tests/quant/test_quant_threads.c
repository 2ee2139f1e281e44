/* test_quant_threads.c: the measurer's numbers do not depend on its pool's thread count.
 *
 * The evaluator scores each call's predictions on the pool, the measurer's hook computing the
 * KL divergence of each from the kept reference (or, on the reference run, filling that
 * prediction's row of it), and the sums are added in row order. Measurers over no pool and over
 * pools of 1 to 3 threads, on a calibration split whose forward calls stay below the rows a
 * runner splits between threads (3 windows of 16 tokens: at most 45 rows), so the logits are the
 * same floats everywhere: the KL and NLL of each setting must be equal bit for bit, and the
 * reference's KL exactly 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "measure.h"
#include "model_file.h"
#include "setting.h"
#include "synthetic_model.h"
#include "tensor_types.h"

enum { VOCAB = 301, N_TOKENS = 400, CALIB_TOKENS = 240, WINDOW = 16, BATCH = 3 };

static const uint32_t settings[] = {QR_TYPE_Q8_0, QR_TYPE_Q4_0, QR_TYPE_Q2_1};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

/* Per setting: the calibration KL and NLL, and the NLL on the rest of the text (no hook). */
typedef struct {
    double kl[N_SETTINGS], nll[N_SETTINGS], other_nll[N_SETTINGS];
    double ref_kl;
} measured;

static void fill_all(uint32_t *types, const qq_costs *costs, uint32_t type)
{
    for (size_t i = 0; i < costs->n_tensors; i++)
        types[i] = costs->is_matrix[i] ? type : QR_TYPE_F32;
}

/* Every setting, measured by a measurer over a pool of `threads` (0: none). */
static void measure_all(const qr_model_file *file, const qq_costs *costs, const int32_t *tokens, int threads,
                        measured *out)
{
    qr_error err;
    qr_pool *pool = NULL;
    if (threads)
        assert_int_equal(qr_pool_new(threads, &pool, &err), QR_OK);
    qq_split calib = {tokens, CALIB_TOKENS, NULL, 0, WINDOW};
    qq_split other = {tokens + CALIB_TOKENS, N_TOKENS - CALIB_TOKENS, NULL, 0, WINDOW};
    qq_measurer *q;
    if (qq_measurer_new(file, pool, &calib, WINDOW, BATCH, &q, &err))
        fail_msg("%d threads: %s", threads, err.msg);
    out->ref_kl = qq_measurer_reference(q)->kl;
    uint32_t *types = malloc(costs->n_tensors * sizeof *types);
    for (size_t s = 0; s < N_SETTINGS; s++) {
        fill_all(types, costs, settings[s]);
        qq_metrics m;
        if (qq_measure_setting(q, types, NULL, &m, &err) || !m.lm)
            fail_msg("%d threads, %s: %s", threads, qr_type_get(settings[s])->name, err.msg);
        out->kl[s] = m.kl;
        out->nll[s] = m.nll;
        assert_int_equal(qq_measure_setting(q, types, &other, &m, &err), QR_OK);
        out->other_nll[s] = m.nll;
    }
    free(types);
    qq_measurer_free(q);
    qr_pool_free(pool);
}

static void test_kl_same_at_any_thread_count(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/qslm-qthreads-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {.n_layer = 2, .d = 64, .f = 256, .vocab = VOCAB, .matrix_type = QR_TYPE_F32, .seed = 7};
    qr_error err;
    qr_model_file *file;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    qq_costs costs;
    assert_int_equal(qq_costs_new(file, 4, &costs, &err), QR_OK);
    int32_t tokens[N_TOKENS];
    for (size_t i = 0; i < N_TOKENS; i++)
        tokens[i] = (int32_t)((i * 53 + i / 7 + (i * i) % 11) % VOCAB);
    assert_true(BATCH * (WINDOW - 1) < 2 * QR_PART_MIN_ROWS); /* no forward call is split */
    measured want, got;
    measure_all(file, &costs, tokens, 0, &want);
    assert_true(want.ref_kl == 0.0);
    for (size_t s = 0; s < N_SETTINGS; s++)
        if (!(want.kl[s] > 0.0))
            fail_msg("%s: KL %g from f32, expected above 0", qr_type_get(settings[s])->name, want.kl[s]);
    for (int threads = 1; threads <= 3; threads++) {
        measure_all(file, &costs, tokens, threads, &got);
        assert_true(got.ref_kl == 0.0);
        for (size_t s = 0; s < N_SETTINGS; s++)
            if (memcmp(&got.kl[s], &want.kl[s], sizeof(double)) || memcmp(&got.nll[s], &want.nll[s], sizeof(double)) ||
                memcmp(&got.other_nll[s], &want.other_nll[s], sizeof(double)))
                fail_msg("%s at %d threads: KL %a, NLL %a, %a; without a pool %a, %a, %a",
                         qr_type_get(settings[s])->name, threads, got.kl[s], got.nll[s], got.other_nll[s], want.kl[s],
                         want.nll[s], want.other_nll[s]);
    }
    qq_costs_free(&costs);
    qr_model_file_close(file);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kl_same_at_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
