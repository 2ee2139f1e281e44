/* quant_common.h: what the kernels of the quantized types share (internal to runtime/kernels).
 *
 * - The reference kernels, written once for every width and instantiated per type by
 *   QR_DEFINE_REF_KERNELS in kernels/q<B>.c: plain C, byte-addressed, correct on any CPU.
 * - The AVX2 (x86-64) and NEON (aarch64) building blocks the per-type SIMD kernels are made of:
 *   rebuilding 32 codes from their planes, and the 32-wide integer dot product with an x8 block
 *   (NEON: widening multiplies on any ARMv8.0 core, SDOT where the CPU has the dotprod feature).
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
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* ---------------------------------------------------------------- x8 (kernels/x8.c) */

/* Rounds n values (a multiple of 32) of x to 8-bit blocks, in qr_x8_groups(n) groups:
 * d = max|x|/127, q = round(x/d) to nearest even, s = d·Σq. The AVX2 version gives the same
 * bytes. */
void qr_x8_prepare_ref(const float *x, size_t n, qr_x8_group *xq);
#if defined(__x86_64__)
void qr_x8_prepare_avx2(const float *x, size_t n, qr_x8_group *xq);
void qr_x8_prepare_gemm_avx2(const float *x, size_t n, qr_x8_group *xq);
#endif
#if defined(__aarch64__)
void qr_x8_prepare_neon(const float *x, size_t n, qr_x8_group *xq);
void qr_x8_prepare_gemm_neon(const float *x, size_t n, qr_x8_group *xq);
#endif

/* dot_rows for an f32 x, by way of the x8 kernels: x is rounded a chunk at a time into a stack
 * buffer, so any width works without allocating (the decode path prepares x once instead,
 * in linear.c). */
void qr_dot_rows_via_x8(qr_dot_rows_x8_fn dot, void (*prepare)(const float *, size_t, qr_x8_group *),
                        size_t block_bytes, const void *w, size_t row_bytes, size_t n_rows,
                        const float *x, size_t n, float *y);

/* ---------------------------------------------------------------- reference */

/* The three block layouts (the KIND argument of the kernel macros; 0 and 1 read as the old
 * has_min flag): _0 (f16 d, w = d·(q − 2^(B−1))), _1 (f16 d and m, w = d·q + m) and _s (an
 * E5M3 byte d, w = d·(q − 2^(B−1) + ½)). */
enum { QR_KIND_SYM = 0, QR_KIND_MIN = 1, QR_KIND_SMALL = 2 };

/* Header bytes before a block's codes. */
static inline size_t qr_block_hdr(int kind)
{
    return kind == QR_KIND_MIN ? 4 : kind == QR_KIND_SMALL ? 1 : 2;
}

/* Bytes of a block of `bits`-bit codes: the header and 4·bits bytes of codes. */
static inline size_t qr_block_size(int bits, int kind)
{
    return qr_block_hdr(kind) + 4u * (size_t)bits;
}

/* The code offset: w = d·(q − off) (+ m for _1, whose offset is 0). Exact in f32. */
static inline float qr_block_off(int bits, int kind)
{
    return kind == QR_KIND_MIN ? 0.0f
           : kind == QR_KIND_SMALL ? (float)(1 << (bits - 1)) - 0.5f
                                   : (float)(1 << (bits - 1));
}

/* A block's scale d. */
static inline float qr_block_scale(int kind, const uint8_t *b)
{
    return kind == QR_KIND_SMALL ? qr_e5m3_to_f32(b[0]) : qr_f16_to_f32(qr_block_u16(b));
}

/* w = d·(q − off) for _0 and _s, w = d·q + m for _1 (a multiply, then an add: the SIMD
 * versions round the same way, so to_float is bit-exact across them). */
static inline void qr_ref_to_float(int bits, int kind, const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind);
    float off = qr_block_off(bits, kind);
    uint8_t q[32];
    for (size_t i = 0; i < n / QR_QK; i++, b += bb, dst += QR_QK) {
        float d = qr_block_scale(kind, b);
        qr_unpack_codes(bits, b + hdr, q);
        if (kind == QR_KIND_MIN) {
            float m = qr_f16_to_f32(qr_block_u16(b + 2));
            for (int j = 0; j < QR_QK; j++) {
                float t = d * (float)q[j];
                dst[j] = t + m;
            }
        } else {
            for (int j = 0; j < QR_QK; j++)
                dst[j] = d * ((float)q[j] - off);
        }
    }
}

