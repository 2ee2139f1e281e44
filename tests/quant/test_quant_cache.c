/* test_quant_cache.c: the measurer's quantized copies are bounded and remade right.
 *
 * With no room for copies beyond the setting in use, measuring every rung of the ladder in turn
 * keeps only the current setting's copies, and measuring the same settings again (on another
 * split object, so nothing is answered from the memo) remakes the freed copies and gives the
 * same numbers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "measure.h"
#include "model_file.h"
#include "setting.h"
#include "synthetic_model.h"
#include "tensor_types.h"

static void fill_all(uint32_t *types, const qq_costs *costs, uint32_t type)
{
    for (size_t i = 0; i < costs->n_tensors; i++)
        types[i] = costs->is_matrix[i] ? type : QR_TYPE_F32;
}

static void test_cache_bounded_and_remade(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/qslm-qcache-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {.n_layer = 2, .d = 64, .f = 256, .vocab = 96, .matrix_type = QR_TYPE_F32, .seed = 5};
    qr_error err;
    qr_model_file *file;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    qq_costs costs;
    assert_int_equal(qq_costs_new(file, 4, &costs, &err), QR_OK);
    int32_t tokens[300];
    for (size_t i = 0; i < 300; i++)
        tokens[i] = (int32_t)((i * 41 + i / 5) % 96);
    qq_split calib = {tokens, 128, NULL, 0, 0}, first = {tokens + 128, 172, NULL, 0, 64}, again = first;
    qq_measurer *q;
    assert_int_equal(qq_measurer_new(file, NULL, &calib, 64, 4, &q, &err), QR_OK);
    qq_measurer_set_cache_limit(q, 0);
    uint32_t *types = malloc(costs.n_tensors * sizeof *types);
    double nll[QQ_RUNGS];
    for (size_t r = 0; r < QQ_RUNGS; r++) {
        fill_all(types, &costs, qq_rung_type(r));
        qq_metrics m;
        assert_int_equal(qq_measure_setting(q, types, &first, &m, &err), QR_OK);
        nll[r] = m.nll;
        /* only this setting's copies are held: the bytes of its matrices (f32 holds none) */
        uint64_t held = qq_measurer_cache_bytes(q), want = 0;
        for (size_t i = 0; i < costs.n_tensors; i++)
            if (costs.is_matrix[i] && r > 0)
                want += costs.tensor_bytes[i * QQ_RUNGS + r];
        if (held != want)
            fail_msg("rung %zu: %llu bytes of copies held, the setting's matrices take %llu", r,
                     (unsigned long long)held, (unsigned long long)want);
    }
    for (size_t r = QQ_RUNGS; r-- > 0;) {
        fill_all(types, &costs, qq_rung_type(r));
        qq_metrics m;
        assert_int_equal(qq_measure_setting(q, types, &again, &m, &err), QR_OK);
        if (m.nll != nll[r])
            fail_msg("rung %zu remade: nll %.12g, first %.12g", r, m.nll, nll[r]);
    }
    free(types);
    qq_measurer_free(q);
    qq_costs_free(&costs);
    qr_model_file_close(file);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_bounded_and_remade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
