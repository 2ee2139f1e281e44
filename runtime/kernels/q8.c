/* q8.c: kernels for q8_0 (w = d·(q − 128)) and q8_1 (w = d·q + m), 8-bit codes in blocks of
 * 32 — reference, AVX2 and NEON side by side. Codes: 32 bytes, q[i]. */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q8_0, 8, false);
QR_DEFINE_REF_KERNELS(q8_1, 8, true);

#if defined(__x86_64__)
/* The codes are the bytes; the dot product reads them as q − 128 (qr_avx2_isum). */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q8_unpack(const uint8_t *c)
{
    return _mm256_loadu_si256((const __m256i *)c);
}

QR_DEFINE_AVX2_KERNELS(q8_0, 8, false, q8_unpack);
QR_DEFINE_AVX2_KERNELS(q8_1, 8, true, q8_unpack);
#endif

#if defined(__aarch64__)
/* The codes are the bytes; the multiplies read them as q − 128 (qr_neon_signed). */
QR_NEON_INLINE qr_neon_codes q8_unpack_neon(const uint8_t *c)
{
    return (qr_neon_codes){vld1q_u8(c), vld1q_u8(c + 16)};
}

QR_DEFINE_NEON_KERNELS(q8_0, 8, false, q8_unpack_neon);
QR_DEFINE_NEON_KERNELS(q8_1, 8, true, q8_unpack_neon);
#endif