/* y[r] = Σ_blocks d·dx·Σ(q − 2^(bits−1))·xq  (_0),  d·dx·Σq·xq + m·s  (_1)  or
 * (d/2)·dx·Σ(2q − 2^bits + 1)·xq  (_s): the integer sums are exact. */
static inline void qr_ref_dot_x8(int bits, int kind, const void *w, size_t row_bytes,
                                 size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind);
    int off = kind == QR_KIND_MIN ? 0 : 1 << (bits - 1);
    uint8_t q[32];
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        float sum = 0.0f;
        for (size_t i = 0; i < n / QR_QK; i++, b += bb) {
            const qr_x8_group *g = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            float d = qr_block_scale(kind, b);
            qr_unpack_codes(bits, b + hdr, q);
            int32_t isum = 0;
            if (kind == QR_KIND_SMALL) {
                for (int j = 0; j < QR_QK; j++)
                    isum += (2 * q[j] - 2 * off + 1) * g->q[k][j];
                d *= 0.5f;
            } else {
                for (int j = 0; j < QR_QK; j++)
                    isum += (q[j] - off) * g->q[k][j];
            }
            sum += d * g->d[k] * (float)isum;
            if (kind == QR_KIND_MIN)
                sum += qr_f16_to_f32(qr_block_u16(b + 2)) * g->s[k];
        }
        y[r] = sum;
    }
}

/* The reference kernel table of one type: qr_kernels_<T>_ref (KIND: QR_KIND_SYM, _MIN or
 * _SMALL). */
#define QR_DEFINE_REF_KERNELS(T, BITS, KIND)                                                       \
    static void T##_to_float_ref(const void *src, float *dst, size_t n)                            \
    {                                                                                              \
        qr_ref_to_float(BITS, KIND, src, dst, n);                                                  \
    }                                                                                              \
    static void T##_dot_x8_ref(const void *w, size_t row_bytes, size_t n_rows,                     \
                               const qr_x8_group *x, size_t n, float *y)                           \
    {                                                                                              \
        qr_ref_dot_x8(BITS, KIND, w, row_bytes, n_rows, x, n, y);                                  \
    }                                                                                              \
    static void T##_dot_rows_ref(const void *w, size_t row_bytes, size_t n_rows, const float *x,   \
                                 size_t n, float *y)                                               \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_ref, qr_x8_prepare_ref, qr_block_size(BITS, KIND), w,        \
                           row_bytes, n_rows, x, n, y);                                            \
    }                                                                                              \
    static void T##_gemm_x8_ref(const void *w, size_t row_bytes, size_t n_rows,                    \
                                const qr_x8_group *X, size_t n_x, size_t n, float *Y, size_t ldy)  \
    {                                                                                              \
        qr_ref_gemm_x8(BITS, KIND, w, row_bytes, n_rows, X, n_x, n, Y, ldy);                       \
    }                                                                                              \
    const qr_kernel_ops qr_kernels_##T##_ref = {#T "-ref",           T##_dot_rows_ref,             \
                                                T##_to_float_ref,    qr_x8_prepare_ref,            \
                                                T##_dot_x8_ref,      qr_x8_prepare_ref,            \
                                                T##_gemm_x8_ref}

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

/* A 32-bit plane -> 32 bytes, value[j] where bit j is set and 0 elsewhere. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_bitplane_v(const uint8_t *p, __m256i value)
{
    uint32_t u;
    memcpy(&u, p, 4);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                             0x0101010101010101ll, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, value);
}

/* A 32-bit plane -> 32 bytes, `value` where the bit is set and 0 elsewhere. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_bitplane(const uint8_t *p, char value)
{
    return qr_avx2_bitplane_v(p, _mm256_set1_epi8(value));
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

/* The shuffle that moves bytes 0 and `stride` of a 16-byte load to the high bytes of 16-bit
 * lanes 2j and 2j + 1, zeroing the rest (a constant at every call site). */
QR_AVX2 __attribute__((always_inline)) static inline __m128i qr_avx2_e5m3_pick(int j, int stride)
{
#define QR_PICK(i) (char)((i) == 4 * j + 1 ? 0 : (i) == 4 * j + 3 ? stride : -128)
    return _mm_setr_epi8(QR_PICK(0), QR_PICK(1), QR_PICK(2), QR_PICK(3), QR_PICK(4), QR_PICK(5),
                         QR_PICK(6), QR_PICK(7), QR_PICK(8), QR_PICK(9), QR_PICK(10), QR_PICK(11),
                         QR_PICK(12), QR_PICK(13), QR_PICK(14), QR_PICK(15));
#undef QR_PICK
}

