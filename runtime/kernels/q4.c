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

/* For vpdpbusd (dot_small.h): the 16 bytes in both halves, the low half masked to the low
 * nibbles (q[0..15]), the high half to the high nibbles in place (16·q[16..31]). */
QR_AVX2 __attribute__((always_inline)) static inline __m256i q4_unpack_scaled(const uint8_t *c)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c));
    return _mm256_and_si256(v, _mm256_setr_epi64x(0x0f0f0f0f0f0f0f0fll, 0x0f0f0f0f0f0f0f0fll,
                                                   (long long)0xf0f0f0f0f0f0f0f0ull,
                                                   (long long)0xf0f0f0f0f0f0f0f0ull));
}

QR_AVX2 __attribute__((always_inline)) static inline __m256 q4_lanes(void)
{
    return _mm256_setr_ps(1.0f, 1.0f, 1.0f, 1.0f, 0.0625f, 0.0625f, 0.0625f, 0.0625f);
}

QR_DEFINE_AVX2_SMALL_KERNELS(q4_s, 4, q4_unpack, q4_unpack_scaled, q4_unpack_scaled, q4_lanes);
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
