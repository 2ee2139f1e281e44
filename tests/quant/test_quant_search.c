/* test_quant_search.c: QSLM's parts on small models — the hierarchy of any layer count, the
 * footprint estimate against a written variant, in-memory measurement against the same setting
 * written to a file, sensitivities and their cache, and the search's constraints. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "footprint.h"
#include "forward.h"
#include "hierarchy.h"
#include "measure.h"
#include "model.h"
#include "model_file.h"
#include "search.h"
#include "sensitivity.h"
#include "setting.h"
#include "synthetic_model.h"
#include "tensor_types.h"

typedef struct {
    char path[64];
    qr_model_file *file;
} tmp_model;

static void make_model(tmp_model *t, size_t layers, size_t classes)
{
    snprintf(t->path, sizeof t->path, "/tmp/qslm-qtest-XXXXXX");
    int fd = mkstemp(t->path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {layers, 64, 256, 96, QR_TYPE_F32, 7};
    shape.n_classes = classes;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, t->path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(t->path, &t->file, &err), QR_OK);
}

static void drop_model(tmp_model *t)
{
    qr_model_file_close(t->file);
    unlink(t->path);
}

/* The tree: input, L layer blocks, output; every tensor in exactly one module; parameter counts
 * add up at every level; module ranges cover exactly the nodes below. */
static void test_hierarchy_shapes(void **state)
{
    (void)state;
    for (size_t layers = 1; layers <= 5; layers += 2) {
        tmp_model t;
        make_model(&t, layers, 2);
        qq_hierarchy h;
        qr_error err;
        assert_int_equal(qq_hierarchy_build(t.file, &h, &err), QR_OK);
        assert_int_equal(h.n_blocks, layers + 2);
        assert_string_equal(h.nodes[h.first_block].name, "input");
        assert_string_equal(h.nodes[h.first_block + layers + 1].name, "output");
        assert_int_equal(h.n_modules, qr_model_file_tensor_count(t.file));
        uint64_t total = 0;
        for (size_t i = 0; i < qr_model_file_tensor_count(t.file); i++)
            total += qr_model_file_tensor(t.file, i)->n_elements;
        assert_int_equal(h.nodes[0].params, total);
        for (size_t n = 0; n < h.n_nodes; n++) {
            uint64_t sum = 0;
            for (size_t m = h.nodes[n].mod_first; m < h.nodes[n].mod_first + h.nodes[n].mod_count; m++) {
                assert_int_equal(h.nodes[m].kind, QQ_NODE_MODULE);
                sum += h.nodes[m].params;
            }
            assert_int_equal(sum, h.nodes[n].params);
        }
        /* A classifier sub-block in the output block. */
        bool cls = false;
        for (size_t n = 0; n < h.n_nodes; n++)
            cls |= strcmp(h.nodes[n].name, "classifier") == 0 && qq_block_of(&h, n) == h.first_block + layers + 1;
        assert_true(cls);
        qq_hierarchy_free(&h);
        drop_model(&t);
    }
}

/* An RWKV-4 model (spiking off) has the same tree. */
static void test_hierarchy_rwkv4(void **state)
{
    (void)state;
    const char *src = getenv("QSLM_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/reference/rwkv4.qslm", src);
    qr_model_file *f;
    qr_error err;
    assert_int_equal(qr_model_file_open(path, &f, &err), QR_OK);
    qq_hierarchy h;
    assert_int_equal(qq_hierarchy_build(f, &h, &err), QR_OK);
    assert_int_equal(h.n_layer, 2);
    assert_int_equal(h.n_blocks, 4);
    qq_hierarchy_free(&h);
    qr_model_file_close(f);
}

/* A tensor the tree does not know is refused by name: a model that is whole but for one extra
 * tensor fails to build, and the error names that tensor. Among them: a name from no list, one
 * of a layer the model does not have, a layer number spelled two ways, a "cls." name that is no
 * head's. The same model without the extra tensor builds, so the extra tensor is the fault. */