/* 8 E5M3 header bytes `stride` bytes apart (within one group of 8 blocks), as 8 floats: each
 * byte moved into the top of an f16 (byte << 7), then one cvtph (exact, as qr_e5m3_to_f32).
 * Below 16 bytes of stride (q2_s, q3_s) each of four 16-byte loads holds two headers, placed by
 * one shuffle: 9 vector ops where assembling the bytes in general registers (as qr_avx2_f16x8
 * does, and as the wider q4_s stride needs) takes about 25, and the decode of the small types,
 * cheap to unpack, is bound by its ops per block. */
QR_AVX2 __attribute__((always_inline)) static inline __m256 qr_avx2_e5m3x8(const uint8_t *p,
                                                                           size_t stride)
{
    if (stride < 16) {
        __m128i h = _mm_setzero_si128();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + (size_t)(2 * j) * stride));
            h = _mm_or_si128(h, _mm_shuffle_epi8(v, qr_avx2_e5m3_pick(j, (int)stride)));
        }
        return _mm256_cvtph_ps(_mm_srli_epi16(h, 1));
    }
    uint64_t lo = 0, hi = 0;
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        lo |= (uint64_t)p[(size_t)k * stride] << (16 * k);
        hi |= (uint64_t)p[(size_t)(k + 4) * stride] << (16 * k);
    }
    __m128i h = _mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)lo), _mm_cvtsi64_si128((long long)hi));
    return _mm256_cvtph_ps(_mm_slli_epi16(h, 7));
}

/* The scales d of 8 blocks `stride` bytes apart (kind a constant at every call site). */
QR_AVX2 __attribute__((always_inline)) static inline __m256 qr_avx2_scale8(int kind, const uint8_t *p,
                                                                           size_t stride)
{
    return kind == QR_KIND_SMALL ? qr_avx2_e5m3x8(p, stride) : qr_avx2_f16x8(p, stride);
}

