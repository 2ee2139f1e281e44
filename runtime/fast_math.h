/* fast_math.h: a float exp and sigmoid made of operations a vectorizer can put in lanes.
 *
 * libm's expf is a call per element, which keeps every loop that uses it scalar. qr_fast_expf is
 * inline and branch-free: Cody-Waite range reduction x = n·ln2 + r (|r| ≤ ln2/2), Cephes's
 * degree-7 polynomial for exp(r), and 2^n built from integer bits, so a loop of them
 * auto-vectorizes (SSE2, AVX2, AVX-512, NEON). Within 1e-7 relative of exp over the normal
 * range, about 1.4 half-ulps, where libm's expf keeps below 0.6e-7 (tests/runtime/
 * test_fast_math.c holds it to that bound).
 *
 * Deliberately not a drop-in expf: results below FLT_MIN (x < -87.34) are flushed to +0 rather
 * than made subnormal (no denormal arithmetic, so no slow microcode paths in the lanes), and
 * errno is never set. exp(-inf) = 0, exp(+inf) = +inf, NaN gives NaN. Every operation is IEEE
 * single precision with no contraction (-std=c11), so scalar and vector lanes, and every
 * instruction set, give the same bits. Self-contained: no other runtime header. */
#ifndef QR_FAST_MATH_H
#define QR_FAST_MATH_H

#include <stdint.h>
#include <string.h>

/* Inlined however many call sites a loop has: a call in a loop body stops its vectorization. */
#if defined(__GNUC__)
#define QR_FAST_INLINE static inline __attribute__((always_inline))
#else
#define QR_FAST_INLINE static inline
#endif

#define QR_FAST_EXP_LO -87.33654475f /* ln(FLT_MIN): below it the result is flushed to +0 */
#define QR_FAST_EXP_HI 88.75f        /* above it +inf by a mask; up to it n ≤ 128, and past
                                        ln(FLT_MAX) = 88.7228 the product overflows by itself */

static inline uint32_t qr_fast_float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float qr_fast_bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c ? x : y, on the bits. The compiler may turn a conditional expression whose operands it
 * computes into two paths of computation, which it then cannot vectorize (under -ftrapping-math
 * it will not compute both and select, except with AVX-512's masks); it keeps this a select. */
QR_FAST_INLINE float qr_fast_select(int c, float x, float y)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return qr_fast_bits_float((qr_fast_float_bits(x) & m) | (qr_fast_float_bits(y) & ~m));
}

/* exp(x) in float, without a branch: the compiler turns a clamp-then-compute into separate
 * paths for the clamped cases, which it cannot vectorize. So every lane computes the formula
 * and out-of-range lanes (garbage, never undefined behaviour: unsigned arithmetic only) are
 * replaced by 0 or +inf with bit masks at the end.
 *   n = round(x / ln2) by adding 1.5·2^23, which leaves n in the low mantissa bits (read back
 *   as an integer: no float-to-int conversion, whose overflow would be undefined);
 *   r = x - n·ln2 in two parts (Cody-Waite: n·0.693359375 is exact), |r| ≤ ln2/2;
 *   exp(r) by Cephes's expf polynomial;
 *   2^n as two normal factors 2^(e1 - 127)·2^(e2 - 127), e1 + e2 = n + 254, so that n = 128
 *   (x just below ln(FLT_MAX)) needs no special case; e is clamped so that the factors stay
 *   normal floats in out-of-range lanes too (no subnormal operands, no slow microcode). */
QR_FAST_INLINE float qr_fast_expf(float x)
{
    const float magic = 0x1.8p23f;
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    uint32_t e = qr_fast_float_bits(t) - qr_fast_float_bits(magic) + 254u; /* n + 254 mod 2^32 */
    e = e < 128u ? 128u : e;
    e = e > 382u ? 382u : e;
    uint32_t e1 = e >> 1;
    y = y * qr_fast_bits_float(e1 << 23) * qr_fast_bits_float((e - e1) << 23);
    uint32_t keep = 0u - (uint32_t)!(x < QR_FAST_EXP_LO); /* NaN kept: it propagated into y */
    uint32_t inf = 0u - (uint32_t)(x > QR_FAST_EXP_HI);
    return qr_fast_bits_float((qr_fast_float_bits(y) & keep & ~inf) | (0x7f800000u & inf));
}

/* 1 / (1 + exp(-v)): 0 below v = -88.75 (exp(-v) = +inf), 1 above v = 17. */
QR_FAST_INLINE float qr_fast_sigmoidf(float v)
{
    return 1.0f / (1.0f + qr_fast_expf(-v));
}

#endif
