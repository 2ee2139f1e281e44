/* dot_small.h: the decode products of the _s types (q4_s, q3_s, q2_s) where the CPU has VNNI
 * (internal to runtime/kernels, included by quant_common.h).
 *
 * An _s block is cheap to read (9 to 17 bytes), so its decode is bound by the instructions per
 * block rather than by memory, and qr_avx2_dot_x8's share of them that is not the codes'
 * multiply-add — maddubs's pairs widened by madd, and the transpose-and-add that reduces 8
 * blocks' sums to one vector — matters. Here vpdpbusd multiplies and sums to int32 in one op,
 * and each block's 8 int32 sums are scaled by its d·dx and added in float (one convert and one
 * FMA) into one of four accumulators, with no reduction across blocks; the scales of a group
 * are computed once and read back one broadcast per block (a load, not an ALU op).
 *
 * The codes need not be shifted down either: vpdpbusd reads them unsigned and widens to int32,
 * so a code may sit in its byte times a power of two (q2_s's crumb k of a byte is masked in
 * place as 4^k·q, q4_s's high nibble as 16·q), as long as every 8-byte lane of the vector has
 * one power. Each int32 lane's sums then carry that power exactly, and the lanes' powers are
 * taken out once per row: a multiply by a power of two, so the result rounds as if the codes
 * had been shifted. Only the order of the float additions differs from the reference. */
#ifndef QR_KERNELS_DOT_SMALL_H
#define QR_KERNELS_DOT_SMALL_H

#if defined(__x86_64__)
/* Groups whose scales are computed ahead of their blocks (4096 weights). */
#define QR_SMALL_GROUPS 16

/* The 1/power of two each of the 8 int32 lanes of a block's sums carries. */
typedef __m256 (*qr_avx2_lanes_fn)(void);

/* The scales of ng groups of blocks ahead of their products: dd[g][k] = d·dx of block k of group g,
 * and add += Σ d·s (the offset's share, taken out once per row). */
QR_AVX2 __attribute__((always_inline)) static inline __m256
qr_small_group_scales(const uint8_t *b, size_t bb, const qr_x8_group *x, size_t ng,
                      float dd[QR_SMALL_GROUPS][QR_X8_GROUP], __m256 add)
{
    for (size_t g = 0; g < ng; g++) {
        __m256 d = qr_avx2_e5m3x8(b + g * QR_X8_GROUP * bb, bb);
        _mm256_store_ps(dd[g], _mm256_mul_ps(d, _mm256_loadu_ps(x[g].d)));
        add = _mm256_fmadd_ps(d, _mm256_loadu_ps(x[g].s), add);
    }
    return add;
}

/* y[r] = Σ_blocks d·dx·Σ(q − 2^(B−1) + ½)·xq for an _s type: Σ d·dx·Σq·xq from the scaled
 * codes (`scaled` rebuilds them, `lanes` undoes their powers of two), minus off·Σ d·s, one FMA
 * per group as in qr_avx2_dot_x8. A last partial group goes block by block. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_vnni_dot_x8_small(int bits, qr_avx2_unpack_fn scaled, qr_avx2_lanes_fn lanes, qr_avx2_dot4_fn dot4,
                     const void *w, size_t row_bytes, size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    const size_t bb = qr_block_size(bits, QR_KIND_SMALL), nb = n / QR_QK, full = nb / QR_X8_GROUP;
    const float off = qr_block_off(bits, QR_KIND_SMALL);
    /* Groups whose scales are computed before their blocks: with the vector gather of
     * qr_avx2_e5m3x8 (strides below 16) up to QR_SMALL_GROUPS, so that no block waits for its
     * scale; the gather in general registers (q4_s) runs best beside its blocks. */
    const size_t ahead = bb < 16 ? QR_SMALL_GROUPS : 1;
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        __m256 add = _mm256_setzero_ps();
        for (size_t g0 = 0; g0 < full; g0 += ahead) {
            size_t ng = full - g0 < ahead ? full - g0 : ahead;
            _Alignas(32) float dd[QR_SMALL_GROUPS][QR_X8_GROUP];
            add = qr_small_group_scales(b, bb, &x[g0], ng, dd, add);
            for (size_t g = 0; g < ng; g++, b += QR_X8_GROUP * bb) {
                const qr_x8_group *xg = &x[g0 + g];
                for (size_t l = 0; l < QR_X8_GROUP * bb; l += 64)
                    _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
#pragma GCC unroll 8
                for (int k = 0; k < QR_X8_GROUP; k++) {
                    __m256i s = dot4(_mm256_setzero_si256(), scaled(b + (size_t)k * bb + 1),
                                     _mm256_loadu_si256((const __m256i *)xg->q[k]));
                    acc[k % 4] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_broadcast_ss(&dd[g][k]), acc[k % 4]);
                }
            }
        }
        float extra = 0.0f;
        for (size_t i = full * QR_X8_GROUP; i < nb; i++, b += bb) {
            const qr_x8_group *xg = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            float d = qr_avx2_scale1(QR_KIND_SMALL, b);
            __m256i s = dot4(_mm256_setzero_si256(), scaled(b + 1), _mm256_loadu_si256((const __m256i *)xg->q[k]));
            acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xg->d[k]), acc[0]);
            extra += d * xg->s[k];
        }
        __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        sum = _mm256_fmadd_ps(add, _mm256_set1_ps(-off), _mm256_mul_ps(sum, lanes()));
        y[r] = qr_hsum256(sum) - off * extra;
    }
}