/* One block's scale d. */
QR_AVX2 __attribute__((always_inline)) static inline float qr_avx2_scale1(int kind, const uint8_t *p)
{
    uint16_t h;
    if (kind == QR_KIND_SMALL)
        h = (uint16_t)(p[0] << 7);
    else
        memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 32 codes rebuilt from a block's code bytes (the per-type part of every AVX2 kernel). */
typedef __m256i (*qr_avx2_unpack_fn)(const uint8_t *codes);

/* The decode loop of every quantized type, specialised per type by inlining (bits, kind and
 * unpack are constants at each call site). By far the hottest code of a quantized model.
 * Per block: rebuild 32 codes, multiply-add them with x's bytes in integers (exact). Per group of
 * 8 blocks: reduce the 8 blocks' sums to one vector, then one convert and one FMA apply the 8
 * scales d·dx at once. A _0 type's −2^(B−1) (an _s type's −2^(B−1) + ½) is taken out as
 * off·Σd·s, a _1 type's minimum adds Σm·s (s = dx·Σxq), one FMA per group each; 8-bit codes are
 * read as q − 128, so q8_0 needs no offset and q8_1 adds Σ(m + 128·d)·s. A last partial group
 * goes block by block. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_dot_x8(int bits, int kind, qr_avx2_unpack_fn unpack, const void *w, size_t row_bytes,
               size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    const bool has_min = kind == QR_KIND_MIN;
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind), nb = n / QR_QK;
    const size_t full = nb / QR_X8_GROUP;
    const float off = bits == 8 || has_min ? 0.0f : qr_block_off(bits, kind);
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
            __m256 d = qr_avx2_scale8(kind, b, bb);
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
            uint16_t hm;
            float d = qr_avx2_scale1(kind, b);
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

/* 32 codes -> 32 floats d·(q − off) (off 0 for the _1 types, then + m), as the reference: the
 * subtraction is exact (in integers, or in float for an _s type's half-integer offset), then
 * one multiply (and one add), so the result is the reference's to the bit. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_codes_to_float(__m256i q, float d, int kind, float off, float m, float *dst)
{
    __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m), foff = _mm256_set1_ps(off);
    __m256i voff = _mm256_set1_epi32((int)off);
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 qf;
        if (kind == QR_KIND_SMALL)
            qf = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k])), foff);
        else
            qf = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[k]), voff));
        __m256 w = _mm256_mul_ps(vd, qf);
        if (kind == QR_KIND_MIN)
            w = _mm256_add_ps(w, vm);
        _mm256_storeu_ps(dst + 8 * k, w);
    }
}

QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_to_float(int bits, int kind, qr_avx2_unpack_fn unpack, const void *src, float *dst,
                 size_t n)
{
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind);
    const float off = qr_block_off(bits, kind);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / QR_QK; i++, b += bb) {
        uint16_t hm = 0;
        if (kind == QR_KIND_MIN)
            memcpy(&hm, b + 2, 2);
        qr_avx2_codes_to_float(unpack(b + hdr), qr_avx2_scale1(kind, b), kind, off, _cvtsh_ss(hm),
                               dst + i * QR_QK);
    }
}

/* The AVX2 kernels of one type around its unpack function (KIND: QR_KIND_SYM, _MIN or _SMALL):
 * decode, to_float and the chunk products, and the table qr_kernels_<T>_avx2. */
#define QR_DEFINE_AVX2_FUNCTIONS(T, BITS, KIND, UNPACK)                                            \
    QR_AVX2 static void T##_dot_x8_avx2(const void *w, size_t row_bytes, size_t n_rows,            \
                                        const qr_x8_group *x, size_t n, float *y)                  \
    {                                                                                              \
        qr_avx2_dot_x8(BITS, KIND, UNPACK, w, row_bytes, n_rows, x, n, y);                         \
    }                                                                                              \
    QR_AVX2 static void T##_to_float_avx2(const void *src, float *dst, size_t n)                   \
    {                                                                                              \
        qr_avx2_to_float(BITS, KIND, UNPACK, src, dst, n);                                         \
    }                                                                                              \
    static void T##_dot_rows_avx2(const void *w, size_t row_bytes, size_t n_rows, const float *x,  \
                                  size_t n, float *y)                                              \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_avx2, qr_x8_prepare_avx2, qr_block_size(BITS, KIND), w,      \
                           row_bytes, n_rows, x, n, y);                                            \
    }                                                                                              \
    QR_AVX2 static void T##_gemm_x8_avx2(const void *w, size_t row_bytes, size_t n_rows,           \
                                         const qr_x8_group *X, size_t n_x, size_t n, float *Y,     \
                                         size_t ldy)                                               \
    {                                                                                              \
        qr_avx2_gemm_x8(BITS, KIND, false, UNPACK, qr_avx2_dot4_unused, w, row_bytes, n_rows,      \
                        X, n_x, n, Y, ldy);                                                        \
    }                                                                                              \
    QR_AVX_VNNI static void T##_gemm_x8_avxvnni(const void *w, size_t row_bytes, size_t n_rows,    \
                                                const qr_x8_group *X, size_t n_x, size_t n,        \
                                                float *Y, size_t ldy)                              \
    {                                                                                              \
        qr_avx2_gemm_x8(BITS, KIND, true, UNPACK, qr_vnni_dot4, w, row_bytes, n_rows, X, n_x,      \
                        n, Y, ldy);                                                                \
    }                                                                                              \
    const qr_kernel_ops qr_kernels_##T##_avx2 = {#T "-avx2",          T##_dot_rows_avx2,           \
                                                 T##_to_float_avx2,   qr_x8_prepare_avx2,          \
                                                 T##_dot_x8_avx2,     qr_x8_prepare_gemm_avx2,     \
                                                 T##_gemm_x8_avx2};                                \
    QR_AVX512_VNNI static void T##_gemm_x8_avx512vnni(const void *w, size_t row_bytes,             \
                                                      size_t n_rows, const qr_x8_group *X,         \
                                                      size_t n_x, size_t n, float *Y, size_t ldy)  \
    {                                                                                              \
        qr_avx512_gemm_x8(BITS, KIND, UNPACK, w, row_bytes, n_rows, X, n_x, n, Y, ldy);            \
    }

/* The tables qr_kernels_<T>_avxvnni and _avx512vnni: the AVX2 kernels with the chunk products
 * in VNNI, and the decode products given (the AVX2 ones, or the _s types' VNNI ones). */
