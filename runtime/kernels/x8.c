/* x8.c: rounding the input vector x to 8-bit blocks (qr_x8_group), the form every quantized
 * dot product reads — reference, AVX2 and NEON side by side, byte-identical. Not a storage type:
 * x is rounded once per product (linear.c) and thrown away. */
#include "quant_common.h"

#include <math.h>

/* Zeroes the blocks of the last group that lie past n values, so every group is whole. */
static void zero_tail(size_t n, qr_x8_group *xq)
{
    size_t nb = n / QR_QK, g = nb / QR_X8_GROUP;
    for (size_t k = nb % QR_X8_GROUP; k && k < QR_X8_GROUP; k++) {
        xq[g].d[k] = 0.0f;
        xq[g].s[k] = 0.0f;
        memset(xq[g].q[k], 0, QR_QK);
    }
}

void qr_x8_prepare_ref(const float *x, size_t n, qr_x8_group *xq)
{
    for (size_t i = 0; i < n / QR_QK; i++, x += QR_QK) {
        qr_x8_group *g = &xq[i / QR_X8_GROUP];
        size_t k = i % QR_X8_GROUP;
        float amax = 0.0f;
        for (int j = 0; j < QR_QK; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QR_QK; j++) {
            /* lrintf rounds to nearest even (the default mode), as cvtps2dq does. */
            long v = lrintf(x[j] * id);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            g->q[k][j] = (int8_t)v;
            sum += (int)v;
        }
        g->d[k] = d;
        g->s[k] = d * (float)sum;
    }
    zero_tail(n, xq);
}

/* Bounded stack use whatever n is: x is rounded X8_CHUNK groups at a time and the partial row
 * sums are added, X8_ROWS rows at a time. */
#define X8_CHUNK 8
#define X8_ROWS 64

void qr_dot_rows_via_x8(qr_dot_rows_x8_fn dot, void (*prepare)(const float *, size_t, qr_x8_group *),
                        size_t block_bytes, const void *w, size_t row_bytes, size_t n_rows,
                        const float *x, size_t n, float *y)
{
    qr_x8_group xq[X8_CHUNK];
    float part[X8_ROWS];
    const size_t chunk = X8_CHUNK * QR_X8_GROUP * QR_QK; /* values per chunk */
    for (size_t r = 0; r < n_rows; r++)
        y[r] = 0.0f;
    for (size_t c0 = 0; c0 < n; c0 += chunk) {
        size_t nc = n - c0 < chunk ? n - c0 : chunk;
        prepare(x + c0, nc, xq);
        for (size_t r0 = 0; r0 < n_rows; r0 += X8_ROWS) {
            size_t nr = n_rows - r0 < X8_ROWS ? n_rows - r0 : X8_ROWS;
            dot((const char *)w + r0 * row_bytes + c0 / QR_QK * block_bytes, row_bytes, nr, xq, nc,
                part);
            for (size_t r = 0; r < nr; r++)
                y[r0 + r] += part[r];
        }
    }
}

#if defined(__x86_64__)
/* Same arithmetic as the reference: max|x| exactly, the same d and 1/d, x·(1/d) rounded to
 * nearest even by cvtps2dq, so the bytes are identical. */
QR_AVX2 void qr_x8_prepare_avx2(const float *x, size_t n, qr_x8_group *xq)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t i = 0; i < n / QR_QK; i++, x += QR_QK) {
        qr_x8_group *g = &xq[i / QR_X8_GROUP];
        size_t k = i % QR_X8_GROUP;
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        /* packs works within 128-bit lanes: restore the order with one permute. */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)g->q[k], p);
        g->d[k] = d;
        g->s[k] = d * (float)_mm_cvtsi128_si32(s4);
    }
    zero_tail(n, xq);
}

/* prepare_x in the layout of the AVX2 gemm (gemm_x8.h): each group's 8 code vectors
 * transposed as 32-bit elements, so vector j holds bytes 4j..4j+3 of every block. */
QR_AVX2 void qr_x8_prepare_gemm_avx2(const float *x, size_t n, qr_x8_group *xq)
{
    qr_x8_prepare_avx2(x, n, xq);
    for (size_t g = 0; g < qr_x8_groups(n); g++) {
        __m256i v[8];
        for (int k = 0; k < 8; k++)
            v[k] = _mm256_loadu_si256((const __m256i *)xq[g].q[k]);
        qr_avx2_transpose8(v);
        for (int j = 0; j < 8; j++)
            _mm256_storeu_si256((__m256i *)xq[g].q[j], v[j]);
    }
}
#endif

#if defined(__aarch64__)
/* Same arithmetic as the reference: max|x| exactly, the same d and 1/d, x·(1/d) rounded to
 * nearest even by FCVTNS (as lrintf in the default mode), so the bytes are identical. */
void qr_x8_prepare_neon(const float *x, size_t n, qr_x8_group *xq)
{
    for (size_t i = 0; i < n / QR_QK; i++, x += QR_QK) {
        qr_x8_group *g = &xq[i / QR_X8_GROUP];
        size_t k = i % QR_X8_GROUP;
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(x + 4 * j);
            m = vmaxq_f32(m, vabsq_f32(v[j]));
        }
        float amax = vmaxvq_f32(m);
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        float32x4_t vid = vdupq_n_f32(id);
        const int32x4_t lim = vdupq_n_s32(127);
        int32x4_t sum = vdupq_n_s32(0);
        int16x8_t h[4];
        for (int j = 0; j < 8; j += 2) {
            int32x4_t a = vcvtnq_s32_f32(vmulq_f32(v[j], vid));
            int32x4_t b = vcvtnq_s32_f32(vmulq_f32(v[j + 1], vid));
            a = vmaxq_s32(vminq_s32(a, lim), vnegq_s32(lim));
            b = vmaxq_s32(vminq_s32(b, lim), vnegq_s32(lim));
            sum = vaddq_s32(sum, vaddq_s32(a, b));
            h[j / 2] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        }
        vst1q_s8(g->q[k], vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
        vst1q_s8(g->q[k] + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
        g->d[k] = d;
        g->s[k] = d * (float)vaddvq_s32(sum);
    }
    zero_tail(n, xq);
}

/* prepare_x in the layout of the NEON gemm (gemm_x8.h): per half group of 4 blocks, vector j
 * holds bytes 4j..4j+3 of each of them. */
void qr_x8_prepare_gemm_neon(const float *x, size_t n, qr_x8_group *xq)
{
    qr_x8_prepare_neon(x, n, xq);
    for (size_t g = 0; g < qr_x8_groups(n); g++) {
        int8_t *q = &xq[g].q[0][0];
        for (int h = 0; h < 2; h++) {
            int8x16_t v[8];
            for (int k = 0; k < 4; k++) {
                v[k] = vld1q_s8(xq[g].q[4 * h + k]);
                v[4 + k] = vld1q_s8(xq[g].q[4 * h + k] + 16);
            }
            qr_neon_transpose4(v);
            qr_neon_transpose4(v + 4);
            for (int j = 0; j < 8; j++)
                vst1q_s8(q + 128 * h + 16 * j, v[j]);
        }
    }
}
#endif
