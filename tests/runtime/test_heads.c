/* test_heads.c: the classification heads' metadata (FORMAT.md "Classification heads") as the
 * runtime reads it: valid files, files from before heads had names, and every way to get the
 * names wrong, each refused with an error naming the key at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heads.h"
#include "model_file.h"
#include "model_fixture.h"

/* One metadata entry to add to the fixture: a string (s) or, when s is NULL, a u64 (u). */
typedef struct {
    const char *key;
    const char *s;
    uint64_t u;
} meta;

/* The fixture's image with `n` more entries, opened from memory; reads its heads. Returns the
 * status; err holds the message. The caller frees *buf and closes *mf. */
static qr_status read_with(const meta *m, size_t n, uint8_t **buf, qr_model_file **mf, qr_heads *h,
                           qr_error *err)
{
    qr_model_writer *w = fixture_writer();
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) {
        qr_status st = m[i].s ? qr_model_writer_set_string(w, m[i].key, m[i].s, err)
                              : qr_model_writer_set_u64(w, m[i].key, m[i].u, err);
        assert_int_equal(st, QR_OK);
    }
    size_t size;
    assert_int_equal(fixture_emit(w, buf, &size), 0);
    qr_model_writer_free(w);
    if (qr_model_file_from_memory(*buf, size, "m.qslm", mf, err))
        fail_msg("the container itself was refused: %s", err->msg);
    return qr_heads_read(*mf, h, err);
}

/* Expects the metadata to be refused with a message holding `want`. */
static void refused(const meta *m, size_t n, const char *want)
{
    uint8_t *buf = NULL;
    qr_model_file *mf = NULL;
    qr_heads h;
    qr_error err;
    qr_status st = read_with(m, n, &buf, &mf, &h, &err);
    if (st != QR_ERR_FORMAT || !strstr(err.msg, want) || !strstr(err.msg, "m.qslm"))
        fail_msg("expected a format error naming m.qslm and holding \"%s\", got %d: %s", want, st,
                 st ? err.msg : "(accepted)");
    assert_int_equal(h.n, 0);
    assert_null(h.store);
    qr_model_file_close(mf);
    free(buf);
}