#define QR_DEFINE_VNNI_TABLES(T, ROWS_VNNI, X8_VNNI, ROWS_512, X8_512)                             \
    const qr_kernel_ops qr_kernels_##T##_avxvnni = {#T "-avxvnni",       ROWS_VNNI,                \
                                                    T##_to_float_avx2,   qr_x8_prepare_avx2,       \
                                                    X8_VNNI,             qr_x8_prepare_gemm_avx2,  \
                                                    T##_gemm_x8_avxvnni};                          \
    const qr_kernel_ops qr_kernels_##T##_avx512vnni = {#T "-avx512vnni",    ROWS_512,              \
                                                       T##_to_float_avx2,   qr_x8_prepare_avx2,    \
                                                       X8_512,              qr_x8_prepare_gemm_avx2, \
                                                       T##_gemm_x8_avx512vnni}

/* Every x86-64 kernel table of one type around its unpack function: qr_kernels_<T>_avx2,
 * _avxvnni and _avx512vnni, all three decoding with qr_avx2_dot_x8. */
#define QR_DEFINE_AVX2_KERNELS(T, BITS, KIND, UNPACK)                                              \
    QR_DEFINE_AVX2_FUNCTIONS(T, BITS, KIND, UNPACK)                                                \
    QR_DEFINE_VNNI_TABLES(T, T##_dot_rows_avx2, T##_dot_x8_avx2, T##_dot_rows_avx2, T##_dot_x8_avx2)
#endif

/* ---------------------------------------------------------------- NEON building blocks */

#if defined(__aarch64__)
/* Functions that use SDOT (vdotq_s32). arm_neon.h declares it for armv8.2-a+dotprod, so the
 * whole function is compiled for that; it only runs where qr_cpu_has_dotprod() said so (every
 * core with dotprod is an ARMv8.2 core). */
#define QR_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define QR_NEON_INLINE __attribute__((always_inline)) static inline

/* The 32 codes of a block, 0..255: lo = q[0..15], hi = q[16..31]. */
typedef struct {
    uint8x16_t lo, hi;
} qr_neon_codes;

/* An f16 header field, converted by the FPU (exact, as qr_f16_to_f32). */
QR_NEON_INLINE float qr_neon_f16(const uint8_t *p)
{
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* 4 f16 header fields `stride` bytes apart, as 4 floats. */
QR_NEON_INLINE float32x4_t qr_neon_f16x4(const uint8_t *p, size_t stride)
{
    uint64_t u = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a;
        memcpy(&a, p + (size_t)k * stride, 2);
        u |= (uint64_t)a << (16 * k);
    }
    return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(u)));
}

/* 4 E5M3 header bytes `stride` bytes apart, as 4 floats: each byte moved into the top of an
 * f16 (byte << 7), then one FPU conversion (exact, as qr_e5m3_to_f32). */
QR_NEON_INLINE float32x4_t qr_neon_e5m3x4(const uint8_t *p, size_t stride)
{
    uint64_t u = 0;
    for (int k = 0; k < 4; k++)
        u |= (uint64_t)p[(size_t)k * stride] << (16 * k + 7);
    return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(u)));
}

/* The scales d of 4 blocks `stride` bytes apart (kind a constant at every call site). */
QR_NEON_INLINE float32x4_t qr_neon_scale4(int kind, const uint8_t *p, size_t stride)
{
    return kind == QR_KIND_SMALL ? qr_neon_e5m3x4(p, stride) : qr_neon_f16x4(p, stride);
}

/* One block's scale d. */
QR_NEON_INLINE float qr_neon_scale1(int kind, const uint8_t *p)
{
    if (kind != QR_KIND_SMALL)
        return qr_neon_f16(p);
    uint16_t u = (uint16_t)(p[0] << 7);
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}

/* 16 bytes of nibbles -> 32 codes 0..15: low nibbles are q[0..15], high nibbles q[16..31]. */
QR_NEON_INLINE qr_neon_codes qr_neon_nibbles(const uint8_t *p)
{
    uint8x16_t v = vld1q_u8(p);
    return (qr_neon_codes){vandq_u8(v, vdupq_n_u8(15)), vshrq_n_u8(v, 4)};
}

/* 8 bytes of crumbs -> 32 codes 0..3: q[j + 8k] is bits 2k..2k+1 of byte j. */
QR_NEON_INLINE qr_neon_codes qr_neon_crumbs(const uint8_t *p)
{
    uint8x8_t v = vld1_u8(p), three = vdup_n_u8(3);
    return (qr_neon_codes){vcombine_u8(vand_u8(v, three), vand_u8(vshr_n_u8(v, 2), three)),
                           vcombine_u8(vand_u8(vshr_n_u8(v, 4), three), vshr_n_u8(v, 6))};
}

