/* test_quant.c: the group-quantized types, in the spirit of ggml's test-quantize-fns: block
 * sizes, round-trip error per type under a bound derived from its bit width, the clipping
 * search against plain min-max, importance weighting, SIMD against reference, mat-vec error,
 * the per-tensor min-max baseline, and a model requantized, reloaded and run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "f16.h"
#include "forward.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "linear.h"
#include "model.h"
#include "model_file.h"
#include "quantize.h"
#include "requantize.h"
#include "state.h"
#include "synthetic_model.h"
#include "tensor_types.h"

static const uint32_t quant_types[] = {QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0, QR_TYPE_Q4_0,
                                       QR_TYPE_Q3_0, QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1,
                                       QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1,
                                       QR_TYPE_Q4_S, QR_TYPE_Q3_S, QR_TYPE_Q2_S};
#define N_QUANT (sizeof quant_types / sizeof quant_types[0])

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static float gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void fill_gauss(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gauss();
}

static size_t row_bytes(uint32_t type, size_t n)
{
    uint64_t b;
    assert_true(qr_type_bytes(type, n, &b));
    return (size_t)b;
}

/* Quantizes then dequantizes with the reference kernels. */
static void round_trip(uint32_t type, const float *x, size_t n, const float *imp, float *out)
{
    void *q = malloc(row_bytes(type, n));
    assert_int_equal(qr_quantize_row(type, x, n, imp, q), QR_OK);
    qr_kernels_ref(type)->to_float(q, out, n);
    free(q);
}

/* The round-trip RMSE bound of a type on N(0,1) data: the error of a uniform quantizer whose
 * levels span ±3.5σ (a block of 32's largest |w| is rarely beyond), Δ/√12 with Δ = 7/2^B for the
 * symmetric types and 7/(2^B − 1) for the types with a minimum. The search can only do better. */
static double rmse_bound(uint32_t type)
{
    const qr_type_info *t = qr_type_get(type);
    double levels = t->has_min ? (double)((1u << t->bits) - 1) : (double)(1u << t->bits);
    return 7.0 / levels / sqrt(12.0);
}

/* ---------------------------------------------------------------- layout */

static void test_block_sizes(void **state)
{
    (void)state;
    static const struct {
        uint32_t type;
        const char *name;
        size_t bytes;
        double bpw;
    } want[] = {
        {QR_TYPE_Q8_0, "q8_0", sizeof(qr_block_q8_0), 8.5}, {QR_TYPE_Q6_0, "q6_0", sizeof(qr_block_q6_0), 6.5},
        {QR_TYPE_Q5_0, "q5_0", sizeof(qr_block_q5_0), 5.5}, {QR_TYPE_Q4_0, "q4_0", sizeof(qr_block_q4_0), 4.5},
        {QR_TYPE_Q3_0, "q3_0", sizeof(qr_block_q3_0), 3.5}, {QR_TYPE_Q2_0, "q2_0", sizeof(qr_block_q2_0), 2.5},
        {QR_TYPE_Q8_1, "q8_1", sizeof(qr_block_q8_1), 9.0}, {QR_TYPE_Q6_1, "q6_1", sizeof(qr_block_q6_1), 7.0},
        {QR_TYPE_Q5_1, "q5_1", sizeof(qr_block_q5_1), 6.0}, {QR_TYPE_Q4_1, "q4_1", sizeof(qr_block_q4_1), 5.0},
        {QR_TYPE_Q3_1, "q3_1", sizeof(qr_block_q3_1), 4.0}, {QR_TYPE_Q2_1, "q2_1", sizeof(qr_block_q2_1), 3.0},
        {QR_TYPE_Q4_S, "q4_s", 17, 4.25}, {QR_TYPE_Q3_S, "q3_s", 13, 3.25}, {QR_TYPE_Q2_S, "q2_s", 9, 2.25},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const qr_type_info *t = qr_type_get(want[i].type);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->block_weights, 32);
        assert_int_equal(t->block_bytes, want[i].bytes);
        assert_true(qr_type_bits_per_weight(want[i].type) == want[i].bpw);
        uint32_t code;
        assert_true(qr_type_from_name(want[i].name, &code));
        assert_int_equal(code, want[i].type);
        assert_true(qr_type_is_quantized(code));
        assert_non_null(qr_kernels_ref(code));
        assert_non_null(qr_kernels_best(code));
    }
    assert_false(qr_type_is_quantized(QR_TYPE_F16));
    assert_null(qr_type_get(31));
    assert_false(qr_type_is_quantized(31));
    assert_int_equal(sizeof(qr_x8_group), 320);
    assert_int_equal(qr_x8_groups(768), 3);
    assert_int_equal(qr_x8_groups(384), 2);
}

