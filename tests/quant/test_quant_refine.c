/* test_quant_refine.c: refinement (quant/refine.h) on a small model. What it promises: every
 * matrix the text multiplies is quantized again and the setting measures differently; the
 * refined copies stand for that setting alone (another setting, and the same one once they are
 * dropped, measure as before, to the bit); the variant written while they stand is what was
 * measured (and before, the plain one); a setting without a matrix at 4 or fewer bits is left alone; and it refuses to run
 * without error-compensation factors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "measure.h"
#include "model_file.h"
#include "refine.h"
#include "setting.h"
#include "synthetic_model.h"
#include "tensor_types.h"

#define N_TOKENS 1200

typedef struct {
    char path[64];
    qr_model_file *file;
    qq_costs costs;
    int32_t tokens[N_TOKENS];
    qq_split calib, other;
    qq_measurer *q;
    uint32_t *types;
} fixture;

/* A 2-layer model, a measurer on the first 256 tokens, and (gather) its Hessians on the last 512. */
static void setup(fixture *fx, bool gather)
{
    snprintf(fx->path, sizeof fx->path, "/tmp/qslm-refine-XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {2, 64, 256, 96, QR_TYPE_F32, 21};
    shape.n_classes = 2;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, fx->path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(fx->path, &fx->file, &err), QR_OK);
    assert_int_equal(qq_costs_new(fx->file, 4, &fx->costs, &err), QR_OK);
    for (size_t i = 0; i < N_TOKENS; i++)
        fx->tokens[i] = (int32_t)((i * 37 + i / 7 + (i * i) % 11) % 96);
    fx->calib = (qq_split){fx->tokens, 256, NULL, 0};
    fx->other = (qq_split){fx->tokens + 256, 300, NULL, 0};
    assert_int_equal(qq_measurer_new(fx->file, NULL, &fx->calib, 64, 4, &fx->q, &err), QR_OK);
    if (gather)
        assert_int_equal(qq_measurer_gather_hessians(fx->q, fx->tokens + N_TOKENS - 512, 512, 0.01, NULL, &err),
                         QR_OK);
    fx->types = malloc(fx->costs.n_tensors * sizeof *fx->types);
}

static void teardown(fixture *fx)
{
    qq_measurer_free(fx->q);
    free(fx->types);
    qq_costs_free(&fx->costs);
    qr_model_file_close(fx->file);
    unlink(fx->path);
}

static void fill_all(fixture *fx, uint32_t type)
{
    for (size_t i = 0; i < fx->costs.n_tensors; i++)
        fx->types[i] = fx->costs.is_matrix[i] ? type : QR_TYPE_F32;
}

/* The matrices a perplexity run multiplies: all but the embedding (a lookup) and the classifier. */
static size_t lm_matrices(const fixture *fx)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->costs.n_tensors; i++) {
        const char *name = qr_model_file_tensor(fx->file, i)->name;
        n += fx->costs.is_matrix[i] && strcmp(name, "emb.weight") != 0 && strncmp(name, "cls", 3) != 0;
    }
    return n;
}

static void test_refined_setting(void **state)
{
    (void)state;
    fixture fx;
    setup(&fx, true);
    qr_error err;
    uint32_t *other = malloc(fx.costs.n_tensors * sizeof *other);
    for (size_t i = 0; i < fx.costs.n_tensors; i++)
        other[i] = fx.costs.is_matrix[i] ? QR_TYPE_Q3_S : QR_TYPE_F32;
    fill_all(&fx, QR_TYPE_Q2_S);
    qq_metrics plain, plain_other, refined, again, again_other;
    assert_int_equal(qq_measure_setting(fx.q, fx.types, &fx.other, &plain, &err), QR_OK);
    assert_int_equal(qq_measure_setting(fx.q, other, &fx.other, &plain_other, &err), QR_OK);
    assert_true(qq_refine_applies(fx.q, fx.types));
    /* Before refinement, the written file is the plain setting: error-compensated throughout,
     * the embedding too (its factor comes from ln0, not from a product's inputs). */
    char out[80];
    qq_metrics file;
    snprintf(out, sizeof out, "%s.variant", fx.path);
    assert_int_equal(qq_measurer_write_setting(fx.q, fx.types, out, &err), QR_OK);
    assert_int_equal(qq_measure_file(fx.q, out, &fx.other, &file, &err), QR_OK);
    if (!(fabs(file.nll - plain.nll) <= 1e-9 * fabs(plain.nll)))
        fail_msg("plain: written %.12g, measured %.12g", file.nll, plain.nll);

    qq_refine_stats st;
    assert_int_equal(qq_refine_setting(fx.q, fx.types, &st, &err), QR_OK);
    assert_int_equal(st.matrices, lm_matrices(&fx));
    assert_true(st.passes >= 1);
    assert_true(qq_measurer_is_refined(fx.q, fx.types));
    assert_false(qq_measurer_is_refined(fx.q, other));
    assert_int_equal(qq_measure_setting(fx.q, fx.types, &fx.other, &refined, &err), QR_OK);
    if (refined.nll == plain.nll)
        fail_msg("the refined setting measures as the plain one (nll %.12g)", plain.nll);
    assert_int_equal(qq_measure_setting(fx.q, other, &fx.other, &again_other, &err), QR_OK);
    assert_true(again_other.nll == plain_other.nll);

    /* The variant written now is the refined setting. */
    assert_int_equal(qq_measurer_write_setting(fx.q, fx.types, out, &err), QR_OK);
    assert_int_equal(qq_measure_file(fx.q, out, &fx.other, &file, &err), QR_OK);
    if (!(fabs(file.nll - refined.nll) <= 1e-9 * fabs(refined.nll)))
        fail_msg("written %.12g, measured refined %.12g", file.nll, refined.nll);
    unlink(out);

    qq_measurer_drop_refined(fx.q);
    assert_false(qq_measurer_is_refined(fx.q, fx.types));
    assert_int_equal(qq_measure_setting(fx.q, fx.types, &fx.other, &again, &err), QR_OK);
    assert_true(again.nll == plain.nll);
    free(other);
    teardown(&fx);
}

/* Above 4 bits nothing is done; without the factors, a clear refusal. */
static void test_left_alone_and_refusal(void **state)
{
    (void)state;
    fixture fx;
    setup(&fx, true);
    qr_error err;
    fill_all(&fx, QR_TYPE_Q8_0);
    qq_refine_stats st;
    assert_false(qq_refine_applies(fx.q, fx.types));
    assert_int_equal(qq_refine_setting(fx.q, fx.types, &st, &err), QR_OK);
    assert_int_equal(st.matrices, 0);
    assert_false(qq_measurer_is_refined(fx.q, fx.types));
    teardown(&fx);

    setup(&fx, false);
    fill_all(&fx, QR_TYPE_Q2_S);
    assert_int_equal(qq_refine_setting(fx.q, fx.types, &st, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "--ec-tokens"));
    assert_false(qq_measurer_is_refined(fx.q, fx.types));
    teardown(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refined_setting),
        cmocka_unit_test(test_left_alone_and_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