/* A 32-bit little-endian plane -> 32 bytes, `value` where bit j is set and 0 elsewhere: each
 * plane byte is spread over 8 lanes by a table lookup, and lane i tests bit i. */
QR_NEON_INLINE qr_neon_codes qr_neon_bitplane(const uint8_t *p, uint8_t value)
{
    uint32_t u;
    memcpy(&u, p, 4);
    uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(u));
    const uint8x16_t idx_lo = vcombine_u8(vcreate_u8(0), vcreate_u8(0x0101010101010101ull));
    const uint8x16_t idx_hi = vcombine_u8(vcreate_u8(0x0202020202020202ull),
                                          vcreate_u8(0x0303030303030303ull));
    const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    const uint8x16_t val = vdupq_n_u8(value);
    return (qr_neon_codes){vandq_u8(vtstq_u8(vqtbl1q_u8(v, idx_lo), bit), val),
                           vandq_u8(vtstq_u8(vqtbl1q_u8(v, idx_hi), bit), val)};
}

QR_NEON_INLINE qr_neon_codes qr_neon_or(qr_neon_codes a, qr_neon_codes b)
{
    return (qr_neon_codes){vorrq_u8(a.lo, b.lo), vorrq_u8(a.hi, b.hi)};
}

/* 32 codes rebuilt from a block's code bytes (the per-type part of every NEON kernel). */
typedef qr_neon_codes (*qr_neon_unpack_fn)(const uint8_t *codes);

/* Codes as signed bytes for the multiplies: as they are below 128 (6 bits or fewer); 8-bit
 * codes as q − 128 (the top bit flipped), which the callers account for. */
QR_NEON_INLINE int8x16_t qr_neon_signed(int bits, uint8x16_t q)
{
    return vreinterpretq_s8_u8(bits == 8 ? veorq_u8(q, vdupq_n_u8(0x80)) : q);
}

/* Σ q[j]·xq[j] over one block as 4 int32 partial sums, exactly. ARMv8.0 (Cortex-A72): widening
 * multiplies to int16, two products per lane (|q|·|xq| ≤ 128·127, so a pair stays below 2^15),
 * then a pairwise widening add to int32. */
typedef int32x4_t (*qr_neon_isum_fn)(int bits, qr_neon_codes q, const int8_t *xq);

QR_NEON_INLINE int32x4_t qr_neon_isum_mull(int bits, qr_neon_codes q, const int8_t *xq)
{
    int8x16_t a = qr_neon_signed(bits, q.lo), b = qr_neon_signed(bits, q.hi);
    int8x16_t xa = vld1q_s8(xq), xb = vld1q_s8(xq + 16);
    int16x8_t pa = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(xa)), a, xa);
    int16x8_t pb = vmlal_high_s8(vmull_s8(vget_low_s8(b), vget_low_s8(xb)), b, xb);
    return vpadalq_s16(vpaddlq_s16(pa), pb);
}

/* The same with SDOT (Cortex-A76/A78: Pi 5, Jetson Orin): 4 products per lane in one op. */
QR_DOTPROD QR_NEON_INLINE int32x4_t qr_neon_isum_sdot(int bits, qr_neon_codes q, const int8_t *xq)
{
    int32x4_t acc = vdotq_s32(vdupq_n_s32(0), qr_neon_signed(bits, q.lo), vld1q_s8(xq));
    return vdotq_s32(acc, qr_neon_signed(bits, q.hi), vld1q_s8(xq + 16));
}

/* The decode loop of every quantized type on aarch64, specialised per type and per multiply
 * (isum) by inlining; the same arithmetic as qr_avx2_dot_x8, 4 blocks at a time. Per block:
 * rebuild 32 codes, multiply-add them with x's bytes in integers (exact). Per 4 blocks: one
 * pairwise reduction gives their 4 sums, then one convert and one FMA apply the 4 scales d·dx.
 * A _0 type's −2^(B−1) (an _s type's −2^(B−1) + ½) is taken out as off·Σd·s, a _1 type's
 * minimum adds Σm·s; 8-bit codes are read as q − 128, so q8_0 needs no offset and q8_1 adds
 * Σ(m + 128·d)·s. */
