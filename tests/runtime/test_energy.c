/* test_energy.c: the per-token energy estimate (energy.h) on tiny synthetic models whose
 * operation counts are worked out by hand below, for every kind of storage and for the
 * spike-driven value path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "energy.h"
#include "model.h"
#include "model_file.h"
#include "synthetic_model.h"
#include "tensor_types.h"

/* The shape every test uses: 2 layers, d 32, f 64, vocab 48. Per layer the dense matrices hold
 * 5·32·32 (att key, value, receptance, output; ffn receptance) + 64·32 (ffn key) + 32·64
 * (ffn value) = 9216 weights; two layers 18432; the head 48·32 = 1536; all 19968. */
#define LAYERS 2
#define D 32
#define F 64
#define VOCAB 48
#define W_LAYERS 18432.0
#define W_HEAD 1536.0
#define W_ALL 19968.0
#define W_VALUE 4096.0 /* the two ffn.value matrices */

typedef struct {
    qr_model_file *file;
    qr_model *model;
} bound;

static bound load(uint32_t type, bool spike_hidden, bool own_edges, uint32_t emb_type, uint32_t head_type)
{
    char path[256];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/qslm-test-energy-%ld.qslm", tmp, (long)getpid());
    synthetic_shape sh = {LAYERS, D, F, VOCAB, type, 7, 0, NULL, 0, own_edges, emb_type, head_type, NULL,
                          spike_hidden};
    qr_error err = {0};
    if (synthetic_model_write(&sh, path, &err) != QR_OK)
        fail_msg("%s", err.msg);
    bound b = {NULL, NULL};
    assert_int_equal(qr_model_file_open(path, &b.file, &err), QR_OK);
    unlink(path); /* the mapping stays */
    if (qr_model_bind(b.file, &b.model, &err) != QR_OK)
        fail_msg("%s", err.msg);
    return b;
}

static void unload(bound *b)
{
    qr_model_free(b->model);
    qr_model_file_close(b->file);
}

static qr_energy estimate(const bound *b, double rate, bool head)
{
    qr_energy e;
    qr_error err = {0};
    qr_energy_options opt = {rate, head, NULL};
    if (qr_energy_per_token(b->model, &opt, &e, &err) != QR_OK)
        fail_msg("%s", err.msg);
    return e;
}

#define EQ(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-9 * fabs((double)(b)) + 1e-12)

/* pj_compute, pj_dram and pj_total from the counts and Horowitz's table, spelled out. */
static void check_prices(const qr_energy *e)
{
    EQ(e->pj_compute, e->f32_mul * 3.7 + e->f32_add * 0.9 + e->f16_mul * 1.1 + e->f16_add * 0.4 +
                          e->i8_mul * 0.2 + e->i32_add * 0.1);
    EQ(e->pj_dram, e->dram_bytes / 8.0 * 1300.0);
    EQ(e->pj_total, e->pj_compute + e->pj_dram);
}

static void test_table(void **state)
{
    (void)state;
    qr_energy_table t = qr_energy_table_45nm();
    EQ(t.i8_add, 0.03);
    EQ(t.i32_add, 0.1);
    EQ(t.i8_mul, 0.2);
    EQ(t.i32_mul, 3.1);
    EQ(t.f16_add, 0.4);
    EQ(t.f16_mul, 1.1);
    EQ(t.f32_add, 0.9);
    EQ(t.f32_mul, 3.7);
    EQ(t.dram_64bit, 1300.0);
}

