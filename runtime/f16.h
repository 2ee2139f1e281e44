/* f16.h: IEEE 754 binary16 <-> binary32, exact for every value (subnormals, inf, NaN), portable
 * C. The SIMD kernels convert with hardware instructions; these are the reference. */
#ifndef QR_F16_H
#define QR_F16_H

#include <stdint.h>
#include <string.h>

static inline float qr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* Subnormal: normalise the mantissa. */
        exp = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round to nearest even, as numpy's and torch's float16 casts do. */
static inline uint16_t qr_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (absx < 0x33000000u)
            return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++;
    return (uint16_t)(sign | half);
}

/* The 8-bit scale of the _s types (E5M3: f16's exponent, 3 mantissa bits, no sign): the f16
 * whose bits are e << 7. Every value is exact in f32. */
static inline float qr_e5m3_to_f32(uint8_t e)
{
    return qr_f16_to_f32((uint16_t)(e << 7));
}

/* The largest E5M3 value not above d ≥ 0 (0 for d below the smallest; the largest finite,
 * 0xF7, for d above it), so a caller can try it and the next one up. */
static inline uint8_t qr_e5m3_floor(float d)
{
    if (!(d > 0.0f))
        return 0;
    uint16_t h = qr_f32_to_f16(d);
    if ((h & 0x7c00) == 0x7c00)
        return 0xf7;
    uint8_t e = (uint8_t)(h >> 7);
    while (e > 0 && qr_e5m3_to_f32(e) > d) /* f16 rounding may have gone up */
        e--;
    return e > 0xf7 ? 0xf7 : e;
}

#endif