QR_NEON_INLINE void qr_neon_dot_x8(int bits, int kind, qr_neon_unpack_fn unpack,
                                   qr_neon_isum_fn isum, const void *w, size_t row_bytes,
                                   size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    const bool has_min = kind == QR_KIND_MIN;
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind), nb = n / QR_QK;
    const float off = bits == 8 || has_min ? 0.0f : qr_block_off(bits, kind);
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        float32x4_t acc = vdupq_n_f32(0.0f), add = vdupq_n_f32(0.0f);
        size_t i = 0;
        for (; i + 4 <= nb; i += 4, b += 4 * bb) {
            /* 4 blocks never straddle a group (QR_X8_GROUP is 8). */
            const qr_x8_group *xg = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            int32x4_t s0 = isum(bits, unpack(b + hdr), xg->q[k]);
            int32x4_t s1 = isum(bits, unpack(b + bb + hdr), xg->q[k + 1]);
            int32x4_t s2 = isum(bits, unpack(b + 2 * bb + hdr), xg->q[k + 2]);
            int32x4_t s3 = isum(bits, unpack(b + 3 * bb + hdr), xg->q[k + 3]);
            int32x4_t sums = vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
            float32x4_t d = qr_neon_scale4(kind, b, bb);
            acc = vfmaq_f32(acc, vcvtq_f32_s32(sums), vmulq_f32(d, vld1q_f32(&xg->d[k])));
            float32x4_t xs = vld1q_f32(&xg->s[k]);
            if (has_min) {
                float32x4_t m = qr_neon_f16x4(b + 2, bb);
                if (bits == 8)
                    m = vfmaq_f32(m, d, vdupq_n_f32(128.0f));
                add = vfmaq_f32(add, m, xs);
            } else if (bits != 8) {
                add = vfmaq_f32(add, d, xs);
            }
        }
        float sum = vaddvq_f32(acc), extra = vaddvq_f32(add);
        /* The last 1..3 blocks, one by one. */
        for (; i < nb; i++, b += bb) {
            const qr_x8_group *xg = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            float d = qr_neon_scale1(kind, b);
            sum += (float)vaddvq_s32(isum(bits, unpack(b + hdr), xg->q[k])) * (d * xg->d[k]);
            if (has_min) {
                float m = qr_neon_f16(b + 2);
                extra += (bits == 8 ? m + 128.0f * d : m) * xg->s[k];
            } else if (bits != 8) {
                extra += d * xg->s[k];
            }
        }
        y[r] = has_min ? sum + extra : sum - off * extra;
    }
}

/* 16 codes -> 16 floats d·(q − off) (then + m), rounded as the reference: an exact subtract
 * (in integers, or in float for an _s type's half-integer offset) and convert, a multiply, then
 * an add (no FMA), so to_float is bit-exact. */
QR_NEON_INLINE void qr_neon_codes16_to_float(uint8x16_t q, float32x4_t d, int kind, float off,
                                             float32x4_t m, float *dst)
{
    const int32x4_t ioff = vdupq_n_s32((int)off);
    const float32x4_t foff = vdupq_n_f32(off);
    uint16x8_t h[2] = {vmovl_u8(vget_low_u8(q)), vmovl_high_u8(q)};
    for (int k = 0; k < 2; k++) {
        int32x4_t a = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h[k])));
        int32x4_t c = vreinterpretq_s32_u32(vmovl_high_u16(h[k]));
        float32x4_t fa, fc;
        if (kind == QR_KIND_SMALL) {
            fa = vsubq_f32(vcvtq_f32_s32(a), foff);
            fc = vsubq_f32(vcvtq_f32_s32(c), foff);
        } else {
            fa = vcvtq_f32_s32(vsubq_s32(a, ioff));
            fc = vcvtq_f32_s32(vsubq_s32(c, ioff));
        }
        float32x4_t wa = vmulq_f32(d, fa), wc = vmulq_f32(d, fc);
        if (kind == QR_KIND_MIN) {
            wa = vaddq_f32(wa, m);
            wc = vaddq_f32(wc, m);
        }
        vst1q_f32(dst + 8 * k, wa);
        vst1q_f32(dst + 8 * k + 4, wc);
    }
}

