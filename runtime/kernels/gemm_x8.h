/* gemm_x8.h: the matrix-matrix products of the quantized types (internal to runtime/kernels,
 * included by quant_common.h): Y = X·Wᵀ for the many rows of x a chunk of one sequence gives,
 * x rounded to 8-bit blocks as decode rounds it.
 *
 * Decode reads every weight once per token, so it runs at memory speed; a chunk of T tokens
 * reads each weight once for all T and the integer arithmetic becomes the bound. What makes it
 * cheap here is the layout, not the multiplies: each group of 8 blocks of x is stored
 * interleaved, vector j holding bytes 4j..4j+3 of each of the 8 blocks (lane k = block k), and
 * the weights' 8 blocks are unpacked and transposed the same way once per row and group. Then 8
 * multiply-adds of 4 bytes per lane (maddubs + madd, or VNNI's vpdpbusd, or NEON's SDOT) leave
 * block k's whole integer sum in lane k, and one convert and two FMAs apply the 8 blocks'
 * scales and offsets — no per-block reduction at all. The transpose costs about 60 operations
 * per row and group, paid once for up to GEMM_X_PASS rows of x.
 *
 * Every type is written as w = d·q + m′ with unsigned codes q: m′ = m for the _1 types,
 * −2^(B−1)·d for the _0 types and (½ − 2^(B−1))·d for the _s types, so Σ w·x = d·dx·Σ q·xq + m′·s (s = dx·Σxq, kept in the x8
 * group). For 8-bit codes every path sums Σ(q − 128)·xq exactly in integers, as decode does, and
 * adds 128·d to m′: Σq·xq and 128·Σxq are large and nearly cancel, and cancelling them in float
 * (after scaling) lost up to 1e-4 of the membranes' inputs over a chunk. Multiplies that read
 * codes as signed bytes (maddubs's saturation, NEON's signed multiplies) read them as q − 128;
 * vpdpbusd reads them unsigned and subtracts 128·Σxq per block, from x's side once per pass. */
#ifndef QR_KERNELS_GEMM_X8_H
#define QR_KERNELS_GEMM_X8_H

/* Rows of W per tile and rows of x per pass: a tile's accumulators (4 × 64 × 8 floats, 8 KiB)
 * and a group of a pass's x (64 × 320 bytes) stay in L1 together. */
#define QR_GEMM_W_TILE 4
#define QR_GEMM_X_PASS 64

/* ---------------------------------------------------------------- reference */

/* Row c of Y is the reference decode product of every row of W with row c of X (plain layout,
 * as prepare_x writes it): the definition every SIMD gemm is held to. */
static inline void qr_ref_gemm_x8(int bits, int kind, const void *w, size_t row_bytes, size_t n_rows,
                                  const qr_x8_group *X, size_t n_x, size_t n, float *Y, size_t ldy)
{
    size_t groups = qr_x8_groups(n);
    for (size_t c = 0; c < n_x; c++)
        qr_ref_dot_x8(bits, kind, w, row_bytes, n_rows, X + c * groups, n, Y + c * ldy);
}

/* The 8 blocks of group g of a row, or, for a last group with fewer blocks, a zeroed copy with
 * those blocks (d = 0 and codes 0 past them: they add nothing, and nothing past the row is
 * read). */
static inline const uint8_t *qr_gemm_group_blocks(const uint8_t *row, size_t g, size_t nb, size_t bb,
                                                  uint8_t *spare)
{
    const uint8_t *b = row + g * QR_X8_GROUP * bb;
    size_t have = nb - g * QR_X8_GROUP;
    if (have >= QR_X8_GROUP)
        return b;
    memset(spare, 0, QR_X8_GROUP * bb);
    memcpy(spare, b, have * bb);
    return spare;
}

/* Largest block size of any type (q8_1): room for a zero-padded group. */
#define QR_GEMM_MAX_BLOCK 36

/* ---------------------------------------------------------------- AVX2 */

