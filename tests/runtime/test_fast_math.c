/* test_fast_math.c: runtime/fast_math.h's exp and sigmoid against libm's in double.
 *
 * The forward pass takes exp of -|a - b| ≤ 0 in the WKV (-1e30 and below at a sequence's start,
 * where the WKV's pp starts) and of -r in the sigmoid gates (r a receptance, any float). Checked:
 *   - relative error over every 61st float of the normal range [-87.33, 88.72], against exp in
 *     double: below EXP_REL_TOL (1e-7; measured 8.1e-8, about 1.4 half-ulps, where libm's expf
 *     stays below 6.0e-8);
 *   - sigmoid's over [-87, 88], below SIGMOID_REL_TOL (measured 1.4e-7);
 *   - the edges: exp(0) = 1 exactly (the WKV's exp_pair relies on it), ±88, the flush to +0
 *     below ln(FLT_MIN), +inf above ln(FLT_MAX), ±inf, NaN;
 *   - a vectorized loop (the clones the forward pass uses) gives the scalar call's bits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>

#include "fast_math.h"

#define EXP_REL_TOL 1e-7
#define SIGMOID_REL_TOL 2e-7
#define STRIDE 61 /* float bit patterns between two checked inputs: about 37M inputs per function */

/* The largest relative error of qr_fast_expf over the floats of one sign from 0 to |limit|. */
static double worst_exp_error(float limit, bool negative, float *where)
{
    double worst = 0.0;
    uint32_t sign = negative ? 0x80000000u : 0u, top = qr_fast_float_bits(fabsf(limit));
    for (uint32_t u = 0; u <= top; u += STRIDE) {
        float x = qr_fast_bits_float(u | sign);
        double ref = exp((double)x);
        double rel = fabs((double)qr_fast_expf(x) - ref) / ref;
        if (rel > worst) {
            worst = rel;
            *where = x;
        }
    }
    return worst;
}

static void test_exp_relative_error(void **state)
{
    (void)state;
    float at_neg = 0.0f, at_pos = 0.0f;
    double neg = worst_exp_error(-87.33f, true, &at_neg), pos = worst_exp_error(88.72f, false, &at_pos);
    printf("exp: worst relative error %.3g at %.9g (x ≤ 0), %.3g at %.9g (x ≥ 0); bound %g\n", neg, at_neg,
           pos, at_pos, EXP_REL_TOL);
    assert_true(neg < EXP_REL_TOL);
    assert_true(pos < EXP_REL_TOL);
}

static void test_sigmoid_relative_error(void **state)
{
    (void)state;
    double worst = 0.0;
    float at = 0.0f;
    for (int neg = 0; neg < 2; neg++) {
        uint32_t sign = neg ? 0x80000000u : 0u, top = qr_fast_float_bits(neg ? 87.0f : 88.0f);
        for (uint32_t u = 0; u <= top; u += STRIDE) {
            float v = qr_fast_bits_float(u | sign);
            double ref = 1.0 / (1.0 + exp(-(double)v));
            double rel = fabs((double)qr_fast_sigmoidf(v) - ref) / ref;
            if (rel > worst) {
                worst = rel;
                at = v;
            }
        }
    }
    printf("sigmoid: worst relative error %.3g at %.9g over [-87, 88]; bound %g\n", worst, at, SIGMOID_REL_TOL);
    assert_true(worst < SIGMOID_REL_TOL);
}

static void test_exp_edges(void **state)
{
    (void)state;
    assert_true(qr_fast_expf(0.0f) == 1.0f);
    assert_true(qr_fast_expf(-0.0f) == 1.0f);
    /* ±88: the largest and among the smallest normal results, still within the bound */
    assert_true(fabs(qr_fast_expf(88.0f) / exp(88.0) - 1.0) < EXP_REL_TOL);
    assert_true(fabs(qr_fast_expf(-87.0f) / exp(-87.0) - 1.0) < EXP_REL_TOL);
    assert_true(fabs(qr_fast_expf(88.72f) / exp((double)88.72f) - 1.0) < EXP_REL_TOL);
    assert_true(isfinite(qr_fast_expf(88.72f)));
    /* below ln(FLT_MIN) = -87.3365: +0 exactly, not a subnormal; -1e30 is the WKV's start */
    const float flushed[] = {-87.34f, -88.0f, -103.0f, -1e30f, -FLT_MAX, -INFINITY};
    for (size_t i = 0; i < sizeof flushed / sizeof flushed[0]; i++) {
        float y = qr_fast_expf(flushed[i]);
        assert_true(y == 0.0f && !signbit(y));
    }
    /* above ln(FLT_MAX) = 88.7228: +inf */
    const float overflow[] = {88.73f, 88.75f, 88.76f, 89.0f, 100.0f, 1e30f, FLT_MAX, INFINITY};
    for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++)
        assert_true(isinf(qr_fast_expf(overflow[i])) && qr_fast_expf(overflow[i]) > 0.0f);
    assert_true(isnan(qr_fast_expf(NAN)));
    assert_true(isnan(qr_fast_sigmoidf(NAN)));
    assert_true(qr_fast_sigmoidf(0.0f) == 0.5f);
    assert_true(qr_fast_sigmoidf(INFINITY) == 1.0f);
    assert_true(qr_fast_sigmoidf(100.0f) == 1.0f);
    assert_true(qr_fast_sigmoidf(-INFINITY) == 0.0f);
    assert_true(qr_fast_sigmoidf(-100.0f) == 0.0f);
    /* monotone where results are normal: a sampled check of neighbours */
    for (float x = -87.0f; x < 88.0f; x += 0.37f)
        assert_true(qr_fast_expf(x) <= qr_fast_expf(nextafterf(x, INFINITY)));
    assert_true(qr_fast_select(1, 2.0f, 3.0f) == 2.0f && qr_fast_select(0, 2.0f, 3.0f) == 3.0f);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LANE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LANE_CLONES
#endif

/* The forward pass's shape of loop: blocks of 16 that the compiler vectorizes. */
LANE_CLONES static void exp_lanes(const float *restrict x, size_t n, float *restrict y)
{
    for (size_t i = 0; i + 16 <= n; i += 16)
        for (size_t k = 0; k < 16; k++)
            y[i + k] = qr_fast_expf(x[i + k]);
}

static void test_lanes_match_scalar(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float x[N], y[N];
    for (size_t i = 0; i < N; i++)
        x[i] = -95.0f + 190.0f * (float)i / N;
    x[0] = -INFINITY;
    x[1] = INFINITY;
    x[2] = NAN;
    x[3] = -1e30f;
    exp_lanes(x, N, y);
    for (size_t i = 0; i < N; i++) {
        volatile float xi = x[i]; /* keeps this call scalar */
        float s = qr_fast_expf(xi);
        assert_true(qr_fast_float_bits(s) == qr_fast_float_bits(y[i]) || (isnan(s) && isnan(y[i])));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_relative_error),
        cmocka_unit_test(test_sigmoid_relative_error),
        cmocka_unit_test(test_exp_edges),
        cmocka_unit_test(test_lanes_match_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