/* The documented bit layout, checked on one hand-made block per plane kind. */
static void test_code_layout(void **state)
{
    (void)state;
    uint8_t q[32], back[32], data[32];
    for (int j = 0; j < 32; j++)
        q[j] = (uint8_t)((j * 37 + 11) & 63);
    qr_pack_codes(6, data, q);
    /* byte j of the nibbles = q[j] & 15 | (q[j+16] & 15) << 4; crumb k of byte j = q[j+8k] >> 4 */
    for (int j = 0; j < 16; j++)
        assert_int_equal(data[j], (q[j] & 15) | (q[j + 16] & 15) << 4);
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 4; k++)
            assert_int_equal(data[16 + j] >> (2 * k) & 3, q[j + 8 * k] >> 4);
    qr_unpack_codes(6, data, back);
    assert_memory_equal(q, back, 32);
    for (int bits = 2; bits <= 8; bits++) {
        if (bits == 7)
            continue;
        for (int j = 0; j < 32; j++)
            q[j] = (uint8_t)((j * 53 + bits) & ((1 << bits) - 1));
        memset(data, 0, sizeof data);
        qr_pack_codes(bits, data, q);
        qr_unpack_codes(bits, data, back);
        assert_memory_equal(q, back, 32);
        if (bits == 5 || bits == 3) { /* the high-bit plane: bit j = top bit of q[j], little-endian */
            const uint8_t *plane = data + (bits == 5 ? 16 : 8);
            uint32_t u = (uint32_t)plane[0] | (uint32_t)plane[1] << 8 | (uint32_t)plane[2] << 16 |
                         (uint32_t)plane[3] << 24;
            for (int j = 0; j < 32; j++)
                assert_int_equal(u >> j & 1, q[j] >> (bits - 1) & 1);
        }
    }
}

/* ---------------------------------------------------------------- error */