#if defined(__x86_64__)
#define QR_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

/* Adds Σ of 4 products per int32 lane of codes (bytes) and x (signed bytes). */
typedef __m256i (*qr_avx2_dot4_fn)(__m256i acc, __m256i codes, __m256i x);

/* Codes as they are (the VNNI kernels: unsigned bytes, any width). */
QR_AVX_VNNI __attribute__((always_inline)) static inline __m256i qr_vnni_dot4(__m256i acc, __m256i q, __m256i x)
{
    return _mm256_dpbusd_avx_epi32(acc, q, x);
}

/* maddubs pairs summed to int32 by madd; the kernel's int16 sums below go through this for
 * the last step only. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_madd1(__m256i acc, __m256i p16)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* The 8×8 transpose of 32-bit elements: v[k] lane j -> t[j] lane k. */
QR_AVX2 __attribute__((always_inline)) static inline void qr_avx2_transpose8(__m256i v[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        v[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* How many maddubs results (pairs of products, in int16) can be added before one madd without
 * overflow: |pair| ≤ 2·qmax·127 with qmax the largest code magnitude (128 for signed 8-bit). */
static inline int qr_gemm_int16_slices(int bits)
{
    int qmax = bits == 8 ? 128 : (1 << bits) - 1, n = 32767 / (2 * qmax * 127);
    return n >= 8 ? 8 : n >= 4 ? 4 : n >= 2 ? 2 : 1;
}

/* Half of one block group's integer sums (lane k = block k) of codes q against one row of x:
 * vectors j = half, half + 2, ... (the even or the odd ones), so the two halves are two
 * independent chains. qa: the codes' magnitudes for maddubs (signed8), else q. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i
qr_avx2_gemm_isum(bool vnni, bool signed8, int slices16, qr_avx2_dot4_fn dot4, const __m256i q[8],
                  const __m256i qa[8], const qr_x8_group *xg, int half)
{
    __m256i s = _mm256_setzero_si256();
    if (vnni) {
#pragma GCC unroll 4
        for (int j = half; j < 8; j += 2)
            s = dot4(s, q[j], _mm256_loadu_si256((const __m256i *)xg->q[j]));
        return s;
    }
    /* maddubs pairs of the half's 4 vectors summed in int16 as long as they cannot overflow */
    int run = slices16;
#pragma GCC unroll 4
    for (int j0 = half; j0 < 8; j0 += 2 * run) {
        __m256i p = _mm256_setzero_si256();
        for (int j = j0; j < j0 + 2 * run && j < 8; j += 2) {
            __m256i x = _mm256_loadu_si256((const __m256i *)xg->q[j]);
            if (signed8)
                x = _mm256_sign_epi8(x, q[j]);
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(qa[j], x));
        }
        s = qr_avx2_madd1(s, p);
    }
    return s;
}

/* Σxq of each block of an interleaved x group (lane k = block k), shifted left by `shift`:
 * vpdpbusd of all-ones bytes against x. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_x_block_sums(qr_avx2_dot4_fn dot4,
                                                                                   const qr_x8_group *xg, int shift)
{
    __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        s = dot4(s, _mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)xg->q[j]));
    return _mm256_slli_epi32(s, shift);
}

/* acc (8 floats, one per block) += the group's sums scaled by d·dx, plus m′·s; the first group
 * (g = 0) starts it. */
QR_AVX2 __attribute__((always_inline)) static inline void qr_avx2_gemm_scale(float *acc, size_t g, __m256i sums,
                                                                              __m256 d, __m256 m,
                                                                              const qr_x8_group *xg)
{
    __m256 a = g ? _mm256_load_ps(acc) : _mm256_setzero_ps();
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, _mm256_loadu_ps(xg->d)), a);
    a = _mm256_fmadd_ps(m, _mm256_loadu_ps(xg->s), a);
    _mm256_store_ps(acc, a);
}

