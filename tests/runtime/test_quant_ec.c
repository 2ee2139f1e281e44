/* test_quant_ec.c: error-compensating rounding (runtime/quantize_ec.c). What it promises: the
 * same blocks as the plain quantizer (so every kernel reads them), a lower output error than
 * rounding each weight on its own when the inputs are correlated, no change where there is
 * nothing to compensate (uncorrelated inputs), the same bytes whatever the thread count, the
 * requantizer using it when a Hessian is given, and clean refusals. The drift target
 * (qr_ec_drift_target): W itself when nothing drifted or at mix 0, a smaller output error
 * against the f32 outputs than W's when the inputs drifted, and refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "pool.h"
#include "quantize.h"
#include "tensor_types.h"

#define ROWS 48
#define COLS 256
#define SAMPLES 1024

static const uint32_t ec_types[] = {QR_TYPE_Q2_S, QR_TYPE_Q2_0, QR_TYPE_Q2_1, QR_TYPE_Q3_S, QR_TYPE_Q3_0,
                                    QR_TYPE_Q3_1, QR_TYPE_Q4_S, QR_TYPE_Q4_0, QR_TYPE_Q4_1, QR_TYPE_Q8_0};

/* A small deterministic generator (xorshift64*), and normal deviates by Box-Muller. */
static double uniform01(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static double normal(uint64_t *s)
{
    double u = uniform01(s), v = uniform01(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* Inputs whose columns are correlated, as activations are: each is a mix of a few shared
 * factors and its own noise, with powers that vary by column. */
static float *correlated_inputs(uint64_t seed)
{
    uint64_t s = seed;
    float *x = malloc((size_t)SAMPLES * COLS * sizeof *x);
    double f[8], mix[COLS][8], power[COLS];
    for (int c = 0; c < COLS; c++) {
        for (int k = 0; k < 8; k++)
            mix[c][k] = normal(&s);
        power[c] = 0.2 + 2.0 * uniform01(&s);
    }
    for (int n = 0; n < SAMPLES; n++) {
        for (int k = 0; k < 8; k++)
            f[k] = normal(&s);
        for (int c = 0; c < COLS; c++) {
            double v = 0.3 * normal(&s);
            for (int k = 0; k < 8; k++)
                v += mix[c][k] * f[k] * 0.35;
            x[(size_t)n * COLS + c] = (float)(v * power[c]);
        }
    }
    return x;
}

static float *random_weights(uint64_t seed)
{
    uint64_t s = seed;
    float *w = malloc((size_t)ROWS * COLS * sizeof *w);
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
        w[i] = (float)(0.05 * normal(&s));
    return w;
}

/* H = XᵀX / n, and the mean square per column (the plain quantizer's importance). */
static void second_moments(const float *x, float *h, float *imp)
{
    for (int a = 0; a < COLS; a++) {
        for (int b = a; b < COLS; b++) {
            double sum = 0.0;
            for (int n = 0; n < SAMPLES; n++)
                sum += (double)x[(size_t)n * COLS + a] * x[(size_t)n * COLS + b];
            h[a * COLS + b] = h[b * COLS + a] = (float)(sum / SAMPLES);
        }
        imp[a] = h[a * COLS + a];
    }
}

/* A factor in storage of its own (the caller owns a factor's floats). */
typedef struct {
    qr_ec_factor f;
    float *u, *diag;
} owned_factor;

static qr_status factor_new(const float *h, size_t n, double damp, owned_factor *o)
{
    o->u = malloc((n ? n * n : 1) * sizeof *o->u);
    o->diag = malloc((n ? n : 1) * sizeof *o->diag);
    o->f = (qr_ec_factor){n, o->u, o->diag};
    return qr_ec_factor_compute(h, n, damp, o->u, o->diag);
}

static void factor_free(owned_factor *o)
{
    free(o->u);
    free(o->diag);
}

/* Σ over samples and rows of ((W − Ŵ)·x)²: the output error the method minimises. */
static double output_error(const float *w, const void *q, uint32_t type, const float *x)
{
    float *deq = malloc((size_t)ROWS * COLS * sizeof *deq);
    const qr_kernel_ops *ops = qr_kernels_ref(type);
    uint64_t row_bytes;
    assert_true(qr_type_bytes(type, COLS, &row_bytes));
    for (int r = 0; r < ROWS; r++)
        ops->to_float((const uint8_t *)q + r * row_bytes, deq + (size_t)r * COLS, COLS);
    double err = 0.0;
    for (int n = 0; n < SAMPLES; n++)
        for (int r = 0; r < ROWS; r++) {
            double e = 0.0;
            for (int c = 0; c < COLS; c++)
                e += ((double)w[(size_t)r * COLS + c] - deq[(size_t)r * COLS + c]) * x[(size_t)n * COLS + c];
            err += e * e;
        }
    free(deq);
    return err;
}

/* On correlated inputs every type's output error falls, and at 2–4 bits by a clear margin. */
static void test_lower_output_error(void **state)
{
    (void)state;
    float *x = correlated_inputs(7), *w = random_weights(11);
    float *h = malloc(COLS * COLS * sizeof *h), imp[COLS];
    second_moments(x, h, imp);
    owned_factor f;
    assert_int_equal(factor_new(h, COLS, 0.01, &f), QR_OK);
    print_message("type   plain (importance)   error-compensated   ratio\n");
    for (size_t i = 0; i < sizeof ec_types / sizeof ec_types[0]; i++) {
        uint32_t t = ec_types[i];
        uint64_t bytes;
        assert_true(qr_type_bytes(t, (uint64_t)ROWS * COLS, &bytes));
        void *plain = malloc(bytes), *ec = malloc(bytes);
        assert_int_equal(qr_quantize_tensor(t, w, ROWS, COLS, imp, plain, NULL), QR_OK);
        assert_int_equal(qr_quantize_tensor_ec(t, w, ROWS, COLS, &f.f, ec, NULL), QR_OK);
        double ep = output_error(w, plain, t, x), ee = output_error(w, ec, t, x);
        print_message("%-6s %.6g %.6g %.3f\n", qr_type_get(t)->name, ep, ee, ee / ep);
        assert_true(ee < ep);
        if (qr_type_get(t)->bits <= 4)
            assert_true(ee < 0.8 * ep);
        free(plain);
        free(ec);
    }
    factor_free(&f);
    free(h);
    free(x);
    free(w);
}

/* With uncorrelated inputs of equal power (H a multiple of I) there is nothing to compensate:
 * the blocks are the plain quantizer's, byte for byte, given the same fit weights (H's
 * diagonal with its 0.1% floor). */
static void test_identity_is_plain(void **state)
{
    (void)state;
    float *w = random_weights(3), *h = calloc(COLS * COLS, sizeof *h), imp[COLS];
    for (int c = 0; c < COLS; c++) {
        h[c * COLS + c] = 4.0f;
        imp[c] = (float)(4.0 + 1e-3 * 4.0 + 1e-12);
    }
    owned_factor f;
    assert_int_equal(factor_new(h, COLS, 0.01, &f), QR_OK);
    for (size_t i = 0; i < sizeof ec_types / sizeof ec_types[0]; i++) {
        uint32_t t = ec_types[i];
        uint64_t bytes;
        assert_true(qr_type_bytes(t, (uint64_t)ROWS * COLS, &bytes));
        uint8_t *plain = malloc(bytes), *ec = malloc(bytes);
        assert_int_equal(qr_quantize_tensor(t, w, ROWS, COLS, imp, plain, NULL), QR_OK);
        assert_int_equal(qr_quantize_tensor_ec(t, w, ROWS, COLS, &f.f, ec, NULL), QR_OK);
        assert_memory_equal(plain, ec, bytes);
        free(plain);
        free(ec);
    }
    factor_free(&f);
    free(h);
    free(w);
}

/* Rows are independent, so the pool's slicing does not change a byte. */
static void test_threads_same_bytes(void **state)
{
    (void)state;
    float *x = correlated_inputs(5), *w = random_weights(9);
    float *h = malloc(COLS * COLS * sizeof *h), imp[COLS];
    second_moments(x, h, imp);
    owned_factor f;
    assert_int_equal(factor_new(h, COLS, 0.01, &f), QR_OK);
    qr_pool *pool;
    qr_error err;
    assert_int_equal(qr_pool_new(2, &pool, &err), QR_OK);
    uint64_t bytes;
    assert_true(qr_type_bytes(QR_TYPE_Q3_S, (uint64_t)ROWS * COLS, &bytes));
    void *one = malloc(bytes), *two = malloc(bytes);
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_Q3_S, w, ROWS, COLS, &f.f, one, NULL), QR_OK);
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_Q3_S, w, ROWS, COLS, &f.f, two, pool), QR_OK);
    assert_memory_equal(one, two, bytes);
    free(one);
    free(two);
    qr_pool_free(pool);
    factor_free(&f);
    free(h);
    free(x);
    free(w);
}