static void test_round_trip_rmse(void **state)
{
    (void)state;
    size_t n = 32 * 2048;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    fill_gauss(x, n);
    print_message("type   bound     rmse\n");
    for (size_t t = 0; t < N_QUANT; t++) {
        round_trip(quant_types[t], x, n, NULL, y);
        double se = 0;
        for (size_t i = 0; i < n; i++)
            se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        double rmse = sqrt(se / (double)n);
        print_message("%-5s  %.5f  %.5f\n", qr_type_get(quant_types[t])->name, rmse_bound(quant_types[t]), rmse);
        if (!(rmse < rmse_bound(quant_types[t])))
            fail_msg("%s: RMSE %g over the bound %g", qr_type_get(quant_types[t])->name, rmse,
                     rmse_bound(quant_types[t]));
    }
    /* f16 and f32 through the same entry point. */
    round_trip(QR_TYPE_F32, x, n, NULL, y);
    assert_memory_equal(x, y, n * sizeof *x);
    uint16_t *h = malloc(n * sizeof *h);
    assert_int_equal(qr_quantize_row(QR_TYPE_F16, x, n, NULL, h), QR_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(h[i], qr_f32_to_f16(x[i]));
    free(h);
    free(x);
    free(y);
}

/* Plain min-max of one type, as a naive quantizer would: the largest |w| onto the end of the
 * range (symmetric; for the _s types the outer level d·(2^(B−1) − ½), d the nearest E5M3
 * value), or min and max onto the first and last codes (with minimum). */
static void naive_round_trip(uint32_t type, const float *x, size_t n, float *out)
{
    const qr_type_info *t = qr_type_get(type);
    int bits = (int)t->bits, off = 1 << (bits - 1), nmax = (1 << bits) - 1;
    uint8_t *blocks = malloc(row_bytes(type, n)), *b = blocks, q[32];
    for (size_t i = 0; i < n / 32; i++, b += t->block_bytes) {
        const float *v = x + 32 * i;
        float mn = v[0], mx = v[0], amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            mn = fminf(mn, v[j]);
            mx = fmaxf(mx, v[j]);
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        }
        uint16_t dh = 0, mh = qr_f32_to_f16(mn);
        if (t->small_scale) {
            float want = amax / ((float)off - 0.5f);
            uint8_t e = qr_e5m3_floor(want);
            if (e < 0xf7 && qr_e5m3_to_f32((uint8_t)(e + 1)) - want < want - qr_e5m3_to_f32(e))
                e++;
            b[0] = e;
            float d = qr_e5m3_to_f32(e), id = d > 0.0f ? 1.0f / d : 0.0f;
            for (int j = 0; j < 32; j++)
                q[j] = (uint8_t)(fminf(fmaxf(rintf(v[j] * id - 0.5f), (float)-off), (float)(off - 1)) + (float)off);
        } else if (t->has_min) {
            dh = qr_f32_to_f16((mx - mn) / (float)nmax);
            float d = qr_f16_to_f32(dh), m = qr_f16_to_f32(mh);
            for (int j = 0; j < 32; j++)
                q[j] = (uint8_t)fminf(fmaxf(rintf((v[j] - m) / d), 0), (float)nmax);
        } else {
            dh = qr_f32_to_f16(max / (float)-off);
            float d = qr_f16_to_f32(dh);
            for (int j = 0; j < 32; j++)
                q[j] = (uint8_t)(fminf(fmaxf(rintf(v[j] / d), (float)-off), (float)(off - 1)) + (float)off);
        }
        if (!t->small_scale)
            memcpy(b, &dh, 2);
        if (t->has_min)
            memcpy(b + 2, &mh, 2);
        qr_pack_codes(bits, b + (t->small_scale ? 1 : t->has_min ? 4 : 2), q);
    }
    qr_kernels_ref(type)->to_float(blocks, out, n);
    free(blocks);
}

/* On Gaussian weights with outliers (1 in 64 weights six times larger), every type's clipping
 * search has a lower squared error than plain min-max of the same type. */
static void test_search_beats_minmax(void **state)
{
    (void)state;
    size_t n = 32 * 1024;
    float *x = malloc(n * sizeof *x), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    fill_gauss(x, n);
    for (size_t i = 0; i < n; i++)
        if (urand() < 1.0 / 64)
            x[i] *= 6.0f;
    for (size_t t = 0; t < N_QUANT; t++) {
        round_trip(quant_types[t], x, n, NULL, a);
        naive_round_trip(quant_types[t], x, n, b);
        double ea = 0, eb = 0;
        for (size_t i = 0; i < n; i++) {
            ea += ((double)x[i] - a[i]) * ((double)x[i] - a[i]);
            eb += ((double)x[i] - b[i]) * ((double)x[i] - b[i]);
        }
        print_message("%-5s  search %.6f  min-max %.6f  (%.1f%% lower)\n", qr_type_get(quant_types[t])->name,
                      sqrt(ea / (double)n), sqrt(eb / (double)n), 100.0 * (1.0 - ea / eb));
        if (!(ea < eb))
            fail_msg("%s: search %g >= min-max %g", qr_type_get(quant_types[t])->name, ea, eb);
    }
    free(x);
    free(a);
    free(b);
}