/* Y[c·ldy + r] = row r of W · row c of X (interleaved x8, qr_x8_prepare_gemm_avx2). vnni: codes
 * meet x in vpdpbusd (unsigned codes of any width); otherwise in maddubs, 8-bit codes as
 * q − 128 with the sign moved onto x, up to qr_gemm_int16_slices pairs summed in int16 before
 * one madd. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_gemm_x8(int bits, int kind, bool vnni, qr_avx2_unpack_fn unpack, qr_avx2_dot4_fn dot4,
                const void *w, size_t row_bytes, size_t n_rows, const qr_x8_group *X, size_t n_x, size_t n,
                float *Y, size_t ldy)
{
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind), nb = n / QR_QK;
    const size_t groups = qr_x8_groups(n);
    const bool signed8 = bits == 8 && !vnni, corrected8 = bits == 8 && vnni;
    const int slices16 = qr_gemm_int16_slices(bits);
    const float off = qr_block_off(bits, kind), lift = bits == 8 ? 128.0f : 0.0f;
    _Alignas(32) float acc[QR_GEMM_W_TILE][QR_GEMM_X_PASS][8];
    _Alignas(32) int32_t corr[QR_GEMM_X_PASS][8]; /* 128·Σxq per block (corrected8) */
    uint8_t spare[QR_X8_GROUP * QR_GEMM_MAX_BLOCK];
    for (size_t r0 = 0; r0 < n_rows; r0 += QR_GEMM_W_TILE) {
        size_t nr = n_rows - r0 < QR_GEMM_W_TILE ? n_rows - r0 : QR_GEMM_W_TILE;
        for (size_t c0 = 0; c0 < n_x; c0 += QR_GEMM_X_PASS) {
            size_t nc = n_x - c0 < QR_GEMM_X_PASS ? n_x - c0 : QR_GEMM_X_PASS;
            for (size_t g = 0; g < groups; g++) {
                for (size_t c = 0; corrected8 && c < nc; c++)
                    _mm256_store_si256((__m256i *)corr[c], qr_avx2_x_block_sums(dot4, &X[(c0 + c) * groups + g], 7));
                for (size_t i = 0; i < nr; i++) {
                    const uint8_t *b = qr_gemm_group_blocks((const uint8_t *)w + (r0 + i) * row_bytes, g, nb, bb, spare);
                    __m256i q[8];
#pragma GCC unroll 8
                    for (int k = 0; k < 8; k++) {
                        q[k] = unpack(b + (size_t)k * bb + hdr);
                        if (signed8)
                            q[k] = _mm256_xor_si256(q[k], _mm256_set1_epi8((char)0x80));
                    }
                    qr_avx2_transpose8(q);
                    __m256i qa[8];
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++)
                        qa[j] = signed8 ? _mm256_abs_epi8(q[j]) : q[j];
                    __m256 d = qr_avx2_scale8(kind, b, bb);
                    __m256 m = kind == QR_KIND_MIN ? qr_avx2_f16x8(b + 2, bb)
                                                   : _mm256_mul_ps(d, _mm256_set1_ps(-off));
                    if (lift != 0.0f)
                        m = _mm256_fmadd_ps(d, _mm256_set1_ps(lift), m);
                    /* Two rows of x at a time, each in two chains of multiply-adds: four
                     * independent chains hide vpdpbusd's latency. */
                    size_t c = 0;
                    for (; c + 2 <= nc; c += 2) {
                        const qr_x8_group *x0 = &X[(c0 + c) * groups + g], *x1 = x0 + groups;
                        __m256i s0 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x0, 0);
                        __m256i s1 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x1, 0);
                        __m256i t0 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x0, 1);
                        __m256i t1 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x1, 1);
                        __m256i u0 = _mm256_add_epi32(s0, t0), u1 = _mm256_add_epi32(s1, t1);
                        if (corrected8) {
                            u0 = _mm256_sub_epi32(u0, _mm256_load_si256((const __m256i *)corr[c]));
                            u1 = _mm256_sub_epi32(u1, _mm256_load_si256((const __m256i *)corr[c + 1]));
                        }
                        qr_avx2_gemm_scale(acc[i][c], g, u0, d, m, x0);
                        qr_avx2_gemm_scale(acc[i][c + 1], g, u1, d, m, x1);
                    }
                    if (c < nc) {
                        const qr_x8_group *x0 = &X[(c0 + c) * groups + g];
                        __m256i s0 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x0, 0);
                        __m256i t0 = qr_avx2_gemm_isum(vnni, signed8, slices16, dot4, q, qa, x0, 1);
                        __m256i u0 = _mm256_add_epi32(s0, t0);
                        if (corrected8)
                            u0 = _mm256_sub_epi32(u0, _mm256_load_si256((const __m256i *)corr[c]));
                        qr_avx2_gemm_scale(acc[i][c], g, u0, d, m, x0);
                    }
                }
            }
            for (size_t i = 0; i < nr; i++)
                for (size_t c = 0; c < nc; c++)
                    Y[(c0 + c) * ldy + r0 + i] = qr_hsum256(_mm256_load_ps(acc[i][c]));
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 */

