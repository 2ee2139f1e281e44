/* test_kernels.c: f16 conversion, each type's SIMD kernels (every variant this CPU runs: AVX2 on
 * x86-64; NEON, and NEON with SDOT where the CPU has dotprod, on aarch64) against its reference,
 * the worker pool's split, and the batched product against the one-token product. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
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
#if defined(__aarch64__)
#include <arm_neon.h>
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
#elif defined(__aarch64__)
static uint16_t hw_f32_to_f16(float f)
{
    return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}
#endif

/* f32 -> f16 rounds to nearest even exactly as the F16C instruction (x86-64) or FCVTN (aarch64,
 * in the default rounding mode) does. */
static void test_f32_to_f16_matches_hardware(void **state)
{
    (void)state;
#if defined(__x86_64__) || defined(__aarch64__)
#if defined(__x86_64__)
    if (!qr_cpu_has_avx2())
        skip();
#endif
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = (uint32_t)(rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isnan(f))
            continue;
        uint16_t hw = hw_f32_to_f16(f);
        if (qr_f32_to_f16(f) != hw)
            fail_msg("%a: ours 0x%04x, hardware 0x%04x", (double)f, qr_f32_to_f16(f), hw);
    }
#else
    skip();
#endif
}

/* Every storage type: f32, f16 and the quantized ones. */
static const uint32_t all_types[] = {QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0,
                                     QR_TYPE_Q4_0, QR_TYPE_Q3_0, QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1,
                                     QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1, QR_TYPE_Q4_S,
                                     QR_TYPE_Q3_S, QR_TYPE_Q2_S};
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

/* Every SIMD variant this CPU runs and the reference agree within 1e-4 relative (of the sum of
 * |terms|) on every length, for every type. The quantized types round x to 8-bit blocks (every
 * variant alike), so their reference is held to x's rounding (1e-2) against the exact product,
 * and each SIMD variant to the reference at 1e-4; their lengths are whole blocks. to_float is
 * bit-exact in every variant. */
static void test_simd_matches_reference(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 7, 8, 9, 31, 32, 33, 63, 64, 100, 768, 3072};
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = all_types[t];
        const qr_kernel_ops *variants[QR_KERNEL_VARIANTS_MAX];
        size_t n_variants = qr_kernels_all(type, variants, QR_KERNEL_VARIANTS_MAX);
        const qr_kernel_ops *ref = qr_kernels_ref(type);
        assert_non_null(ref);
        assert_true(n_variants >= 1);
        assert_ptr_equal(variants[0], ref);
        assert_ptr_equal(variants[n_variants - 1], qr_kernels_best(type));
        bool quant = qr_type_is_quantized(type);
        for (size_t v = 1; v < n_variants; v++) {
            const qr_kernel_ops *best = variants[v];
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
                        fail_msg("%s/%s n=%zu row %zu: ref %g best %g exact %g", ref->name, best->name, n,
                                 r, (double)y_ref[r], (double)y_best[r], exact);
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
}

/* The integer parts are exact in every variant: prepare_x gives the reference's bytes, scales
 * and sums (also for values that round at .5, zero blocks, and a partial last group), and where
 * the float part is exact too (power-of-two scales, integer x) dot_rows_x8 gives the
 * reference's result to the bit, so the codes' unpacking and the integer sums match exactly. */
