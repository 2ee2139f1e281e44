/* test_upstream.c: the C runtime against the upstream inference code's own outputs.
 *
 * tests/reference/make_upstream_golden.py ran SpikeGPT's src/model_run.py and RWKV-LM's
 * RWKV-v4/src/model_run.py (RWKV_RNN, fp32, CPU) on random checkpoints in the published layouts
 * and converted each with convert.py --upstream. Here the runtime runs each converted file on
 * the same 64 tokens: logits within 1e-4 relative (max |ours - upstream| over a step's logits
 * divided by max |upstream| of that step), every LIF spike equal.
 *
 * By default the small layouts committed in tests/data/upstream; QSLM_UPSTREAM_DIR and
 * QSLM_UPSTREAM_MODELS (comma-separated names) point it at the full-size ones made by hand
 * (make_upstream_golden.py --full). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "state.h"

#define REL_TOL 1e-4

static const char *default_models = "spikegpt-small,spikegpt-char-small,rwkv4-small";

typedef struct {
    json_object *golden;
    float *logits;            /* n_tokens × vocab, the upstream's */
    int32_t *tokens;
    size_t n_tokens;
    qr_model_file *file;
    qr_model *model;
    qr_pool *pool;
    qr_runner *runner;
} fixture;

/* by_hand: QSLM_UPSTREAM_DIR when set (the full-size layouts), else the committed ones. */
static void data_path(char *out, size_t cap, bool by_hand, const char *name, const char *suffix)
{
    const char *dir = getenv("QSLM_UPSTREAM_DIR");
    if (dir && by_hand)
        snprintf(out, cap, "%s/%s%s", dir, name, suffix);
    else
        snprintf(out, cap, "%s/tests/data/upstream/%s%s", getenv("QSLM_SOURCE_DIR"), name, suffix);
}

static void load_from(fixture *fx, bool by_hand, const char *name, size_t batch)
{
    memset(fx, 0, sizeof *fx);
    assert_non_null(getenv("QSLM_SOURCE_DIR"));
    char path[4096];
    data_path(path, sizeof path, by_hand, name, ".golden.json");
    fx->golden = json_object_from_file(path);
    if (!fx->golden)
        fail_msg("cannot read %s", path);
    data_path(path, sizeof path, by_hand, name, ".qslm");
    qr_error err;
    if (qr_model_file_open(path, &fx->file, &err) || qr_model_bind(fx->file, &fx->model, &err) ||
        qr_pool_new(2, &fx->pool, &err) || qr_runner_new(fx->model, fx->pool, batch, &fx->runner, &err))
        fail_msg("%s", err.msg);
    json_object *toks = json_object_object_get(fx->golden, "tokens");
    fx->n_tokens = json_object_array_length(toks);
    assert_int_equal(fx->n_tokens, 64);
    fx->tokens = malloc(fx->n_tokens * sizeof *fx->tokens);
    for (size_t i = 0; i < fx->n_tokens; i++)
        fx->tokens[i] = json_object_get_int(json_object_array_get_idx(toks, i));
    size_t vocab = fx->model->vocab;
    assert_int_equal(json_object_get_int64(json_object_object_get(fx->golden, "vocab")), vocab);
    data_path(path, sizeof path, by_hand, name, ".logits.f32");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fx->logits = malloc(fx->n_tokens * vocab * sizeof(float));
    assert_int_equal(fread(fx->logits, sizeof(float), fx->n_tokens * vocab, f), fx->n_tokens * vocab);
    assert_int_equal(fgetc(f), EOF); /* exactly n_tokens × vocab floats */
    fclose(f);
}

static void load(fixture *fx, const char *name, size_t batch)
{
    load_from(fx, false, name, batch);
}

static void unload(fixture *fx)
{
    qr_runner_free(fx->runner);
    qr_pool_free(fx->pool);
    qr_model_free(fx->model);
    qr_model_file_close(fx->file);
    json_object_put(fx->golden);
    free(fx->logits);
    free(fx->tokens);
}

/* max |ours - golden| / max |golden| over one step's logits: the error relative to the
 * step's scale (a logit near 0 has no meaningful relative error of its own). */