/* The same product with AVX-512 VNNI (Sapphire Rapids, Zen 4): two weight rows side by side in
 * one 512-bit vector (lanes 0-7 the blocks of row i, 8-15 those of row i + 1), each vector of x
 * loaded into both halves by a broadcast (a load, no shuffle), so one vpdpbusd does 64
 * multiply-adds for two rows. Unsigned codes of any width, as qr_vnni_dot4. */
#define QR_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

/* One row's group unpacked and transposed (as qr_avx2_gemm_x8 does), with its d and m′ (for
 * sums of (q − 128)·xq when the codes are 8-bit); a row past the end gives zeros. */
QR_AVX2 __attribute__((always_inline)) static inline void
qr_avx2_gemm_row_group(int bits, int kind, qr_avx2_unpack_fn unpack, const uint8_t *b, __m256i q[8],
                       __m256 *d, __m256 *m)
{
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind);
    const float off = qr_block_off(bits, kind);
    if (!b) {
        for (int k = 0; k < 8; k++)
            q[k] = _mm256_setzero_si256();
        *d = *m = _mm256_setzero_ps();
        return;
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        q[k] = unpack(b + (size_t)k * bb + hdr);
    qr_avx2_transpose8(q);
    *d = qr_avx2_scale8(kind, b, bb);
    *m = kind == QR_KIND_MIN ? qr_avx2_f16x8(b + 2, bb) : _mm256_mul_ps(*d, _mm256_set1_ps(-off));
    if (bits == 8) /* the sums are Σ(q − 128)·xq */
        *m = _mm256_fmadd_ps(*d, _mm256_set1_ps(128.0f), *m);
}

/* vpdpbusd on 256-bit vectors, EVEX-encoded (AVX-512 VL). */
QR_AVX512_VNNI __attribute__((always_inline)) static inline __m256i qr_avx512_dot4(__m256i acc, __m256i q, __m256i x)
{
    return _mm256_dpbusd_epi32(acc, q, x);
}

/* 8 floats of x's group (its d or s) in both halves of a vector: a broadcast load. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline __m512 qr_avx512_twice(const float *p)
{
    return _mm512_castsi512_ps(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p)));
}

/* The loops are blocked so that the rows of x being read stay in L1 while every row pair of W
 * passes over them: QR_AVX512_GROUPS groups of QR_AVX512_X_ROWS rows of x (30 KiB). Streaming
 * all of x from L2 for each pair held the kernel to the speed of L2. */
#define QR_AVX512_GROUPS 3
#define QR_AVX512_X_ROWS 32

/* A row pair's unpacked groups: w[g][j] holds vector j of group g of both rows. */
typedef struct {
    __m512i w[QR_AVX512_GROUPS][8];
    __m512 d[QR_AVX512_GROUPS], m[QR_AVX512_GROUPS];
} qr_avx512_pair;