static void test_hierarchy_rejects_unknown(void **state)
{
    (void)state;
    static const char *const unknown[] = {"mystery.weight", "blocks.0.att.bogus.weight", "blocks.2.ln1.weight",
                                          "blocks.01.ln1.weight", "blocks.+1.ln1.weight", "blocks.1.ln0.weight",
                                          "blocks.0.", "cls.extra", "cls.99.weight", "blocks.0.emb.weight"};
    char path[64];
    snprintf(path, sizeof path, "/tmp/qslm-qtest-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i <= sizeof unknown / sizeof *unknown; i++) {
        synthetic_shape shape = {2, 32, 128, 64, QR_TYPE_F32, 3};
        shape.n_classes = 2;
        shape.extra_tensor = i < sizeof unknown / sizeof *unknown ? unknown[i] : NULL;
        qr_error err;
        assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
        qr_model_file *f;
        assert_int_equal(qr_model_file_open(path, &f, &err), QR_OK);
        qq_hierarchy h;
        memset(&err, 0, sizeof err);
        qr_status st = qq_hierarchy_build(f, &h, &err);
        if (shape.extra_tensor) {
            char quoted[64];
            snprintf(quoted, sizeof quoted, "'%s'", shape.extra_tensor);
            if (st != QR_ERR_FORMAT || !strstr(err.msg, quoted))
                fail_msg("extra tensor %s: status %d, error '%s'", shape.extra_tensor, (int)st, err.msg);
        } else {
            assert_int_equal(st, QR_OK);
            assert_int_equal(h.n_modules, qr_model_file_tensor_count(f));
            qq_hierarchy_free(&h);
        }
        qr_model_file_close(f);
    }
    unlink(path);
}

static void fill_all(uint32_t *types, const qq_costs *c, uint32_t type)
{
    for (size_t i = 0; i < c->n_tensors; i++)
        types[i] = c->is_matrix[i] ? type : QR_TYPE_F32;
}

/* The estimate is an upper bound within 4 KiB of the footprint of the written file, for every
 * rung, and the measurement in memory equals the measurement of the written file. */
static void test_footprint_and_memory_measure(void **state)
{
    (void)state;
    tmp_model t;
    make_model(&t, 2, 2);
    qr_error err;
    qq_costs costs;
    assert_int_equal(qq_costs_new(t.file, 4, &costs, &err), QR_OK);
    uint32_t *types = malloc(costs.n_tensors * sizeof *types);
    int32_t tokens[400];
    for (size_t i = 0; i < 400; i++)
        tokens[i] = (int32_t)((i * 37 + i / 7) % 96);
    qr_labelled items[6];
    for (size_t i = 0; i < 6; i++)
        items[i] = (qr_labelled){tokens + 10 * i, 5 + i, (int)(i % 2)};
    qq_split calib = {tokens, 256, items, 6}, other = {tokens + 256, 144, items, 3};
    qq_measurer *q;
    assert_int_equal(qq_measurer_new(t.file, NULL, &calib, 64, 4, &q, &err), QR_OK);
    assert_true(qq_measurer_reference(q)->lm && qq_measurer_reference(q)->cls);
    char out[80];
    snprintf(out, sizeof out, "%s.variant", t.path);
    for (size_t r = 0; r < QQ_RUNGS; r++) {
        fill_all(types, &costs, qq_rung_type(r));
        uint64_t est = qq_setting_footprint(&costs, types);
        assert_int_equal(qq_measurer_write_setting(q, types, out, &err), QR_OK);
        qr_model_file *vf;
        qr_model *vm;
        assert_int_equal(qr_model_file_open(out, &vf, &err), QR_OK);
        assert_int_equal(qr_model_bind(vf, &vm, &err), QR_OK);
        uint64_t real = qr_footprint_of(vm, 4).total;
        if (!(est >= real && est - real <= 4096))
            fail_msg("rung %zu (%s): estimate %llu, real %llu", r, qr_type_get(qq_rung_type(r))->name,
                     (unsigned long long)est, (unsigned long long)real);
        qr_model_free(vm);
        qr_model_file_close(vf);
        qq_metrics mem, file;
        assert_int_equal(qq_measure_setting(q, types, &other, &mem, &err), QR_OK);
        assert_int_equal(qq_measure_file(q, out, &other, &file, &err), QR_OK);
        if (!(fabs(mem.nll - file.nll) <= 1e-9 * fabs(file.nll)))
            fail_msg("rung %zu (%s): in memory nll %.12g, from the file %.12g", r,
                     qr_type_get(qq_rung_type(r))->name, mem.nll, file.nll);
        assert_true(mem.accuracy == file.accuracy);
        /* Against the reference: f32 is KL 0; the coarsest type is not. */
        qq_metrics vs;
        assert_int_equal(qq_measure_setting(q, types, NULL, &vs, &err), QR_OK);
        if (r == 0)
            assert_true(vs.kl == 0.0 && vs.cls_kl == 0.0);
        if (r == QQ_RUNGS - 1)
            assert_true(vs.kl > 0.0);
    }
    unlink(out);
    qq_measurer_free(q);
    free(types);
    qq_costs_free(&costs);
    drop_model(&t);
}

