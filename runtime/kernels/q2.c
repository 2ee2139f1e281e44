/* q2.c: kernels for q2_0 (w = d·(q − 2)), q2_1 (w = d·q + m) and q2_s (w = d·(q − 1.5), d an E5M3
 * byte), 2-bit codes in blocks of 32 — reference, AVX2 and NEON side by side. Codes: 8 bytes, byte j = q[j] | q[j+8] << 2 | q[j+16] << 4 |
 * q[j+24] << 6. */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q2_0, 2, false);
QR_DEFINE_REF_KERNELS(q2_1, 2, true);
QR_DEFINE_REF_KERNELS(q2_s, 2, QR_KIND_SMALL);

#if defined(__x86_64__)
/* The 8 bytes broadcast to four 64-bit lanes, lane k shifted right by 2k, masked to 2 bits. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q2_unpack(const uint8_t *c)
{
    return qr_avx2_crumbs(c);
}

QR_DEFINE_AVX2_KERNELS(q2_0, 2, false, q2_unpack);
QR_DEFINE_AVX2_KERNELS(q2_1, 2, true, q2_unpack);
QR_DEFINE_AVX2_KERNELS(q2_s, 2, QR_KIND_SMALL, q2_unpack);
#endif

#if defined(__aarch64__)
QR_NEON_INLINE qr_neon_codes q2_unpack_neon(const uint8_t *c)
{
    return qr_neon_crumbs(c);
}

QR_DEFINE_NEON_KERNELS(q2_0, 2, false, q2_unpack_neon);
QR_DEFINE_NEON_KERNELS(q2_1, 2, true, q2_unpack_neon);
QR_DEFINE_NEON_KERNELS(q2_s, 2, QR_KIND_SMALL, q2_unpack_neon);
#endif