/* With a per-column importance, the importance-weighted error is lower than without it. */
static void test_importance_lowers_weighted_error(void **state)
{
    (void)state;
    size_t cols = 256, rows = 64, n = rows * cols;
    float *x = malloc(n * sizeof *x), *a = malloc(cols * sizeof *a), *b = malloc(cols * sizeof *b);
    float *imp = malloc(cols * sizeof *imp);
    fill_gauss(x, n);
    for (size_t j = 0; j < cols; j++)
        imp[j] = expf(2.0f * gauss()); /* log-normal: a few columns matter far more */
    for (size_t t = 0; t < N_QUANT; t++) {
        double ea = 0, eb = 0;
        for (size_t r = 0; r < rows; r++) {
            const float *row = x + r * cols;
            round_trip(quant_types[t], row, cols, imp, a);
            round_trip(quant_types[t], row, cols, NULL, b);
            for (size_t j = 0; j < cols; j++) {
                ea += imp[j] * ((double)row[j] - a[j]) * ((double)row[j] - a[j]);
                eb += imp[j] * ((double)row[j] - b[j]) * ((double)row[j] - b[j]);
            }
        }
        print_message("%-5s  weighted error with importance %.3g, without %.3g\n",
                      qr_type_get(quant_types[t])->name, ea, eb);
        if (!(ea < eb))
            fail_msg("%s: importance did not lower the weighted error (%g vs %g)",
                     qr_type_get(quant_types[t])->name, ea, eb);
    }
    free(x);
    free(a);
    free(b);
    free(imp);
}

/* Bad input is refused, not quantized into garbage. */
static void test_quantize_refuses(void **state)
{
    (void)state;
    float x[64] = {0}, imp[64];
    uint8_t out[128];
    for (int j = 0; j < 64; j++)
        imp[j] = 1.0f;
    assert_int_equal(qr_quantize_row(QR_TYPE_Q4_0, x, 48, NULL, out), QR_ERR_INVALID);
    assert_int_equal(qr_quantize_row(60, x, 64, NULL, out), QR_ERR_INVALID);
    x[5] = NAN;
    assert_int_equal(qr_quantize_row(QR_TYPE_Q4_0, x, 64, NULL, out), QR_ERR_INVALID);
    x[5] = 0.0f;
    imp[3] = -1.0f;
    assert_int_equal(qr_quantize_row(QR_TYPE_Q4_1, x, 64, imp, out), QR_ERR_INVALID);
    imp[3] = 1.0f;
    /* All-zero and constant blocks dequantize exactly. */
    for (size_t t = 0; t < N_QUANT; t++) {
        float y[64];
        assert_int_equal(qr_quantize_row(quant_types[t], x, 64, imp, out), QR_OK);
        qr_kernels_best(quant_types[t])->to_float(out, y, 64);
        for (int j = 0; j < 64; j++)
            assert_true(y[j] == 0.0f);
    }
    for (int j = 0; j < 64; j++)
        x[j] = 0.75f;
    float y[64];
    assert_int_equal(qr_quantize_row(QR_TYPE_Q3_1, x, 64, NULL, out), QR_OK);
    qr_kernels_ref(QR_TYPE_Q3_1)->to_float(out, y, 64);
    for (int j = 0; j < 64; j++)
        assert_true(y[j] == 0.75f);
}

/* ---------------------------------------------------------------- kernels */

/* SIMD and reference agree: x rounded to the same bytes, to_float bit for bit, products within
 * 1e-4 of Σ|w·x|, on many lengths. (Skipped where the best kernel is the reference.) */