typedef struct {
    const qr_labelled *items;
    size_t n_classes;
    unsigned char right[64];
} answer_log;

/* Marks each sentence's answer right or wrong, the argmax as eval.c counts it. */
static void log_answer(void *arg, size_t item, const float *logits)
{
    answer_log *a = arg;
    size_t best = 0;
    for (size_t c = 1; c < a->n_classes; c++)
        if (logits[c] > logits[best])
            best = c;
    a->right[item] = best == (size_t)a->items[item].label;
}

/* Each head's answers on items from the model file at path, run on its own. */
static void answers_of_file(const char *path, const qr_labelled *const items[2], const size_t n[2], answer_log out[2])
{
    qr_model_file *f;
    qr_model *m;
    qr_runner *r;
    qr_error err;
    assert_int_equal(qr_model_file_open(path, &f, &err), QR_OK);
    assert_int_equal(qr_model_bind(f, &m, &err), QR_OK);
    assert_int_equal(qr_runner_new(m, NULL, 4, &r, &err), QR_OK);
    for (size_t h = 0; h < 2; h++) {
        qr_acc_result acc;
        out[h] = (answer_log){items[h], m->cls[h].n_classes, {0}};
        assert_int_equal(qr_eval_accuracy_head(r, h, items[h], n[h], 4, log_answer, &out[h], NULL, NULL, &acc, &err),
                         QR_OK);
    }
    qr_runner_free(r);
    qr_model_free(m);
    qr_model_file_close(f);
}

/* A setting's answers are paired with the f32 master's on the same sentences, per head: the
 * counts of sentences f32 gets right and the setting wrong (lost) and the reverse (gained) equal
 * those counted independently from the two files run on their own, whether the master was
 * measured on the split before or not; they agree with the accuracies; f32 itself has none; a
 * file measured with qq_measure_file and the calibration split are paired too. */
