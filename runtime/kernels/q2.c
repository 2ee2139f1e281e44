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

/* For vpdpbusd (dot_small.h): the 8 bytes in four 64-bit lanes, lane k masked to crumb k in
 * place, 4^k·q. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q2_unpack_scaled(const uint8_t *c)
{
    uint64_t u;
    memcpy(&u, c, 8);
    return _mm256_and_si256(_mm256_set1_epi64x((long long)u),
                            _mm256_set_epi64x((long long)0xc0c0c0c0c0c0c0c0ull, 0x3030303030303030ll,
                                              0x0c0c0c0c0c0c0c0cll, 0x0303030303030303ll));
}

QR_AVX2 __attribute__((always_inline)) static inline __m256 q2_lanes(void)
{
    return _mm256_setr_ps(1.0f, 1.0f, 0.25f, 0.25f, 0.0625f, 0.0625f, 0.015625f, 0.015625f);
}

QR_DEFINE_AVX2_SMALL_KERNELS(q2_s, 2, q2_unpack, q2_unpack_scaled, q2_unpack_scaled, q2_lanes);
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