/* Bad input is refused, never quantized into garbage. */
static void test_refusals(void **state)
{
    (void)state;
    float h[64 * 64] = {0}, w[2 * 64] = {0};
    uint8_t dst[2 * 64];
    owned_factor f;
    for (int c = 0; c < 64; c++)
        h[c * 64 + c] = 1.0f;
    h[5 * 64 + 5] = -1.0f;
    assert_int_equal(factor_new(h, 64, 0.01, &f), QR_ERR_INVALID); /* negative power */
    factor_free(&f);
    h[5 * 64 + 5] = NAN;
    assert_int_equal(factor_new(h, 64, 0.01, &f), QR_ERR_INVALID);
    factor_free(&f);
    h[5 * 64 + 5] = 1.0f;
    assert_int_equal(factor_new(h, 64, -1.0, &f), QR_ERR_INVALID);
    factor_free(&f);
    assert_int_equal(factor_new(h, 0, 0.01, &f), QR_ERR_INVALID);
    factor_free(&f);
    /* Singular (a column never active) is dampened, not refused. */
    h[5 * 64 + 5] = 0.0f;
    assert_int_equal(factor_new(h, 64, 0.0, &f), QR_OK);
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_F32, w, 2, 64, &f.f, dst, NULL), QR_ERR_INVALID);
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_F16, w, 2, 64, &f.f, dst, NULL), QR_ERR_INVALID);
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_Q4_0, w, 4, 32, &f.f, dst, NULL), QR_ERR_INVALID); /* size */
    w[3] = INFINITY;
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_Q4_0, w, 2, 64, &f.f, dst, NULL), QR_ERR_INVALID);
    w[3] = 0.0f;
    assert_int_equal(qr_quantize_tensor_ec(QR_TYPE_Q2_S, w, 2, 64, &f.f, dst, NULL), QR_OK); /* zeros */
    float back[2 * 64];
    qr_kernels_ref(QR_TYPE_Q2_S)->to_float(dst, back, 2 * 64);
    for (int i = 0; i < 2 * 64; i++)
        assert_true(back[i] == 0.0f);
    factor_free(&f);
}