static void test_simd_matches_reference(void **state)
{
    (void)state;
    static const size_t lens[] = {32, 64, 96, 256, 384, 512, 544, 768, 3072, 4096};
    for (size_t t = 0; t < N_QUANT; t++) {
        const qr_kernel_ops *ref = qr_kernels_ref(quant_types[t]), *best = qr_kernels_best(quant_types[t]);
        assert_non_null(ref->prepare_x);
        assert_non_null(best->dot_rows_x8);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li], rows = 5, rb = row_bytes(quant_types[t], n);
            float *w = malloc(rows * n * sizeof *w), *x = malloc(n * sizeof *x);
            float *dq = malloc(rows * n * sizeof *dq), *dq2 = malloc(rows * n * sizeof *dq2);
            uint8_t *q = malloc(rows * rb);
            fill_gauss(w, rows * n);
            fill_gauss(x, n);
            if (li == 0)
                memset(x, 0, 32 * sizeof *x); /* an all-zero x block */
            assert_int_equal(qr_quantize_tensor(quant_types[t], w, rows, n, NULL, q, NULL), QR_OK);
            ref->to_float(q, dq, rows * n);
            best->to_float(q, dq2, rows * n);
            assert_memory_equal(dq, dq2, rows * n * sizeof *dq);
            size_t ng = qr_x8_groups(n);
            qr_x8_group *xa = malloc(ng * sizeof *xa), *xb = malloc(ng * sizeof *xb);
            memset(xa, 0x55, ng * sizeof *xa); /* the tail of the last group must be zeroed */
            memset(xb, 0xaa, ng * sizeof *xb);
            ref->prepare_x(x, n, xa);
            best->prepare_x(x, n, xb);
            assert_memory_equal(xa, xb, ng * sizeof *xa);
            float y_ref[5], y_best[5], y_x8[5];
            ref->dot_rows(q, rb, rows, x, n, y_ref);
            best->dot_rows(q, rb, rows, x, n, y_best);
            best->dot_rows_x8(q, rb, rows, xb, n, y_x8);
            for (size_t r = 0; r < rows; r++) {
                double mag = 0, exact = 0;
                for (size_t i = 0; i < n; i++) {
                    mag += fabs((double)dq[r * n + i] * x[i]);
                    exact += (double)dq[r * n + i] * x[i];
                }
                if (fabs(y_best[r] - y_ref[r]) > 1e-4 * mag || fabs(y_x8[r] - y_ref[r]) > 1e-4 * mag)
                    fail_msg("%s/%s n=%zu row %zu: ref %g best %g x8 %g", ref->name, best->name, n, r,
                             (double)y_ref[r], (double)y_best[r], (double)y_x8[r]);
                /* x's rounding to 8 bits per block costs at most ~1% of Σ|w·x|. */
                if (fabs(y_ref[r] - exact) > 1e-2 * mag)
                    fail_msg("%s n=%zu row %zu: ref %g, exact %g (Σ|terms| %g)", ref->name, n, r,
                             (double)y_ref[r], exact, mag);
            }
            free(xa);
            free(xb);
            free(w);
            free(x);
            free(dq);
            free(dq2);
            free(q);
        }
    }
}

/* y = W·x through the decode path (x rounded once, rows over a pool) is close to the f32
 * product: normalised MSE Σ(y − y_f32)² / Σy_f32² under rmse_bound² (the weights' own error,
 * relative to their unit variance) + 1e-4 (x's rounding). */
