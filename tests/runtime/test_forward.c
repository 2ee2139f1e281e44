/* test_forward.c: the C forward pass against the PyTorch reference's golden outputs
 * (tests/reference/make_golden.py), one token at a time and batched, plus the evaluator and
 * the model binder's errors.
 *
 * Tolerances (tests/reference/README.md): logits max abs diff <= 1e-4 (f32, and f16 whose golden
 * is computed from the f16-rounded weights), spikes equal, final state within
 * 1e-5 * max(1, |golden|). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval.h"
#include "footprint.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "state.h"
#include "synthetic_model.h"
#include "tensor_types.h"

#define LOGIT_TOL 1e-4
#define STATE_TOL 1e-5

static const char *golden_models[] = {"spike_lm", "spike_emb", "rwkv4", "spike_rescale", "spike_cls",
                                      "spike_lm_f16", "spike_ffn_hidden"};

typedef struct {
    json_object *golden;
    qr_model_file *file;
    qr_model *model;
    qr_pool *pool;
    qr_runner *runner;
    int32_t tokens[64];
    size_t n_tokens;
} fixture;

static void load(fixture *fx, const char *name, int threads, size_t batch)
{
    memset(fx, 0, sizeof *fx);
    const char *src = getenv("QSLM_SOURCE_DIR");
    assert_non_null(src);
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/reference/%s.golden.json", src, name);
    fx->golden = json_object_from_file(path);
    if (!fx->golden)
        fail_msg("cannot read %s", path);
    snprintf(path, sizeof path, "%s/tests/data/reference/%s.qslm", src, name);
    qr_error err;
    if (qr_model_file_open(path, &fx->file, &err) || qr_model_bind(fx->file, &fx->model, &err) ||
        qr_pool_new(threads, &fx->pool, &err) || qr_runner_new(fx->model, fx->pool, batch, &fx->runner, &err))
        fail_msg("%s", err.msg);
    json_object *toks = json_object_object_get(fx->golden, "tokens");
    fx->n_tokens = json_object_array_length(toks);
    assert_true(fx->n_tokens > 0 && fx->n_tokens <= 64);
    for (size_t i = 0; i < fx->n_tokens; i++)
        fx->tokens[i] = json_object_get_int(json_object_array_get_idx(toks, i));
}

static void unload(fixture *fx)
{
    qr_runner_free(fx->runner);
    qr_pool_free(fx->pool);
    qr_model_free(fx->model);
    qr_model_file_close(fx->file);
    json_object_put(fx->golden);
}

static double jnum(json_object *a, size_t i)
{
    return json_object_get_double(json_object_array_get_idx(a, i));
}

/* Max |ours - golden| over a float array. */
static double max_abs_diff(const float *ours, json_object *golden, size_t n)
{
    assert_int_equal(json_object_array_length(golden), n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(ours[i] - jnum(golden, i));
        worst = d > worst ? d : worst;
    }
    return worst;
}

static void check_spikes(const char *name, size_t step, const char *key, json_object *jstep,
                         const uint8_t *ours, size_t n_layer, size_t d)
{
    json_object *layers;
    if (!json_object_object_get_ex(jstep, key, &layers))
        return; /* that spike site is off in this model */
    for (size_t l = 0; l < n_layer; l++) {
        json_object *row = json_object_array_get_idx(layers, l);
        for (size_t i = 0; i < d; i++)
            if (ours[l * d + i] != json_object_get_int(json_object_array_get_idx(row, i)))
                fail_msg("%s step %zu %s layer %zu neuron %zu: ours %d", name, step, key, l, i, ours[l * d + i]);
    }
}