static void test_measure_pairs_with_f32(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/qslm-qtest-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {2, 64, 256, 96, QR_TYPE_F32, 11};
    shape.tasks[0] = "sentiment=neg,pos";
    shape.tasks[1] = "topic=a,b,c";
    shape.n_tasks = 2;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    qr_model_file *file;
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    int32_t tokens[800];
    for (size_t i = 0; i < 800; i++)
        tokens[i] = (int32_t)((i * 41 + i / 3) % 96);
    enum { N0 = 48, N1 = 36 };
    qr_labelled it0[N0], it1[N1];
    for (size_t i = 0; i < N0; i++)
        it0[i] = (qr_labelled){tokens + 300 + 9 * i, 4 + i % 5, (int)(i % 2)};
    for (size_t i = 0; i < N1; i++)
        it1[i] = (qr_labelled){tokens + 310 + 11 * i, 3 + i % 7, (int)(i % 3)};
    qq_split calib = {tokens, 200, it0, 12}, valid = {tokens + 200, 100, it0, N0};
    valid.heads[1] = (qq_head_items){it1, N1};
    qq_costs costs;
    assert_int_equal(qq_costs_new(file, 1, &costs, &err), QR_OK);
    uint32_t *f32 = malloc(costs.n_tensors * sizeof *f32), *q2 = malloc(costs.n_tensors * sizeof *q2);
    fill_all(f32, &costs, QR_TYPE_F32);
    fill_all(q2, &costs, QR_TYPE_Q2_0);
    /* Two measurers: one meets the setting before f32 on the split, one after. */
    qq_measurer *first, *after;
    assert_int_equal(qq_measurer_new(file, NULL, &calib, 64, 4, &first, &err), QR_OK);
    assert_int_equal(qq_measurer_new(file, NULL, &calib, 64, 4, &after, &err), QR_OK);
    qq_metrics mq, mq2, mf, mf2;
    assert_int_equal(qq_measure_setting(first, q2, &valid, &mq, &err), QR_OK);
    assert_int_equal(qq_measure_setting(first, f32, &valid, &mf, &err), QR_OK);
    assert_int_equal(qq_measure_setting(after, f32, &valid, &mf2, &err), QR_OK);
    assert_int_equal(qq_measure_setting(after, q2, &valid, &mq2, &err), QR_OK);
    const size_t n[2] = {N0, N1};
    for (size_t h = 0; h < 2; h++) {
        assert_true(mq.head_paired[h] && mf.head_paired[h] && mq2.head_paired[h] && mf2.head_paired[h]);
        assert_int_equal(mq.head_items[h], n[h]);
        assert_int_equal(mf.head_lost[h] + mf.head_gained[h], 0);
        assert_int_equal(mq.head_lost[h], mq2.head_lost[h]);
        assert_int_equal(mq.head_gained[h], mq2.head_gained[h]);
        /* accuracy − f32's = (gained − lost) / items */
        double diff = (mq.head_accuracy[h] - mf.head_accuracy[h]) * (double)n[h];
        assert_true(fabs(diff - ((double)mq.head_gained[h] - (double)mq.head_lost[h])) < 1e-9);
    }
    /* Counted independently: both files run on their own. */
    char variant[80];
    snprintf(variant, sizeof variant, "%s.q2", path);
    assert_int_equal(qq_measurer_write_setting(first, q2, variant, &err), QR_OK);
    const qr_labelled *const items[2] = {it0, it1};
    answer_log a_f32[2], a_q2[2];
    answers_of_file(path, items, n, a_f32);
    answers_of_file(variant, items, n, a_q2);
    uint64_t discordant = 0;
    for (size_t h = 0; h < 2; h++) {
        uint64_t lost = 0, gained = 0;
        for (size_t i = 0; i < n[h]; i++) {
            lost += a_f32[h].right[i] && !a_q2[h].right[i];
            gained += !a_f32[h].right[i] && a_q2[h].right[i];
        }
        if (lost != mq.head_lost[h] || gained != mq.head_gained[h])
            fail_msg("head %zu: lost %llu gained %llu counted from the files, measured %llu and %llu", h,
                     (unsigned long long)lost, (unsigned long long)gained, (unsigned long long)mq.head_lost[h],
                     (unsigned long long)mq.head_gained[h]);
        discordant += lost + gained;
    }
    assert_true(discordant > 0); /* q2_0 changes some answers: the counts are not all trivially 0 */
    /* The written file, measured as a file, pairs the same. */
    qq_metrics mfile;
    assert_int_equal(qq_measure_file(first, variant, &valid, &mfile, &err), QR_OK);
    for (size_t h = 0; h < 2; h++) {
        assert_true(mfile.head_paired[h]);
        assert_int_equal(mfile.head_lost[h], mq.head_lost[h]);
        assert_int_equal(mfile.head_gained[h], mq.head_gained[h]);
    }
    /* Calibration: head 0 paired with the reference's answers. */
    qq_metrics mc;
    assert_int_equal(qq_measure_setting(first, q2, NULL, &mc, &err), QR_OK);
    assert_true(mc.head_paired[0]);
    assert_int_equal(mc.head_items[0], 12);
    double cdiff = (mc.accuracy - qq_measurer_reference(first)->accuracy) * 12.0;
    assert_true(fabs(cdiff - ((double)mc.head_gained[0] - (double)mc.head_lost[0])) < 1e-9);
    unlink(variant);
    qq_measurer_free(first);
    qq_measurer_free(after);
    free(f32);
    free(q2);
    qq_costs_free(&costs);
    qr_model_file_close(file);
    unlink(path);
}