static double rel_error(const float *ours, const float *golden, size_t n)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)ours[i] - golden[i]));
        scale = fmax(scale, fabs((double)golden[i]));
    }
    return diff / scale;
}

/* Spikes of one site and step that differ from the golden bit strings (per layer "0101..."). */
static size_t spike_diffs(json_object *layers, const uint8_t *ours, size_t n_layer, size_t d)
{
    assert_int_equal(json_object_array_length(layers), n_layer);
    size_t diffs = 0;
    for (size_t l = 0; l < n_layer; l++) {
        const char *bits = json_object_get_string(json_object_array_get_idx(layers, l));
        assert_int_equal(strlen(bits), d);
        for (size_t i = 0; i < d; i++)
            diffs += ours[l * d + i] != (uint8_t)(bits[i] == '1');
    }
    return diffs;
}

typedef struct {
    double worst_rel;
    size_t spikes, spike_diffs;
} run_result;

/* Decodes the golden tokens one at a time and compares every step. */
static run_result run_decode(fixture *fx)
{
    qr_model *m = fx->model;
    qr_state *s;
    assert_int_equal(qr_state_new(m, &s, NULL), QR_OK);
    uint8_t *att = calloc(m->n_layer * m->d, 1), *ffn = calloc(m->n_layer * m->d, 1);
    qr_spike_trace trace = {att, ffn, NULL, NULL, NULL, NULL, 0};
    qr_runner_set_trace(fx->runner, &trace);
    float *logits = malloc(m->vocab * sizeof(float));
    json_object *jatt = NULL, *jffn = NULL;
    json_object_object_get_ex(fx->golden, "spikes_att", &jatt);
    json_object_object_get_ex(fx->golden, "spikes_ffn", &jffn);
    /* the file's spike settings must be what the upstream run did */
    assert_int_equal(m->spike_att, jatt != NULL);
    assert_int_equal(m->spike_ffn, jffn != NULL);
    run_result res = {0, 0, 0};
    for (size_t t = 0; t < fx->n_tokens; t++) {
        qr_error err;
        if (qr_forward(fx->runner, &s, &fx->tokens[t], 1, logits, NULL, &err))
            fail_msg("%s", err.msg);
        res.worst_rel = fmax(res.worst_rel, rel_error(logits, fx->logits + t * m->vocab, m->vocab));
        if (jatt) {
            res.spike_diffs += spike_diffs(json_object_array_get_idx(jatt, t), att, m->n_layer, m->d);
            res.spike_diffs += spike_diffs(json_object_array_get_idx(jffn, t), ffn, m->n_layer, m->d);
            res.spikes += 2 * m->n_layer * m->d;
        }
    }
    qr_runner_set_trace(fx->runner, NULL);
    free(logits);
    free(att);
    free(ffn);
    qr_state_free(s);
    return res;
}

static void test_matches_upstream(void **state)
{
    (void)state;
    const char *list = getenv("QSLM_UPSTREAM_MODELS");
    char *names = strdup(list ? list : default_models), *save = NULL;
    for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        fixture fx;
        load_from(&fx, list != NULL, name, 1);
        json_object *emb;
        /* the vocab-77 model's embedding goes through Heaviside upstream; the others' not */
        assert_int_equal(fx.model->spike_emb, json_object_object_get_ex(fx.golden, "spikes_emb", &emb));
        run_result r = run_decode(&fx);
        printf("%s: %zu layers, d %zu, vocab %zu, rescale %zu: max relative logit error %.3g over %zu "
               "tokens; spikes differing %zu of %zu\n",
               name, fx.model->n_layer, fx.model->d, fx.model->vocab, fx.model->rescale_layer,
               r.worst_rel, fx.n_tokens, r.spike_diffs, r.spikes);
        if (r.worst_rel > REL_TOL)
            fail_msg("%s: logits differ from the upstream's by %g relative", name, r.worst_rel);
        if (r.spike_diffs)
            fail_msg("%s: %zu spikes differ from the upstream's", name, r.spike_diffs);
        unload(&fx);
    }
    free(names);
}