static void check_final_state(const char *name, json_object *golden, qr_state *s)
{
    static const char *keys[QR_STATE_VECTORS] = {"att_xx", "aa", "bb", "pp", "ffn_xx", "v_att", "v_ffn"};
    json_object *layers = json_object_object_get(golden, "final_state");
    for (size_t l = 0; l < s->n_layer; l++) {
        json_object *lj = json_object_array_get_idx(layers, l);
        for (int v = 0; v < QR_STATE_VECTORS; v++) {
            json_object *arr = json_object_object_get(lj, keys[v]);
            const float *ours = qr_state_vec(s, l, (qr_state_vector)v);
            for (size_t i = 0; i < s->d; i++) {
                double g = jnum(arr, i);
                if (fabs(ours[i] - g) > STATE_TOL * fmax(1.0, fabs(g)))
                    fail_msg("%s state layer %zu %s[%zu]: ours %.9g golden %.9g", name, l, keys[v], i,
                             (double)ours[i], g);
            }
        }
        json_object *hidden;
        if (s->n_hidden && json_object_object_get_ex(lj, "v_ffn_hidden", &hidden)) {
            const float *ours = qr_state_hidden_membrane(s, l);
            for (size_t i = 0; i < s->n_hidden; i++) {
                double g = jnum(hidden, i);
                if (fabs(ours[i] - g) > STATE_TOL * fmax(1.0, fabs(g)))
                    fail_msg("%s state layer %zu v_ffn_hidden[%zu]: ours %.9g golden %.9g", name, l, i,
                             (double)ours[i], g);
            }
        } else if (s->n_hidden) {
            fail_msg("%s: the golden state has no v_ffn_hidden", name);
        }
    }
}

/* Token by token (decode path), with the spike trace, against every golden step. */
static void run_golden_decode(const char *name, int threads)
{
    fixture fx;
    load(&fx, name, threads, 1);
    qr_model *m = fx.model;
    qr_state *s;
    assert_int_equal(qr_state_new(m, &s, NULL), QR_OK);
    uint8_t *att = calloc(m->n_layer * m->d, 1), *ffn = calloc(m->n_layer * m->d, 1);
    uint8_t *hidden = calloc(m->n_layer * m->f, 1);
    uint64_t att_fired[8] = {0}, ffn_fired[8] = {0}, hidden_fired[8] = {0};
    qr_spike_trace trace = {att, ffn, att_fired, ffn_fired, hidden, hidden_fired, 0};
    qr_runner_set_trace(fx.runner, &trace);
    float *logits = malloc(m->vocab * sizeof(float)), *feat = malloc(m->d * sizeof(float));
    double *feat_sum = calloc(m->d, sizeof(double));
    json_object *steps = json_object_object_get(fx.golden, "steps");
    double worst = 0;
    for (size_t t = 0; t < fx.n_tokens; t++) {
        qr_error err;
        if (qr_forward(fx.runner, &s, &fx.tokens[t], 1, m->has_lm_head ? logits : NULL, feat, &err))
            fail_msg("%s", err.msg);
        json_object *jstep = json_object_array_get_idx(steps, t);
        if (m->has_lm_head) {
            double d = max_abs_diff(logits, json_object_object_get(jstep, "logits"), m->vocab);
            worst = d > worst ? d : worst;
            if (d > LOGIT_TOL)
                fail_msg("%s (%d threads) step %zu: logits differ by %g", name, threads, t, d);
        }
        check_spikes(name, t, "spikes_att", jstep, att, m->n_layer, m->d);
        check_spikes(name, t, "spikes_ffn", jstep, ffn, m->n_layer, m->d);
        check_spikes(name, t, "spikes_ffn_hidden", jstep, hidden, m->n_layer, m->f);
        if (m->spike_ffn_hidden && !json_object_object_get_ex(jstep, "spikes_ffn_hidden", NULL))
            fail_msg("%s: the golden steps have no spikes_ffn_hidden", name);
        for (size_t i = 0; i < m->d; i++)
            feat_sum[i] += feat[i];
    }
    check_final_state(name, fx.golden, s);
    json_object *cls;
    if (json_object_object_get_ex(fx.golden, "cls_logits", &cls) && m->n_classes) {
        float mean[64], out[16];
        for (size_t i = 0; i < m->d; i++)
            mean[i] = (float)(feat_sum[i] / (double)fx.n_tokens);
        qr_classify(m, mean, out);
        assert_true(max_abs_diff(out, cls, m->n_classes) <= LOGIT_TOL);
    }
    /* The trace's counters agree with the golden spike rates. */
    json_object *rates;
    if (m->spike_att && json_object_object_get_ex(fx.golden, "spike_rates", &rates)) {
        json_object *ra = json_object_object_get(rates, "att");
        for (size_t l = 0; l < m->n_layer; l++)
            assert_true(fabs((double)att_fired[l] / (double)(fx.n_tokens * m->d) - jnum(ra, l)) < 1e-6);
        assert_int_equal(trace.tokens, fx.n_tokens);
    }
    if (m->spike_ffn_hidden) {
        json_object *rh = json_object_object_get(json_object_object_get(fx.golden, "spike_rates"), "ffn_hidden");
        for (size_t l = 0; l < m->n_layer; l++)
            assert_true(fabs((double)hidden_fired[l] / (double)(fx.n_tokens * m->f) - jnum(rh, l)) < 1e-6);
    }
    printf("%s (%d threads): max logit diff %.3g over %zu steps\n", name, threads, worst, fx.n_tokens);
    free(feat_sum);
    free(feat);
    free(logits);
    free(att);
    free(ffn);
    free(hidden);
    qr_state_free(s);
    unload(&fx);
}

