/* test_vexp.c: the vectorisable exponential (runtime/vexp.h) against libm, and the log-sum-exp
 * built on it (runtime/eval.c).
 *
 *   - vexpf_within_bound: qr_vexp on a sweep of every 61st float of [QR_VEXP_MIN_X, 88] (about
 *     37 million, every exponent and all of the mantissa's low bits) and on the worst point an
 *     exhaustive run found (x = 15.5968428, 8.2e-8), against exp in double: relative error at
 *     most QR_VEXP_REL_ERR (1e-7, 0.84 float ulp); from 88 to 88.72 within QR_VEXP_REL_ERR_TOP.
 *   - vexpf_edges: 0 below QR_VEXP_MIN_X and at -inf, never NaN for a finite or infinite
 *     argument, +inf above 88.73 and at +inf, NaN for NaN, exactly 1 at 0.
 *   - clones_equal_scalar: the cloned, vectorised loops (qr_vexp, qr_vexp_sum, qr_vmax) give
 *     bit for bit what the inline scalar function gives, at every length's tail.
 *   - log_sum_exp_within_bound: qr_log_sum_exp of rows of 4096 and 50277 logits (the default
 *     and the 216M vocabularies) within 2e-7 of the same in double with libm exp. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "vexp.h"

#define SWEEP_STRIDE 61
#define CHUNK 4096

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The worst relative error of qr_vexp over the floats xs[0..n), beside exp in double. */
static double worst_rel(const float *xs, float *ys, size_t n, float *at)
{
    qr_vexp(xs, ys, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = exp((double)xs[i]), rel = fabs((double)ys[i] - e) / e;
        if (!(rel <= worst)) {
            worst = rel;
            *at = xs[i];
        }
    }
    return worst;
}

/* Every SWEEP_STRIDE-th float from bit pattern lo up to hi (same sign), through qr_vexp. */
static double sweep(uint32_t lo, uint32_t hi, float *at)
{
    static float xs[CHUNK], ys[CHUNK];
    double worst = 0;
    for (uint64_t u = lo; u <= hi;) {
        size_t n = 0;
        for (; n < CHUNK && u <= hi; n++, u += SWEEP_STRIDE)
            xs[n] = from_bits((uint32_t)u);
        float a = 0;
        double w = worst_rel(xs, ys, n, &a);
        if (w > worst) {
            worst = w;
            *at = a;
        }
    }
    return worst;
}

static void test_vexpf_within_bound(void **state)
{
    (void)state;
    float at = 0;
    uint32_t min_bits, top_bits, hi_bits;
    float min_x = QR_VEXP_MIN_X, top = 88.0f, hi = 88.72f;
    memcpy(&min_bits, &min_x, sizeof min_bits);
    memcpy(&top_bits, &top, sizeof top_bits);
    memcpy(&hi_bits, &hi, sizeof hi_bits);
    double neg = sweep(0x80000000u, min_bits, &at);
    if (!(neg <= QR_VEXP_REL_ERR))
        fail_msg("x <= 0: relative error %.3g at x = %.9g (bound %g)", neg, at, QR_VEXP_REL_ERR);
    double pos = sweep(0, top_bits, &at);
    if (!(pos <= QR_VEXP_REL_ERR))
        fail_msg("0 <= x <= 88: relative error %.3g at x = %.9g (bound %g)", pos, at, QR_VEXP_REL_ERR);
    double top_err = sweep(top_bits, hi_bits, &at);
    if (!(top_err <= QR_VEXP_REL_ERR_TOP))
        fail_msg("88 <= x <= 88.72: relative error %.3g at x = %.9g (bound %g)", top_err, at, QR_VEXP_REL_ERR_TOP);
    float worst_known[] = {15.5968428f, -15.5968428f, QR_VEXP_MIN_X, -1e-30f, 1e-30f, 0.34657359f, -0.34657359f};
    float ys[sizeof worst_known / sizeof worst_known[0]];
    double known = worst_rel(worst_known, ys, sizeof ys / sizeof ys[0], &at);
    if (!(known <= QR_VEXP_REL_ERR))
        fail_msg("relative error %.3g at x = %.9g (bound %g)", known, at, QR_VEXP_REL_ERR);
}

