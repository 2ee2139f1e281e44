/* f32.c: kernels for f32 weights — reference, AVX2+FMA and NEON side by side. */
#include "kernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

static void f32_dot_rows_ref(const void *w, size_t row_bytes, size_t n_rows, const float *x,
                             size_t n, float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = (const float *)((const char *)w + r * row_bytes);
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++)
            sum += row[i] * x[i];
        y[r] = sum;
    }
}

static void f32_to_float(const void *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

const qr_kernel_ops qr_kernels_f32_ref = {"f32-ref", f32_dot_rows_ref, f32_to_float};

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Decode is bound by reading the weights: four independent accumulators keep the loads in
 * flight; x stays in L1. */
__attribute__((target("avx2,fma"))) static void f32_dot_rows_avx2(const void *w, size_t row_bytes,
                                                                  size_t n_rows, const float *x,
                                                                  size_t n, float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = (const float *)((const char *)w + r * row_bytes);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 8), _mm256_loadu_ps(x + i + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 16), _mm256_loadu_ps(x + i + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 24), _mm256_loadu_ps(x + i + 24), a3);
        }
        for (; i + 8 <= n; i += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), a0);
        float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++)
            sum += row[i] * x[i];
        y[r] = sum;
    }
}

const qr_kernel_ops qr_kernels_f32_avx2 = {"f32-avx2", f32_dot_rows_avx2, f32_to_float};
#endif

#if defined(__aarch64__)
/* As the AVX2 version: four independent accumulators of 4 lanes keep the loads in flight. */
static void f32_dot_rows_neon(const void *w, size_t row_bytes, size_t n_rows, const float *x,
                              size_t n, float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const float *row = (const float *)((const char *)w + r * row_bytes);
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = vfmaq_f32(a0, vld1q_f32(row + i), vld1q_f32(x + i));
            a1 = vfmaq_f32(a1, vld1q_f32(row + i + 4), vld1q_f32(x + i + 4));
            a2 = vfmaq_f32(a2, vld1q_f32(row + i + 8), vld1q_f32(x + i + 8));
            a3 = vfmaq_f32(a3, vld1q_f32(row + i + 12), vld1q_f32(x + i + 12));
        }
        for (; i + 4 <= n; i += 4)
            a0 = vfmaq_f32(a0, vld1q_f32(row + i), vld1q_f32(x + i));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; i < n; i++)
            sum += row[i] * x[i];
        y[r] = sum;
    }
}

const qr_kernel_ops qr_kernels_f32_neon = {"f32-neon", f32_dot_rows_neon, f32_to_float};
#endif