static void test_matvec_nmse(void **state)
{
    (void)state;
    size_t rows = 256, cols = 768;
    float *w = malloc(rows * cols * sizeof *w), x[768], y[256];
    fill_gauss(w, rows * cols);
    fill_gauss(x, cols);
    double *exact = malloc(rows * sizeof *exact);
    for (size_t r = 0; r < rows; r++) {
        exact[r] = 0;
        for (size_t i = 0; i < cols; i++)
            exact[r] += (double)w[r * cols + i] * x[i];
    }
    qr_pool *pool;
    assert_int_equal(qr_pool_new(2, &pool, NULL), QR_OK);
    for (size_t t = 0; t < N_QUANT; t++) {
        size_t rb = row_bytes(quant_types[t], cols);
        void *q = malloc(rows * rb);
        assert_int_equal(qr_quantize_tensor(quant_types[t], w, rows, cols, NULL, q, pool), QR_OK);
        qr_matrix m = {q, quant_types[t], rows, cols, rb, qr_kernels_best(quant_types[t])};
        qr_matvec_job job = {&m, x, y};
        qr_matvec_multi(pool, &job, 1);
        double se = 0, ss = 0;
        for (size_t r = 0; r < rows; r++) {
            se += (y[r] - exact[r]) * (y[r] - exact[r]);
            ss += exact[r] * exact[r];
        }
        double bound = rmse_bound(quant_types[t]) * rmse_bound(quant_types[t]) + 1e-4;
        print_message("%-5s  mat-vec NMSE %.3g (bound %.3g)\n", qr_type_get(quant_types[t])->name, se / ss, bound);
        if (!(se / ss < bound))
            fail_msg("%s: NMSE %g over %g", qr_type_get(quant_types[t])->name, se / ss, bound);
        /* The batched path (to_float + sgemm, x in f32) agrees with the decode path to within
         * x's rounding. */
        float Y[256], *panel = malloc(qr_matmul_panel_floats(cols, 1) * sizeof(float));
        qr_matmul(&m, x, 1, Y, panel);
        double d2 = 0;
        for (size_t r = 0; r < rows; r++)
            d2 += (Y[r] - y[r]) * (Y[r] - y[r]);
        assert_true(d2 / ss < 1e-4);
        free(panel);
        free(q);
    }
    qr_pool_free(pool);
    free(w);
    free(exact);
}

/* ---------------------------------------------------------------- baseline */

static void test_minmax_per_tensor(void **state)
{
    (void)state;
    size_t n = 10000;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    fill_gauss(x, n);
    float mn = x[0], mx = x[0];
    for (size_t i = 0; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    static const int bits[] = {4, 8, 12, 16};
    double prev = INFINITY;
    for (size_t b = 0; b < 4; b++) {
        assert_int_equal(qr_fake_quant_minmax_per_tensor(x, n, bits[b], y), QR_OK);
        /* Within half a step of the input, plus the f32 result's own rounding (half an ulp). */
        double step = ((double)mx - mn) / ((1 << bits[b]) - 1), se = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)x[i] - y[i]);
            if (e > step / 2 * (1 + 1e-9) + fabs((double)x[i]) * 0x1p-24)
                fail_msg("%d bits: x %g -> %g, error %g over half a step %g", bits[b], (double)x[i],
                         (double)y[i], e, step / 2);
            se += e * e;
        }
        assert_true(se < prev);
        prev = se;
    }
    /* The extremes are levels: exact. In place works. */
    assert_int_equal(qr_fake_quant_minmax_per_tensor(x, n, 4, x), QR_OK);
    float mn2 = x[0], mx2 = x[0];
    for (size_t i = 0; i < n; i++) {
        mn2 = fminf(mn2, x[i]);
        mx2 = fmaxf(mx2, x[i]);
    }
    assert_true(mn2 == mn && fabsf(mx2 - mx) < 1e-6f);
    assert_int_equal(qr_fake_quant_minmax_per_tensor(x, n, 0, y), QR_ERR_INVALID);
    assert_int_equal(qr_fake_quant_minmax_per_tensor(x, n, 17, y), QR_ERR_INVALID);
    free(x);
    free(y);
}

/* ---------------------------------------------------------------- requantize */

typedef struct {
    uint32_t matrices, head;
} choice;

static uint32_t choose(void *ctx, const char *name, uint32_t n_dims, const uint64_t *dims)
{
    (void)n_dims;
    (void)dims;
    const choice *c = ctx;
    return strcmp(name, "head.weight") == 0 ? c->head : c->matrices;
}