static void test_f32(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_F32, false, false, 0, 0);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.f32_mul, W_ALL);
    EQ(e.f32_add, W_ALL);
    EQ(e.f16_mul + e.f16_add + e.i8_mul + e.i32_add + e.acs, 0.0);
    EQ(e.macs, W_ALL);
    EQ(e.dram_bytes, 4.0 * D + 4.0 * W_ALL); /* one embedding row + every weight: 80000 */
    EQ(e.pj_compute, W_ALL * (3.7 + 0.9));  /* 91852.8 pJ */
    EQ(e.pj_dram, 80000.0 / 8.0 * 1300.0);  /* 13 µJ: DRAM dominates by 140x */
    check_prices(&e);
    /* Without the head; and the same bytes as the roofline's count. */
    qr_energy n = estimate(&b, 0.0, false);
    EQ(n.macs, W_LAYERS);
    EQ(n.dram_bytes, 4.0 * D + 4.0 * W_LAYERS);
    EQ(e.dram_bytes, (double)qr_model_bytes_per_token(b.model, true));
    EQ(n.dram_bytes, (double)qr_model_bytes_per_token(b.model, false));
    /* The firing rate means nothing without spike.ffn_hidden. */
    qr_energy r = estimate(&b, 7.0, true);
    EQ(r.pj_total, e.pj_total);
    unload(&b);
}

static void test_f16(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_F16, false, false, 0, 0);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.f16_mul, W_ALL);
    EQ(e.f16_add, W_ALL);
    EQ(e.f32_mul + e.f32_add + e.i8_mul + e.i32_add, 0.0);
    EQ(e.dram_bytes, 2.0 * D + 2.0 * W_ALL); /* 40000 */
    EQ(e.pj_compute, W_ALL * (1.1 + 0.4));
    check_prices(&e);
    unload(&b);
}

/* q4_0: per weight one 8-bit multiply and one 32-bit add; per block of 32 (624 blocks) two f32
 * multiplies and an add. 18 bytes per block. */
static void test_q4_0(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q4_0, false, false, 0, 0);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.i8_mul, W_ALL);
    EQ(e.i32_add, W_ALL);
    EQ(e.f32_mul, 2.0 * 624);
    EQ(e.f32_add, 624.0);
    EQ(e.f16_mul + e.f16_add, 0.0);
    EQ(e.macs, W_ALL);
    EQ(e.dram_bytes, 18.0 + 624.0 * 18.0); /* 11250 */
    EQ(e.pj_compute, W_ALL * 0.3 + 1248 * 3.7 + 624 * 0.9);
    check_prices(&e);
    unload(&b);
}

/* q4_s counts as q4_0 (an 8-bit scale is still one multiply per block), in 17 bytes per block. */
static void test_q4_s(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q4_S, false, false, 0, 0);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.i8_mul, W_ALL);
    EQ(e.i32_add, W_ALL);
    EQ(e.f32_mul, 2.0 * 624);
    EQ(e.f32_add, 624.0);
    EQ(e.dram_bytes, 17.0 + 624.0 * 17.0);
    EQ(e.dram_bytes, (double)qr_model_bytes_per_token(b.model, true));
    check_prices(&e);
    unload(&b);
}

/* q8_1: the minimum adds m·s per block: three f32 multiplies and two adds. 36 bytes per block. */
static void test_q8_1(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q8_1, false, false, 0, 0);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.i8_mul, W_ALL);
    EQ(e.i32_add, W_ALL);
    EQ(e.f32_mul, 3.0 * 624);
    EQ(e.f32_add, 2.0 * 624);
    EQ(e.dram_bytes, 36.0 + 624.0 * 36.0);
    check_prices(&e);
    unload(&b);
}

/* Mixed storage: q8_0 blocks, an f32 embedding (one row read, no arithmetic), an f16 head. */
static void test_mixed(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q8_0, false, true, QR_TYPE_F32, QR_TYPE_F16);
    qr_energy e = estimate(&b, 0.0, true);
    EQ(e.i8_mul, W_LAYERS);
    EQ(e.i32_add, W_LAYERS);
    EQ(e.f32_mul, 2.0 * W_LAYERS / 32);
    EQ(e.f32_add, W_LAYERS / 32);
    EQ(e.f16_mul, W_HEAD);
    EQ(e.f16_add, W_HEAD);
    EQ(e.dram_bytes, 4.0 * D + W_LAYERS / 32 * 34 + 2.0 * W_HEAD);
    check_prices(&e);
    unload(&b);
}