/* Σ over samples and rows of (W·x_f − T·x_q)²: how far the matrix T, fed the drifted inputs,
 * lands from what W gave on the original ones. */
static double drift_error(const float *w, const float *t, const float *xf, const float *xq)
{
    double err = 0.0;
    for (int n = 0; n < SAMPLES; n++)
        for (int r = 0; r < ROWS; r++) {
            double e = 0.0;
            for (int c = 0; c < COLS; c++)
                e += (double)w[(size_t)r * COLS + c] * xf[(size_t)n * COLS + c] -
                     (double)t[(size_t)r * COLS + c] * xq[(size_t)n * COLS + c];
            err += e * e;
        }
    return err;
}

/* C = X_fᵀX_q / n. */
static void cross_moments(const float *xf, const float *xq, float *c)
{
    for (int a = 0; a < COLS; a++)
        for (int b = 0; b < COLS; b++) {
            double sum = 0.0;
            for (int n = 0; n < SAMPLES; n++)
                sum += (double)xf[(size_t)n * COLS + a] * xq[(size_t)n * COLS + b];
            c[a * COLS + b] = (float)(sum / SAMPLES);
        }
}

/* No drift (C = H): the target is W, up to the solve's rounding; at mix 0 it is W exactly. Drift
 * (each input column scaled and mixed with its neighbour, plus noise, as a quantized layer's
 * outputs move): the full fit's error against W·x_f is well under W's own, half-way lies
 * between, and the ridge keeps a column never seen at W. */
