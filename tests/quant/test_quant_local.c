/* test_quant_local.c: the module tier's layer-local measurements (quant/local.h).
 *
 *   - the kept inputs replay the f32 run to the bit: the f32 setting changes nothing (0 exactly),
 *     and a layer's change ignores the types of the other layers;
 *   - quantizing a layer's matrices changes its output, more at fewer bits (q2_0 over q8_0);
 *   - node changes are remembered, and refused outside the layers;
 *   - the scale fit (geometric mean of damage/change over pairs both positive) and Spearman's
 *     rank correlation on known series. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hierarchy.h"
#include "local.h"
#include "measure.h"
#include "setting.h"
#include "synthetic_model.h"
#include "tensor_types.h"

#define N_TOKENS 300 /* windows of 64: four whole and a ragged last one of 44 */
#define WINDOW 64

typedef struct {
    char path[64];
    qr_model_file *file;
    int32_t tokens[N_TOKENS];
    qq_split calib;
    qq_measurer *meas;
    qq_hierarchy h;
    qq_costs costs;
    qq_sensitivity *sens;
    qq_local *local;
    uint32_t *types;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->path, sizeof f->path, "/tmp/qslm-local-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    /* Without spikes (RWKV-4 style): a layer's output then moves with every rounding, while a
     * random spiking model this small fires too little for its layers' outputs to move. */
    synthetic_shape shape = {3, 64, 256, 96, QR_TYPE_F32, 21};
    shape.no_spikes = true;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, f->path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(f->path, &f->file, &err), QR_OK);
    for (size_t i = 0; i < N_TOKENS; i++)
        f->tokens[i] = (int32_t)((i * 37 + i / 7) % 96);
    f->calib = (qq_split){f->tokens, N_TOKENS, NULL, 0, WINDOW};
    /* A runner of 8 sequences × 128 steps: the plan cuts the windows in groups (eval.h). */
    assert_int_equal(qq_measurer_new(f->file, NULL, &f->calib, WINDOW, 8, &f->meas, &err), QR_OK);
    assert_int_equal(qq_hierarchy_build(f->file, &f->h, &err), QR_OK);
    assert_int_equal(qq_costs_new(f->file, 1, &f->costs, &err), QR_OK);
    assert_int_equal(qq_sensitivity_new(f->meas, f->file, &f->h, NULL, "k", NULL, NULL, &f->sens, &err), QR_OK);
    if (qq_local_new(f->meas, &f->local, &err))
        fail_msg("%s", err.msg);
    f->types = malloc(f->costs.n_tensors * sizeof *f->types);
    assert_non_null(f->types);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    qq_local_free(f->local);
    qq_sensitivity_free(f->sens);
    qq_costs_free(&f->costs);
    qq_hierarchy_free(&f->h);
    qq_measurer_free(f->meas);
    qr_model_file_close(f->file);
    unlink(f->path);
    free(f->types);
    free(f);
    return 0;
}

/* Every matrix at f32, then those named with the prefix at `type`. */
static void set_types(fixture *f, const char *prefix, uint32_t type)
{
    for (size_t i = 0; i < f->costs.n_tensors; i++) {
        const char *name = qr_model_file_tensor(f->file, i)->name;
        f->types[i] = f->costs.is_matrix[i] && prefix && strncmp(name, prefix, strlen(prefix)) == 0 ? type : QR_TYPE_F32;
    }
}

static double change_of(fixture *f, size_t layer)
{
    qr_error err;
    double c;
    if (qq_local_change(f->local, f->types, layer, &c, &err))
        fail_msg("%s", err.msg);
    return c;
}

static void test_f32_replays_exactly(void **state)
{
    fixture *f = *state;
    set_types(f, NULL, QR_TYPE_F32);
    for (size_t layer = 0; layer < 3; layer++)
        assert_true(change_of(f, layer) == 0.0);
    /* Another layer's types do not reach this one: only layer 1 runs. */
    set_types(f, "blocks.2.", QR_TYPE_Q2_0);
    assert_true(change_of(f, 1) == 0.0);
    qr_error err;
    double c;
    assert_int_equal(qq_local_change(f->local, f->types, 3, &c, &err), QR_ERR_INVALID);
}

static void test_fewer_bits_change_more(void **state)
{
    fixture *f = *state;
    set_types(f, "blocks.1.", QR_TYPE_Q8_0);
    double q8 = change_of(f, 1);
    set_types(f, "blocks.1.", QR_TYPE_Q2_0);
    double q2 = change_of(f, 1);
    printf("layer 1 all q8_0: %g, all q2_0: %g\n", q8, q2);
    assert_true(q2 > 0.0);
    assert_true(q2 > q8);
}