static void test_vexpf_edges(void **state)
{
    (void)state;
    const float zero_at[] = {-INFINITY, -1e30f, -8.8e6f, -1e7f, -1000.0f, -100.0f, -87.5f, -87.34f};
    for (size_t i = 0; i < sizeof zero_at / sizeof zero_at[0]; i++)
        if (qr_vexpf(zero_at[i]) != 0.0f)
            fail_msg("exp(%g) gave %g, not 0", zero_at[i], qr_vexpf(zero_at[i]));
    const float inf_at[] = {88.73f, 89.0f, 1000.0f, 1e30f, INFINITY};
    for (size_t i = 0; i < sizeof inf_at / sizeof inf_at[0]; i++)
        if (qr_vexpf(inf_at[i]) != INFINITY)
            fail_msg("exp(%g) gave %g, not +inf", inf_at[i], qr_vexpf(inf_at[i]));
    assert_true(isnan(qr_vexpf(NAN)));
    assert_true(qr_vexpf(0.0f) == 1.0f);
    assert_true(qr_vexpf(-0.0f) == 1.0f);
    /* No NaN anywhere on a coarse sweep of every finite float and the infinities. */
    for (uint64_t u = 0; u <= 0xffffffffu; u += 4093) {
        float x = from_bits((uint32_t)u);
        if (!isnan(x) && isnan(qr_vexpf(x)))
            fail_msg("exp(%g) gave NaN", x);
    }
}

static void test_clones_equal_scalar(void **state)
{
    (void)state;
    enum { N = 203 };
    float x[N], y[N];
    for (size_t i = 0; i < N; i++)
        x[i] = (float)((double)((i * 2654435761u) % 20011) / 20011.0 * 120.0 - 100.0);
    for (size_t n = 1; n <= N; n++) {
        qr_vexp(x, y, n);
        double lane[8] = {0};
        float max = x[0];
        for (size_t i = 0; i < n; i++) {
            if (memcmp(&y[i], &(float){qr_vexpf(x[i])}, sizeof(float)) != 0)
                fail_msg("n = %zu: qr_vexp[%zu] = %a, qr_vexpf = %a", n, i, y[i], qr_vexpf(x[i]));
            max = x[i] > max ? x[i] : max;
        }
        for (size_t i = 0; i < n; i++)
            lane[i % 8] += (double)qr_vexpf(x[i] - max);
        double sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
        assert_true(qr_vmax(x, n) == max);
        double got = qr_vexp_sum(x, n, max);
        if (memcmp(&got, &sum, sizeof sum) != 0)
            fail_msg("n = %zu: qr_vexp_sum %a, the same in scalar %a", n, got, sum);
    }
}

/* A row of logits spread like a model's: a few large, most far below. */
static void fill_logits(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        double u = (double)(seed >> 11) / 9007199254740992.0;
        x[i] = (float)(-8.0 + 30.0 * u * u * u);
    }
}

static void test_log_sum_exp_within_bound(void **state)
{
    (void)state;
    static const size_t widths[] = {1, 7, 96, 4096, 50277};
    float *x = malloc(50277 * sizeof *x);
    assert_non_null(x);
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
        for (uint64_t seed = 1; seed <= 20; seed++) {
            size_t n = widths[w];
            fill_logits(x, n, seed);
            double max = x[0], sum = 0;
            for (size_t i = 1; i < n; i++)
                max = x[i] > max ? x[i] : max;
            for (size_t i = 0; i < n; i++)
                sum += exp((double)x[i] - max);
            double want = log(sum) + max, got = qr_log_sum_exp(x, n);
            if (!(fabs(got - want) <= 2e-7))
                fail_msg("%zu logits (seed %llu): log-sum-exp %.12g, in double %.12g", n,
                         (unsigned long long)seed, got, want);
        }
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vexpf_within_bound),
        cmocka_unit_test(test_vexpf_edges),
        cmocka_unit_test(test_clones_equal_scalar),
        cmocka_unit_test(test_log_sum_exp_within_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