static void temp_path(char *path, size_t cap, const char *tag)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, cap, "%s/qslm-test-quant-%s-%ld.qslm", tmp, tag, (long)getpid());
}

/* Runs a few tokens; every logit must be finite. */
static void run_tokens(const qr_model *m)
{
    qr_runner *r;
    qr_state *s;
    qr_error err;
    assert_int_equal(qr_runner_new(m, NULL, 1, &r, &err), QR_OK);
    assert_int_equal(qr_state_new(m, &s, &err), QR_OK);
    float *logits = malloc(m->vocab * sizeof *logits);
    for (int32_t tok = 0; tok < 4; tok++) {
        assert_int_equal(qr_forward(r, &s, &tok, 1, logits, NULL, &err), QR_OK);
        for (size_t i = 0; i < m->vocab; i++)
            assert_true(isfinite(logits[i]));
    }
    free(logits);
    qr_state_free(s);
    qr_runner_free(r);
}

/* A model requantized to q4_0 with a q2_1 head loads, binds and runs; its types are as asked,
 * quant.setting lists every matrix, the provenance says what happened. A second pass with the
 * same setting copies the tensors byte for byte. Matrices whose rows are not whole blocks keep
 * their type. */
static void test_requantize_round_trip(void **state)
{
    (void)state;
    char src[4096], dst[4096], again[4096];
    temp_path(src, sizeof src, "src");
    temp_path(dst, sizeof dst, "dst");
    temp_path(again, sizeof again, "again");
    qr_error err;
    synthetic_shape shape = {2, 64, 128, 96, QR_TYPE_F32, 7};
    assert_int_equal(synthetic_model_write(&shape, src, &err), QR_OK);
    qr_model_file *in, *out, *out2;
    assert_int_equal(qr_model_file_open(src, &in, &err), QR_OK);
    choice c = {QR_TYPE_Q4_0, QR_TYPE_Q2_1};
    float imp[128];
    for (int j = 0; j < 128; j++)
        imp[j] = 1.0f + (float)j;
    qr_importance_entry ie = {"blocks.1.ffn.value.weight", imp, 128};
    qr_importance importance = {&ie, 1};
    assert_int_equal(qr_requantize(in, dst, choose, &c, &importance, NULL, &err), QR_OK);
    assert_int_equal(qr_model_file_open(dst, &out, &err), QR_OK);
    assert_int_equal(qr_model_file_tensor_count(out), qr_model_file_tensor_count(in));

    const char *setting;
    uint64_t len;
    assert_int_equal(qr_model_file_get_blob(out, "quant.setting", &setting, &len, &err), QR_OK);
    json_object *js = json_tokener_parse(setting);
    assert_non_null(js);
    size_t n_matrices = 0;
    for (size_t i = 0; i < qr_model_file_tensor_count(out); i++) {
        const qr_tensor_info *t = qr_model_file_tensor(out, i);
        json_object *v = NULL;
        if (t->n_dims != 2) {
            assert_int_equal(t->type, QR_TYPE_F32);
            assert_false(json_object_object_get_ex(js, t->name, &v));
            continue;
        }
        n_matrices++;
        uint32_t want = strcmp(t->name, "head.weight") == 0 ? QR_TYPE_Q2_1 : QR_TYPE_Q4_0;
        assert_int_equal(t->type, want);
        assert_true(json_object_object_get_ex(js, t->name, &v));
        assert_string_equal(json_object_get_string(v), qr_type_get(want)->name);
    }
    assert_int_equal((size_t)json_object_object_length(js), n_matrices);
    json_object_put(js);
    const char *prov;
    assert_int_equal(qr_model_file_get_blob(out, "general.provenance", &prov, &len, &err), QR_OK);
    assert_non_null(strstr(prov, "random weights")); /* the input's, kept */
    assert_non_null(strstr(prov, "requantized from"));
    uint64_t u;
    assert_int_equal(qr_model_file_get_u64(out, "model.n_ffn", 0, &u, &err), QR_OK);
    assert_int_equal(u, 128);

    qr_model *m;
    assert_int_equal(qr_model_bind(out, &m, &err), QR_OK);
    assert_int_equal(m->head.type, QR_TYPE_Q2_1);
    assert_int_equal(m->layers[0].att_key.type, QR_TYPE_Q4_0);
    run_tokens(m);
    qr_model_free(m);

    /* Same setting again: nothing to convert, every tensor's bytes unchanged. */
    assert_int_equal(qr_requantize(out, again, choose, &c, NULL, NULL, &err), QR_OK);
    assert_int_equal(qr_model_file_open(again, &out2, &err), QR_OK);
    for (size_t i = 0; i < qr_model_file_tensor_count(out); i++) {
        const qr_tensor_info *a = qr_model_file_tensor(out, i), *b = qr_model_file_tensor(out2, i);
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->size, b->size);
        assert_memory_equal(a->data, b->data, a->size);
    }
    qr_model_file_close(out2);

    /* From quantized to another quantized type: through f32, binds and runs. */
    c = (choice){QR_TYPE_Q8_1, QR_TYPE_F16};
    assert_int_equal(qr_requantize(out, again, choose, &c, NULL, NULL, &err), QR_OK);
    assert_int_equal(qr_model_file_open(again, &out2, &err), QR_OK);
    assert_int_equal(qr_model_bind(out2, &m, &err), QR_OK);
    assert_int_equal(m->head.type, QR_TYPE_F16);
    assert_int_equal(m->layers[1].ffn_value.type, QR_TYPE_Q8_1);
    run_tokens(m);
    qr_model_free(m);
    qr_model_file_close(out2);
    qr_model_file_close(out);

    /* Errors: an unknown type code, an importance of the wrong length. */
    c = (choice){60, 60};
    assert_int_equal(qr_requantize(in, dst, choose, &c, NULL, NULL, &err), QR_ERR_INVALID);
    c = (choice){QR_TYPE_Q4_0, QR_TYPE_Q4_0};
    ie.n = 64;
    assert_int_equal(qr_requantize(in, dst, choose, &c, &importance, NULL, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "blocks.1.ffn.value.weight"));
    qr_model_file_close(in);

    /* d = 48: the d-column matrices cannot hold blocks of 32 and stay f32; ffn.value (128
     * columns) is quantized. */
    shape = (synthetic_shape){1, 48, 128, 64, QR_TYPE_F32, 3};
    assert_int_equal(synthetic_model_write(&shape, src, &err), QR_OK);
    assert_int_equal(qr_model_file_open(src, &in, &err), QR_OK);
    assert_int_equal(qr_requantize(in, dst, choose, &c, NULL, NULL, &err), QR_OK);
    assert_int_equal(qr_model_file_open(dst, &out, &err), QR_OK);
    assert_int_equal(qr_model_file_find_tensor(out, "blocks.0.att.key.weight")->type, QR_TYPE_F32);
    assert_int_equal(qr_model_file_find_tensor(out, "blocks.0.ffn.value.weight")->type, QR_TYPE_Q4_0);
    assert_int_equal(qr_model_bind(out, &m, &err), QR_OK);
    run_tokens(m);
    qr_model_free(m);
    qr_model_file_close(out);
    qr_model_file_close(in);
    unlink(src);
    unlink(dst);
    unlink(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_code_layout),
        cmocka_unit_test(test_round_trip_rmse),
        cmocka_unit_test(test_search_beats_minmax),
        cmocka_unit_test(test_importance_lowers_weighted_error),
        cmocka_unit_test(test_quantize_refuses),
        cmocka_unit_test(test_simd_matches_reference),
        cmocka_unit_test(test_matvec_nmse),
        cmocka_unit_test(test_minmax_per_tensor),
        cmocka_unit_test(test_requantize_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