static void test_golden_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof golden_models / sizeof golden_models[0]; i++) {
        run_golden_decode(golden_models[i], 1);
        run_golden_decode(golden_models[i], 2);
    }
}

/* The batched path: three sequences at once — the golden input, and two others — must give the
 * golden logits and state for the golden sequence. */
static void test_golden_batched(void **state)
{
    (void)state;
    for (size_t mi = 0; mi < sizeof golden_models / sizeof golden_models[0]; mi++) {
        const char *name = golden_models[mi];
        fixture fx;
        load(&fx, name, 2, 3);
        qr_model *m = fx.model;
        if (!m->has_lm_head) {
            unload(&fx);
            continue;
        }
        qr_state *s[3];
        for (int b = 0; b < 3; b++)
            assert_int_equal(qr_state_new(m, &s[b], NULL), QR_OK);
        float *logits = malloc(3 * m->vocab * sizeof(float));
        json_object *steps = json_object_object_get(fx.golden, "steps");
        for (size_t t = 0; t < fx.n_tokens; t++) {
            int32_t toks[3] = {(int32_t)((t * 7 + 3) % m->vocab), fx.tokens[t], (int32_t)((t * 13) % m->vocab)};
            qr_error err;
            if (qr_forward(fx.runner, s, toks, 3, logits, NULL, &err))
                fail_msg("%s", err.msg);
            double d = max_abs_diff(logits + m->vocab,
                                    json_object_object_get(json_object_array_get_idx(steps, t), "logits"), m->vocab);
            if (d > LOGIT_TOL)
                fail_msg("%s batched step %zu: logits differ by %g", name, t, d);
        }
        check_final_state(name, fx.golden, s[1]);
        for (int b = 0; b < 3; b++)
            qr_state_free(s[b]);
        free(logits);
        unload(&fx);
    }
}

/* qr_eval_perplexity over one window equals exp(mean NLL) computed from the golden logits, at
 * every batch size (windows of unequal length share a batch). */
static void test_eval_perplexity_matches_golden(void **state)
{
    (void)state;
    fixture fx;
    load(&fx, "spike_lm", 2, 4);
    json_object *steps = json_object_object_get(fx.golden, "steps");
    double nll = 0;
    float logits[64];
    for (size_t t = 0; t + 1 < fx.n_tokens; t++) {
        json_object *jl = json_object_object_get(json_object_array_get_idx(steps, t), "logits");
        for (size_t i = 0; i < fx.model->vocab; i++)
            logits[i] = (float)jnum(jl, i);
        nll += qr_token_nll(logits, fx.model->vocab, fx.tokens[t + 1]);
    }
    double expect = exp(nll / (double)(fx.n_tokens - 1));
    qr_ppl_result res;
    qr_error err;
    assert_int_equal(qr_eval_perplexity(fx.runner, fx.tokens, fx.n_tokens, fx.n_tokens, 4, NULL, NULL, &res, &err), QR_OK);
    assert_int_equal(res.predictions, fx.n_tokens - 1);
    assert_true(fabs(res.ppl - expect) < 1e-4 * expect);
    /* Windows of 5 tokens: 16 tokens -> windows 5,5,5,1; the last one scores nothing. */
    assert_int_equal(qr_eval_perplexity(fx.runner, fx.tokens, fx.n_tokens, 5, 4, NULL, NULL, &res, &err), QR_OK);
    assert_int_equal(res.predictions, 12);
    qr_ppl_result one;
    assert_int_equal(qr_eval_perplexity(fx.runner, fx.tokens, fx.n_tokens, 5, 1, NULL, NULL, &one, &err), QR_OK);
    assert_true(fabs(one.nll_sum - res.nll_sum) < 1e-4);
    assert_int_equal(qr_eval_perplexity(fx.runner, fx.tokens, 1, 5, 1, NULL, NULL, &one, &err), QR_ERR_INVALID);
    unload(&fx);
}

