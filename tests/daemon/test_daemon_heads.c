/* test_daemon_heads.c: the real qslmd serving a model with two named classifier heads.
 *
 * The setup writes a one-variant bundle into the harness's directory: a small random SpikeGPT
 * (tests/support/synthetic_model.h) with the default tokenizer and two heads, "sentiment"
 * (negative, positive) and "topic" (war, economy, "health é"), hashed into a manifest. The
 * tests ask the daemon over its socket and hold its answers to the runtime's, computed here in
 * process from the same file: classify without a task runs the first head, with "topic" the
 * second, an unknown task is named with the ones there are, and `variants` lists both. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bundle.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "dataset.h"
#include "footprint.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "sha256.h"
#include "synthetic_model.h"
#include "tensor_types.h"
#include "tokenizer.h"

#define PROB_TOL 1e-4 /* the daemon batches the texts; the reference runs them one at a time */

static const char *const topic_labels[] = {"war", "economy", "health \xc3\xa9"};

typedef struct {
    dh_daemon h;
    char model[DH_PATH_MAX + 16];
} heads_fixture;

/* The model file and the bundle around it, in DIR/bundle. */
static int write_bundle(heads_fixture *f)
{
    const char *src = getenv("QSLM_SOURCE_DIR");
    char tok_path[4096], dir[DH_PATH_MAX];
    snprintf(tok_path, sizeof tok_path, "%s/models/tokenizer.json", src ? src : ".");
    snprintf(dir, sizeof dir, "%.200s/bundle", f->h.dir);
    snprintf(f->h.bundle, sizeof f->h.bundle, "%s", dir);
    snprintf(f->model, sizeof f->model, "%s/heads.qslm", dir);
    char *json = NULL;
    size_t json_len = 0;
    qr_tokenizer *tok = NULL;
    qr_error err;
    if (qr_read_file(tok_path, 1 << 24, &json, &json_len, &err) ||
        qr_tokenizer_load_hf_json(json, json_len, tok_path, &tok, &err)) {
        print_error("%s\n", err.msg);
        free(json);
        return -1;
    }
    synthetic_shape sh = {.n_layer = 1, .d = 32, .f = 128, .vocab = qr_tokenizer_vocab_size(tok),
                          .matrix_type = QR_TYPE_F32, .seed = 11, .tokenizer_json = json,
                          .tokenizer_len = json_len};
    qr_tokenizer_free(tok);
    sh.tasks[0] = "sentiment=negative,positive";
    sh.tasks[1] = "topic=war,economy,health \xc3\xa9";
    sh.n_tasks = 2;
    if (mkdir(dir, 0755) != 0 || synthetic_model_write(&sh, f->model, &err)) {
        print_error("cannot write %s: %s\n", f->model, err.msg);
        free(json);
        return -1;
    }
    free(json);
    uint8_t digest[QR_SHA256_BYTES];
    uint64_t bytes;
    qr_model_file *mf = NULL;
    qr_model *m = NULL;
    if (qr_sha256_file(f->model, digest, &bytes, &err) || qr_model_file_open(f->model, &mf, &err) ||
        qr_model_bind(mf, &m, &err)) {
        print_error("%s\n", err.msg);
        qr_model_file_close(mf);
        return -1;
    }
    qr_bundle_setting setting = {"emb.weight", QR_TYPE_F32};
    qr_bundle_variant v = {.name = "only", .file = "heads.qslm", .file_bytes = bytes,
                           .footprint_bytes = qr_footprint_of(m, 4).total, .bits_per_weight = 32,
                           .setting = &setting, .n_setting = 1};
    qr_sha256_to_hex(digest, v.sha256);
    qr_bundle b = {.model_name = "heads", .source_file = "heads.qslm", .created_by = "test_daemon_heads",
                   .variants = &v, .n_variants = 1};
    memcpy(b.source_sha256, v.sha256, sizeof b.source_sha256);
    qr_model_free(m);
    qr_model_file_close(mf);
    if (qr_bundle_write(&b, dir, &err)) {
        print_error("%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    heads_fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (dc_init(&f->h) != 0 || write_bundle(f) != 0)
        return -1;
    return dc_start(&f->h, NULL);
}

static int teardown(void **state)
{
    heads_fixture *f = *state;
    if (!f)
        return 0;
    int rc = dc_finish(&f->h);
    free(f);
    return rc;
}

/* The runtime's probabilities of head `head` for text, from the bundle's file, one token at a
 * time: what the daemon must answer. */
static void reference_probs(const heads_fixture *f, size_t head, const char *text, double *probs, size_t cap)
{
    qr_model_file *mf = NULL;
    qr_model *m = NULL;
    qr_runner *r = NULL;
    qr_tokenizer *tok = NULL;
    qr_state *s = NULL;
    qr_error err;
    const char *json;
    uint64_t len;
    int32_t *ids = NULL;
    size_t n = 0;
    if (qr_model_file_open(f->model, &mf, &err) || qr_model_bind(mf, &m, &err) ||
        qr_model_file_get_blob(mf, "tokenizer.json", &json, &len, &err) ||
        qr_tokenizer_load_hf_json(json, (size_t)len, f->model, &tok, &err) ||
        qr_encode_for_model(tok, m->vocab, text, strlen(text), "text", &ids, &n, &err) ||
        qr_runner_new(m, NULL, 1, &r, &err) || qr_state_new(m, &s, &err))
        fail_msg("%s", err.msg);
    float *feat = malloc(m->d * sizeof *feat), *logits = malloc(m->cls[head].n_classes * sizeof *logits);
    double *sum = calloc(m->d, sizeof *sum);
    assert_true(feat && logits && sum && n > 0);
    for (size_t t = 0; t < n; t++) {
        if (qr_forward(r, &s, &ids[t], 1, NULL, feat, &err))
            fail_msg("%s", err.msg);
        for (size_t j = 0; j < m->d; j++)
            sum[j] += feat[j];
    }
    for (size_t j = 0; j < m->d; j++)
        feat[j] = (float)(sum[j] / (double)n);
    qr_classify_head(m, head, feat, logits);
    size_t k = m->cls[head].n_classes;
    assert_true(k <= cap);
    double top = logits[0], z = 0;
    for (size_t c = 1; c < k; c++)
        top = logits[c] > top ? logits[c] : top;
    for (size_t c = 0; c < k; c++)
        z += exp((double)logits[c] - top);
    for (size_t c = 0; c < k; c++)
        probs[c] = exp((double)logits[c] - top) / z;
    free(feat);
    free(logits);
    free(sum);
    free(ids);
    qr_state_free(s);
    qr_runner_free(r);
    qr_tokenizer_free(tok);
    qr_model_free(m);
    qr_model_file_close(mf);
}

/* One result of a reply against the reference: the probabilities, and the label its argmax's name. */
static void check_result(json_object *body, size_t i, const double *want, size_t k, const char *const *names)
{
    json_object *labels = jget(body, "labels");
    assert_int_equal(json_object_array_length(labels), k);
    for (size_t c = 0; c < k; c++)
        assert_string_equal(json_object_get_string(json_object_array_get_idx(labels, c)), names[c]);
    json_object *res = json_object_array_get_idx(jget(body, "results"), i), *p = jget(res, "probs");
    assert_int_equal(json_object_array_length(p), k);
    size_t best = 0;
    for (size_t c = 0; c < k; c++) {
        double got = json_object_get_double(json_object_array_get_idx(p, c));
        if (fabs(got - want[c]) > PROB_TOL)
            fail_msg("result %zu class %zu: the daemon says %.6f, the runtime %.6f", i, c, got, want[c]);
        best = want[c] > want[best] ? c : best;
    }
    assert_int_equal(jint(res, "label_index"), (int64_t)best);
    assert_jstr(res, "label", names[best]);
}

static void test_first_head_by_default(void **state)
{
    heads_fixture *f = *state;
    static const char *const names[] = {"negative", "positive"};
    qi_client *c = connect_or_fail(&f->h);
    qi_reply r;
    rpc(c, &r, "{\"id\":1,\"op\":\"classify\",\"text\":\"The state of the union is strong.\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_jstr(r.body, "task", "sentiment");
    double want[2];
    reference_probs(f, 0, "The state of the union is strong.", want, 2);
    check_result(r.body, 0, want, 2, names);
    qi_reply_free(&r);
    qi_client_close(c);
}

static void test_second_head_by_name(void **state)
{
    heads_fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    qi_reply r;
    const char *texts[] = {"We will fight for peace.", "Jobs, wages and trade."};
    rpc(c, &r, "{\"id\":2,\"op\":\"classify\",\"task\":\"topic\",\"texts\":[\"%s\",\"%s\"]}", texts[0], texts[1]);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_jstr(r.body, "task", "topic");
    for (size_t i = 0; i < 2; i++) {
        double want[3];
        reference_probs(f, 1, texts[i], want, 3);
        check_result(r.body, i, want, 3, topic_labels);
    }
    qi_reply_free(&r);
    /* The same text through the first head answers with that head's two classes. */
    rpc(c, &r, "{\"id\":3,\"op\":\"classify\",\"task\":\"sentiment\",\"text\":\"%s\"}", texts[0]);
    assert_jstr(r.body, "task", "sentiment");
    assert_int_equal(json_object_array_length(jget(json_object_array_get_idx(jget(r.body, "results"), 0), "probs")), 2);
    qi_reply_free(&r);
    qi_client_close(c);
}

static void test_unknown_task(void **state)
{
    heads_fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    qi_reply r;
    rpc(c, &r, "{\"id\":\"u\",\"op\":\"classify\",\"task\":\"mood\",\"text\":\"x\"}");
    expect_error(&r, QI_ERR_INVALID_ARGUMENT, "task");
    assert_non_null(strstr(r.message, "unknown task 'mood'; the model's tasks: sentiment, topic"));
    qi_reply_free(&r);
    qi_client_close(c);
}

static void test_variants_list_tasks(void **state)
{
    heads_fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    qi_reply r;
    rpc(c, &r, "{\"id\":\"v\",\"op\":\"variants\"}");
    json_object *v = json_object_array_get_idx(jget(r.body, "variants"), 0), *tasks = jget(v, "tasks");
    assert_int_equal(json_object_array_length(tasks), 2);
    assert_jstr(json_object_array_get_idx(tasks, 0), "name", "sentiment");
    json_object *t1 = json_object_array_get_idx(tasks, 1), *labels = jget(t1, "labels");
    assert_jstr(t1, "name", "topic");
    assert_int_equal(json_object_array_length(labels), 3);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(labels, 2)), topic_labels[2]);
    qi_reply_free(&r);
    qi_client_close(c);
}

int main(int argc, char **argv)
{
    if (argc > 1) /* meson passes the qslmd to test */
        setenv("QSLMD", argv[1], 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_head_by_default),
        cmocka_unit_test(test_second_head_by_name),
        cmocka_unit_test(test_unknown_task),
        cmocka_unit_test(test_variants_list_tasks),
    };
    return cmocka_run_group_tests_name("daemon_heads", tests, setup, teardown);
}