QR_NEON_INLINE void qr_neon_to_float(int bits, int kind, qr_neon_unpack_fn unpack,
                                     const void *src, float *dst, size_t n)
{
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind);
    const float off = qr_block_off(bits, kind);
    const uint8_t *b = src;
    for (size_t i = 0; i < n / QR_QK; i++, b += bb, dst += QR_QK) {
        float32x4_t d = vdupq_n_f32(qr_neon_scale1(kind, b));
        float32x4_t m = vdupq_n_f32(kind == QR_KIND_MIN ? qr_neon_f16(b + 2) : 0.0f);
        qr_neon_codes q = unpack(b + hdr);
        qr_neon_codes16_to_float(q.lo, d, kind, off, m, dst);
        qr_neon_codes16_to_float(q.hi, d, kind, off, m, dst + 16);
    }
}

/* The NEON kernel tables of one type around its unpack function: qr_kernels_<T>_neon (any
 * ARMv8.0 core) and qr_kernels_<T>_neon_dotprod (SDOT); they share prepare_x and to_float (KIND:
 * QR_KIND_SYM, _MIN or _SMALL). */
#define QR_DEFINE_NEON_KERNELS(T, BITS, KIND, UNPACK)                                              \
    static void T##_dot_x8_neon(const void *w, size_t row_bytes, size_t n_rows,                    \
                                const qr_x8_group *x, size_t n, float *y)                          \
    {                                                                                              \
        qr_neon_dot_x8(BITS, KIND, UNPACK, qr_neon_isum_mull, w, row_bytes, n_rows, x, n, y);      \
    }                                                                                              \
    QR_DOTPROD static void T##_dot_x8_neon_dotprod(const void *w, size_t row_bytes, size_t n_rows, \
                                                   const qr_x8_group *x, size_t n, float *y)       \
    {                                                                                              \
        qr_neon_dot_x8(BITS, KIND, UNPACK, qr_neon_isum_sdot, w, row_bytes, n_rows, x, n, y);      \
    }                                                                                              \
    static void T##_to_float_neon(const void *src, float *dst, size_t n)                           \
    {                                                                                              \
        qr_neon_to_float(BITS, KIND, UNPACK, src, dst, n);                                         \
    }                                                                                              \
    static void T##_dot_rows_neon(const void *w, size_t row_bytes, size_t n_rows, const float *x,  \
                                  size_t n, float *y)                                              \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_neon, qr_x8_prepare_neon, qr_block_size(BITS, KIND), w,      \
                           row_bytes, n_rows, x, n, y);                                            \
    }                                                                                              \
    static void T##_dot_rows_neon_dotprod(const void *w, size_t row_bytes, size_t n_rows,          \
                                          const float *x, size_t n, float *y)                      \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_neon_dotprod, qr_x8_prepare_neon,                            \
                           qr_block_size(BITS, KIND), w, row_bytes, n_rows, x, n, y);              \
    }                                                                                              \
    static void T##_gemm_x8_neon(const void *w, size_t row_bytes, size_t n_rows,                   \
                                 const qr_x8_group *X, size_t n_x, size_t n, float *Y, size_t ldy) \
    {                                                                                              \
        qr_neon_gemm_x8(BITS, KIND, UNPACK, qr_neon_gemm_half_mull, w, row_bytes, n_rows, X,       \
                        n_x, n, Y, ldy);                                                           \
    }                                                                                              \
    QR_DOTPROD static void T##_gemm_x8_neon_dotprod(const void *w, size_t row_bytes,               \
                                                    size_t n_rows, const qr_x8_group *X,           \
                                                    size_t n_x, size_t n, float *Y, size_t ldy)    \
    {                                                                                              \
        qr_neon_gemm_x8(BITS, KIND, UNPACK, qr_neon_gemm_half_sdot, w, row_bytes, n_rows, X,       \
                        n_x, n, Y, ldy);                                                           \
    }                                                                                              \
    const qr_kernel_ops qr_kernels_##T##_neon = {#T "-neon",          T##_dot_rows_neon,           \
                                                 T##_to_float_neon,   qr_x8_prepare_neon,          \
                                                 T##_dot_x8_neon,     qr_x8_prepare_gemm_neon,     \
                                                 T##_gemm_x8_neon};                                \
    const qr_kernel_ops qr_kernels_##T##_neon_dotprod = {                                          \
        #T "-neon-dotprod",        T##_dot_rows_neon_dotprod, T##_to_float_neon, qr_x8_prepare_neon, \
        T##_dot_x8_neon_dotprod, qr_x8_prepare_gemm_neon,   T##_gemm_x8_neon_dotprod}
#endif

#include "gemm_x8.h"
#include "dot_small.h"

#endif