/* spike.ffn_hidden, f32: the value matrices become rate·4096 f32 adds and rate of their bytes. */
static void test_spike_f32(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_F32, true, false, 0, 0);
    qr_energy e = estimate(&b, 0.25, true);
    double dense = W_ALL - W_VALUE; /* 15872 */
    EQ(e.macs, dense);
    EQ(e.acs, 0.25 * W_VALUE);       /* 1024 */
    EQ(e.f32_mul, dense);
    EQ(e.f32_add, dense + 1024);
    EQ(e.dram_bytes, 4.0 * D + 4.0 * dense + 4.0 * 1024); /* 67712 */
    check_prices(&e);
    /* Silent: no accumulates, no value bytes. All firing: every row read once. */
    qr_energy s = estimate(&b, 0.0, true);
    EQ(s.acs, 0.0);
    EQ(s.dram_bytes, 4.0 * D + 4.0 * dense);
    qr_energy a = estimate(&b, 1.0, true);
    EQ(a.acs, W_VALUE);
    EQ(a.dram_bytes, (double)qr_model_bytes_per_token(b.model, true));
    /* Accumulating is cheaper than multiply-accumulating the same weights. */
    bound d = load(QR_TYPE_F32, false, false, 0, 0);
    qr_energy de = estimate(&d, 0.0, true);
    assert_true(a.pj_compute < de.pj_compute);
    EQ(de.pj_compute - a.pj_compute, W_VALUE * 3.7);
    unload(&d);
    unload(&b);
}

/* spike.ffn_hidden, q4_1 at rate 0.5: dense as q4_1 (496 blocks: 3 f32 multiplies and 2 adds
 * each); each of the 2048 weights added is first decoded, d·q + m: an f32 multiply and add. */
static void test_spike_q4_1(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q4_1, true, false, 0, 0);
    qr_energy e = estimate(&b, 0.5, true);
    double dense = W_ALL - W_VALUE, blocks = dense / 32; /* 15872, 496 */
    EQ(e.i8_mul, dense);
    EQ(e.i32_add, dense);
    EQ(e.acs, 2048.0);
    EQ(e.f32_mul, 3 * blocks + 2048);
    EQ(e.f32_add, 2 * blocks + 2048 + 2048);
    EQ(e.dram_bytes, 20.0 + blocks * 20 + 0.5 * (W_VALUE / 32 * 20)); /* 11220 */
    check_prices(&e);
    unload(&b);
}

static void test_bad_rate_and_custom_table(void **state)
{
    (void)state;
    bound b = load(QR_TYPE_Q2_0, true, false, 0, 0);
    qr_energy e;
    qr_error err = {0};
    const double bad[] = {-0.01, 1.01, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qr_energy_options opt = {bad[i], true, NULL};
        assert_int_equal(qr_energy_per_token(b.model, &opt, &e, &err), QR_ERR_INVALID);
        assert_non_null(strstr(err.msg, "firing rate"));
    }
    /* Every operation at 1 pJ and DRAM at 8 pJ per 64 bits: energies are plain counts. */
    qr_energy_table ones = {1, 1, 1, 1, 1, 1, 1, 1, 8};
    qr_energy_options opt = {0.5, true, &ones};
    assert_int_equal(qr_energy_per_token(b.model, &opt, &e, &err), QR_OK);
    EQ(e.pj_compute, e.f32_mul + e.f32_add + e.f16_mul + e.f16_add + e.i8_mul + e.i32_add);
    EQ(e.pj_dram, e.dram_bytes);
    EQ(e.f32_mul, 2 * (W_ALL - W_VALUE) / 32 + 2048); /* q2_0 decodes d·(q − 2): a multiply */
    EQ(e.f32_add, (W_ALL - W_VALUE) / 32 + 2048);
    unload(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_q4_s),
        cmocka_unit_test(test_q8_1),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_spike_f32),
        cmocka_unit_test(test_spike_q4_1),
        cmocka_unit_test(test_bad_rate_and_custom_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