/* Accuracy: the classifier evaluated through qr_eval_accuracy matches the golden cls logits'
 * argmax, and items of different lengths batch correctly. */
static void test_eval_accuracy(void **state)
{
    (void)state;
    fixture fx;
    load(&fx, "spike_cls", 2, 3);
    json_object *cls = json_object_object_get(fx.golden, "cls_logits");
    int best = 0;
    for (int c = 1; c < 3; c++)
        if (jnum(cls, c) > jnum(cls, best))
            best = c;
    qr_labelled items[4] = {
        {fx.tokens, fx.n_tokens, best},
        {fx.tokens, 3, 0},
        {fx.tokens, fx.n_tokens, (best + 1) % 3},
        {fx.tokens, 1, 1},
    };
    qr_acc_result res;
    qr_error err;
    assert_int_equal(qr_eval_accuracy(fx.runner, items, 4, 3, NULL, NULL, &res, &err), QR_OK);
    assert_int_equal(res.total, 4);
    /* Item 0 is right and item 2 wrong by construction; the same items one at a time agree. */
    qr_acc_result single;
    assert_int_equal(qr_eval_accuracy(fx.runner, items, 4, 1, NULL, NULL, &single, &err), QR_OK);
    assert_int_equal(single.correct, res.correct);
    assert_true(fabs(single.nll_mean - res.nll_mean) < 1e-5);
    qr_acc_result first;
    assert_int_equal(qr_eval_accuracy(fx.runner, items, 1, 1, NULL, NULL, &first, &err), QR_OK);
    assert_int_equal(first.correct, 1);
    assert_int_equal(qr_eval_accuracy(fx.runner, items + 2, 1, 1, NULL, NULL, &first, &err), QR_OK);
    assert_int_equal(first.correct, 0);
    items[1].label = 7;
    assert_int_equal(qr_eval_accuracy(fx.runner, items, 4, 3, NULL, NULL, &res, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "label 7"));
    unload(&fx);
}

/* Two heads on one backbone (tests/reference/make_heads.py): each head's logits match the
 * reference's, names and labels read as written, and the evaluator runs the head asked for. */
static void test_golden_heads(void **state)
{
    (void)state;
    fixture fx;
    load(&fx, "spike_heads", 1, 2);
    const qr_model *m = fx.model;
    json_object *heads = json_object_object_get(fx.golden, "heads");
    assert_int_equal(m->head_info.n, 2);
    assert_int_equal(json_object_array_length(heads), 2);
    qr_state *s;
    qr_error err;
    if (qr_state_new(m, &s, &err))
        fail_msg("%s", err.msg);
    float feat[64], mean[64], out[8];
    double sum[64] = {0};
    for (size_t t = 0; t < fx.n_tokens; t++) {
        if (qr_forward(fx.runner, &s, &fx.tokens[t], 1, NULL, feat, &err))
            fail_msg("%s", err.msg);
        for (size_t i = 0; i < m->d; i++)
            sum[i] += feat[i];
    }
    for (size_t i = 0; i < m->d; i++)
        mean[i] = (float)(sum[i] / (double)fx.n_tokens);
    int best[2] = {0, 0};
    for (size_t h = 0; h < 2; h++) {
        json_object *g = json_object_array_get_idx(heads, h), *labels = json_object_object_get(g, "labels");
        const qr_head_info *hi = &m->head_info.heads[h];
        assert_string_equal(hi->name, json_object_get_string(json_object_object_get(g, "task")));
        assert_int_equal(hi->n_classes, json_object_array_length(labels));
        assert_int_equal(m->cls[h].n_classes, hi->n_classes);
        for (size_t c = 0; c < hi->n_classes; c++)
            assert_string_equal(hi->labels[c], json_object_get_string(json_object_array_get_idx(labels, c)));
        assert_int_equal(qr_model_task(m, hi->name), (int)h);
        qr_classify_head(m, h, mean, out);
        json_object *gl = json_object_object_get(g, "cls_logits");
        double d = max_abs_diff(out, gl, hi->n_classes);
        if (d > LOGIT_TOL)
            fail_msg("head %zu (%s): logits differ by %g", h, hi->name, d);
        for (int c = 1; c < (int)hi->n_classes; c++)
            if (jnum(gl, (size_t)c) > jnum(gl, (size_t)best[h]))
                best[h] = c;
    }
    assert_string_equal(m->head_info.heads[0].labels[2], "joyful \xc3\xa9");
    assert_int_equal(qr_model_task(m, NULL), 0);
    assert_int_equal(qr_model_task(m, ""), 0);
    assert_int_equal(qr_model_task(m, "nope"), -1);
    /* The evaluator on head 1: right with its argmax as label, wrong with the other. */
    qr_labelled items[2] = {{fx.tokens, fx.n_tokens, best[1]}, {fx.tokens, fx.n_tokens, 1 - best[1]}};
    qr_acc_result res;
    assert_int_equal(qr_eval_accuracy_head(fx.runner, 1, items, 2, 2, NULL, NULL, NULL, NULL, &res, &err), QR_OK);
    assert_int_equal(res.correct, 1);
    assert_int_equal(qr_eval_accuracy_head(fx.runner, 1, items, 1, 1, NULL, NULL, NULL, NULL, &res, &err), QR_OK);
    assert_int_equal(res.correct, 1);
    assert_int_equal(qr_eval_accuracy_head(fx.runner, 2, items, 1, 1, NULL, NULL, NULL, NULL, &res, &err),
                     QR_ERR_INVALID);
    items[0].label = 2; /* head 1 has 2 classes (head 0 has 3) */
    assert_int_equal(qr_eval_accuracy_head(fx.runner, 1, items, 1, 1, NULL, NULL, NULL, NULL, &res, &err),
                     QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "label 2"));
    /* QSLM finds each head's matrix by its tensor name. */
    assert_ptr_equal(qr_model_matrix(fx.model, "cls.1.weight"), &fx.model->cls[1].w);
    assert_ptr_equal(qr_model_matrix(fx.model, "cls.weight"), &fx.model->cls[0].w);
    assert_null(qr_model_matrix(fx.model, "cls.2.weight"));
    assert_null(qr_model_matrix(fx.model, "cls.1.bias"));
    qr_state_free(s);
    unload(&fx);
}