/* acc += group g's scaled sums of the pair against one row of x (two chains of vpdpbusd); corr:
 * 128·Σxq per block to take off (8-bit codes), or NULL. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline __m512
qr_avx512_pair_group(const qr_avx512_pair *pw, size_t g, const qr_x8_group *xg, const int32_t *corr, __m512 acc)
{
    __m512i s0 = corr ? _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)corr)))
                      : _mm512_setzero_si512(),
            s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int j = 0; j < 8; j += 2) {
        s0 = _mm512_dpbusd_epi32(s0, pw->w[g][j], _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xg->q[j])));
        s1 = _mm512_dpbusd_epi32(s1, pw->w[g][j + 1],
                                 _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xg->q[j + 1])));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(pw->d[g], qr_avx512_twice(xg->d)),
                          acc);
    return _mm512_fmadd_ps(pw->m[g], qr_avx512_twice(xg->s), acc);
}

/* qr_avx512_pair_group for two pairs at once: each vector of x is loaded once for both. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline void
qr_avx512_pairs_group(const qr_avx512_pair *pa, const qr_avx512_pair *pb, size_t g, const qr_x8_group *xg,
                      const int32_t *corr, __m512 *acc_a, __m512 *acc_b)
{
    __m512i c0 = corr ? _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)corr)))
                      : _mm512_setzero_si512();
    __m512i a0 = c0, a1 = _mm512_setzero_si512(), b0 = c0, b1 = a1;
#pragma GCC unroll 4
    for (int j = 0; j < 8; j += 2) {
        __m512i x0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xg->q[j]));
        __m512i x1 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xg->q[j + 1]));
        a0 = _mm512_dpbusd_epi32(a0, pa->w[g][j], x0);
        b0 = _mm512_dpbusd_epi32(b0, pb->w[g][j], x0);
        a1 = _mm512_dpbusd_epi32(a1, pa->w[g][j + 1], x1);
        b1 = _mm512_dpbusd_epi32(b1, pb->w[g][j + 1], x1);
    }
    __m512 xd = qr_avx512_twice(xg->d), xs = qr_avx512_twice(xg->s);
    __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), _mm512_mul_ps(pa->d[g], xd), *acc_a);
    __m512 b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(b0, b1)), _mm512_mul_ps(pb->d[g], xd), *acc_b);
    *acc_a = _mm512_fmadd_ps(pa->m[g], xs, a);
    *acc_b = _mm512_fmadd_ps(pb->m[g], xs, b);
}

/* Unpacks groups [g0, g0 + ng) of rows ra and ra + 1 (when two) into pw. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline void
qr_avx512_unpack_pair(int bits, int kind, qr_avx2_unpack_fn unpack, const uint8_t *row_a, const uint8_t *row_b,
                      size_t g0, size_t ng, size_t nb, qr_avx512_pair *pw, uint8_t (*spare)[QR_X8_GROUP * QR_GEMM_MAX_BLOCK])
{
    const size_t bb = qr_block_size(bits, kind);
    for (size_t g = 0; g < ng; g++) {
        __m256i qa[8], qb[8];
        __m256 da, ma, db, mb;
        qr_avx2_gemm_row_group(bits, kind, unpack, qr_gemm_group_blocks(row_a, g0 + g, nb, bb, spare[0]), qa, &da,
                               &ma);
        qr_avx2_gemm_row_group(bits, kind, unpack, row_b ? qr_gemm_group_blocks(row_b, g0 + g, nb, bb, spare[1]) : NULL,
                               qb, &db, &mb);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            pw->w[g][j] = _mm512_inserti64x4(_mm512_castsi256_si512(qa[j]), qb[j], 1);
        pw->d[g] = _mm512_insertf32x8(_mm512_castps256_ps512(da), db, 1);
        pw->m[g] = _mm512_insertf32x8(_mm512_castps256_ps512(ma), mb, 1);
    }
}

/* For each block of groups and rows of x (kept in L1), each row pair of W is unpacked once into
 * a stack buffer, then each row of x runs through it with its accumulator in a register:
 * nothing is stored inside the loop, and the pair's two sums are added into Y once per row of
 * x and block of groups. */