/* Batched: the golden sequence as item 1 of 2 gives the upstream logits too. */
static void test_batched_matches_upstream(void **state)
{
    (void)state;
    char *names = strdup(default_models), *save = NULL;
    for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        fixture fx;
        load(&fx, name, 2);
        qr_model *m = fx.model;
        qr_state *s[2];
        for (int b = 0; b < 2; b++)
            assert_int_equal(qr_state_new(m, &s[b], NULL), QR_OK);
        float *logits = malloc(2 * m->vocab * sizeof(float));
        for (size_t t = 0; t < fx.n_tokens; t++) {
            int32_t toks[2] = {(int32_t)((t * 11 + 5) % m->vocab), fx.tokens[t]};
            qr_error err;
            if (qr_forward(fx.runner, s, toks, 2, logits, NULL, &err))
                fail_msg("%s", err.msg);
            double rel = rel_error(logits + m->vocab, fx.logits + t * m->vocab, m->vocab);
            if (rel > REL_TOL)
                fail_msg("%s batched step %zu: %g relative", name, t, rel);
        }
        for (int b = 0; b < 2; b++)
            qr_state_free(s[b]);
        free(logits);
        unload(&fx);
    }
    free(names);
}

/* The golden data can tell: without the rescale (spikegpt-small, 7 layers, RWKV_RESCALE_LAYER 6)
 * or without the embedding's Heaviside (the vocab-77 model) the logits move far past the
 * tolerance, so a converter that dropped either would fail the test above. */
static void test_golden_detects_a_missing_transform(void **state)
{
    (void)state;
    fixture fx;
    load(&fx, "spikegpt-small", 1);
    assert_int_equal(fx.model->rescale_layer, 6);
    fx.model->rescale_layer = 0;
    for (size_t i = 0; i < fx.model->n_layer; i++)
        fx.model->layers[i].out_scale = 1.0f;
    run_result r = run_decode(&fx);
    assert_true(r.worst_rel > 100 * REL_TOL);
    assert_true(r.spike_diffs > 0);
    unload(&fx);

    load(&fx, "spikegpt-char-small", 1);
    assert_true(fx.model->spike_emb);
    fx.model->spike_emb = false;
    r = run_decode(&fx);
    assert_true(r.worst_rel > 100 * REL_TOL);
    unload(&fx);
}

/* A converted file whose spike.reset or model.time_decay names a transform the runtime does not
 * have is refused at bind, naming the key: patched in memory, same length ("hard" -> "soft",
 * "neg_exp" -> "pos_exp"). */
static void test_bind_refuses_unknown_transforms(void **state)
{
    (void)state;
    static const struct {
        const char *key, *from, *to;
    } cases[] = {{"spike.reset", "hard", "soft"}, {"model.time_decay", "neg_exp", "pos_exp"}};
    char path[4096];
    data_path(path, sizeof path, false, "spikegpt-small", ".qslm");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    rewind(f);
    char *image = malloc(size);
    assert_int_equal(fread(image, 1, size, f), size);
    fclose(f);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        qr_model_file *file;
        qr_model *m;
        qr_error err;
        /* the value follows its key: u32 type, u64 length, the bytes */
        char *k = memmem(image, size, cases[c].key, strlen(cases[c].key));
        assert_non_null(k);
        char *v = k + strlen(cases[c].key) + 4 + 8;
        assert_memory_equal(v, cases[c].from, strlen(cases[c].from));
        assert_int_equal(qr_model_file_from_memory(image, size, "patched", &file, &err), QR_OK);
        assert_int_equal(qr_model_bind(file, &m, &err), QR_OK); /* as converted: accepted */
        qr_model_free(m);
        qr_model_file_close(file);
        memcpy(v, cases[c].to, strlen(cases[c].to));
        assert_int_equal(qr_model_file_from_memory(image, size, "patched", &file, &err), QR_OK);
        assert_int_equal(qr_model_bind(file, &m, &err), QR_ERR_FORMAT);
        assert_non_null(strstr(err.msg, cases[c].key));
        assert_non_null(strstr(err.msg, cases[c].to));
        qr_model_file_close(file);
        memcpy(v, cases[c].from, strlen(cases[c].from));
    }
    free(image);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_upstream),
        cmocka_unit_test(test_batched_matches_upstream),
        cmocka_unit_test(test_golden_detects_a_missing_transform),
        cmocka_unit_test(test_bind_refuses_unknown_transforms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
