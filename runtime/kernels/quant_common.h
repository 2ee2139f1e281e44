/* quant_common.h: what the kernels of the quantized types share (internal to runtime/kernels).
 *
 * - The reference kernels, written once for every width and instantiated per type by
 *   QR_DEFINE_REF_KERNELS in kernels/q<B>.c: plain C, byte-addressed, correct on any CPU.
 * - The AVX2 building blocks the per-type SIMD kernels are made of: rebuilding 32 codes from
 *   their planes, and the 32-wide integer dot product with an x8 block.
 *
 * Every quantized product reads x as 8-bit blocks (qr_x8_group): the weights' integer codes meet
 * x's integer codes in integer multiply-adds (exact), and only one float multiply-add per block
 * remains. Both the reference and the SIMD kernels do this, so they agree to float rounding; the
 * price is x's rounding to 8 bits per block of 32 (relative error about 0.4% of the block's
 * largest |x|, far below the weights' own rounding at 6 bits or fewer). */
#ifndef QR_KERNELS_QUANT_COMMON_H
#define QR_KERNELS_QUANT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../f16.h"
#include "blocks.h"
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- x8 (kernels/x8.c) */

/* Rounds n values (a multiple of 32) of x to 8-bit blocks, in qr_x8_groups(n) groups:
 * d = max|x|/127, q = round(x/d) to nearest even, s = d·Σq. The AVX2 version gives the same
 * bytes. */
void qr_x8_prepare_ref(const float *x, size_t n, qr_x8_group *xq);
#if defined(__x86_64__)
void qr_x8_prepare_avx2(const float *x, size_t n, qr_x8_group *xq);
#endif

/* dot_rows for an f32 x, by way of the x8 kernels: x is rounded a chunk at a time into a stack
 * buffer, so any width works without allocating (the decode path prepares x once instead,
 * in linear.c). */
void qr_dot_rows_via_x8(qr_dot_rows_x8_fn dot, void (*prepare)(const float *, size_t, qr_x8_group *),
                        size_t block_bytes, const void *w, size_t row_bytes, size_t n_rows,
                        const float *x, size_t n, float *y);

/* ---------------------------------------------------------------- reference */

/* Bytes of a block of `bits`-bit codes: the header (d, or d and m) and 4·bits bytes of codes. */
static inline size_t qr_block_size(int bits, bool has_min)
{
    return (size_t)(has_min ? 4 : 2) + 4u * (size_t)bits;
}

/* w = d·(q − 2^(bits−1)) for _0, w = d·q + m for _1 (a multiply, then an add: the SIMD
 * versions round the same way, so to_float is bit-exact across them). */
static inline void qr_ref_to_float(int bits, bool has_min, const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    size_t bb = qr_block_size(bits, has_min);
    int off = 1 << (bits - 1);
    uint8_t q[32];
    for (size_t i = 0; i < n / QR_QK; i++, b += bb, dst += QR_QK) {
        float d = qr_f16_to_f32(qr_block_u16(b));
        qr_unpack_codes(bits, b + (has_min ? 4 : 2), q);
        if (has_min) {
            float m = qr_f16_to_f32(qr_block_u16(b + 2));
            for (int j = 0; j < QR_QK; j++) {
                float t = d * (float)q[j];
                dst[j] = t + m;
            }
        } else {
            for (int j = 0; j < QR_QK; j++)
                dst[j] = d * (float)(q[j] - off);
        }
    }
}

