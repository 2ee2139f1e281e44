/* test_spike_linear.c: the spike path (sums of selected rows of a transposed matrix) against the
 * dense product on the same {0,1} input, for every storage type, every kernel variant and 1 or 2
 * threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "linear.h"
#include "pool.h"
#include "quantize.h"
#include "spike_linear.h"
#include "tensor_types.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void)
{
    return (float)(next_u32() >> 8) / 16777216.0f * 2.0f - 1.0f;
}

static const uint32_t all_types[] = {
    QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0, QR_TYPE_Q4_0, QR_TYPE_Q3_0,
    QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1, QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1,
    QR_TYPE_Q4_S, QR_TYPE_Q3_S, QR_TYPE_Q2_S};

typedef struct {
    size_t n_in, n_out;  /* the transposed matrix is n_in rows × n_out columns */
    void *stored;        /* in the type under test */
    float *exact;        /* what stored decodes to, n_in × n_out */
    qr_matrix wt;
} spike_matrix;

static void make_matrix(spike_matrix *sm, uint32_t type, size_t n_in, size_t n_out,
                        const qr_kernel_ops *ops)
{
    sm->n_in = n_in;
    sm->n_out = n_out;
    float *src = malloc(n_in * n_out * sizeof(float));
    for (size_t i = 0; i < n_in * n_out; i++)
        src[i] = frand();
    uint64_t row_bytes;
    assert_true(qr_type_bytes(type, n_out, &row_bytes));
    sm->stored = malloc(n_in * row_bytes);
    assert_int_equal(qr_quantize_tensor(type, src, n_in, n_out, NULL, sm->stored, NULL), QR_OK);
    sm->exact = malloc(n_in * n_out * sizeof(float));
    for (size_t j = 0; j < n_in; j++)
        qr_kernels_ref(type)->to_float((char *)sm->stored + j * row_bytes, sm->exact + j * n_out, n_out);
    sm->wt = (qr_matrix){sm->stored, type, n_in, n_out, row_bytes, ops};
    free(src);
}

static void free_matrix(spike_matrix *sm)
{
    free(sm->stored);
    free(sm->exact);
}

/* Fires each input with probability rate_per_256 / 256; returns the 0/1 vector. */
static float *random_spikes(size_t n, uint32_t rate_per_256)
{
    float *s = malloc(n * sizeof(float));
    for (size_t j = 0; j < n; j++)
        s[j] = (next_u32() & 255) < rate_per_256 ? 1.0f : 0.0f;
    return s;
}

/* The dense product y = W·s with W = exactᵀ (n_out × n_in), through the f32 matrix-vector
 * kernels, as the dense channel-mix computes it. */
static void dense_product(const spike_matrix *sm, const float *s, float *y)
{
    float *w = malloc(sm->n_in * sm->n_out * sizeof(float));
    for (size_t j = 0; j < sm->n_in; j++)
        for (size_t c = 0; c < sm->n_out; c++)
            w[c * sm->n_in + j] = sm->exact[j * sm->n_out + c];
    qr_matrix dense = {w, QR_TYPE_F32, sm->n_out, sm->n_in, sm->n_in * sizeof(float),
                       qr_kernels_ref(QR_TYPE_F32)};
    qr_matvec_job job = {&dense, s, y};
    qr_matvec_multi(NULL, &job, 1);
    free(w);
}

/* Spike path = dense path within 1e-5 · max(1, |y|) for every type, kernel variant, thread count
 * and firing rate (none, sparse, dense, all); and the spike path gives the same bits for every
 * thread count (its summation order is fixed). n_out = 320 spans more than one decode slice. */
static void test_spike_equals_dense(void **state)
{
    (void)state;
    qr_pool *pool2;
    qr_error err;
    assert_int_equal(qr_pool_new(2, &pool2, &err), QR_OK);
    const size_t n_in = 200, n_out = 320;
    const uint32_t rates[] = {0, 20, 77, 256};
    uint32_t *active = malloc(n_in * sizeof(uint32_t));
    float *y_dense = malloc(n_out * sizeof(float)), *y1 = malloc(n_out * sizeof(float)),
          *y2 = malloc(n_out * sizeof(float));
    for (size_t t = 0; t < sizeof all_types / sizeof all_types[0]; t++) {
        const qr_kernel_ops *variants[] = {qr_kernels_ref(all_types[t]), qr_kernels_best(all_types[t])};
        for (size_t v = 0; v < 2; v++) {
            spike_matrix sm;
            make_matrix(&sm, all_types[t], n_in, n_out, variants[v]);
            for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++) {
                float *s = random_spikes(n_in, rates[ri]);
                size_t n_active = qr_spike_positions(s, n_in, active);
                if (rates[ri] == 0)
                    assert_int_equal(n_active, 0);
                if (rates[ri] == 256)
                    assert_int_equal(n_active, n_in);
                for (size_t a = 0; a < n_active; a++)
                    assert_true(s[active[a]] == 1.0f && (a == 0 || active[a] > active[a - 1]));
                dense_product(&sm, s, y_dense);
                memset(y1, 0xff, n_out * sizeof(float)); /* NaN: every output must be written */
                qr_spike_matvec(NULL, &sm.wt, active, n_active, y1);
                qr_spike_matvec(pool2, &sm.wt, active, n_active, y2);
                assert_memory_equal(y1, y2, n_out * sizeof(float));
                for (size_t c = 0; c < n_out; c++) {
                    double tol = 1e-5 * fmax(1.0, fabs(y_dense[c]));
                    if (!(fabs(y1[c] - y_dense[c]) <= tol))
                        fail_msg("%s (%s) rate %u/256 column %zu: spike %.9g dense %.9g",
                                 qr_type_get(all_types[t])->name, variants[v]->name, rates[ri], c,
                                 (double)y1[c], (double)y_dense[c]);
                }
                free(s);
            }
            free_matrix(&sm);
        }
    }
    free(active);
    free(y_dense);
    free(y1);
    free(y2);
    qr_pool_free(pool2);
}

/* Rows of inputs that did not fire are never read: poison them with NaN (f32) and the result is
 * still finite and equal to the dense product over the clean rows. */
static void test_silent_rows_not_read(void **state)
{
    (void)state;
    const size_t n_in = 64, n_out = 96;
    spike_matrix sm;
    make_matrix(&sm, QR_TYPE_F32, n_in, n_out, qr_kernels_best(QR_TYPE_F32));
    float *s = random_spikes(n_in, 64);
    uint32_t active[64];
    size_t n_active = qr_spike_positions(s, n_in, active);
    assert_true(n_active > 0 && n_active < n_in);
    float y_dense[96], y[96];
    dense_product(&sm, s, y_dense);
    float *rows = (float *)sm.stored;
    for (size_t j = 0; j < n_in; j++)
        if (s[j] == 0.0f)
            for (size_t c = 0; c < n_out; c++)
                rows[j * n_out + c] = NAN;
    qr_spike_matvec(NULL, &sm.wt, active, n_active, y);
    for (size_t c = 0; c < n_out; c++)
        assert_true(fabs(y[c] - y_dense[c]) <= 1e-5 * fmax(1.0, fabs(y_dense[c])));
    free(s);
    free_matrix(&sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spike_equals_dense),
        cmocka_unit_test(test_silent_rows_not_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