QR_AVX512_VNNI __attribute__((always_inline)) static inline void
qr_avx512_gemm_x8(int bits, int kind, qr_avx2_unpack_fn unpack, const void *w, size_t row_bytes, size_t n_rows,
                  const qr_x8_group *X, size_t n_x, size_t n, float *Y, size_t ldy)
{
    const size_t nb = n / QR_QK, groups = qr_x8_groups(n);
    _Alignas(64) qr_avx512_pair pw, pw2;
    _Alignas(32) int32_t corr[QR_AVX512_X_ROWS][QR_AVX512_GROUPS][8]; /* 8-bit codes: 128·Σxq per block */
    uint8_t spare[2][QR_X8_GROUP * QR_GEMM_MAX_BLOCK];
    for (size_t g0 = 0; g0 < groups; g0 += QR_AVX512_GROUPS) {
        size_t ng = groups - g0 < QR_AVX512_GROUPS ? groups - g0 : QR_AVX512_GROUPS;
        for (size_t c0 = 0; c0 < n_x; c0 += QR_AVX512_X_ROWS) {
            size_t nc = n_x - c0 < QR_AVX512_X_ROWS ? n_x - c0 : QR_AVX512_X_ROWS;
            for (size_t c = 0; bits == 8 && c < nc; c++)
                for (size_t g = 0; g < ng; g++)
                    _mm256_store_si256((__m256i *)corr[c][g],
                                       qr_avx2_x_block_sums(qr_avx512_dot4, &X[(c0 + c) * groups + g0 + g], 7));
            size_t ra = 0;
            /* Two pairs (4 rows) at a time: each vector of x loaded serves both. */
            for (; ra + 4 <= n_rows; ra += 4) {
                const uint8_t *row_a = (const uint8_t *)w + ra * row_bytes;
                qr_avx512_unpack_pair(bits, kind, unpack, row_a, row_a + row_bytes, g0, ng, nb, &pw, spare);
                qr_avx512_unpack_pair(bits, kind, unpack, row_a + 2 * row_bytes, row_a + 3 * row_bytes, g0, ng, nb,
                                      &pw2, spare);
                for (size_t c = c0; c < c0 + nc; c++) {
                    const qr_x8_group *xg = &X[c * groups + g0];
                    __m512 acc = _mm512_setzero_ps(), acc2 = acc;
                    for (size_t g = 0; g < ng; g++)
                        qr_avx512_pairs_group(&pw, &pw2, g, xg + g, bits == 8 ? corr[c - c0][g] : NULL, &acc, &acc2);
                    float *y = Y + c * ldy + ra;
                    float v[4] = {qr_hsum256(_mm512_castps512_ps256(acc)), qr_hsum256(_mm512_extractf32x8_ps(acc, 1)),
                                  qr_hsum256(_mm512_castps512_ps256(acc2)), qr_hsum256(_mm512_extractf32x8_ps(acc2, 1))};
                    for (int k = 0; k < 4; k++)
                        y[k] = g0 ? y[k] + v[k] : v[k];
                }
            }
            for (; ra < n_rows; ra += 2) {
                bool two = ra + 1 < n_rows;
                const uint8_t *row_a = (const uint8_t *)w + ra * row_bytes;
                qr_avx512_unpack_pair(bits, kind, unpack, row_a, two ? row_a + row_bytes : NULL, g0, ng, nb, &pw,
                                      spare);
                for (size_t c = c0; c < c0 + nc; c++) {
                    const qr_x8_group *xg = &X[c * groups + g0];
                    __m512 acc = _mm512_setzero_ps();
                    for (size_t g = 0; g < ng; g++)
                        acc = qr_avx512_pair_group(&pw, g, xg + g, bits == 8 ? corr[c - c0][g] : NULL, acc);
                    float ya = qr_hsum256(_mm512_castps512_ps256(acc)), yb = qr_hsum256(_mm512_extractf32x8_ps(acc, 1));
                    float *y = Y + c * ldy + ra;
                    y[0] = g0 ? y[0] + ya : ya;
                    if (two)
                        y[1] = g0 ? y[1] + yb : yb;
                }
            }
        }
    }
}

