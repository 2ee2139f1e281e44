/* test_kernels.c: f16 conversion, each type's SIMD kernel against its reference, the worker
 * pool's split, and the batched product against the one-token product. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "f16.h"
#include "kernels/kernels.h"
#include "linear.h"
#include "pool.h"
#include "quantize.h"
#include "tensor_types.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}

/* Every finite half converts to f32 and back to itself. */
static void test_f16_round_trip_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaN payloads need not survive */
        float f = qr_f16_to_f32((uint16_t)h);
        if (qr_f32_to_f16(f) != h)
            fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double)f, qr_f32_to_f16(f));
    }
    assert_true(qr_f16_to_f32(0x3c00) == 1.0f);
    assert_true(qr_f16_to_f32(0xc000) == -2.0f);
    assert_true(qr_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(isinf(qr_f16_to_f32(0x7c00)));
    assert_true(isnan(qr_f16_to_f32(0x7e00)));
    assert_int_equal(qr_f32_to_f16(70000.0f), 0x7c00);
    assert_int_equal(qr_f32_to_f16(1e-10f), 0);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    __m128i h = _mm_cvtps_ph(_mm_set1_ps(f), _MM_FROUND_TO_NEAREST_INT);
    return (uint16_t)_mm_extract_epi16(h, 0);
}
#endif

/* f32 -> f16 rounds to nearest even exactly as the F16C instruction does. */
static void test_f32_to_f16_matches_hardware(void **state)
{
    (void)state;
#if defined(__x86_64__)
    if (!qr_cpu_has_avx2())
        skip();
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = (uint32_t)(rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isnan(f))
            continue;
        uint16_t hw = hw_f32_to_f16(f);
        if (qr_f32_to_f16(f) != hw)
            fail_msg("%a: ours 0x%04x, F16C 0x%04x", (double)f, qr_f32_to_f16(f), hw);
    }
#else
    skip();
#endif
}

/* Every storage type: f32, f16 and the quantized ones. */
static const uint32_t all_types[] = {QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0,
                                     QR_TYPE_Q4_0, QR_TYPE_Q3_0, QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1,
                                     QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

static size_t type_row_bytes(uint32_t type, size_t cols)
{
    uint64_t b;
    assert_true(qr_type_bytes(type, cols, &b));
    return (size_t)b;
}

/* Random rows stored in `type`; ref_values gets the values they hold (dequantized). */
static void *make_rows(uint32_t type, size_t rows, size_t cols, float *ref_values)
{
    size_t n = rows * cols;
    for (size_t i = 0; i < n; i++)
        ref_values[i] = frand();
    if (qr_type_is_quantized(type)) {
        void *q = malloc(rows * type_row_bytes(type, cols));
        assert_int_equal(qr_quantize_tensor(type, ref_values, rows, cols, NULL, q, NULL), QR_OK);
        qr_kernels_ref(type)->to_float(q, ref_values, n);
        return q;
    }
    if (type == QR_TYPE_F32) {
        float *w = malloc(n * sizeof *w);
        memcpy(w, ref_values, n * sizeof *w);
        return w;
    }
    uint16_t *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) {
        w[i] = qr_f32_to_f16(ref_values[i]);
        ref_values[i] = qr_f16_to_f32(w[i]);
    }
    return w;
}

/* SIMD and reference agree within 1e-4 relative (of the sum of |terms|) on every length, for
 * every type. The quantized types round x to 8-bit blocks (both variants alike), so their
 * reference is held to x's rounding (1e-2) against the exact product, and to the SIMD variant
 * at 1e-4; their lengths are whole blocks. */
static void test_simd_matches_reference(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 7, 8, 9, 31, 32, 33, 63, 64, 100, 768, 3072};
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = all_types[t];
        const qr_kernel_ops *ref = qr_kernels_ref(type), *best = qr_kernels_best(type);
        assert_non_null(ref);
        assert_non_null(best);
        bool quant = qr_type_is_quantized(type);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], rows = 5;
            if (quant && n % 32)
                continue;
            float *vals = malloc(rows * n * sizeof *vals), *x = malloc(n * sizeof *x);
            for (size_t i = 0; i < n; i++)
                x[i] = frand();
            void *w = make_rows(type, rows, n, vals);
            size_t row_bytes = type_row_bytes(type, n);
            float y_ref[5], y_best[5];
            ref->dot_rows(w, row_bytes, rows, x, n, y_ref);
            best->dot_rows(w, row_bytes, rows, x, n, y_best);
            for (size_t r = 0; r < rows; r++) {
                double mag = 0, exact = 0;
                for (size_t i = 0; i < n; i++) {
                    mag += fabs((double)vals[r * n + i] * x[i]);
                    exact += (double)vals[r * n + i] * x[i];
                }
                bool bad = quant ? fabs(y_ref[r] - exact) > 1e-2 * mag + 1e-7 ||
                                       fabs(y_best[r] - y_ref[r]) > 1e-4 * mag + 1e-7
                                 : fabs(y_ref[r] - exact) > 1e-5 * mag + 1e-7 ||
                                       fabs(y_best[r] - exact) > 1e-4 * mag + 1e-7;
                if (bad)
                    fail_msg("%s/%s n=%zu row %zu: ref %g best %g exact %g", ref->name, best->name, n, r,
                             (double)y_ref[r], (double)y_best[r], exact);
            }
            float *deq_ref = malloc(rows * n * sizeof(float)), *deq_best = malloc(rows * n * sizeof(float));
            ref->to_float(w, deq_ref, rows * n);
            best->to_float(w, deq_best, rows * n);
            assert_memory_equal(deq_ref, deq_best, rows * n * sizeof(float));
            assert_memory_equal(deq_ref, vals, rows * n * sizeof(float));
            free(deq_ref);
            free(deq_best);
            free(w);
            free(vals);
            free(x);
        }
    }
}

