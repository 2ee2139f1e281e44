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

#include "fast_math.h"

/* Loops over whole rows of logits are built for AVX-512 and AVX2 beside the baseline and the
 * loader picks one (the pattern of quantize.c's SEARCH_CLONES). ISO C (-std=c11) contracts no
 * a·b + c into an FMA and the lanes are explicit, so every clone computes the same floats. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QR_VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QR_VEC_CLONES
#endif

/* The exponential itself is fast_math.h's (the forward's too): within QR_VEXP_REL_ERR of exp
 * for x in [QR_VEXP_MIN_X, 88] and QR_VEXP_REL_ERR_TOP up to 88.72 (test_vexp and test_fast_math
 * assert it), 0 below QR_VEXP_MIN_X (-inf included), +inf past 88.72, NaN for NaN. */
#define QR_VEXP_REL_ERR 1e-7
#define QR_VEXP_REL_ERR_TOP 4e-7
#define QR_VEXP_MIN_X QR_FAST_EXP_LO

static inline float qr_vexpf(float x)
{
    return qr_fast_expf(x);
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