static void test_drift_target(void **state)
{
    (void)state;
    float *xf = correlated_inputs(11), *w = random_weights(12);
    float *xq = malloc((size_t)SAMPLES * COLS * sizeof *xq), *h = malloc(COLS * COLS * sizeof *h);
    float *c = malloc(COLS * COLS * sizeof *c), *imp = malloc(COLS * sizeof *imp);
    float *t = malloc((size_t)ROWS * COLS * sizeof *t);
    second_moments(xf, h, imp);
    assert_int_equal(qr_ec_drift_target(w, ROWS, COLS, h, h, 0.01, 1.0, t), QR_OK);
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
        if (fabsf(t[i] - w[i]) > 1e-4f)
            fail_msg("no drift: target[%zu] %g, W %g", i, (double)t[i], (double)w[i]);
    uint64_t s = 13;
    for (int n = 0; n < SAMPLES; n++)
        for (int k = 0; k < COLS; k++) {
            const float *row = xf + (size_t)n * COLS;
            xq[(size_t)n * COLS + k] =
                (float)(0.8 * row[k] + 0.25 * row[(k + 1) % COLS] + 0.05 * normal(&s) * (k == 7 ? 0.0 : 1.0));
        }
    for (int n = 0; n < SAMPLES; n++) /* column 7 never active in the drifted run */
        xq[(size_t)n * COLS + 7] = 0.0f;
    second_moments(xq, h, imp);
    cross_moments(xf, xq, c);
    assert_int_equal(qr_ec_drift_target(w, ROWS, COLS, h, c, 0.01, 0.0, t), QR_OK);
    assert_memory_equal(t, w, (size_t)ROWS * COLS * sizeof *t);
    double plain = drift_error(w, w, xf, xq);
    assert_int_equal(qr_ec_drift_target(w, ROWS, COLS, h, c, 0.01, 1.0, t), QR_OK);
    double full = drift_error(w, t, xf, xq);
    for (int r = 0; r < ROWS; r++) /* column 7: nothing to fit, the ridge holds it at W */
        if (fabsf(t[r * COLS + 7] - w[r * COLS + 7]) > 1e-3f)
            fail_msg("unseen column: target %g, W %g", (double)t[r * COLS + 7], (double)w[r * COLS + 7]);
    assert_int_equal(qr_ec_drift_target(w, ROWS, COLS, h, c, 0.01, 0.5, t), QR_OK);
    double half = drift_error(w, t, xf, xq);
    if (!(full < 0.2 * plain && half < plain && half > full))
        fail_msg("drift error: W %g, full fit %g, half-way %g", plain, full, half);
    free(xf);
    free(w);
    free(xq);
    free(h);
    free(c);
    free(imp);
    free(t);
}

static void test_drift_target_refusals(void **state)
{
    (void)state;
    float w[32 * 2] = {0}, h[32 * 32] = {0}, c[32 * 32] = {0}, t[32 * 2];
    for (int i = 0; i < 32; i++)
        h[i * 32 + i] = c[i * 32 + i] = 1.0f;
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.01, 0.5, t), QR_OK);
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.01, 1.5, t), QR_ERR_INVALID);
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.01, -0.1, t), QR_ERR_INVALID);
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.0, 0.5, t), QR_ERR_INVALID);
    assert_int_equal(qr_ec_drift_target(w, 2, 0, h, c, 0.01, 0.5, t), QR_ERR_INVALID);
    c[5] = NAN;
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.01, 0.5, t), QR_ERR_INVALID);
    c[5] = 0.0f;
    for (int i = 0; i < 32; i++) /* negative definite: no factor */
        h[i * 32 + i] = -1.0f;
    assert_int_equal(qr_ec_drift_target(w, 2, 32, h, c, 0.01, 0.5, t), QR_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lower_output_error),
        cmocka_unit_test(test_identity_is_plain),
        cmocka_unit_test(test_threads_same_bytes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_drift_target),
        cmocka_unit_test(test_drift_target_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