/* The same product with 512-bit vectors, two blocks per instruction: the pair's codes in one
 * vector (each half as SCALED makes it), one vpdpbusd against x's two blocks (adjacent in the
 * group), one convert and one FMA with both blocks' d·dx picked from the group's 8 by a
 * permute. Fewer instructions per weight than qr_vnni_dot_x8_small (the unpack is still one per
 * block), which is what counts where decode is bound by instructions rather than memory: 1.1 to
 * 1.28 times the tokens/s on the 216M shape; the sums are the same, only their order differs. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline void
qr_avx512_dot_x8_small(int bits, qr_avx2_unpack_fn scaled, qr_avx2_lanes_fn lanes, const void *w,
                       size_t row_bytes, size_t n_rows, const qr_x8_group *x, size_t n, float *y)
{
    const size_t bb = qr_block_size(bits, QR_KIND_SMALL), nb = n / QR_QK, full = nb / QR_X8_GROUP;
    const float off = qr_block_off(bits, QR_KIND_SMALL);
    const size_t ahead = bb < 16 ? QR_SMALL_GROUPS : 1;
    /* Pair p of a group: lanes 0-7 take block 2p's d·dx, lanes 8-15 block 2p+1's. */
    const __m512i pick[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
        _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *b = (const uint8_t *)w + r * row_bytes;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        __m256 add = _mm256_setzero_ps();
        for (size_t g0 = 0; g0 < full; g0 += ahead) {
            size_t ng = full - g0 < ahead ? full - g0 : ahead;
            _Alignas(32) float dd[QR_SMALL_GROUPS][QR_X8_GROUP];
            add = qr_small_group_scales(b, bb, &x[g0], ng, dd, add);
            for (size_t g = 0; g < ng; g++, b += QR_X8_GROUP * bb) {
                const qr_x8_group *xg = &x[g0 + g];
                const __m512 ddv = _mm512_castps256_ps512(_mm256_load_ps(dd[g]));
                for (size_t l = 0; l < QR_X8_GROUP * bb; l += 64)
                    _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
#pragma GCC unroll 4
                for (int p = 0; p < QR_X8_GROUP / 2; p++) {
                    const uint8_t *bk = b + (size_t)(2 * p) * bb + 1;
                    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(scaled(bk)), scaled(bk + bb), 1);
                    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q,
                                                    _mm512_loadu_si512((const void *)xg->q[2 * p]));
                    acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_permutexvar_ps(pick[p], ddv), acc[p]);
                }
            }
        }
        __m512 s512 = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        __m256 sum = _mm256_add_ps(_mm512_castps512_ps256(s512), _mm512_extractf32x8_ps(s512, 1));
        float extra = 0.0f;
        for (size_t i = full * QR_X8_GROUP; i < nb; i++, b += bb) {
            const qr_x8_group *xg = &x[i / QR_X8_GROUP];
            size_t k = i % QR_X8_GROUP;
            float d = qr_avx2_scale1(QR_KIND_SMALL, b);
            __m256i s = qr_avx512_dot4(_mm256_setzero_si256(), scaled(b + 1),
                                       _mm256_loadu_si256((const __m256i *)xg->q[k]));
            sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xg->d[k]), sum);
            extra += d * xg->s[k];
        }
        sum = _mm256_fmadd_ps(add, _mm256_set1_ps(-off), _mm256_mul_ps(sum, lanes()));
        y[r] = qr_hsum256(sum) - off * extra;
    }
}

/* The x86-64 kernel tables of an _s type: the AVX2 kernels (qr_avx2_dot_x8 decodes with the
 * plain codes from UNPACK), and in the VNNI tables qr_vnni_dot_x8_small with the codes from
 * SCALED (AVX-VNNI) or qr_avx512_dot_x8_small with those from SCALED_512 (AVX-512, which may
 * use mask registers), whose lanes carry the powers of two LANES undoes. */
#define QR_DEFINE_AVX2_SMALL_KERNELS(T, BITS, UNPACK, SCALED, SCALED_512, LANES)                   \
    QR_DEFINE_AVX2_FUNCTIONS(T, BITS, QR_KIND_SMALL, UNPACK)                                       \
    QR_AVX_VNNI static void T##_dot_x8_avxvnni(const void *w, size_t row_bytes, size_t n_rows,     \
                                               const qr_x8_group *x, size_t n, float *y)           \
    {                                                                                              \
        qr_vnni_dot_x8_small(BITS, SCALED, LANES, qr_vnni_dot4, w, row_bytes, n_rows, x, n, y);    \
    }                                                                                              \
    QR_AVX512_VNNI static void T##_dot_x8_avx512vnni(const void *w, size_t row_bytes,              \
                                                     size_t n_rows, const qr_x8_group *x,          \
                                                     size_t n, float *y)                           \
    {                                                                                              \
        qr_avx512_dot_x8_small(BITS, SCALED_512, LANES, w, row_bytes, n_rows, x, n, y);           \
    }                                                                                              \
    static void T##_dot_rows_avxvnni(const void *w, size_t row_bytes, size_t n_rows,               \
                                     const float *x, size_t n, float *y)                           \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_avxvnni, qr_x8_prepare_avx2,                                 \
                           qr_block_size(BITS, QR_KIND_SMALL), w, row_bytes, n_rows, x, n, y);     \
    }                                                                                              \
    static void T##_dot_rows_avx512vnni(const void *w, size_t row_bytes, size_t n_rows,            \
                                        const float *x, size_t n, float *y)                        \
    {                                                                                              \
        qr_dot_rows_via_x8(T##_dot_x8_avx512vnni, qr_x8_prepare_avx2,                              \
                           qr_block_size(BITS, QR_KIND_SMALL), w, row_bytes, n_rows, x, n, y);     \
    }                                                                                              \
    QR_DEFINE_VNNI_TABLES(T, T##_dot_rows_avxvnni, T##_dot_x8_avxvnni, T##_dot_rows_avx512vnni,    \
                          T##_dot_x8_avx512vnni)
#endif

#endif
