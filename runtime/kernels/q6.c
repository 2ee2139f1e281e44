/* q6.c: kernels for q6_0 (w = d·(q − 32)) and q6_1 (w = d·q + m), 6-bit codes in blocks of 32 —
 * reference, AVX2 and NEON side by side. Codes: the low 4 bits as nibbles (16 bytes, byte j =
 * q[j] & 15 | (q[j+16] & 15) << 4), then the high 2 bits as crumbs (8 bytes, byte j = h[j] |
 * h[j+8] << 2 | h[j+16] << 4 | h[j+24] << 6). */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q6_0, 6, false);
QR_DEFINE_REF_KERNELS(q6_1, 6, true);

#if defined(__x86_64__)
/* Nibbles, OR the crumbs moved up to bits 4-5 (a 16-bit shift cannot carry: crumbs are ≤ 3). */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q6_unpack(const uint8_t *c)
{
    return _mm256_or_si256(qr_avx2_nibbles(c), _mm256_slli_epi16(qr_avx2_crumbs(c + 16), 4));
}

QR_DEFINE_AVX2_KERNELS(q6_0, 6, false, q6_unpack);
QR_DEFINE_AVX2_KERNELS(q6_1, 6, true, q6_unpack);
#endif

#if defined(__aarch64__)
/* Nibbles, OR the crumbs moved up to bits 4-5. */
QR_NEON_INLINE qr_neon_codes q6_unpack_neon(const uint8_t *c)
{
    qr_neon_codes h = qr_neon_crumbs(c + 16);
    return qr_neon_or(qr_neon_nibbles(c), (qr_neon_codes){vshlq_n_u8(h.lo, 4), vshlq_n_u8(h.hi, 4)});
}

QR_DEFINE_NEON_KERNELS(q6_0, 6, false, q6_unpack_neon);
QR_DEFINE_NEON_KERNELS(q6_1, 6, true, q6_unpack_neon);
#endif
