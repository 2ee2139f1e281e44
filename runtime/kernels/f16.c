/* f16.c: kernels for IEEE binary16 weights — reference, AVX2+F16C and NEON side by side. */
#include "kernels.h"

#include "../f16.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

static void f16_dot_rows_ref(const void *w, size_t row_bytes, size_t n_rows, const float *x,
                             size_t n, float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)w + r * row_bytes);
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++)
            sum += qr_f16_to_f32(row[i]) * x[i];
        y[r] = sum;
    }
}

static void f16_to_float_ref(const void *src, float *dst, size_t n)
{
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = qr_f16_to_f32(s[i]);
}

const qr_kernel_ops qr_kernels_f16_ref = {"f16-ref", f16_dot_rows_ref, f16_to_float_ref};

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

#define LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

__attribute__((target("avx2,fma,f16c"))) static void f16_dot_rows_avx2(const void *w,
                                                                       size_t row_bytes,
                                                                       size_t n_rows,
                                                                       const float *x, size_t n,
                                                                       float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)w + r * row_bytes);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            a0 = _mm256_fmadd_ps(LOAD_F16(row + i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(LOAD_F16(row + i + 8), _mm256_loadu_ps(x + i + 8), a1);
            a2 = _mm256_fmadd_ps(LOAD_F16(row + i + 16), _mm256_loadu_ps(x + i + 16), a2);
            a3 = _mm256_fmadd_ps(LOAD_F16(row + i + 24), _mm256_loadu_ps(x + i + 24), a3);
        }
        for (; i + 8 <= n; i += 8)
            a0 = _mm256_fmadd_ps(LOAD_F16(row + i), _mm256_loadu_ps(x + i), a0);
        float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++)
            sum += qr_f16_to_f32(row[i]) * x[i];
        y[r] = sum;
    }
}

__attribute__((target("avx2,fma,f16c"))) static void f16_to_float_avx2(const void *src,
                                                                       float *dst, size_t n)
{
    const uint16_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, LOAD_F16(s + i));
    for (; i < n; i++)
        dst[i] = qr_f16_to_f32(s[i]);
}

const qr_kernel_ops qr_kernels_f16_avx2 = {"f16-avx2", f16_dot_rows_avx2, f16_to_float_avx2};
#endif

#if defined(__aarch64__)
/* 8 halves widened by FCVTL (exact, as qr_f16_to_f32), in two vectors of 4. */
#define LOAD_F16_LO(v) vcvt_f32_f16(vget_low_f16(v))
#define LOAD_F16_HI(v) vcvt_high_f32_f16(v)

static void f16_dot_rows_neon(const void *w, size_t row_bytes, size_t n_rows, const float *x,
                              size_t n, float *y)
{
    for (size_t r = 0; r < n_rows; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)w + r * row_bytes);
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16(row + i));
            float16x8_t h1 = vreinterpretq_f16_u16(vld1q_u16(row + i + 8));
            a0 = vfmaq_f32(a0, LOAD_F16_LO(h0), vld1q_f32(x + i));
            a1 = vfmaq_f32(a1, LOAD_F16_HI(h0), vld1q_f32(x + i + 4));
            a2 = vfmaq_f32(a2, LOAD_F16_LO(h1), vld1q_f32(x + i + 8));
            a3 = vfmaq_f32(a3, LOAD_F16_HI(h1), vld1q_f32(x + i + 12));
        }
        for (; i + 4 <= n; i += 4)
            a0 = vfmaq_f32(a0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(row + i))), vld1q_f32(x + i));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; i < n; i++)
            sum += qr_f16_to_f32(row[i]) * x[i];
        y[r] = sum;
    }
}

static void f16_to_float_neon(const void *src, float *dst, size_t n)
{
    const uint16_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(s + i));
        vst1q_f32(dst + i, LOAD_F16_LO(h));
        vst1q_f32(dst + i + 4, LOAD_F16_HI(h));
    }
    for (; i < n; i++)
        dst[i] = qr_f16_to_f32(s[i]);
}

const qr_kernel_ops qr_kernels_f16_neon = {"f16-neon", f16_dot_rows_neon, f16_to_float_neon};
#endif
