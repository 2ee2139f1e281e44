/* test_gemm.c: the chunk products (kernels/gemm_x8.h) of every quantized type, every variant this
 * CPU runs (AVX2 and AVX-VNNI on x86-64; NEON and NEON with SDOT on aarch64, under qemu in the
 * cross tests), against the reference: the decode product of each row of x. */
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
#include "kernels/quant_common.h"
#include "quantize.h"
#include "tensor_types.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static float frand(void)
{
    return (float)(next() >> 40) / 16777216.0f * 2.0f - 1.0f;
}

static const uint32_t quant_types[] = {QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0, QR_TYPE_Q4_0,
                                       QR_TYPE_Q3_0, QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1,
                                       QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1,
                                       QR_TYPE_Q4_S, QR_TYPE_Q3_S, QR_TYPE_Q2_S};
#define N_TYPES (sizeof quant_types / sizeof quant_types[0])

/* Widths: whole groups, a partial last group (9 and 3 blocks), the 216M shape's d and n_ffn. */
static const size_t widths[] = {256, 288, 96, 768, 3072};
/* Rows of x: one, a few, one pass of the kernels, more than a pass. */
static const size_t x_rows[] = {1, 7, 64, 130};
#define W_ROWS 9 /* not a multiple of the kernels' tile of 4 */
#define LDY (W_ROWS + 3)

static size_t row_bytes_of(uint32_t type, size_t cols)
{
    uint64_t b;
    assert_true(qr_type_bytes(type, cols, &b));
    return (size_t)b;
}

/* n_x rows of x rounded by prepare (one row at a time, as linear.c does). */
static qr_x8_group *prepare_rows(void (*prepare)(const float *, size_t, qr_x8_group *), const float *x,
                                 size_t n_x, size_t n)
{
    size_t groups = qr_x8_groups(n);
    qr_x8_group *X = calloc(n_x * groups, sizeof *X);
    assert_non_null(X);
    for (size_t c = 0; c < n_x; c++)
        prepare(x + c * n, n, X + c * groups);
    return X;
}

/* Y of every variant within 1e-5 of the sum of |terms| of the reference's (only the order of
 * the float additions differs), on random weights and x; every variant fills exactly the
 * n_rows × n_x entries asked and leaves the stride's gap alone. */
static void test_gemm_matches_reference(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = quant_types[t];
        const qr_kernel_ops *variants[QR_KERNEL_VARIANTS_MAX], *ref = qr_kernels_ref(type);
        size_t n_variants = qr_kernels_all(type, variants, QR_KERNEL_VARIANTS_MAX);
        assert_non_null(ref->gemm_x8);
        for (size_t v = 0; v < n_variants; v++) {
            const qr_kernel_ops *k = variants[v];
            assert_non_null(k->gemm_x8);
            assert_non_null(k->prepare_x_gemm);
            for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
                size_t n = widths[wi], rb = row_bytes_of(type, n);
                float *vals = malloc(W_ROWS * n * sizeof *vals);
                for (size_t i = 0; i < W_ROWS * n; i++)
                    vals[i] = frand();
                void *w = malloc(W_ROWS * rb);
                assert_int_equal(qr_quantize_tensor(type, vals, W_ROWS, n, NULL, w, NULL), QR_OK);
                ref->to_float(w, vals, W_ROWS * n);
                for (size_t xi = 0; xi < sizeof x_rows / sizeof x_rows[0]; xi++) {
                    size_t n_x = x_rows[xi];
                    float *x = malloc(n_x * n * sizeof *x);
                    for (size_t i = 0; i < n_x * n; i++)
                        x[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
                    qr_x8_group *Xr = prepare_rows(ref->prepare_x, x, n_x, n);
                    qr_x8_group *Xv = prepare_rows(k->prepare_x_gemm, x, n_x, n);
                    float *Yr = malloc(n_x * LDY * sizeof *Yr), *Yv = malloc(n_x * LDY * sizeof *Yv);
                    for (size_t i = 0; i < n_x * LDY; i++)
                        Yr[i] = Yv[i] = -7.0f;
                    ref->gemm_x8(w, rb, W_ROWS, Xr, n_x, n, Yr, LDY);
                    k->gemm_x8(w, rb, W_ROWS, Xv, n_x, n, Yv, LDY);
                    for (size_t c = 0; c < n_x; c++)
                        for (size_t r = 0; r < LDY; r++) {
                            float a = Yr[c * LDY + r], b = Yv[c * LDY + r];
                            if (r >= W_ROWS) {
                                if (a != -7.0f || b != -7.0f)
                                    fail_msg("%s n=%zu n_x=%zu: wrote past row %d of Y row %zu", k->name, n,
                                             n_x, W_ROWS, c);
                                continue;
                            }
                            double mag = 0;
                            for (size_t i = 0; i < n; i++)
                                mag += fabs((double)vals[r * n + i] * x[c * n + i]);
                            if (fabs((double)a - b) > 1e-5 * mag + 1e-6)
                                fail_msg("%s n=%zu n_x=%zu y[%zu][%zu]: ref %g, %g", k->name, n, n_x, c, r,
                                         (double)a, (double)b);
                        }
                    free(Yr);
                    free(Yv);
                    free(Xr);
                    free(Xv);
                    free(x);
                }
                free(w);
                free(vals);
            }
        }
    }
}