/* y[r] = Σ_blocks d·dx·Σ(q − 2^(bits−1))·xq  (_0)  or  d·dx·Σq·xq + m·s  (_1). */
static inline void qr_ref_dot_x8(int bits, bool has_min, const void *w, size_t row_bytes,
                                 size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    size_t bb = qr_block_size(bits, has_min);
    int off = has_min ? 0 : 1 << (bits - 1);
    uint8_t q[32];
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        float sum = 0.0f;
        for (size_t i = 0; i < n / QR_QK; i++, b += bb) {
            const qr_x8_group *g = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            float d = qr_f16_to_f32(qr_block_u16(b));
            qr_unpack_codes(bits, b + (has_min ? 4 : 2), q);
            int32_t isum = 0;
            for (int j = 0; j < QR_QK; j++)
                isum += (q[j] - off) * g->q[k][j];
            sum += d * g->d[k] * (float)isum;
            if (has_min)
                sum += qr_f16_to_f32(qr_block_u16(b + 2)) * g->s[k];
        }
        y[r] = sum;
    }
}

/* The reference kernel table of one type: qr_kernels_<T>_ref. */
#define QR_DEFINE_REF_KERNELS(T, BITS, HAS_MIN)                                                    \
    static void T##_to_float_ref(const void *src, float *dst, size_t n)                            \
    {                                                                                              \
        qr_ref_to_float(BITS, HAS_MIN, src, dst, n);                                               \
    }                                                                                              \
    static void T##_dot_x8_ref(const void *w, size_t row_bytes, size_t n_rows,                    \
                               const qr_x8_group *x, size_t n, float *y)                           \
    {                                                                                              \
        qr_ref_dot_x8(BITS, HAS_MIN, w, row_bytes, n_rows, x, n, y);                               \
    }                                                                                              \
    static void T##_dot_rows_ref(const void *w, size_t row_bytes, size_t n_rows, const float *x,  \
                                 size_t n, float *y)                                               \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_ref, qr_x8_prepare_ref, qr_block_size(BITS, HAS_MIN), w,    \
                           row_bytes, n_rows, x, n, y);                                            \
    }                                                                                              \
    const qr_kernel_ops qr_kernels_##T##_ref = {#T "-ref", T##_dot_rows_ref, T##_to_float_ref,     \
                                                qr_x8_prepare_ref, T##_dot_x8_ref}

/* ---------------------------------------------------------------- AVX2 building blocks */

#if defined(__x86_64__)
#define QR_AVX2 __attribute__((target("avx2,fma,f16c")))

QR_AVX2 static inline float qr_hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* 16 bytes of nibbles -> 32 codes 0..15 in order: low nibbles are q[0..15], high q[16..31].
 * The bytes are loaded into both halves (a load, no shuffle) and the high half shifted by 4:
 * one shift, where a shift and a lane insert would cost two ops on the shuffle pipes. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_nibbles(const uint8_t *p)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* 8 bytes of crumbs -> 32 codes 0..3: each 64-bit lane k holds the bytes shifted right by 2k. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_crumbs(const uint8_t *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)u), _mm256_set_epi64x(6, 4, 2, 0));
    return _mm256_and_si256(v, _mm256_set1_epi8(3));
}

/* A 32-bit plane -> 32 bytes, `value` where the bit is set and 0 elsewhere. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_bitplane(const uint8_t *p, char value)
{
    uint32_t u;
    memcpy(&u, p, 4);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                             0x0101010101010101ll, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(value));
}

/* Σ q[j]·xq[j] over one block, as 8 int32 partial sums. Codes below 128 (6 bits or fewer) go
 * to maddubs as they are; 8-bit codes are read as q − 128, with the sign moved onto x so that
 * maddubs reads |q − 128| ≤ 128 unsigned (its pairs stay below 2·128·127 < 2^15). */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_isum(int bits, __m256i q,
                                                                          const int8_t *xq)
{
    __m256i x = _mm256_loadu_si256((const __m256i *)xq), p;
    if (bits == 8) {
        __m256i s = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
        p = _mm256_maddubs_epi16(_mm256_abs_epi8(s), _mm256_sign_epi8(x, s));
    } else {
        p = _mm256_maddubs_epi16(q, x);
    }
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* r[k] = the sum of the 8 lanes of v[k], for 8 vectors: a transpose-and-add in 21 shuffles and
 * adds (about 2.6 per block), cheaper than converting and scaling each block on its own. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_pair(__m256i a, __m256i b)
{
    return _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
}

QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_quad(__m256i ab, __m256i cd)
{
    return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

/* 8 f16 header fields `stride` bytes apart, as 8 floats. Assembled in general registers (the
 * integer pipes are idle in these loops) and moved over with two vmovq: building them in a
 * vector would take 7 more shuffles, and staging them in memory stalls store forwarding. */
QR_AVX2 __attribute__((always_inline)) static inline __m256 qr_avx2_f16x8(const uint8_t *p,
                                                                          size_t stride)
{
    uint64_t lo = 0, hi = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a, b;
        memcpy(&a, p + (size_t)k * stride, 2);
        memcpy(&b, p + (size_t)(k + 4) * stride, 2);
        lo |= (uint64_t)a << (16 * k);
        hi |= (uint64_t)b << (16 * k);
    }
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo),
                                              _mm_cvtsi64_si128((long long)hi)));
}

