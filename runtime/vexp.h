/* vexp.h: a float exponential the compiler can vectorise, for the evaluators' log-sum-exp and
 * QSLM's KL divergence, which take one exponential per logit of every prediction (50277 per token
 * at 216M): libm's double exp is a call per element and no vector code.
 *
 * Not a libm replacement: it is within QR_VEXP_REL_ERR of exp for x in [-87.34, 88] (those sums
 * need x <= 0), and makes no attempt at errno, subnormal results (it returns 0) or correct
 * rounding. */
#ifndef QR_VEXP_H
#define QR_VEXP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Loops over whole rows of logits are built for AVX-512 and AVX2 beside the baseline and the
 * loader picks one (the pattern of quantize.c's SEARCH_CLONES). ISO C (-std=c11) contracts no
 * a·b + c into an FMA and the lanes are explicit, so every clone computes the same floats. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QR_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QR_VEC_CLONES
/* The largest of x[0..n) (n >= 1): the shift of a log-sum-exp. With a NaN among x it may or may
 * not be NaN; the sum of exponentials carries the NaN either way. In 8 lanes, so that it
 * vectorises like the sums. */
float qr_vmax(const float *x, size_t n);

#endif

/* qr_vexpf's relative error against exp (in double) for x in [QR_VEXP_MIN_X, 88]: measured on
 * every float of that range at 8.2e-8 (0.68 float ulp, 2^-23 = 1.19e-7) worst, near x = 15.6;
 * test_vexp asserts it on a sweep. From 88 to 88.72, where 2^n would need n = 128, r grows to
 * ln2 and the worst is 3.2e-7. */
#define QR_VEXP_REL_ERR 1e-7
#define QR_VEXP_REL_ERR_TOP 4e-7
/* Below this exp(x) is under FLT_MIN (a subnormal) and qr_vexpf returns 0. */
#define QR_VEXP_MIN_X (-87.336544f)

/* A float's bits and back, without breaking aliasing rules (the memcpy compiles to a move). */
static inline uint32_t qr_vexp_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float qr_vexp_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* exp(x) in float: x = n·ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 in two parts, the first
 * exact in 9 bits, so n·C1 and x - n·C1 are exact), exp(r) by a degree-6 polynomial (Cephes'
 * expf coefficients) and 2^n by writing n + 127 into the exponent bits.
 *
 * Written for GCC's vectoriser, which under the default -ftrapping-math will not if-convert a
 * float select whose arms it could fold apart: n is rounded by the 1.5·2^23 trick and read from
 * the sum's low bits, clamped as an integer to [-126, 127] (2^n stays a normal float), and
 * underflow is a bit mask, not a branch. Beyond 88.72 the result overflows to +inf as expf's
 * does; below QR_VEXP_MIN_X (-inf included) it is 0; NaN stays NaN. */
static inline float qr_vexpf(float x)
{
    const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f;
    const float shifter = 12582912.0f;
    uint32_t keep = 0u - (uint32_t)(x >= QR_VEXP_MIN_X || x != x); /* all ones unless underflow */
    float t = x * log2e + shifter;
    int32_t ni = (int32_t)(qr_vexp_bits(t) - qr_vexp_bits(shifter)); /* round(x·log2e) */
    ni = ni < -126 ? -126 : ni;
    ni = ni > 127 ? 127 : ni;
    float n = (float)ni;
    float r = qr_vexp_float(qr_vexp_bits((x - n * c1) - n * c2) & keep);
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = (p * (r * r) + r) + 1.0f;
    return y * qr_vexp_float(((uint32_t)(ni + 127) << 23) & keep);
}

/* y[i] = qr_vexpf(x[i]) for i < n (x and y do not overlap). */
void qr_vexp(const float *restrict x, float *restrict y, size_t n);

/* Σ exp(x[i] - shift) over i < n, each term by qr_vexpf and the sum in double (8 lanes, added in
 * a fixed order: the same inputs give the same sum bit for bit). With shift = max x, the terms
 * are in (0, 1] and the sum is the log-sum-exp's: its relative error stays within about
 * QR_VEXP_REL_ERR plus the float rounding of x[i] - shift. */
double qr_vexp_sum(const float *x, size_t n, float shift);

/* The largest of x[0..n) (n >= 1): the shift of a log-sum-exp. With a NaN among x it may or may
 * not be NaN; the sum of exponentials carries the NaN either way. In 8 lanes, so that it
 * vectorises like the sums. */
float qr_vmax(const float *x, size_t n);

#endif