static qr_matrix make_matrix(uint32_t type, size_t rows, size_t cols, float *vals)
{
    qr_matrix m = {make_rows(type, rows, cols, vals), type, rows, cols, type_row_bytes(type, cols),
                   qr_kernels_best(type)};
    return m;
}

/* The pool's split changes nothing: every row is computed by the same kernel. */
static void test_matvec_threads_identical(void **state)
{
    (void)state;
    size_t rows = 1000, cols = 96;
    float *vals = malloc(rows * cols * sizeof *vals), x[96], y1[1000], y2[1000], z1[37], z2[37];
    float u1[200], u2[200];
    for (size_t i = 0; i < cols; i++)
        x[i] = frand();
    qr_matrix a = make_matrix(QR_TYPE_F16, rows, cols, vals);
    qr_matrix b = make_matrix(QR_TYPE_F32, 37, cols, vals);
    qr_matrix c = make_matrix(QR_TYPE_Q4_1, 200, cols, vals);
    qr_matvec_job jobs1[] = {{&a, x, y1}, {&b, x, z1}, {&c, x, u1}};
    qr_matvec_multi(NULL, jobs1, 3);
    for (int threads = 2; threads <= 4; threads++) {
        qr_pool *pool;
        assert_int_equal(qr_pool_new(threads, &pool, NULL), QR_OK);
        assert_int_equal(qr_pool_threads(pool), threads);
        for (int rep = 0; rep < 50; rep++) {
            memset(y2, 0, sizeof y2);
            qr_matvec_job jobs2[] = {{&a, x, y2}, {&b, x, z2}, {&c, x, u2}};
            qr_matvec_multi(pool, jobs2, 3);
            assert_memory_equal(y1, y2, sizeof y1);
            assert_memory_equal(z1, z2, sizeof z1);
            assert_memory_equal(u1, u2, sizeof u1);
        }
        qr_pool_free(pool);
    }
    free((void *)a.data);
    free((void *)b.data);
    free((void *)c.data);
    free(vals);
}

/* Y = X·Wᵀ through BLAS equals B separate matrix-vector products (to float rounding for f32
 * and f16; to x's 8-bit rounding, relative to the row's Σ|w·x|, for the quantized types). */
static void test_matmul_matches_matvec(void **state)
{
    (void)state;
    size_t rows = 300, cols = 64, B = 5;
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = all_types[t];
        float *vals = malloc(rows * cols * sizeof *vals);
        qr_matrix w = make_matrix(type, rows, cols, vals);
        float X[5 * 64], Y[5 * 300], y[300];
        for (size_t i = 0; i < B * cols; i++)
            X[i] = frand();
        float *panel = malloc(qr_matmul_panel_floats(cols) * sizeof(float));
        qr_matmul(&w, X, B, Y, panel);
        for (size_t b = 0; b < B; b++) {
            qr_matvec_job job = {&w, X + b * cols, y};
            qr_matvec_multi(NULL, &job, 1);
            for (size_t r = 0; r < rows; r++) {
                float tol = 1e-5f * (1.0f + fabsf(y[r]));
                if (qr_type_is_quantized(type)) {
                    float mag = 0.0f;
                    for (size_t i = 0; i < cols; i++)
                        mag += fabsf(vals[r * cols + i] * X[b * cols + i]);
                    tol = 1e-2f * mag + 1e-6f;
                }
                if (fabsf(Y[b * rows + r] - y[r]) > tol)
                    fail_msg("type %u b %zu row %zu: %g vs %g", type, b, r, (double)Y[b * rows + r], (double)y[r]);
            }
        }
        free(panel);
        free((void *)w.data);
        free(vals);
    }
}

static void count_task(void *ctx, size_t i)
{
    int *hits = ctx;
    __atomic_add_fetch(&hits[i], 1, __ATOMIC_RELAXED);
}

/* Every task runs exactly once, over many regions, including regions of 0 and 1 task. */
static void test_pool_runs_each_task_once(void **state)
{
    (void)state;
    qr_pool *pool;
    assert_int_equal(qr_pool_new(3, &pool, NULL), QR_OK);
    int hits[257];
    for (size_t n = 0; n <= 257; n += 1 + n / 3) {
        memset(hits, 0, sizeof hits);
        qr_pool_run(pool, n, count_task, hits);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(hits[i], 1);
    }
    qr_pool_free(pool);
    qr_error err;
    assert_int_equal(qr_pool_new(1000, &pool, &err), QR_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_round_trip_all),
        cmocka_unit_test(test_f32_to_f16_matches_hardware),
        cmocka_unit_test(test_simd_matches_reference),
        cmocka_unit_test(test_matvec_threads_identical),
        cmocka_unit_test(test_matmul_matches_matvec),
        cmocka_unit_test(test_pool_runs_each_task_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
