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

/* For vpdpbusd (dot_small.h): the crumbs as in q3_unpack but with two shifts where it has four
 * (64-bit lanes shifted by 0, 0, 4, 4, then masked to 3, 12, 3, 12: codes q, 4·q, q, 4·q), and
 * bit 2 of each code added at its lane's power (4 or 16). */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q3_crumbs_scaled(const uint8_t *c)
{
    uint64_t u;
    memcpy(&u, c, 8);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)u), _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(v, _mm256_set_epi64x(0x0c0c0c0c0c0c0c0cll, 0x0303030303030303ll,
                                                 0x0c0c0c0c0c0c0c0cll, 0x0303030303030303ll));
}

QR_AVX2 __attribute__((always_inline)) static inline __m256i q3_high_scaled(void)
{
    return _mm256_set_epi64x(0x1010101010101010ll, 0x0404040404040404ll, 0x1010101010101010ll,
                             0x0404040404040404ll);
}

QR_AVX2 __attribute__((always_inline)) static inline __m256i q3_unpack_scaled(const uint8_t *c)
{
    return _mm256_or_si256(q3_crumbs_scaled(c), qr_avx2_bitplane_v(c + 8, q3_high_scaled()));
}

/* The same with AVX-512: the bit plane is a mask register, and one masked byte add puts the
 * high bits in (the bits are clear in the crumbs, so the add is an or). */
QR_AVX512_VNNI __attribute__((always_inline)) static inline __m256i q3_unpack_scaled_512(const uint8_t *c)
{
    uint32_t m;
    memcpy(&m, c + 8, 4);
    __m256i v = q3_crumbs_scaled(c);
    return _mm256_mask_add_epi8(v, (__mmask32)m, v, q3_high_scaled());
}

QR_AVX2 __attribute__((always_inline)) static inline __m256 q3_lanes(void)
{
    return _mm256_setr_ps(1.0f, 1.0f, 0.25f, 0.25f, 1.0f, 1.0f, 0.25f, 0.25f);
}

QR_DEFINE_AVX2_SMALL_KERNELS(q3_s, 3, q3_unpack, q3_unpack_scaled, q3_unpack_scaled_512, q3_lanes);
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