/* A head whose labels do not match its tensor's rows: the binder names the tensor. */
static void test_head_rows_mismatch(void **state)
{
    (void)state;
    char path[] = "/tmp/qslm-heads-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {1, 32, 128, 64, QR_TYPE_F32, 1};
    shape.tasks[0] = "s=a,b";
    shape.tasks[1] = "t=x,y,z";
    shape.n_tasks = 2;
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    qr_model_file *file;
    qr_model *m;
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_OK);
    assert_int_equal(m->cls[1].n_classes, 3);
    qr_model_free(m);
    qr_model_file_close(file);
    /* "x\ny\nz" becomes "x\nyQz": two labels for cls.1.weight's three rows. */
    FILE *f = fopen(path, "r+b");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *k = memmem(buf, n, "x\ny\nz", 5);
    assert_non_null(k);
    fseek(f, (long)(k - buf) + 3, SEEK_SET);
    fputc('Q', f);
    fclose(f);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tensor 'cls.1.weight' must be 2 x 32"));
    qr_model_file_close(file);
    unlink(path);
}

/* A bad token is refused before any state changes. */
static void test_forward_rejects_bad_input(void **state)
{
    (void)state;
    fixture fx;
    load(&fx, "spike_lm", 1, 2);
    qr_state *s, *copy;
    assert_int_equal(qr_state_new(fx.model, &s, NULL), QR_OK);
    assert_int_equal(qr_state_new(fx.model, &copy, NULL), QR_OK);
    int32_t t = 5;
    assert_int_equal(qr_forward(fx.runner, &s, &t, 1, NULL, NULL, NULL), QR_OK);
    qr_state_copy(copy, s);
    qr_state *both[2] = {s, s};
    int32_t bad[2] = {1, 64};
    qr_error err;
    assert_int_equal(qr_forward(fx.runner, both, bad, 2, NULL, NULL, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "token id 64"));
    bad[1] = -1;
    assert_int_equal(qr_forward(fx.runner, both, bad, 2, NULL, NULL, &err), QR_ERR_INVALID);
    assert_int_equal(qr_forward(fx.runner, both, bad, 3, NULL, NULL, &err), QR_ERR_INVALID);
    assert_memory_equal(s->data, copy->data, qr_state_bytes(s));
    qr_state_free(s);
    qr_state_free(copy);
    unload(&fx);
}