/* The index of the node named name. */
static size_t node_named(const fixture *f, const char *name)
{
    for (size_t i = 0; i < f->h.n_nodes; i++)
        if (strcmp(f->h.nodes[i].name, name) == 0)
            return i;
    fail_msg("no node %s", name);
    return 0;
}

static void test_node_changes(void **state)
{
    fixture *f = *state;
    qr_error err;
    size_t value = node_named(f, "blocks.0.att.value.weight"), block = node_named(f, "block 0");
    size_t q2 = qq_type_rung(QR_TYPE_Q2_0), layer;
    double a, b, direct;
    assert_int_equal(qq_local_node_change(f->local, &f->h, &f->costs, value, q2, &a, &err), QR_OK);
    assert_int_equal(qq_local_node_change(f->local, &f->h, &f->costs, value, q2, &b, &err), QR_OK);
    set_types(f, "blocks.0.att.value.", QR_TYPE_Q2_0);
    direct = change_of(f, 0);
    assert_true(a == b && a == direct);
    assert_true(qq_block_layer(&f->h, block, &layer) && layer == 0);
    assert_false(qq_block_layer(&f->h, node_named(f, "input"), &layer));
    assert_false(qq_block_layer(&f->h, node_named(f, "output"), &layer));
    assert_int_equal(qq_local_node_change(f->local, &f->h, &f->costs, node_named(f, "emb.weight"), q2, &a, &err),
                     QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "emb.weight"));
    /* The block's scale needs its sensitivities: none known yet, then fitted on the one measured. */
    double scale;
    size_t pairs;
    assert_int_equal(qq_local_block_scale(f->local, f->sens, &f->h, &f->costs, block, 0, QQ_RUNGS - 1, &scale, &pairs, &err), QR_OK);
    assert_int_equal(pairs, 0);
    assert_true(scale == 0.0);
    qq_sens s;
    assert_int_equal(qq_sensitivity_get(f->sens, block, QR_TYPE_Q2_0, &s, &err), QR_OK);
    assert_int_equal(qq_local_block_scale(f->local, f->sens, &f->h, &f->costs, block, 0, QQ_RUNGS - 1, &scale, &pairs, &err), QR_OK);
    assert_int_equal(pairs, 1);
    double whole;
    assert_int_equal(qq_local_node_change(f->local, &f->h, &f->costs, block, q2, &whole, &err), QR_OK);
    if (s.damage > 0 && whole > 0)
        assert_true(fabs(scale - s.damage / whole) <= 1e-12 * scale);
    else
        assert_true(scale == 0.0);
}

static void test_fit_scale(void **state)
{
    (void)state;
    const double damage[] = {2.0, 8.0, 0.0, 5.0}, change[] = {1.0, 1.0, 3.0, 0.0};
    /* Pairs 0 and 1 count: sqrt(2 × 8) = 4. */
    assert_true(fabs(qq_local_fit_scale(damage, change, 4) - 4.0) < 1e-12);
    assert_true(qq_local_fit_scale(damage + 2, change + 2, 2) == 0.0);
    assert_true(qq_local_fit_scale(damage, change, 0) == 0.0);
}

static void test_rank_correlation(void **state)
{
    (void)state;
    const double a[] = {1, 2, 3, 4, 5}, up[] = {10, 20, 25, 100, 1e6}, down[] = {5, 4, 3, 2, 1};
    const double flat[] = {7, 7, 7, 7, 7}, tied[] = {1, 2, 2, 3, 4};
    assert_true(fabs(qq_rank_correlation(a, up, 5) - 1.0) < 1e-12);
    assert_true(fabs(qq_rank_correlation(a, down, 5) + 1.0) < 1e-12);
    assert_true(qq_rank_correlation(a, flat, 5) == 0.0);
    /* Ranks of tied: 1, 2.5, 2.5, 4, 5; ρ = Σ(dev products) / sqrt(10 · 9.5). */
    assert_true(fabs(qq_rank_correlation(a, tied, 5) - 9.5 / sqrt(10.0 * 9.5)) < 1e-12);
}

int main(void)
{
    const struct CMUnitTest model[] = {
        cmocka_unit_test(test_f32_replays_exactly),
        cmocka_unit_test(test_fewer_bits_change_more),
        cmocka_unit_test(test_node_changes),
    };
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_fit_scale),
        cmocka_unit_test(test_rank_correlation),
    };
    int failed = cmocka_run_group_tests_name("layer-local", model, setup, teardown);
    failed += cmocka_run_group_tests_name("fit", pure, NULL, NULL);
    return failed;
}
