/* q5.c: kernels for q5_0 (w = d·(q − 16)) and q5_1 (w = d·q + m), 5-bit codes in blocks of 32 —
 * reference, AVX2 and NEON side by side. Codes: the low 4 bits as nibbles (16 bytes), then bit 4 of
 * every code as a 32-bit little-endian plane (4 bytes, bit j = bit 4 of q[j]). */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q5_0, 5, false);
QR_DEFINE_REF_KERNELS(q5_1, 5, true);

#if defined(__x86_64__)
QR_AVX2 __attribute__((always_inline)) static inline __m256i q5_unpack(const uint8_t *c)
{
    return _mm256_or_si256(qr_avx2_nibbles(c), qr_avx2_bitplane(c + 16, 0x10));
}

QR_DEFINE_AVX2_KERNELS(q5_0, 5, false, q5_unpack);
QR_DEFINE_AVX2_KERNELS(q5_1, 5, true, q5_unpack);
#endif

#if defined(__aarch64__)
QR_NEON_INLINE qr_neon_codes q5_unpack_neon(const uint8_t *c)
{
    return qr_neon_or(qr_neon_nibbles(c), qr_neon_bitplane(c + 16, 0x10));
}

QR_DEFINE_NEON_KERNELS(q5_0, 5, false, q5_unpack_neon);
QR_DEFINE_NEON_KERNELS(q5_1, 5, true, q5_unpack_neon);
#endif