/* 32 codes rebuilt from a block's code bytes (the per-type part of every AVX2 kernel). */
typedef __m256i (*qr_avx2_unpack_fn)(const uint8_t *codes);

/* The decode loop of every quantized type, specialised per type by inlining (bits, has_min and
 * unpack are constants at each call site). By far the hottest code of a quantized model.
 * Per block: rebuild 32 codes, multiply-add them with x's bytes in integers (exact). Per group of
 * 8 blocks: reduce the 8 blocks' sums to one vector, then one convert and one FMA apply the 8
 * scales d·dx at once. A _0 type's −2^(B−1) is taken out as 2^(B−1)·Σd·s, a _1 type's minimum
 * adds Σm·s (s = dx·Σxq), one FMA per group each; 8-bit codes are read as q − 128, so q8_0 needs
 * no offset and q8_1 adds Σ(m + 128·d)·s. A last partial group goes block by block. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_dot_x8(int bits, bool has_min, qr_avx2_unpack_fn unpack, const void *w, size_t row_bytes,
               size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    const size_t bb = qr_block_size(bits, has_min), hdr = has_min ? 4 : 2, nb = n / QR_QK;
    const size_t full = nb / QR_X8_GROUP;
    const float off = bits == 8 || has_min ? 0.0f : (float)(1 << (bits - 1));
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        __m256 acc = _mm256_setzero_ps(), add = _mm256_setzero_ps();
        for (size_t g = 0; g < full; g++, b += QR_X8_GROUP * bb) {
            const qr_x8_group *xg = &x[g];
            for (size_t l = 0; l < QR_X8_GROUP * bb; l += 64)
                _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
            __m256i s01 = qr_avx2_pair(qr_avx2_isum(bits, unpack(b + hdr), xg->q[0]),
                                       qr_avx2_isum(bits, unpack(b + bb + hdr), xg->q[1]));
            __m256i s23 = qr_avx2_pair(qr_avx2_isum(bits, unpack(b + 2 * bb + hdr), xg->q[2]),
                                       qr_avx2_isum(bits, unpack(b + 3 * bb + hdr), xg->q[3]));
            __m256i s45 = qr_avx2_pair(qr_avx2_isum(bits, unpack(b + 4 * bb + hdr), xg->q[4]),
                                       qr_avx2_isum(bits, unpack(b + 5 * bb + hdr), xg->q[5]));
            __m256i s67 = qr_avx2_pair(qr_avx2_isum(bits, unpack(b + 6 * bb + hdr), xg->q[6]),
                                       qr_avx2_isum(bits, unpack(b + 7 * bb + hdr), xg->q[7]));
            __m256i s0123 = qr_avx2_quad(s01, s23), s4567 = qr_avx2_quad(s45, s67);
            __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                                            _mm256_permute2x128_si256(s0123, s4567, 0x31));
            __m256 d = qr_avx2_f16x8(b, bb);
            __m256 xd = _mm256_loadu_ps(xg->d), xs = _mm256_loadu_ps(xg->s);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, xd), acc);
            if (has_min) {
                __m256 m = qr_avx2_f16x8(b + 2, bb);
                if (bits == 8)
                    m = _mm256_fmadd_ps(d, _mm256_set1_ps(128.0f), m);
                add = _mm256_fmadd_ps(m, xs, add);
            } else if (bits != 8) {
                add = _mm256_fmadd_ps(d, xs, add);
            }
        }
        float sum = qr_hsum256(acc), extra = qr_hsum256(add);
        /* The last, partial group: block by block. */
        for (size_t i = full * QR_X8_GROUP; i < nb; i++, b += bb) {
            const qr_x8_group *xg = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            uint16_t hd, hm;
            memcpy(&hd, b, 2);
            float d = _cvtsh_ss(hd);
            __m256 p = _mm256_cvtepi32_ps(qr_avx2_isum(bits, unpack(b + hdr), xg->q[k]));
            sum += qr_hsum256(p) * (d * xg->d[k]);
            if (has_min) {
                memcpy(&hm, b + 2, 2);
                float m = _cvtsh_ss(hm);
                extra += (bits == 8 ? m + 128.0f * d : m) * xg->s[k];
            } else if (bits != 8) {
                extra += d * xg->s[k];
            }
        }
        y[r] = has_min ? sum + extra : sum - off * extra;
    }
}