/* Sensitivities: f32 costs nothing without a run; a second table over the same cache file
 * answers from the cache with the same numbers; another key measures afresh. (The output block,
 * the LM head, is measured: a spiking layer's outputs reach the residual stream only as spikes,
 * so a coarse type may change no spike of a tiny model and cost exactly nothing.) */
static void test_sensitivity_cache(void **state)
{
    (void)state;
    tmp_model t;
    make_model(&t, 1, 0);
    qr_error err;
    int32_t tokens[300];
    for (size_t i = 0; i < 300; i++)
        tokens[i] = (int32_t)((i * 53 + 11) % 96);
    qq_split calib = {tokens, 300, NULL, 0};
    qq_measurer *q;
    assert_int_equal(qq_measurer_new(t.file, NULL, &calib, 100, 3, &q, &err), QR_OK);
    qq_hierarchy h;
    assert_int_equal(qq_hierarchy_build(t.file, &h, &err), QR_OK);
    char cache[96];
    snprintf(cache, sizeof cache, "%s.cache", t.path);
    unlink(cache);
    qq_sensitivity *s;
    qq_sens a, b, f32;
    assert_int_equal(qq_sensitivity_new(q, t.file, &h, cache, "key-1", NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, 0, QR_TYPE_F32, &f32, &err), QR_OK);
    assert_true(f32.damage == 0.0 && qq_sensitivity_measured(s) == 0);
    assert_int_equal(qq_sensitivity_get(s, h.first_block + h.n_blocks - 1, QR_TYPE_Q2_0, &a, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 1);
    assert_true(a.damage > 0.0);
    qq_sensitivity_free(s);
    assert_int_equal(qq_sensitivity_new(q, t.file, &h, cache, "key-1", NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, h.first_block + h.n_blocks - 1, QR_TYPE_Q2_0, &b, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 0);
    assert_int_equal(qq_sensitivity_cached(s), 1);
    assert_true(fabs(a.damage - b.damage) <= 1e-9 * a.damage);
    qq_sensitivity_free(s);
    assert_int_equal(qq_sensitivity_new(q, t.file, &h, cache, "key-2", NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, h.first_block + h.n_blocks - 1, QR_TYPE_Q2_0, &b, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 1);
    qq_sensitivity_free(s);
    unlink(cache);
    qq_hierarchy_free(&h);
    qq_measurer_free(q);
    drop_model(&t);
}

/* The cache key is the calibration content's: two calibration sets of the same length but other
 * tokens, labels or window get other keys (and so never share cache entries); the same content
 * held elsewhere gets the same key and answers from the cache. */
static void test_sensitivity_cache_key_by_content(void **state)
{
    (void)state;
    tmp_model t;
    make_model(&t, 1, 2);
    qr_error err;
    int32_t a[300], b[300], a2[300];
    for (size_t i = 0; i < 300; i++) {
        a[i] = a2[i] = (int32_t)((i * 53 + 11) % 96);
        b[i] = (int32_t)((i * 31 + 5) % 96);
    }
    qr_labelled ia[4], ia2[4];
    for (size_t i = 0; i < 4; i++)
        ia[i] = ia2[i] = (qr_labelled){a + 20 * i, 6, (int)(i % 2)};
    for (size_t i = 0; i < 4; i++)
        ia2[i].tokens = a2 + 20 * i;
    qq_split ca = {a, 300, ia, 4}, ca2 = {a2, 300, ia2, 4}, cb = {b, 300, ia, 4};
    const char *sha = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char ka[QQ_SENS_KEY_SIZE], ka2[QQ_SENS_KEY_SIZE], kb[QQ_SENS_KEY_SIZE], k[QQ_SENS_KEY_SIZE];
    assert_int_equal(qq_sensitivity_key(sha, &ca, 100, ka, &err), QR_OK);
    assert_int_equal(qq_sensitivity_key(sha, &ca2, 100, ka2, &err), QR_OK);
    assert_int_equal(qq_sensitivity_key(sha, &cb, 100, kb, &err), QR_OK);
    assert_string_equal(ka, ka2);
    assert_string_not_equal(ka, kb);
    assert_non_null(strstr(ka, sha));
    /* One item's label, one item token, the window, the model: each changes the key. */
    ia2[2].label = 1 - ia[2].label;
    assert_int_equal(qq_sensitivity_key(sha, &ca2, 100, k, &err), QR_OK);
    assert_string_not_equal(ka, k);
    ia2[2].label = ia[2].label;
    a2[41] = (a2[41] + 1) % 96; /* in item 2's tokens, not in the LM text's range below */
    qq_split only_items = {a, 0, ia2, 4}, only_items_a = {a, 0, ia, 4};
    char ki[QQ_SENS_KEY_SIZE];
    assert_int_equal(qq_sensitivity_key(sha, &only_items, 100, k, &err), QR_OK);
    assert_int_equal(qq_sensitivity_key(sha, &only_items_a, 100, ki, &err), QR_OK);
    assert_string_not_equal(k, ki);
    a2[41] = a[41];
    assert_int_equal(qq_sensitivity_key(sha, &ca, 64, k, &err), QR_OK);
    assert_string_not_equal(ka, k);
    assert_int_equal(qq_sensitivity_key("ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", &ca, 100, k,
                                        &err), QR_OK);
    assert_string_not_equal(ka, k);
    /* Through the cache file: b measures afresh, a2 answers from a's entry. */
    qq_hierarchy h;
    assert_int_equal(qq_hierarchy_build(t.file, &h, &err), QR_OK);
    char cache[96];
    snprintf(cache, sizeof cache, "%s.cache", t.path);
    unlink(cache);
    size_t out_block = h.first_block + h.n_blocks - 1;
    qq_measurer *qa, *qb;
    qq_sensitivity *s;
    qq_sens va, vb, va2;
    assert_int_equal(qq_measurer_new(t.file, NULL, &ca, 100, 3, &qa, &err), QR_OK);
    assert_int_equal(qq_measurer_new(t.file, NULL, &cb, 100, 3, &qb, &err), QR_OK);
    assert_int_equal(qq_sensitivity_new(qa, t.file, &h, cache, ka, NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, out_block, QR_TYPE_Q2_0, &va, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 1);
    qq_sensitivity_free(s);
    assert_int_equal(qq_sensitivity_new(qb, t.file, &h, cache, kb, NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, out_block, QR_TYPE_Q2_0, &vb, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 1);
    assert_int_equal(qq_sensitivity_cached(s), 0);
    assert_true(vb.damage != va.damage);
    qq_sensitivity_free(s);
    assert_int_equal(qq_sensitivity_new(qb, t.file, &h, cache, ka2, NULL, NULL, &s, &err), QR_OK);
    assert_int_equal(qq_sensitivity_get(s, out_block, QR_TYPE_Q2_0, &va2, &err), QR_OK);
    assert_int_equal(qq_sensitivity_measured(s), 0);
    assert_int_equal(qq_sensitivity_cached(s), 1);
    assert_true(va2.damage == va.damage);
    qq_sensitivity_free(s);
    unlink(cache);
    qq_measurer_free(qa);
    qq_measurer_free(qb);
    qq_hierarchy_free(&h);
    drop_model(&t);
}

/* The search keeps to the budget, reports a budget below the smallest setting as infeasible
 * with the numbers, and with generous floors finds a feasible setting. */
static void test_search_constraints(void **state)
{
    (void)state;
    tmp_model t;
    make_model(&t, 2, 2);
    qr_error err;
    int32_t tokens[600];
    for (size_t i = 0; i < 600; i++)
        tokens[i] = (int32_t)((i * 29 + i / 5) % 96);
    qr_labelled items[8];
    for (size_t i = 0; i < 8; i++)
        items[i] = (qr_labelled){tokens + 20 * i, 6 + i, (int)(i % 2)};
    qq_split calib = {tokens, 256, items, 8}, valid = {tokens + 256, 344, items, 8};
    qq_measurer *q;
    qq_hierarchy h;
    qq_costs costs;
    qq_sensitivity *s;
    assert_int_equal(qq_measurer_new(t.file, NULL, &calib, 64, 4, &q, &err), QR_OK);
    assert_int_equal(qq_hierarchy_build(t.file, &h, &err), QR_OK);
    assert_int_equal(qq_costs_new(t.file, 1, &costs, &err), QR_OK);
    assert_int_equal(qq_sensitivity_new(q, t.file, &h, NULL, "k", NULL, NULL, &s, &err), QR_OK);
    qq_search_ctx ctx = {.master = t.file, .h = &h, .costs = &costs, .meas = q, .sens = s, .valid = &valid};
    uint32_t *types = malloc(costs.n_tensors * sizeof *types);
    fill_all(types, &costs, QR_TYPE_F32);
    assert_int_equal(qq_measure_setting(q, types, &valid, &ctx.valid_ref, &err), QR_OK);
    fill_all(types, &costs, qq_rung_type(QQ_RUNGS - 1));
    uint64_t smallest = qq_setting_footprint(&costs, types);
    qq_result r;
    qq_constraints too_small = {smallest - 1, {5, 1}, 0.1};
    assert_int_equal(qq_search(&ctx, &too_small, &r, &err), QR_OK);
    assert_false(r.feasible);
    assert_null(r.types);
    assert_non_null(strstr(r.reason, "nothing fits"));
    qq_result_free(&r);
    fill_all(types, &costs, QR_TYPE_Q4_0);
    uint64_t mid = qq_setting_footprint(&costs, types);
    qq_constraints loose = {mid, {1e5, 100}, 0.0};
    assert_int_equal(qq_search(&ctx, &loose, &r, &err), QR_OK);
    assert_true(r.feasible);
    assert_non_null(r.types);
    assert_true(r.footprint_est <= mid);
    assert_int_equal(qq_setting_footprint(&costs, r.types), r.footprint_est);
    qq_result_free(&r);
    free(types);
    qq_sensitivity_free(s);
    qq_costs_free(&costs);
    qq_hierarchy_free(&h);
    qq_measurer_free(q);
    drop_model(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hierarchy_shapes),
        cmocka_unit_test(test_hierarchy_rwkv4),
        cmocka_unit_test(test_hierarchy_rejects_unknown),
        cmocka_unit_test(test_footprint_and_memory_measure),
        cmocka_unit_test(test_measure_pairs_with_f32),
        cmocka_unit_test(test_sensitivity_cache),
        cmocka_unit_test(test_sensitivity_cache_key_by_content),
        cmocka_unit_test(test_search_constraints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
