/* q3.c: kernels for q3_0 (w = d·(q − 4)), q3_1 (w = d·q + m) and q3_s (w = d·(q − 3.5), d an E5M3
 * byte), 3-bit codes in blocks of 32 — reference, AVX2 and NEON side by side. Codes: the low 2 bits as crumbs (8 bytes, byte j = q[j] |
 * q[j+8] << 2 | q[j+16] << 4 | q[j+24] << 6, low bits only), then bit 2 of every code as a 32-bit
 * little-endian plane (4 bytes). */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q3_0, 3, false);
QR_DEFINE_REF_KERNELS(q3_1, 3, true);
QR_DEFINE_REF_KERNELS(q3_s, 3, QR_KIND_SMALL);

#if defined(__x86_64__)
QR_AVX2 __attribute__((always_inline)) static inline __m256i q3_unpack(const uint8_t *c)
{
    return _mm256_or_si256(qr_avx2_crumbs(c), qr_avx2_bitplane(c + 8, 0x04));
}

QR_DEFINE_AVX2_KERNELS(q3_0, 3, false, q3_unpack);
QR_DEFINE_AVX2_KERNELS(q3_1, 3, true, q3_unpack);
QR_DEFINE_AVX2_KERNELS(q3_s, 3, QR_KIND_SMALL, q3_unpack);
#endif

#if defined(__aarch64__)
QR_NEON_INLINE qr_neon_codes q3_unpack_neon(const uint8_t *c)
{
    return qr_neon_or(qr_neon_crumbs(c), qr_neon_bitplane(c + 8, 0x04));
}

QR_DEFINE_NEON_KERNELS(q3_0, 3, false, q3_unpack_neon);
QR_DEFINE_NEON_KERNELS(q3_1, 3, true, q3_unpack_neon);
QR_DEFINE_NEON_KERNELS(q3_s, 3, QR_KIND_SMALL, q3_unpack_neon);
#endif