/* Where every product and partial sum is exact in float (d = 1/16, m a multiple of 1/16,
 * integer x with 127 in every block so dx = 1), every variant gives the reference's results to
 * the bit: the unpacking, the transposes, the 8-bit codes' sign handling and the integer sums
 * are exact, whatever the type's width and offset. Codes include the extremes (0 and 2^B − 1),
 * and two weight rows (all codes largest, all 0) meet two rows of x at +127 and −127: the
 * largest sums each integer step sees, so a step that could overflow fails here. */
static void test_gemm_integer_parts_exact(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = quant_types[t];
        const qr_type_info *info = qr_type_get(type);
        const qr_kernel_ops *variants[QR_KERNEL_VARIANTS_MAX], *ref = qr_kernels_ref(type);
        size_t n_variants = qr_kernels_all(type, variants, QR_KERNEL_VARIANTS_MAX);
        size_t n = 288, n_x = 70, rb = row_bytes_of(type, n);
        size_t hdr = info->small_scale ? 1 : info->has_min ? 4 : 2;
        uint8_t *w = malloc(W_ROWS * rb);
        for (size_t b = 0; b < W_ROWS * n / 32; b++) {
            uint8_t *blk = w + b * info->block_bytes, q[32];
            uint16_t d = qr_f32_to_f16(0.0625f), m = qr_f32_to_f16((float)((int)(frand() * 8.0f)) / 16.0f);
            if (info->small_scale) /* the E5M3 byte of 1/16; the _s offset makes sums of 1/32s */
                blk[0] = qr_e5m3_floor(0.0625f);
            else
                memcpy(blk, &d, 2);
            if (info->has_min)
                memcpy(blk + 2, &m, 2);
            size_t row = b / (n / 32);
            for (int j = 0; j < 32; j++) {
                uint64_t u = next();
                q[j] = (uint8_t)(u % 5 == 0 ? (1u << info->bits) - 1 : u % 7 == 0 ? 0 : (u >> 8) % (1u << info->bits));
                if (row < 2) /* the largest sums the int16 and int32 steps can see, both signs */
                    q[j] = row == 0 ? (uint8_t)((1u << info->bits) - 1) : 0;
            }
            qr_pack_codes((int)info->bits, blk + hdr, q);
        }
        float *x = malloc(n_x * n * sizeof *x);
        for (size_t i = 0; i < n_x * n; i++)
            x[i] = i % 32 == 0 ? 127.0f : i % 32 == 1 ? -127.0f : (float)((int)(frand() * 127.0f));
        for (size_t i = 0; i < n; i++) { /* rows of x at ±127 throughout */
            x[i] = 127.0f;
            x[n + i] = -127.0f;
        }
        qr_x8_group *Xr = prepare_rows(ref->prepare_x, x, n_x, n);
        float *Yr = malloc(n_x * W_ROWS * sizeof *Yr), *Yv = malloc(n_x * W_ROWS * sizeof *Yv);
        ref->gemm_x8(w, rb, W_ROWS, Xr, n_x, n, Yr, W_ROWS);
        for (size_t v = 1; v < n_variants; v++) {
            qr_x8_group *Xv = prepare_rows(variants[v]->prepare_x_gemm, x, n_x, n);
            variants[v]->gemm_x8(w, rb, W_ROWS, Xv, n_x, n, Yv, W_ROWS);
            for (size_t i = 0; i < n_x * W_ROWS; i++)
                if (Yr[i] != Yv[i])
                    fail_msg("%s: y[%zu][%zu] ref %a, %a", variants[v]->name, i / W_ROWS, i % W_ROWS, (double)Yr[i],
                             (double)Yv[i]);
            free(Xv);
        }
        free(Yr);
        free(Yv);
        free(Xr);
        free(x);
        free(w);
    }
}

/* The gemm layout holds the same bytes, scales and sums as prepare_x's, only moved: each
 * variant's prepare_x_gemm is a permutation of the codes within a group. */
static void test_gemm_prepare_is_a_permutation(void **state)
{
    (void)state;
    size_t n = 768, groups = qr_x8_groups(n);
    float x[768];
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
    const qr_kernel_ops *variants[QR_KERNEL_VARIANTS_MAX];
    size_t n_variants = qr_kernels_all(QR_TYPE_Q4_0, variants, QR_KERNEL_VARIANTS_MAX);
    qr_x8_group plain[3], mine[3];
    variants[0]->prepare_x(x, n, plain);
    for (size_t v = 0; v < n_variants; v++) {
        variants[v]->prepare_x_gemm(x, n, mine);
        for (size_t g = 0; g < groups; g++) {
            assert_memory_equal(plain[g].d, mine[g].d, sizeof plain[g].d);
            assert_memory_equal(plain[g].s, mine[g].s, sizeof plain[g].s);
            int hist_a[256] = {0}, hist_b[256] = {0};
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 32; j++) {
                    hist_a[(uint8_t)plain[g].q[k][j]]++;
                    hist_b[(uint8_t)mine[g].q[k][j]]++;
                }
            assert_memory_equal(hist_a, hist_b, sizeof hist_a);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_reference),
        cmocka_unit_test(test_gemm_integer_parts_exact),
        cmocka_unit_test(test_gemm_prepare_is_a_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