/* 32 codes -> 32 floats d·(q − off) (off 0 for the _1 types, then + m), as the reference. */
QR_AVX2 static inline void qr_avx2_codes_to_float(__m256i q, float d, int off, bool has_min, float m,
                                                  float *dst)
{
    __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    __m256i voff = _mm256_set1_epi32(off);
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256i qi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), voff);
        __m256 w = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(qi));
        if (has_min)
            w = _mm256_add_ps(w, vm);
        _mm256_storeu_ps(dst + 8 * k, w);
    }
}

QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_to_float(int bits, bool has_min, qr_avx2_unpack_fn unpack, const void *src, float *dst,
                 size_t n)
{
    const size_t bb = qr_block_size(bits, has_min);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / QR_QK; i++, b += bb) {
        uint16_t hd, hm = 0;
        memcpy(&hd, b, 2);
        if (has_min)
            memcpy(&hm, b + 2, 2);
        qr_avx2_codes_to_float(unpack(b + (has_min ? 4 : 2)), _cvtsh_ss(hd),
                               has_min ? 0 : 1 << (bits - 1), has_min, _cvtsh_ss(hm),
                               dst + i * QR_QK);
    }
}

/* The AVX2 kernel table of one type, qr_kernels_<T>_avx2, around its unpack function. */
#define QR_DEFINE_AVX2_KERNELS(T, BITS, HAS_MIN, UNPACK)                                           \
    QR_AVX2 static void T##_dot_x8_avx2(const void *w, size_t row_bytes, size_t n_rows,           \
                                        const qr_x8_group *x, size_t n, float *y)                  \
    {                                                                                              \
        qr_avx2_dot_x8(BITS, HAS_MIN, UNPACK, w, row_bytes, n_rows, x, n, y);                      \
    }                                                                                              \
    QR_AVX2 static void T##_to_float_avx2(const void *src, float *dst, size_t n)                   \
    {                                                                                              \
        qr_avx2_to_float(BITS, HAS_MIN, UNPACK, src, dst, n);                                      \
    }                                                                                              \
    static void T##_dot_rows_avx2(const void *w, size_t row_bytes, size_t n_rows, const float *x, \
                                  size_t n, float *y)                                              \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_avx2, qr_x8_prepare_avx2, qr_block_size(BITS, HAS_MIN), w,  \
                           row_bytes, n_rows, x, n, y);                                            \
    }                                                                                              \
    const qr_kernel_ops qr_kernels_##T##_avx2 = {#T "-avx2", T##_dot_rows_avx2,                    \
                                                 T##_to_float_avx2, qr_x8_prepare_avx2,            \
                                                 T##_dot_x8_avx2}
#endif

#endif