static void test_simd_integer_parts_exact(void **state)
{
    (void)state;
    static const size_t lens[] = {32, 96, 256, 288, 1024};
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = all_types[t];
        if (!qr_type_is_quantized(type))
            continue;
        const qr_kernel_ops *variants[QR_KERNEL_VARIANTS_MAX], *ref = qr_kernels_ref(type);
        size_t n_variants = qr_kernels_all(type, variants, QR_KERNEL_VARIANTS_MAX);
        for (size_t v = 1; v < n_variants; v++) {
            const qr_kernel_ops *simd = variants[v];
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                size_t n = lens[li], groups = qr_x8_groups(n), rows = 3;
                float *x = malloc(n * sizeof *x);
                for (size_t i = 0; i < n; i++) /* halves that round both ways, zero blocks */
                    x[i] = i / 32 % 3 == 1 ? 0.0f : (float)((int)(frand() * 254.0f)) * 0.5f;
                qr_x8_group *xr = calloc(groups, sizeof *xr), *xs = calloc(groups, sizeof *xs);
                ref->prepare_x(x, n, xr);
                simd->prepare_x(x, n, xs);
                assert_memory_equal(xr, xs, groups * sizeof *xr);
                /* Blocks built by hand: d = 1/16, m a multiple of 1/16, random codes; x integers
                 * with 127 in every block (so dx = 1): every product and partial sum is a
                 * multiple of 1/32 (an _s type's half-integer offset) far below 2^20, exact in
                 * float in any order. */
                const qr_type_info *info = qr_type_get(type);
                size_t row_bytes = type_row_bytes(type, n);
                size_t hdr = info->small_scale ? 1 : info->has_min ? 4 : 2;
                uint8_t *w = malloc(rows * row_bytes);
                for (size_t b = 0; b < rows * n / 32; b++) {
                    uint8_t *blk = w + b * info->block_bytes, q[32];
                    uint16_t d = qr_f32_to_f16(0.0625f), m = qr_f32_to_f16((float)((int)(frand() * 8.0f)) / 16.0f);
                    if (info->small_scale)
                        blk[0] = qr_e5m3_floor(0.0625f);
                    else
                        memcpy(blk, &d, 2);
                    if (info->has_min)
                        memcpy(blk + 2, &m, 2);
                    for (int j = 0; j < 32; j++)
                        q[j] = (uint8_t)((rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17) % (1u << info->bits));
                    qr_pack_codes((int)info->bits, blk + hdr, q);
                }
                for (size_t i = 0; i < n; i++)
                    x[i] = i % 32 ? (float)((int)(frand() * 127.0f)) : 127.0f;
                ref->prepare_x(x, n, xr);
                float y_ref[3], y_simd[3];
                ref->dot_rows_x8(w, row_bytes, rows, xr, n, y_ref);
                simd->dot_rows_x8(w, row_bytes, rows, xr, n, y_simd);
                for (size_t r = 0; r < rows; r++)
                    if (y_ref[r] != y_simd[r])
                        fail_msg("%s n=%zu row %zu: ref %a, %s %a", ref->name, n, r, (double)y_ref[r],
                                 simd->name, (double)y_simd[r]);
                free(w);
                free(xr);
                free(xs);
                free(x);
            }
        }
    }
}

/* qr_kernels_best names the variant the CPU runs: avx2 on x86-64 with AVX2 (avxvnni for the
 * quantized types where the CPU has AVX-VNNI, avx512vnni where it has AVX-512 VNNI); on aarch64
 * neon, or
 * neon-dotprod for the quantized types where the CPU has dotprod (qemu: QEMU_CPU=cortex-a72 has
 * not, the default max has). */
static void test_dispatch_names(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = all_types[t];
        char want[64];
        const char *kind = "ref";
#if defined(__x86_64__)
        if (qr_cpu_has_avx2())
            kind = !qr_type_is_quantized(type) ? "avx2"
                   : qr_cpu_has_avx512_vnni()   ? "avx512vnni"
                   : qr_cpu_has_avx_vnni()      ? "avxvnni"
                                                : "avx2";
#elif defined(__aarch64__)
        assert_true(qr_cpu_has_neon());
        kind = qr_type_is_quantized(type) && qr_cpu_has_dotprod() ? "neon-dotprod" : "neon";
#endif
        snprintf(want, sizeof want, "%s-%s", qr_type_get(type)->name, kind);
        assert_string_equal(qr_kernels_best(type)->name, want);
    }
    print_message("kernels: %s, %s\n", qr_kernels_best(QR_TYPE_F32)->name, qr_kernels_best(QR_TYPE_Q4_0)->name);
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
        float *panel = malloc(qr_matmul_panel_floats(cols, B) * sizeof(float));
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
        cmocka_unit_test(test_simd_integer_parts_exact),
        cmocka_unit_test(test_dispatch_names),
        cmocka_unit_test(test_matvec_threads_identical),
        cmocka_unit_test(test_matmul_matches_matvec),
        cmocka_unit_test(test_pool_runs_each_task_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
