/* q4.c: kernels for q4_0 (w = d·(q − 8)), q4_1 (w = d·q + m) and q4_s (w = d·(q − 7.5), d an E5M3
 * byte), 4-bit codes in blocks of 32 — reference, AVX2 and NEON side by side. Codes: 16 bytes, byte j = q[j] | q[j+16] << 4. */
#include "quant_common.h"

QR_DEFINE_REF_KERNELS(q4_0, 4, false);
QR_DEFINE_REF_KERNELS(q4_1, 4, true);
QR_DEFINE_REF_KERNELS(q4_s, 4, QR_KIND_SMALL);

#if defined(__x86_64__)
/* One shift and one mask: low nibbles are q[0..15], high nibbles q[16..31]. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q4_unpack(const uint8_t *c)
{
    return qr_avx2_nibbles(c);
}

QR_DEFINE_AVX2_KERNELS(q4_0, 4, false, q4_unpack);
QR_DEFINE_AVX2_KERNELS(q4_1, 4, true, q4_unpack);
QR_DEFINE_AVX2_KERNELS(q4_s, 4, QR_KIND_SMALL, q4_unpack);
#endif

#if defined(__aarch64__)
QR_NEON_INLINE qr_neon_codes q4_unpack_neon(const uint8_t *c)
{
    return qr_neon_nibbles(c);
}

QR_DEFINE_NEON_KERNELS(q4_0, 4, false, q4_unpack_neon);
QR_DEFINE_NEON_KERNELS(q4_1, 4, true, q4_unpack_neon);
QR_DEFINE_NEON_KERNELS(q4_s, 4, QR_KIND_SMALL, q4_unpack_neon);
#endif