static void test_two_named_heads(void **state)
{
    (void)state;
    const meta m[] = {{"head.n_tasks", NULL, 2},
                      {"head.task.0.name", "sentiment", 0},
                      {"head.task.0.labels", "negative\npositive", 0},
                      {"head.n_classes", NULL, 2},
                      {"head.task.1.name", "topic-2_x", 0},
                      {"head.task.1.labels", "war\n\xc3\xa9" "conomie\n\xf0\x9f\x98\x80 health", 0}};
    uint8_t *buf;
    qr_model_file *mf;
    qr_heads h;
    qr_error err;
    if (read_with(m, 6, &buf, &mf, &h, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(h.n, 2);
    assert_false(h.legacy);
    assert_string_equal(h.heads[0].name, "sentiment");
    assert_int_equal(h.heads[0].n_classes, 2);
    assert_string_equal(h.heads[0].labels[0], "negative");
    assert_string_equal(h.heads[0].labels[1], "positive");
    assert_string_equal(h.heads[1].name, "topic-2_x");
    assert_int_equal(h.heads[1].n_classes, 3);
    assert_string_equal(h.heads[1].labels[1], "\xc3\xa9" "conomie");
    assert_string_equal(h.heads[1].labels[2], "\xf0\x9f\x98\x80 health");
    assert_int_equal(qr_heads_find(&h, "topic-2_x"), 1);
    assert_int_equal(qr_heads_find(&h, "sentiment"), 0);
    assert_int_equal(qr_heads_find(&h, "topic"), -1);
    qr_heads_free(&h);
    qr_model_file_close(mf);
    free(buf);
}

/* A file with only head.n_classes (written before heads had names): one task "default" whose
 * labels are the indices. */
static void test_legacy_file(void **state)
{
    (void)state;
    const meta m[] = {{"head.n_classes", NULL, 3}};
    uint8_t *buf;
    qr_model_file *mf;
    qr_heads h;
    qr_error err;
    if (read_with(m, 1, &buf, &mf, &h, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(h.n, 1);
    assert_true(h.legacy);
    assert_string_equal(h.heads[0].name, "default");
    assert_int_equal(h.heads[0].n_classes, 3);
    assert_string_equal(h.heads[0].labels[0], "0");
    assert_string_equal(h.heads[0].labels[2], "2");
    qr_heads_free(&h);
    qr_model_file_close(mf);
    free(buf);
    /* No classifier at all: no heads. */
    if (read_with(NULL, 0, &buf, &mf, &h, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(h.n, 0);
    qr_heads_free(&h);
    qr_model_file_close(mf);
    free(buf);
}

static void test_missing_name_or_labels(void **state)
{
    (void)state;
    const meta no_name[] = {{"head.n_tasks", NULL, 2}, {"head.task.0.name", "a", 0},
                            {"head.task.0.labels", "x\ny", 0}, {"head.task.1.labels", "x\ny", 0}};
    refused(no_name, 4, "metadata 'head.task.1.name' is missing");
    const meta no_labels[] = {{"head.n_tasks", NULL, 1}, {"head.task.0.name", "a", 0}};
    refused(no_labels, 2, "metadata 'head.task.0.labels' is missing");
    const meta not_string[] = {{"head.n_tasks", NULL, 1}, {"head.task.0.name", NULL, 7}};
    refused(not_string, 2, "metadata 'head.task.0.name' must be a string");
    const meta orphan[] = {{"head.n_classes", NULL, 2}, {"head.task.0.name", "a", 0}};
    refused(orphan, 2, "'head.task.0.name' without head.n_tasks");
    const meta too_many[] = {{"head.n_tasks", NULL, 17}};
    refused(too_many, 1, "head.n_tasks is 17 (at most 16)");
}

static void test_count_mismatch(void **state)
{
    (void)state;
    const meta m[] = {{"head.n_tasks", NULL, 1}, {"head.task.0.name", "sentiment", 0},
                      {"head.task.0.labels", "negative\nneutral\npositive", 0}, {"head.n_classes", NULL, 2}};
    refused(m, 4, "head.n_classes is 2 but head 0 ('sentiment') has 3 labels");
}

static void test_duplicates(void **state)
{
    (void)state;
    const meta tasks[] = {{"head.n_tasks", NULL, 2}, {"head.task.0.name", "sentiment", 0},
                          {"head.task.0.labels", "a\nb", 0}, {"head.task.1.name", "sentiment", 0},
                          {"head.task.1.labels", "c\nd", 0}};
    refused(tasks, 5, "heads 0 and 1 are both named 'sentiment'");
    const meta labels[] = {{"head.n_tasks", NULL, 1}, {"head.task.0.name", "t", 0},
                           {"head.task.0.labels", "yes\nno\nyes", 0}};
    refused(labels, 3, "labels 0 and 2 are both 'yes'");
}

static void test_bad_names(void **state)
{
    (void)state;
    static const struct {
        const char *name, *labels, *want;
    } cases[] = {
        {"Sentiment", "a\nb", "'head.task.0.name': a task name is 1..32 characters of a-z 0-9 _ -"},
        {"", "a\nb", "'head.task.0.name': a task name"},
        {"s p", "a\nb", "'head.task.0.name': a task name"},
        {"abcdefghijabcdefghijabcdefghijabc", "a\nb", "'head.task.0.name': a task name"},
        {"s", "a\n\xff\xfe", "'head.task.0.labels': label 1 is not valid UTF-8"},
        {"s", "\xc0\xaf\nb", "'head.task.0.labels': label 0 is not valid UTF-8"},       /* overlong '/' */
        {"s", "a\n\xed\xa0\x80", "'head.task.0.labels': label 1 is not valid UTF-8"},   /* surrogate */
        {"s", "a\n\xe2\x82", "'head.task.0.labels': label 1 is not valid UTF-8"},       /* cut short */
        {"s", "a\n\nb", "'head.task.0.labels': label 1 is empty"},
        {"s", "a\n", "'head.task.0.labels': label 1 is empty"},
        {"s", "a\tb", "'head.task.0.labels': label 0 holds a control character"},
        {"s", "a\n\x1b[31mred", "'head.task.0.labels': label 1 holds a control character"},
        {"s", "0123456789012345678901234567890123456789012345678901234567890123x",
         "'head.task.0.labels': label 0 is longer than 64 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const meta m[] = {{"head.n_tasks", NULL, 1}, {"head.task.0.name", cases[i].name, 0},
                          {"head.task.0.labels", cases[i].labels, 0}};
        refused(m, 3, cases[i].want);
    }
}

static void test_tensor_names(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(qr_head_tensor_name(0, false, b, sizeof b), "cls.weight");
    assert_string_equal(qr_head_tensor_name(0, true, b, sizeof b), "cls.bias");
    assert_string_equal(qr_head_tensor_name(3, false, b, sizeof b), "cls.3.weight");
    assert_string_equal(qr_head_tensor_name(15, true, b, sizeof b), "cls.15.bias");
    bool bias = true;
    assert_int_equal(qr_head_tensor_index("cls.weight", &bias), 0);
    assert_false(bias);
    assert_int_equal(qr_head_tensor_index("cls.7.bias", &bias), 7);
    assert_true(bias);
    assert_int_equal(qr_head_tensor_index("cls.0.weight", &bias), -1); /* head 0 is cls.weight */
    assert_int_equal(qr_head_tensor_index("cls.16.weight", &bias), -1);
    assert_int_equal(qr_head_tensor_index("head.weight", &bias), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_named_heads),   cmocka_unit_test(test_legacy_file),
        cmocka_unit_test(test_missing_name_or_labels), cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_duplicates),        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_tensor_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