/* Binding refuses models that are well-formed files but not complete SpikeGPTs. */
static void test_bind_errors(void **state)
{
    (void)state;
    char path[] = "/tmp/qslm-bind-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    synthetic_shape shape = {2, 32, 128, 64, QR_TYPE_F32, 1};
    qr_error err;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    qr_model_file *file;
    qr_model *m;
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_OK);
    assert_int_equal(m->n_layer, 2);
    assert_true(m->spike_att && m->spike_ffn && !m->spike_emb);
    /* The served footprint's parts, by hand: 2 layers x 7 state vectors x d 32 floats a sequence;
     * the file as mapped; 1-D parameters (11 per layer + 4) x d. */
    qr_footprint fp = qr_footprint_of(m, 4);
    struct stat st_file;
    assert_int_equal(stat(path, &st_file), 0);
    assert_int_equal(fp.file_bytes, (uint64_t)st_file.st_size);
    assert_int_equal(fp.state_bytes, 4 * 2 * 7 * 32 * sizeof(float));
    assert_int_equal(fp.params_bytes, (11 * 2 + 4) * 32 * sizeof(float));
    assert_true(fp.runner_bytes >= (10 * 4 * 32 + 4 * 128) * sizeof(float));
    assert_int_equal(fp.total, fp.file_bytes + fp.params_bytes + fp.runner_bytes + fp.state_bytes);
    qr_model_free(m);
    qr_model_file_close(file);

    /* A model claiming 3 layers lacks blocks.2. */
    const char *src = getenv("QSLM_SOURCE_DIR");
    char ref[4096];
    snprintf(ref, sizeof ref, "%s/tests/data/reference/spike_lm.qslm", src);
    assert_int_equal(qr_model_file_open(ref, &file, &err), QR_OK);
    const qr_tensor_info *t = qr_model_file_find_tensor(file, "blocks.1.att.key.weight");
    assert_non_null(t);
    qr_model_file_close(file);

    shape.n_layer = 1;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    /* Patch model.n_layer from 1 to 2 in place: its u64 follows the key. */
    FILE *f = fopen(path, "r+b");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *k = memmem(buf, n, "model.n_layer", 13);
    assert_non_null(k);
    fseek(f, (long)(k - buf) + 13 + 4, SEEK_SET);
    uint64_t two = 2;
    fwrite(&two, 8, 1, f);
    fclose(f);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "blocks.1.ln1.weight' is missing"));
    assert_non_null(strstr(err.msg, path));
    qr_model_file_close(file);

    /* n_ffn that does not match ffn.key's shape. */
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    f = fopen(path, "r+b");
    n = fread(buf, 1, sizeof buf, f);
    k = memmem(buf, n, "model.n_ffn", 11);
    fseek(f, (long)(k - buf) + 11 + 4, SEEK_SET);
    uint64_t wrong = 96;
    fwrite(&wrong, 8, 1, f);
    fclose(f);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "ffn.key.weight' must be 96 x 32"));
    qr_model_file_close(file);

    /* spike.ffn_hidden binds the value matrix transposed (n_ffn x d), refuses it untransposed,
     * and its state carries one membrane per hidden unit. */
    shape.spike_ffn_hidden = true;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_OK);
    assert_true(m->spike_ffn_hidden);
    assert_int_equal(m->layers[0].ffn_value.rows, 128);
    qr_state *s;
    assert_int_equal(qr_state_new(m, &s, &err), QR_OK);
    assert_int_equal(qr_state_bytes(s), 1 * (QR_STATE_VECTORS * 32 + 128) * sizeof(float));
    qr_state_free(s);
    qr_model_free(m);
    qr_model_file_close(file);
    shape.spike_ffn_hidden = false;
    assert_int_equal(synthetic_model_write(&shape, path, &err), QR_OK);
    f = fopen(path, "r+b");
    n = fread(buf, 1, sizeof buf, f);
    k = memmem(buf, n, "spike.ffn_hidden", 16);
    assert_non_null(k);
    fseek(f, (long)(k - buf) + 16 + 4, SEEK_SET); /* the bool's byte follows its value type */
    fputc(1, f);
    fclose(f);
    assert_int_equal(qr_model_file_open(path, &file, &err), QR_OK);
    assert_int_equal(qr_model_bind(file, &m, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "blocks.0.ffn.value.weight' must be 128 x 32"));
    qr_model_file_close(file);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_decode),
        cmocka_unit_test(test_golden_batched),
        cmocka_unit_test(test_eval_perplexity_matches_golden),
        cmocka_unit_test(test_eval_accuracy),
        cmocka_unit_test(test_forward_rejects_bad_input),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_golden_heads),
        cmocka_unit_test(test_head_rows_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