/* Unused with vnni false; a valid function so both instantiations compile. */
QR_AVX2 __attribute__((always_inline)) static inline __m256i qr_avx2_dot4_unused(__m256i acc, __m256i q, __m256i x)
{
    (void)q;
    (void)x;
    return acc;
}
#endif

/* ---------------------------------------------------------------- NEON */

#if defined(__aarch64__)
/* Layout of an interleaved group on aarch64: two halves of 4 blocks; in half h, 16-byte vector j
 * holds bytes 4j..4j+3 of blocks 4h..4h+3 (lane k = block 4h + k): byte offset h·128 + j·16. */

/* 4×4 transpose of 32-bit elements: a[k] lane j -> a[j] lane k. */
QR_NEON_INLINE void qr_neon_transpose4(int8x16_t a[4])
{
    int32x4_t a0 = vreinterpretq_s32_s8(a[0]), a1 = vreinterpretq_s32_s8(a[1]);
    int32x4_t a2 = vreinterpretq_s32_s8(a[2]), a3 = vreinterpretq_s32_s8(a[3]);
    int32x4_t t0 = vtrn1q_s32(a0, a1), t1 = vtrn2q_s32(a0, a1);
    int32x4_t t2 = vtrn1q_s32(a2, a3), t3 = vtrn2q_s32(a2, a3);
    a[0] = vreinterpretq_s8_s64(vtrn1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    a[1] = vreinterpretq_s8_s64(vtrn1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
    a[2] = vreinterpretq_s8_s64(vtrn2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    a[3] = vreinterpretq_s8_s64(vtrn2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
}

/* Σ over the 8 vectors j of one half: lane k gets block k's sum of codes·x. */
typedef int32x4_t (*qr_neon_gemm_half_fn)(int bits, const int8x16_t q[8], const int8_t *x);

/* ARMv8.0: widening multiplies into int16 lanes, which keep their byte position (so their
 * block) from vector to vector; as many vectors as cannot overflow int16 (|q·x| ≤ 128·127),
 * then pairwise widening adds fold each block's 4 byte lanes into its int32 lane (low half:
 * blocks 0 and 1, high half: 2 and 3). */
QR_NEON_INLINE int32x4_t qr_neon_gemm_half_mull(int bits, const int8x16_t q[8], const int8_t *x)
{
    int qmax = bits == 8 ? 128 : (1 << bits) - 1, run = 32767 / (qmax * 127);
    run = run >= 8 ? 8 : run >= 4 ? 4 : run >= 2 ? 2 : 1;
    int32x4_t s = vdupq_n_s32(0);
    for (int j0 = 0; j0 < 8; j0 += run) {
        int16x8_t lo = vdupq_n_s16(0), hi = vdupq_n_s16(0);
        for (int j = j0; j < j0 + run; j++) {
            int8x16_t xv = vld1q_s8(x + 16 * j);
            lo = vmlal_s8(lo, vget_low_s8(q[j]), vget_low_s8(xv));
            hi = vmlal_high_s8(hi, q[j], xv);
        }
        s = vaddq_s32(s, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
    }
    return s;
}

/* SDOT: 4 products per lane in one op. */
QR_DOTPROD QR_NEON_INLINE int32x4_t qr_neon_gemm_half_sdot(int bits, const int8x16_t q[8], const int8_t *x)
{
    (void)bits;
    int32x4_t s = vdupq_n_s32(0);
    for (int j = 0; j < 8; j++)
        s = vdotq_s32(s, q[j], vld1q_s8(x + 16 * j));
    return s;
}

/* The same product as qr_avx2_gemm_x8 on aarch64, a half group (4 blocks) per vector; codes
 * are signed bytes (8-bit codes as q − 128). */
QR_NEON_INLINE void qr_neon_gemm_x8(int bits, int kind, qr_neon_unpack_fn unpack, qr_neon_gemm_half_fn half,
                                    const void *w, size_t row_bytes, size_t n_rows, const qr_x8_group *X,
                                    size_t n_x, size_t n, float *Y, size_t ldy)
{
    const size_t bb = qr_block_size(bits, kind), hdr = qr_block_hdr(kind), nb = n / QR_QK;
    const size_t groups = qr_x8_groups(n);
    const float off = qr_block_off(bits, kind), lift = bits == 8 ? 128.0f : 0.0f;
    float acc[QR_GEMM_W_TILE][QR_GEMM_X_PASS][8];
    uint8_t spare[QR_X8_GROUP * QR_GEMM_MAX_BLOCK];
    for (size_t r0 = 0; r0 < n_rows; r0 += QR_GEMM_W_TILE) {
        size_t nr = n_rows - r0 < QR_GEMM_W_TILE ? n_rows - r0 : QR_GEMM_W_TILE;
        for (size_t c0 = 0; c0 < n_x; c0 += QR_GEMM_X_PASS) {
            size_t nc = n_x - c0 < QR_GEMM_X_PASS ? n_x - c0 : QR_GEMM_X_PASS;
            for (size_t g = 0; g < groups; g++) {
                for (size_t i = 0; i < nr; i++) {
                    const uint8_t *b = qr_gemm_group_blocks((const uint8_t *)w + (r0 + i) * row_bytes, g, nb, bb, spare);
                    int8x16_t q[2][8];
                    float32x4_t d[2], m[2];
                    for (int h = 0; h < 2; h++) {
                        for (int k = 0; k < 4; k++) {
                            qr_neon_codes c = unpack(b + (size_t)(4 * h + k) * bb + hdr);
                            q[h][k] = qr_neon_signed(bits, c.lo);
                            q[h][4 + k] = qr_neon_signed(bits, c.hi);
                        }
                        qr_neon_transpose4(q[h]);
                        qr_neon_transpose4(q[h] + 4);
                        const uint8_t *bh = b + (size_t)(4 * h) * bb;
                        d[h] = qr_neon_scale4(kind, bh, bb);
                        m[h] = kind == QR_KIND_MIN ? qr_neon_f16x4(bh + 2, bb) : vmulq_n_f32(d[h], -off);
                        if (lift != 0.0f)
                            m[h] = vfmaq_n_f32(m[h], d[h], lift);
                    }
                    for (size_t c = 0; c < nc; c++) {
                        const qr_x8_group *xg = &X[(c0 + c) * groups + g];
                        const int8_t *xq = &xg->q[0][0];
                        for (int h = 0; h < 2; h++) {
                            int32x4_t s = half(bits, q[h], xq + 128 * h);
                            float32x4_t a = g ? vld1q_f32(acc[i][c] + 4 * h) : vdupq_n_f32(0.0f);
                            a = vfmaq_f32(a, vcvtq_f32_s32(s), vmulq_f32(d[h], vld1q_f32(xg->d + 4 * h)));
                            a = vfmaq_f32(a, m[h], vld1q_f32(xg->s + 4 * h));
                            vst1q_f32(acc[i][c] + 4 * h, a);
                        }
                    }
                }
            }
            for (size_t i = 0; i < nr; i++)
                for (size_t c = 0; c < nc; c++)
                    Y[(c0 + c) * ldy + r0 + i] = vaddvq_f32(vaddq_f32(vld1q_f32(acc[i][c]), vld1q_f32(acc[i][c] + 4)));
        }
    }
}
#endif

#endif
