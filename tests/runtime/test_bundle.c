/* test_bundle.c: the bundle manifest (runtime/BUNDLE.md) — round trip through the writer and the
 * reader, every validation rule with its message, the variant hash check, SHA-256 itself, and
 * the manifest's signature (bundle_sign.h): sign, verify, tamper, wrong key, bad key files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "bundle_sign.h"
#include "bundle_trust.h"
#include "sha256.h"
#include "tensor_types.h"
#include "test_files.h"

/* ---------------------------------------------------------------- helpers */

/* A fresh empty directory under $TMPDIR (or /tmp). */
static char *make_dir(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *path = malloc(strlen(tmp) + 32);
    sprintf(path, "%s/qslm-bundle-XXXXXX", tmp);
    assert_non_null(mkdtemp(path));
    return path;
}

/* Removes a directory made by make_dir and the plain files in it. */
static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = qr_bundle_path(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rmdir(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = qr_bundle_path(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(p);
}

static char *read_file(const char *dir, const char *name, size_t *len)
{
    char *p = qr_bundle_path(dir, name);
    char *text = test_read_whole(p, len);
    assert_non_null(text);
    free(p);
    return text;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static char *dup_str(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

static const char HASH_A[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char HASH_B[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/* A bundle of two variants and one infeasible budget, every member malloc'ed. */
static qr_bundle *sample_bundle(void)
{
    qr_bundle *b = calloc(1, sizeof *b);
    b->model_name = dup_str("spikegpt-sotu");
    b->source_file = dup_str("spikegpt-sotu.qslm");
    memcpy(b->source_sha256, HASH_A, sizeof HASH_A);
    b->created_by = dup_str("qslm-quant 0.1.0 \"test\" / \xc3\xa9");
    b->created = dup_str("2026-12-05T09:30:00Z");
    b->n_variants = 2;
    b->variants = calloc(2, sizeof *b->variants);
    static const char *tensors[] = {"emb.weight", "blocks.0.att.key.weight", "head.weight"};
    for (size_t i = 0; i < 2; i++) {
        qr_bundle_variant *v = &b->variants[i];
        v->name = dup_str(i ? "q4-mixed" : "f16");
        v->file = dup_str(i ? "q4-mixed.qslm" : "f16.qslm");
        memcpy(v->sha256, i ? HASH_B : HASH_A, QR_SHA256_HEX_SIZE);
        v->file_bytes = i ? 5000000 : 17900000;
        v->footprint_bytes = v->file_bytes + 1234567;
        v->has_budget = i == 1;
        v->budget_bytes = i ? 8388608 : 0;
        v->bits_per_weight = i ? 4.734375 : 16.0;
        v->n_setting = 3;
        v->setting = calloc(3, sizeof *v->setting);
        for (size_t j = 0; j < 3; j++) {
            v->setting[j].tensor = dup_str(tensors[j]);
            v->setting[j].type = i ? (j == 2 ? QR_TYPE_Q8_0 : QR_TYPE_Q4_1) : QR_TYPE_F16;
        }
        v->metrics.ppl_test = (qr_bundle_metric){true, i ? 91.23 : 87.56};
        v->metrics.ppl_valid = (qr_bundle_metric){i == 0, 85.1};
        v->metrics.accuracy = (qr_bundle_metric){true, i ? 0.7 : 0.705};
        v->metrics.tokens_per_s = (qr_bundle_metric){true, 1601.25};
        v->metrics.energy_pj_per_token = (qr_bundle_metric){i == 1, 1.0e7 / 3.0};
    }
    /* The second variant's model has two named heads, the second not measured. */
    qr_bundle_variant *v1 = &b->variants[1];
    v1->metrics.n_by_task = 2;
    v1->metrics.by_task = calloc(2, sizeof *v1->metrics.by_task);
    v1->metrics.by_task[0] = (qr_bundle_task_metric){dup_str("sentiment"), {true, 0.7}};
    v1->metrics.by_task[1] = (qr_bundle_task_metric){dup_str("topic_2"), {false, 0}};
    b->n_infeasible = 1;
    b->infeasible = calloc(1, sizeof *b->infeasible);
    b->infeasible[0].budget_bytes = 1048576;
    b->infeasible[0].reason = dup_str("no setting fits 1 MiB: the embedding alone takes 1.6 MiB at q2_0");
    return b;
}

/* ---------------------------------------------------------------- round trip */

static void test_round_trip(void **state)
{
    (void)state;
    qr_bundle *b = sample_bundle();
    char *json;
    size_t len;
    qr_error err = {0};
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_OK);
    assert_int_equal(strlen(json), len);
    assert_true(json[len - 1] == '\n');
    /* Schema order, pretty, and numbers in their shortest exact form. */
    assert_non_null(strstr(json, "{\n  \"format\": \"qslm-bundle\",\n  \"version\": 1,\n  \"model\": {"));
    assert_non_null(strstr(json, "\"accuracy\": 0.705,"));
    assert_non_null(strstr(json, "\"budget_bytes\": null,"));
    assert_non_null(strstr(json, "\"ppl_valid\": null,"));
    assert_non_null(strstr(json, "\"blocks.0.att.key.weight\": \"q4_1\""));
    assert_non_null(strstr(json, "\"energy_pj_per_token\": 3333333.3333333335"));
    assert_non_null(strstr(json, "\"accuracy_by_task\": {\n          \"sentiment\": 0.7,\n          \"topic_2\": null\n        }"));
    assert_true(strstr(json, "\"name\": \"f16\"") < strstr(json, "\"name\": \"q4-mixed\""));

    qr_bundle *back = NULL;
    assert_int_equal(qr_bundle_parse(json, len, "rt.json", &back, &err), QR_OK);
    assert_true(qr_bundle_equal(b, back));
    assert_int_equal(back->variants[1].setting[2].type, QR_TYPE_Q8_0);
    assert_false(back->variants[0].has_budget);
    assert_false(back->variants[1].metrics.ppl_valid.known);
    assert_int_equal(back->variants[0].metrics.n_by_task, 0); /* absent stays absent */
    assert_int_equal(back->variants[1].metrics.n_by_task, 2);
    assert_string_equal(back->variants[1].metrics.by_task[1].task, "topic_2");
    assert_false(back->variants[1].metrics.by_task[1].accuracy.known);
    /* The text is canonical: writing what was read gives the same bytes. */
    char *again;
    size_t again_len;
    assert_int_equal(qr_bundle_to_json(back, &again, &again_len, &err), QR_OK);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, json, len);
    /* -0 is written as 0, the way the reader reads it, so the text stays a fixed point. */
    back->variants[1].metrics.accuracy.value = -0.0;
    free(again);
    assert_int_equal(qr_bundle_to_json(back, &again, &again_len, &err), QR_OK);
    assert_non_null(strstr(again, "\"accuracy\": 0,"));
    /* Any change is seen by qr_bundle_equal, the per-task accuracies' too. */
    back->variants[1].metrics.accuracy.value = 0.7;
    assert_true(qr_bundle_equal(b, back));
    back->variants[1].metrics.by_task[0].accuracy.value = 0.71;
    assert_false(qr_bundle_equal(b, back));
    back->variants[1].metrics.by_task[0].accuracy.value = 0.7;
    assert_true(qr_bundle_equal(b, back));
    back->variants[1].metrics.accuracy.value = 0.7000000000000001;
    assert_false(qr_bundle_equal(b, back));

    size_t index;
    assert_true(qr_bundle_find_variant(b, "q4-mixed", &index));
    assert_int_equal(index, 1);
    assert_false(qr_bundle_find_variant(b, "q3", &index));
    free(again);
    free(json);
    qr_bundle_free(back);
    qr_bundle_free(b);
}

static void test_write_and_load(void **state)
{
    (void)state;
    char *dir = make_dir();
    qr_bundle *b = sample_bundle();
    qr_error err = {0};
    assert_int_equal(qr_bundle_write(b, dir, &err), QR_OK);
    assert_int_equal(count_entries(dir), 1); /* the manifest, no temporary left behind */
    char *path = qr_bundle_path(dir, QR_BUNDLE_MANIFEST);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    free(path);
    qr_bundle *back = NULL;
    assert_int_equal(qr_bundle_load(dir, &back, &err), QR_OK);
    assert_true(qr_bundle_equal(b, back));
    qr_bundle_free(back);
    /* A trailing slash on the directory is fine. */
    char *slashed = malloc(strlen(dir) + 2);
    sprintf(slashed, "%s/", dir);
    assert_int_equal(qr_bundle_load(slashed, &back, &err), QR_OK);
    qr_bundle_free(back);
    free(slashed);
    /* Overwriting replaces. */
    b->variants[0].bits_per_weight = 16.5;
    assert_int_equal(qr_bundle_write(b, dir, &err), QR_OK);
    assert_int_equal(qr_bundle_load(dir, &back, &err), QR_OK);
    assert_true(back->variants[0].bits_per_weight == 16.5);
    qr_bundle_free(back);
    qr_bundle_free(b);
    remove_dir(dir);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *dir = make_dir();
    qr_bundle *b = (qr_bundle *)1;
    qr_error err = {0};
    assert_int_equal(qr_bundle_load(dir, &b, &err), QR_ERR_IO);
    assert_null(b);
    assert_non_null(strstr(err.msg, "manifest.json: cannot open"));
    assert_non_null(strstr(err.msg, dir));
    /* Larger than the limit. */
    size_t big = QR_BUNDLE_MANIFEST_MAX + 1;
    char *text = malloc(big);
    memset(text, ' ', big);
    write_file(dir, QR_BUNDLE_MANIFEST, text, big);
    assert_int_equal(qr_bundle_load(dir, &b, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "limit of a manifest"));
    assert_int_equal(qr_bundle_parse(text, big, "big.json", &b, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "big.json: 4194305 bytes, larger than"));
    free(text);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- validation */

/* A valid manifest, written by hand (not by the writer), that the rules below break. */
static const char BASE[] =
    "{\"format\": \"qslm-bundle\", \"version\": 1,\n"
    " \"model\": {\"name\": \"m\", \"source_file\": \"m.qslm\",\n"
    "   \"source_sha256\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"},\n"
    " \"created_by\": \"test\",\n"
    " \"variants\": [\n"
    "  {\"name\": \"q8\", \"file\": \"q8.qslm\",\n"
    "   \"sha256\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\n"
    "   \"file_bytes\": 1000, \"footprint_bytes\": 2000, \"budget_bytes\": 4096, \"bits_per_weight\": 8.5,\n"
    "   \"setting\": {\"head.weight\": \"q8_0\", \"emb.weight\": \"f16\"},\n"
    "   \"metrics\": {\"ppl_test\": 90.5, \"ppl_valid\": null, \"accuracy\": 0.7, \"tokens_per_s\": 1500,"
    " \"energy_pj_per_token\": null}},\n"
    "  {\"name\": \"q4\", \"file\": \"q4.qslm\",\n"
    "   \"sha256\": \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\",\n"
    "   \"file_bytes\": 600, \"footprint_bytes\": 1600, \"budget_bytes\": null, \"bits_per_weight\": 4.5,\n"
    "   \"setting\": {\"head.weight\": \"q4_0\", \"emb.weight\": \"q4_1\"},\n"
    "   \"metrics\": {\"ppl_test\": null, \"ppl_valid\": null, \"accuracy\": null, \"tokens_per_s\": null,"
    " \"energy_pj_per_token\": 12.5}}\n"
    " ],\n"
    " \"infeasible\": [{\"budget_bytes\": 100, \"reason\": \"too small\"}]}\n";

#define THRU "\x01"

typedef struct {
    const char *find;    /* replaced, at its first occurrence in BASE; "A" THRU "B" is the text from
                            the first A through the first B after it */
    const char *replace;
    const char *expect;  /* the message, after "rule.json: " */
} rule;

static const rule rules[] = {
    /* JSON itself */
    {"\"format\"", "\"format\" ", NULL}, /* control: still valid */
    {"]}\n", "]", "not valid JSON: unexpected end of the text"},
    {"]}\n", "]} x", "not valid JSON: unexpected character"},
    {"]}\n", "]}\n{}", "not valid JSON: unexpected character"},
    {"\"created_by\": \"test\"", "\"created_by\": \"t\xff\"", "not valid JSON: invalid utf-8"},
    {"\"version\": 1,", "\"version\": 1,,", "not valid JSON"},
    {"\"version\": 1,", "\"version\": 01,", "not valid JSON"},
    {"\"test\"", "'test'", "not valid JSON"},
    /* top level */
    {"\"created_by\"", "\"extra\": 1, \"created_by\"", "extra: unknown key"},
    {"\"format\": \"qslm-bundle\", ", "", "format: missing"},
    {"\"qslm-bundle\"", "\"qslm-bundl\"", "format: must be \"qslm-bundle\""},
    {"\"qslm-bundle\"", "7", "format: must be a string"},
    {"\"version\": 1", "\"version\": 2", "version: version 2 is not supported (this build reads 1)"},
    {"\"version\": 1", "\"version\": \"1\"", "version: must be an integer"},
    {"\"version\": 1", "\"version\": 1.0", "version: must be an integer"},
    {"\"created_by\": \"test\"", "\"created_by\": 3", "created_by: must be a string"},
    {"\"created_by\": \"test\"", "\"created_by\": \"\"", "created_by: must not be empty"},
    {"\"created_by\": \"test\"", "\"created_by\": \"a\\u0000b\"", "created_by: must not contain a NUL"},
    {"\"created_by\": \"test\",", "", "created_by: missing"},
    /* created: optional, a UTC time */
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05T09:30:00Z\",", NULL},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2024-02-29T23:59:59Z\",", NULL},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": null,", "created: must be a string"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": 1764927000,", "created: must be a string"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05\",",
     "created: must be a UTC time written YYYY-MM-DDTHH:MM:SSZ"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05T09:30:00+01:00\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05 09:30:00Z\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2025-02-29T00:00:00Z\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-13-05T09:30:00Z\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05T24:00:00Z\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"2026-12-05T09:30:60Z\",",
     "created: must be a UTC time"},
    {"\"created_by\": \"test\",", "\"created_by\": \"test\", \"created\": \"\",", "created: must not be empty"},
    /* model */
    {"{\"name\": \"m\"" THRU "ef\"},", "[],", "model: must be an object"},
    {"\"name\": \"m\"", "\"name\": \"m\", \"checkpoint\": 3", "model.checkpoint: unknown key"},
    {"\"name\": \"m\"", "\"name\": null", "model.name: must be a string"},
    {"\"m.qslm\"", "\"masters/m.qslm\"", "model.source_file: must be a file name (no '/')"},
    {"\"0123456789abcdef0123456789abcdef", "\"0123456789ABCDEF0123456789abcdef",
     "model.source_sha256: must be a SHA-256: 64 lowercase hex digits"},
    {"0123456789abcdef\"}", "0123456789abcde\"}", "model.source_sha256: must be a SHA-256"},
    {"0123456789abcdef\"}", "0123456789abcdef0\"}", "model.source_sha256: must be a SHA-256"},
    {"0123456789abcdef\"}", "0123456789abcdeg\"}", "model.source_sha256: must be a SHA-256"},
    /* variants */
    {"[\n  {\"name\": \"q8\"" THRU " ],", "{\"a\": 1},", "variants: must be an array"},
    {"[\n  {\"name\": \"q8\"" THRU " ],", "[],", "variants: must list at least one variant"},
    {"\"variants\": [", "\"variants\": [3, ", "variants[0]: a variant must be an object"},
    {"\"name\": \"q4\"", "\"name\": \"q4\", \"notes\": \"\"", "variants[1].notes: unknown key"},
    {"\"sha256\": \"bbbb", "\"sha257\": \"bbbb", "variants[1].sha257: unknown key"},
    {"\"file\": \"q4.qslm\",", "", "variants[1].file: missing"},
    {"\"name\": \"q8\"", "\"name\": \"q 8\"", "variants[0].name: must be 1..64 characters of A-Z a-z 0-9 . _ -"},
    {"\"name\": \"q8\"", "\"name\": \"q8/x\"", "variants[0].name: must be 1..64 characters"},
    {"\"name\": \"q8\"", "\"name\": \"q8-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
     "variants[0].name: must be 1..64 characters"},
    {"\"name\": \"q8\"", "\"name\": \"Q8.v2_final-b\"", NULL}, /* every allowed character */
    {"\"name\": \"q8\"", "\"name\": \"q8-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", NULL}, /* 64 */
    {"\"name\": \"q8\"", "\"name\": \"\"", "variants[0].name: must not be empty"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"sub/q8.qslm\"", "variants[0].file: must be a plain file name inside the bundle directory (no '/')"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"/etc/passwd\"", "variants[0].file: must be a plain file name"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"..\"", "variants[0].file: must be a file name, not '.' or '..'"},
    {"\"file\": \"q8.qslm\"", "\"file\": \".\"", "variants[0].file: must be a file name, not '.' or '..'"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"manifest.json\"", "variants[0].file: must not be the manifest or its signature"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"manifest.json.sig\"", "variants[0].file: must not be the manifest"},
    {"\"file\": \"q8.qslm\"", "\"file\": \"..q8\"", NULL}, /* dots inside a name are fine */
    {"\"sha256\": \"bbbb", "\"sha256\": \"Bbbb", "variants[1].sha256: must be a SHA-256"},
    {"\"sha256\": \"aaaa", "\"sha256\": \"aaaa\", \"x\": \"", "variants[0].x: unknown key"},
    {"\"sha256\": \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"", "\"sha256\": 5",
     "variants[1].sha256: must be a string"},
    {"\"file_bytes\": 1000", "\"file_bytes\": -1", "variants[0].file_bytes: must not be negative"},
    {"\"file_bytes\": 1000", "\"file_bytes\": 1000.0", "variants[0].file_bytes: must be a whole number of bytes"},
    {"\"file_bytes\": 1000", "\"file_bytes\": \"1000\"", "variants[0].file_bytes: must be a whole number of bytes"},
    {"\"file_bytes\": 1000", "\"file_bytes\": 1e3", "variants[0].file_bytes: must be a whole number of bytes"},
    {"\"footprint_bytes\": 2000", "\"footprint_bytes\": 9223372036854775807", NULL},
    {"\"footprint_bytes\": 2000", "\"footprint_bytes\": 9223372036854775808", "variants[0].footprint_bytes: too large"},
    {"\"footprint_bytes\": 2000", "\"footprint_bytes\": 18446744073709551616", "variants[0].footprint_bytes: too large"},
    {"\"footprint_bytes\": 2000", "\"footprint_bytes\": -99999999999999999999", "variants[0].footprint_bytes: must not be negative"},
    {"\"footprint_bytes\": 2000", "\"footprint_bytes\": 999",
     "variants[0].footprint_bytes: must be at least file_bytes"},
    {"\"footprint_bytes\": 1600, ", "", "variants[1].footprint_bytes: missing"},
    {"\"budget_bytes\": 4096", "\"budget_bytes\": \"4M\"", "variants[0].budget_bytes: must be a whole number"},
    {"\"budget_bytes\": null, ", "", "variants[1].budget_bytes: missing"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": 0", "variants[0].bits_per_weight: must be in (0, 32], not 0"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": -1", "variants[0].bits_per_weight: must be in (0, 32], not -1"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": 32.5", "variants[0].bits_per_weight: must be in (0, 32]"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": 32", NULL},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": NaN", "variants[0].bits_per_weight: must be a finite number"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": Infinity", "variants[0].bits_per_weight: must be a finite number"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": 1e999", "variants[0].bits_per_weight: must be a finite number"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": \"8.5\"", "variants[0].bits_per_weight: must be a number"},
    {"\"bits_per_weight\": 8.5", "\"bits_per_weight\": null", "variants[0].bits_per_weight: must be a number"},
    /* setting */
    {"\"setting\": {\"head.weight\": \"q8_0\", \"emb.weight\": \"f16\"}", "\"setting\": {}",
     "variants[0].setting: must map at least one tensor to a type"},
    {"{\"head.weight\": \"q8_0\", \"emb.weight\": \"f16\"}", "[\"head.weight\", \"q8_0\"]",
     "variants[0].setting: must be an object"},
    {"\"head.weight\": \"q8_0\"", "\"head.weight\": \"q7_0\"",
     "variants[0].setting[\"head.weight\"]: unknown type \"q7_0\""},
    {"\"head.weight\": \"q8_0\"", "\"head.weight\": \"Q8_0\"", "variants[0].setting[\"head.weight\"]: unknown type"},
    {"\"emb.weight\": \"q4_1\"", "\"emb.weight\": 4", "variants[1].setting[\"emb.weight\"]: must be a string"},
    {"\"head.weight\": \"q8_0\"", "\"\": \"q8_0\"", "variants[0].setting[\"\"]: a tensor name must be 1..255 bytes"},
    {"\"head.weight\": \"q8_0\"", "\"head\\tweight\": \"q8_\"", "variants[0].setting[\"head?weight\"]: unknown type"},
    /* metrics */
    {"\"metrics\": {\"ppl_test\": 90.5", "\"metrics\": {\"bleu\": 3, \"ppl_test\": 90.5",
     "variants[0].metrics.bleu: unknown key"},
    {"\"ppl_valid\": null, \"accuracy\": 0.7", "\"accuracy\": 0.7", "variants[0].metrics.ppl_valid: missing"},
    {"\"metrics\": {\"ppl_test\": 90.5, \"ppl_valid\": null, \"accuracy\": 0.7, \"tokens_per_s\": 1500, "
     "\"energy_pj_per_token\": null}", "\"metrics\": null", "variants[0].metrics: must be an object"},
    {"\"accuracy\": 0.7", "\"accuracy\": 1.5", "variants[0].metrics.accuracy: must be between 0 and 1, not 1.5"},
    {"\"accuracy\": 0.7", "\"accuracy\": -0.1", "variants[0].metrics.accuracy: must be between 0 and 1"},
    {"\"accuracy\": 0.7", "\"accuracy\": 1", NULL},
    {"\"accuracy\": 0.7", "\"accuracy\": -0.0", NULL}, /* read as 0 (fuzzer finding) */
    {"\"ppl_test\": 90.5", "\"ppl_test\": 0.5", "variants[0].metrics.ppl_test: must be at least 1, not 0.5"},
    {"\"ppl_test\": 90.5", "\"ppl_test\": true", "variants[0].metrics.ppl_test: must be a number"},
    {"\"tokens_per_s\": 1500", "\"tokens_per_s\": -3", "variants[0].metrics.tokens_per_s: must be at least 0"},
    {"\"tokens_per_s\": 1500", "\"tokens_per_s\": 100000000000000000000",
     "variants[0].metrics.tokens_per_s: integer out of the 64-bit range"},
    {"\"tokens_per_s\": 1500", "\"tokens_per_s\": 1e20", NULL},
    {"\"tokens_per_s\": 1500", "\"tokens_per_s\": 18446744073709551614", NULL},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": -Infinity",
     "variants[1].metrics.energy_pj_per_token: must be a finite number"},
    /* accuracy_by_task: optional; task names as FORMAT.md's heads have them, accuracies 0..1 */
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": {\"sentiment\": 0.5, \"topic-2\": null}", NULL},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": {}", NULL},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": {\"Sentiment\": 0.5}",
     "variants[1].metrics.accuracy_by_task[\"Sentiment\"]: a task name is 1..32 characters of a-z 0-9 _ -"},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": {\"s\": 1.5}",
     "variants[1].metrics.accuracy_by_task[\"s\"]: must be between 0 and 1, not 1.5"},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": {\"s\": \"0.5\"}",
     "variants[1].metrics.accuracy_by_task[\"s\"]: must be a number"},
    {"\"energy_pj_per_token\": 12.5", "\"energy_pj_per_token\": 12.5, \"accuracy_by_task\": [0.5]",
     "variants[1].metrics.accuracy_by_task: must be an object"},
    /* unique names and files */
    {"\"name\": \"q4\"", "\"name\": \"q8\"", "variants[1].name: \"q8\" is also the name of variants[0]"},
    {"\"file\": \"q4.qslm\"", "\"file\": \"q8.qslm\"", "variants[1].file: \"q8.qslm\" is also the file of variants[0]"},
    /* infeasible */
    {"\"infeasible\": [{\"budget_bytes\": 100, \"reason\": \"too small\"}]", "\"infeasible\": []", NULL},
    {"\"infeasible\": [{", "\"infeasible\": {\"a\": [{", "not valid JSON"},
    {"\"infeasible\": [{\"budget_bytes\": 100, \"reason\": \"too small\"}]", "\"infeasible\": {}",
     "infeasible: must be an array"},
    {", \"reason\": \"too small\"", "", "infeasible[0].reason: missing"},
    {"\"reason\": \"too small\"", "\"reason\": \"too small\", \"when\": 1", "infeasible[0].when: unknown key"},
    {"{\"budget_bytes\": 100", "{\"budget_bytes\": -100", "infeasible[0].budget_bytes: must not be negative"},
    {"[{\"budget_bytes\": 100, \"reason\": \"too small\"}]", "[\"too small\"]", "infeasible[0]: must be an object"},
    {",\n \"infeasible\": [{\"budget_bytes\": 100, \"reason\": \"too small\"}]", "", "infeasible: missing"},
};

/* BASE with rule r applied, malloc'ed. */
static char *apply_rule(const rule *r, size_t *len)
{
    const char *through = strchr(r->find, '\x01');
    size_t head = through ? (size_t)(through - r->find) : strlen(r->find);
    char *start = strndup(r->find, head);
    const char *at = strstr(BASE, start), *end = at && through ? strstr(at + head, through + 1) : NULL;
    free(start);
    if (!at || (through && !end))
        fail_msg("rule's text not in BASE: %s", r->find);
    size_t pre = (size_t)(at - BASE), rl = strlen(r->replace);
    size_t fl = through ? (size_t)(end - at) + strlen(through + 1) : head;
    *len = sizeof BASE - 1 - fl + rl;
    char *s = malloc(*len + 1);
    memcpy(s, BASE, pre);
    memcpy(s + pre, r->replace, rl);
    memcpy(s + pre + rl, at + fl, sizeof BASE - pre - fl);
    return s;
}

static void test_base_is_valid(void **state)
{
    (void)state;
    qr_bundle *b = NULL;
    qr_error err = {0};
    assert_int_equal(qr_bundle_parse(BASE, sizeof BASE - 1, "base.json", &b, &err), QR_OK);
    assert_int_equal(b->n_variants, 2);
    assert_string_equal(b->variants[0].name, "q8");
    assert_int_equal(b->variants[0].file_bytes, 1000);
    assert_true(b->variants[0].has_budget);
    assert_int_equal(b->variants[0].budget_bytes, 4096);
    assert_int_equal(b->variants[0].n_setting, 2);
    assert_string_equal(b->variants[0].setting[0].tensor, "head.weight"); /* order kept */
    assert_int_equal(b->variants[0].setting[1].type, QR_TYPE_F16);
    assert_true(b->variants[0].metrics.tokens_per_s.known);
    assert_true(b->variants[0].metrics.tokens_per_s.value == 1500.0);
    assert_false(b->variants[0].metrics.ppl_valid.known);
    assert_true(b->variants[1].metrics.energy_pj_per_token.value == 12.5);
    assert_int_equal(b->n_infeasible, 1);
    assert_string_equal(b->infeasible[0].reason, "too small");
    qr_bundle_free(b);
}

static void test_validation_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const rule *r = &rules[i];
        size_t len;
        char *text = apply_rule(r, &len);
        qr_bundle *b = (qr_bundle *)1;
        qr_error err = {0};
        qr_status st = qr_bundle_parse(text, len, "rule.json", &b, &err);
        if (!r->expect) {
            if (st != QR_OK)
                fail_msg("rule %zu (%s) should pass: %s", i, r->replace, err.msg);
            qr_bundle_free(b);
        } else {
            if (st != QR_ERR_FORMAT)
                fail_msg("rule %zu (%s): status %d, expected a format error", i, r->replace, st);
            assert_null(b);
            if (strncmp(err.msg, "rule.json: ", 11) != 0 || !strstr(err.msg, r->expect))
                fail_msg("rule %zu: message \"%s\" lacks \"%s\"", i, err.msg, r->expect);
        }
        free(text);
    }
}

static void test_json_edge_cases(void **state)
{
    (void)state;
    qr_bundle *b = NULL;
    qr_error err = {0};
    static const struct {
        const char *text;
        size_t len;
        const char *expect;
    } cases[] = {
        {"", 0, "x.json: not valid JSON: unexpected end of the text at byte 0"},
        {"[]", 2, "x.json: the manifest must be a JSON object"},
        {"null", 4, "x.json: not valid JSON"}, /* json-c wants more after a bare literal */
        {"{} ", 3, "x.json: format: missing"},
        {"{}\0{}", 5, "x.json: not valid JSON: unexpected NUL byte at byte 2"},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 96,
         "x.json: not valid JSON: nesting too deep"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(qr_bundle_parse(cases[i].text, cases[i].len, "x.json", &b, &err), QR_ERR_FORMAT);
        if (!strstr(err.msg, cases[i].expect))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].expect);
    }
}

/* The writer refuses what the reader would, with the reader's message and QR_ERR_INVALID. */
static void test_writer_refuses_invalid(void **state)
{
    (void)state;
    qr_error err = {0};
    char *json = (char *)1;
    size_t len;
    qr_bundle *b = sample_bundle();
    free(b->variants[1].name);
    b->variants[1].name = dup_str("bad name");
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_null(json);
    assert_non_null(strstr(err.msg, "variants[1].name: must be 1..64 characters"));
    free(b->variants[1].name);
    b->variants[1].name = dup_str("f16");
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "variants[1].name: \"f16\" is also the name of variants[0]"));
    free(b->variants[1].name);
    b->variants[1].name = dup_str("q4");

    b->variants[0].bits_per_weight = 0.0 / 0.0;
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "variants[0].bits_per_weight: must be a finite number"));
    b->variants[0].bits_per_weight = 16.0;

    b->variants[0].setting[1].type = 99;
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "setting[\"blocks.0.att.key.weight\"]: unknown type"));
    b->variants[0].setting[1].type = QR_TYPE_F16;

    free(b->variants[0].setting[1].tensor);
    b->variants[0].setting[1].tensor = dup_str("emb.weight");
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "variants[0].setting: tensor \"emb.weight\" is listed twice"));
    free(b->variants[0].setting[1].tensor);
    b->variants[0].setting[1].tensor = dup_str("blocks.0.att.key.weight");

    char *name = b->model_name;
    b->model_name = NULL;
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "model.name: must be a string"));
    b->model_name = name;

    b->variants[1].budget_bytes = (uint64_t)1 << 63;
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "variants[1].budget_bytes: too large"));
    b->variants[1].budget_bytes = 1;

    b->source_sha256[3] = 'X';
    char *dir = make_dir();
    assert_int_equal(qr_bundle_write(b, dir, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "model.source_sha256"));
    assert_int_equal(count_entries(dir), 0); /* nothing written */
    b->source_sha256[3] = '3';
    assert_int_equal(qr_bundle_to_json(b, &json, &len, &err), QR_OK);
    free(json);
    qr_bundle_free(b);
    remove_dir(dir);
}

static void test_write_to_missing_directory(void **state)
{
    (void)state;
    qr_bundle *b = sample_bundle();
    qr_error err = {0};
    assert_int_equal(qr_bundle_write(b, "/nonexistent/bundle", &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/bundle/manifest.json"));
    qr_bundle_free(b);
}

/* ---------------------------------------------------------------- SHA-256 */

static void test_sha256(void **state)
{
    (void)state;
    uint8_t d[QR_SHA256_BYTES];
    char hex[QR_SHA256_HEX_SIZE];
    qr_error err = {0};
    /* FIPS 180-2 test vectors. */
    assert_int_equal(qr_sha256_buffer("abc", 3, "abc", d, &err), QR_OK);
    qr_sha256_to_hex(d, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(qr_sha256_buffer("", 0, "empty", d, &err), QR_OK);
    qr_sha256_to_hex(d, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    uint8_t back[QR_SHA256_BYTES];
    assert_true(qr_sha256_from_hex(hex, back));
    assert_memory_equal(back, d, sizeof d);
    assert_false(qr_sha256_from_hex("e3b0", NULL));
    assert_false(qr_sha256_from_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", NULL));

    /* A file of a million 'a's, read in chunks: the FIPS long vector. */
    char *dir = make_dir();
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    write_file(dir, "a", a, 1000000);
    char *path = qr_bundle_path(dir, "a");
    uint64_t bytes = 0;
    assert_int_equal(qr_sha256_file(path, d, &bytes, &err), QR_OK);
    assert_int_equal(bytes, 1000000);
    qr_sha256_to_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(path);
    free(a);
    path = qr_bundle_path(dir, "missing");
    assert_int_equal(qr_sha256_file(path, d, &bytes, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "cannot open"));
    free(path);
    assert_int_equal(qr_sha256_file(dir, d, NULL, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    remove_dir(dir);
}

/* ---------------------------------------------------------------- variant hashes */

/* A bundle directory with two variant files whose sizes and hashes the manifest records. */
static qr_bundle *bundle_with_files(const char *dir)
{
    qr_bundle *b = sample_bundle();
    for (size_t i = 0; i < b->n_variants; i++) {
        size_t n = 3000 + 1000 * i;
        char *data = malloc(n);
        for (size_t j = 0; j < n; j++)
            data[j] = (char)(j * 7 + i);
        write_file(dir, b->variants[i].file, data, n);
        uint8_t d[QR_SHA256_BYTES];
        qr_error err;
        assert_int_equal(qr_sha256_buffer(data, n, "data", d, &err), QR_OK);
        qr_sha256_to_hex(d, b->variants[i].sha256);
        b->variants[i].file_bytes = n;
        free(data);
    }
    return b;
}

static void test_verify_variant(void **state)
{
    (void)state;
    char *dir = make_dir();
    qr_bundle *b = bundle_with_files(dir);
    qr_error err = {0};
    assert_int_equal(qr_bundle_verify_variant(b, dir, 0, &err), QR_OK);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_OK);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 2, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "no variant 2 (the bundle has 2)"));

    /* One byte changed, same size: the hash catches it and both hashes are shown. */
    size_t len;
    char *data = read_file(dir, "q4-mixed.qslm", &len);
    data[1234] ^= 1;
    write_file(dir, "q4-mixed.qslm", data, len);
    uint8_t d[QR_SHA256_BYTES];
    char actual[QR_SHA256_HEX_SIZE];
    assert_int_equal(qr_sha256_buffer(data, len, "data", d, &err), QR_OK);
    qr_sha256_to_hex(d, actual);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "q4-mixed.qslm: variant 'q4-mixed': SHA-256 mismatch"));
    assert_non_null(strstr(err.msg, b->variants[1].sha256));
    assert_non_null(strstr(err.msg, actual));
    assert_non_null(strstr(err.msg, dir));
    assert_int_equal(qr_bundle_verify_variant(b, dir, 0, &err), QR_OK); /* the other is fine */

    /* Truncated, and grown. */
    write_file(dir, "q4-mixed.qslm", data, len - 1);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "q4-mixed.qslm: variant 'q4-mixed': 3999 bytes, the manifest says 4000 (truncated?)"));
    data[1234] ^= 1;
    write_file(dir, "q4-mixed.qslm", data, len);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_OK);
    char *more = malloc(len + 1);
    memcpy(more, data, len);
    more[len] = 0;
    write_file(dir, "q4-mixed.qslm", more, len + 1);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "4001 bytes, the manifest says 4000"));
    free(more);
    free(data);

    /* Missing, and a directory in its place. */
    char *path = qr_bundle_path(dir, "q4-mixed.qslm");
    unlink(path);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "q4-mixed.qslm: variant 'q4-mixed': cannot open: No such file"));
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(qr_bundle_verify_variant(b, dir, 1, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    free(path);
    qr_bundle_free(b);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- signatures */

typedef struct {
    char *dir;                 /* a signed bundle */
    char *keys;                /* key files */
    char *priv, *pub;          /* the bundle's key pair */
    char *priv2, *pub2;        /* another pair */
} signed_bundle;

static void make_signed(signed_bundle *s)
{
    s->dir = make_dir();
    s->keys = make_dir();
    s->priv = qr_bundle_path(s->keys, "bundle.key");
    s->pub = qr_bundle_path(s->keys, "bundle.pub");
    s->priv2 = qr_bundle_path(s->keys, "other.key");
    s->pub2 = qr_bundle_path(s->keys, "other.pub");
    qr_error err = {0};
    assert_int_equal(qr_sign_keygen(s->priv, s->pub, &err), QR_OK);
    assert_int_equal(qr_sign_keygen(s->priv2, s->pub2, &err), QR_OK);
    qr_bundle *b = bundle_with_files(s->dir);
    assert_int_equal(qr_bundle_write(b, s->dir, &err), QR_OK);
    qr_bundle_free(b);
    assert_int_equal(qr_bundle_sign(s->dir, s->priv, &err), QR_OK);
}

static void free_signed(signed_bundle *s)
{
    free(s->priv);
    free(s->pub);
    free(s->priv2);
    free(s->pub2);
    remove_dir(s->keys);
    remove_dir(s->dir);
}

static void test_keygen_files(void **state)
{
    (void)state;
    signed_bundle s;
    make_signed(&s);
    struct stat st;
    assert_int_equal(stat(s.priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t len;
    char *pem = read_file(s.keys, "bundle.key", &len);
    assert_non_null(strstr(pem, "-----BEGIN EC PRIVATE KEY-----"));
    free(pem);
    pem = read_file(s.keys, "bundle.pub", &len);
    assert_non_null(strstr(pem, "-----BEGIN PUBLIC KEY-----"));
    assert_null(strstr(pem, "PRIVATE"));
    free(pem);
    /* An existing key is never overwritten, and no half pair is left. */
    qr_error err = {0};
    char *fresh = qr_bundle_path(s.keys, "fresh.key");
    assert_int_equal(qr_sign_keygen(fresh, s.pub, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, s.pub));
    assert_non_null(strstr(err.msg, "File exists"));
    assert_int_not_equal(access(fresh, F_OK), 0);
    assert_int_equal(qr_sign_keygen(s.priv, fresh, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, s.priv));
    assert_int_not_equal(access(fresh, F_OK), 0);
    free(fresh);
    /* The signature file: DER, a SEQUENCE of at most 72 bytes, then "key-id <the key's id>\n". */
    char *sig = read_file(s.dir, QR_BUNDLE_SIGNATURE, &len);
    assert_true(len >= 8 + QR_SIG_KEY_ID_LINE && len <= QR_SIG_FILE_MAX);
    size_t der = len - QR_SIG_KEY_ID_LINE;
    assert_int_equal((unsigned char)sig[0], 0x30);
    assert_int_equal((unsigned char)sig[1], der - 2);
    char id[QR_KEY_ID_LEN + 1], id_priv[QR_KEY_ID_LEN + 1], line[QR_SIG_KEY_ID_LINE + 1];
    assert_int_equal(qr_sign_key_id(s.pub, false, id, &err), QR_OK);
    assert_int_equal(qr_sign_key_id(s.priv, true, id_priv, &err), QR_OK);
    assert_string_equal(id, id_priv);
    snprintf(line, sizeof line, "key-id %s\n", id);
    assert_memory_equal(sig + der, line, QR_SIG_KEY_ID_LINE);
    free(sig);
    free_signed(&s);
}

/* The signature file with its key-id line cut off: the DER alone, as openssl writes it. */
static size_t strip_key_id(const char *dir)
{
    size_t len;
    char *sig = read_file(dir, QR_BUNDLE_SIGNATURE, &len);
    assert_true(len > QR_SIG_KEY_ID_LINE);
    write_file(dir, QR_BUNDLE_SIGNATURE, sig, len - QR_SIG_KEY_ID_LINE);
    free(sig);
    return len - QR_SIG_KEY_ID_LINE;
}

static void test_sign_verify(void **state)
{
    (void)state;
    signed_bundle s;
    make_signed(&s);
    qr_error err = {0};
    char id[QR_KEY_ID_LEN + 1], id2[QR_KEY_ID_LEN + 1], got[QR_KEY_ID_LEN + 1];
    assert_int_equal(qr_sign_key_id(s.pub, false, id, &err), QR_OK);
    assert_int_equal(qr_sign_key_id(s.pub2, false, id2, &err), QR_OK);
    assert_string_not_equal(id, id2);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_OK);
    qr_bundle *b = NULL;
    assert_int_equal(qr_bundle_load_verified(s.dir, s.pub, &b, got, &err), QR_OK);
    assert_string_equal(got, id);
    assert_int_equal(b->n_variants, 2);
    assert_int_equal(qr_bundle_verify_variant(b, s.dir, 0, &err), QR_OK);
    qr_bundle_free(b);

    /* Wrong key: the signature names the key that made it. */
    char want[256];
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub2, &err), QR_ERR_FORMAT);
    snprintf(want, sizeof want, "manifest.json: signature refused (unknown key; key %s): signed by key %s, which "
             "is not trusted (trusted: %s)", id, id, id2);
    assert_non_null(strstr(err.msg, want));
    b = (qr_bundle *)1;
    assert_int_equal(qr_bundle_load_verified(s.dir, s.pub2, &b, NULL, &err), QR_ERR_FORMAT);
    assert_null(b);

    /* A flipped byte in the manifest: every byte position is covered by the signature. */
    size_t len;
    char *text = read_file(s.dir, QR_BUNDLE_MANIFEST, &len);
    snprintf(want, sizeof want, "signature refused (bad signature; key %s): trusted key %s (%s) does not verify it",
             id, id, s.pub);
    for (size_t pos = 0; pos < len; pos += len / 7) {
        text[pos] ^= 0x20;
        write_file(s.dir, QR_BUNDLE_MANIFEST, text, len);
        assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
        assert_non_null(strstr(err.msg, want));
        text[pos] ^= 0x20;
    }
    /* A byte more (trailing newline) is a different manifest too. */
    char *more = malloc(len + 1);
    memcpy(more, text, len);
    more[len] = '\n';
    write_file(s.dir, QR_BUNDLE_MANIFEST, more, len + 1);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
    free(more);
    write_file(s.dir, QR_BUNDLE_MANIFEST, text, len);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_OK);
    free(text);

    /* The signature itself damaged: a flipped byte of the DER, truncated, empty, too long, a
     * key-id line that is not one. */
    char *sig = read_file(s.dir, QR_BUNDLE_SIGNATURE, &len);
    size_t der = len - QR_SIG_KEY_ID_LINE;
    sig[der - 3] ^= 1;
    write_file(s.dir, QR_BUNDLE_SIGNATURE, sig, len);
    assert_int_not_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_OK);
    assert_int_equal(err.status, QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "(bad signature; key "));
    sig[der - 3] ^= 1;
    const size_t cuts[] = {len - 1, der - 1, 1, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_file(s.dir, QR_BUNDLE_SIGNATURE, sig, cuts[i]);
        assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "signature refused (bad signature; key none): manifest.json.sig: not a DER "
                                        "ECDSA P-256 signature"));
    }
    char big[200];
    memset(big, 0x30, sizeof big);
    write_file(s.dir, QR_BUNDLE_SIGNATURE, big, sizeof big);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
    sig[len - 2] = 'G'; /* not a hex digit */
    write_file(s.dir, QR_BUNDLE_SIGNATURE, sig, len);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not a DER ECDSA P-256 signature"));
    /* A line naming another key does not decide: the key that verifies it does. */
    memcpy(sig + der + strlen(QR_SIG_KEY_ID_PREFIX), id2, QR_KEY_ID_LEN);
    write_file(s.dir, QR_BUNDLE_SIGNATURE, sig, len);
    assert_int_equal(qr_bundle_load_verified(s.dir, s.pub, &b, got, &err), QR_OK);
    assert_string_equal(got, id);
    qr_bundle_free(b);
    free(sig);

    /* The DER alone (openssl's, or before key ids): still good under its key; under another it
     * names no key. */
    assert_int_equal(qr_bundle_sign(s.dir, s.priv, &err), QR_OK);
    strip_key_id(s.dir);
    assert_int_equal(qr_bundle_load_verified(s.dir, s.pub, &b, got, &err), QR_OK);
    assert_string_equal(got, id);
    qr_bundle_free(b);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub2, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "signature refused (unknown key; key none): no trusted key"));
    assert_non_null(strstr(err.msg, "it names no key"));

    /* No signature at all. */
    char *sig_path = qr_bundle_path(s.dir, QR_BUNDLE_SIGNATURE);
    unlink(sig_path);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "manifest.json: signature refused (unsigned; key none): there is no "));
    assert_non_null(strstr(err.msg, sig_path));
    assert_int_equal(qr_bundle_load_verified(s.dir, s.pub, &b, NULL, &err), QR_ERR_NOT_FOUND);
    free(sig_path);

    /* Re-signed with the other key, it verifies under that key only. */
    assert_int_equal(qr_bundle_sign(s.dir, s.priv2, &err), QR_OK);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub2, &err), QR_OK);
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.pub, &err), QR_ERR_FORMAT);
    free_signed(&s);
}

static void test_bad_key_files(void **state)
{
    (void)state;
    signed_bundle s;
    make_signed(&s);
    qr_error err = {0};
    char *garbage = qr_bundle_path(s.keys, "garbage.pem");
    static const char junk[] = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    write_file(s.keys, "garbage.pem", junk, sizeof junk - 1);
    assert_int_equal(qr_bundle_verify_signature(s.dir, garbage, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, garbage));
    assert_non_null(strstr(err.msg, "not a public key file"));
    char id[QR_KEY_ID_LEN + 1];
    assert_int_equal(qr_sign_key_id(garbage, false, id, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, garbage));
    assert_int_equal(qr_bundle_sign(s.dir, garbage, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, garbage));
    assert_non_null(strstr(err.msg, "not a private key file"));
    write_file(s.keys, "garbage.pem", "\x01\x02\x03", 3);
    assert_int_equal(qr_bundle_verify_signature(s.dir, garbage, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, garbage));
    write_file(s.keys, "garbage.pem", "", 0);
    assert_int_equal(qr_bundle_sign(s.dir, garbage, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, garbage));
    free(garbage);

    /* A private key where a public one is wanted, and the reverse. */
    assert_int_equal(qr_bundle_verify_signature(s.dir, s.priv, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, s.priv));
    assert_int_equal(qr_bundle_sign(s.dir, s.pub, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, s.pub));

    /* Missing key files. */
    char *missing = qr_bundle_path(s.keys, "missing.pem");
    assert_int_equal(qr_bundle_verify_signature(s.dir, missing, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, missing));
    assert_int_equal(qr_bundle_sign(s.dir, missing, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, missing));
    free(missing);

    /* A key on another curve (P-384, from `openssl ecparam -name secp384r1 -genkey`). */
    static const char p384[] =
        "-----BEGIN PUBLIC KEY-----\n"
        "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEWO6lDBI3dgAUBMFrjuaY91JeblmnLdy1\n"
        "qfAn//cqlT6+JCbVpeTSyzubmwgvXuhHEF63IyFS0k+lDnPgSgKjIkDlsP3hZ2Ec\n"
        "q0YBfjr/pJfxjSW2thJup2xcmb9lOGG1\n"
        "-----END PUBLIC KEY-----\n";
    write_file(s.keys, "p384.pub", p384, sizeof p384 - 1);
    char *p384_path = qr_bundle_path(s.keys, "p384.pub");
    assert_int_equal(qr_bundle_verify_signature(s.dir, p384_path, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not an EC P-256 (secp256r1) key"));
    free(p384_path);

    /* The manifest must be one the reader accepts before it is signed. */
    write_file(s.dir, QR_BUNDLE_MANIFEST, "{}", 2);
    assert_int_equal(qr_bundle_sign(s.dir, s.priv, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "format: missing"));
    free_signed(&s);
}

/* A key id is what openssl computes from the public key file:
 *   openssl ecparam -name prime256v1 -genkey -noout -out k.key && openssl ec -in k.key -pubout -out k.pub
 *   openssl pkey -pubin -in k.pub -outform DER | sha256sum | cut -c1-16      -> 821e527d1b7bae1b */
static void test_key_id_openssl(void **state)
{
    (void)state;
    static const char pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzL1/EqkhXbv0VrxAIKkDuSJTPv5o\n"
                              "Qa7pw3CRxbEwYhjdG2lQ48fCBMDCo63YjrQ2GAtcU3csvryD4dSEYCauDg==\n"
                              "-----END PUBLIC KEY-----\n";
    char *dir = make_dir();
    write_file(dir, "k.pub", pem, sizeof pem - 1);
    char *path = qr_bundle_path(dir, "k.pub");
    char id[QR_KEY_ID_LEN + 1];
    qr_error err = {0};
    assert_int_equal(qr_sign_key_id(path, false, id, &err), QR_OK);
    assert_string_equal(id, "821e527d1b7bae1b");
    qr_pubkey *k = NULL;
    assert_int_equal(qr_pubkey_load(path, &k, &err), QR_OK);
    assert_string_equal(qr_pubkey_id(k), "821e527d1b7bae1b");
    assert_string_equal(qr_pubkey_path(k), path);
    qr_pubkey_free(k);
    free(path);
    remove_dir(dir);
}

/* qr_bundle_load_trusted with a set of keys: any of them will do, the verdicts and key ids of
 * the refusals, and no keys at all (nothing checked, but what is there is said). */
static void test_trusted_set(void **state)
{
    (void)state;
    signed_bundle s;
    make_signed(&s);
    qr_error err = {0};
    qr_pubkey *a = NULL, *b2 = NULL;
    assert_int_equal(qr_pubkey_load(s.pub, &a, &err), QR_OK);
    assert_int_equal(qr_pubkey_load(s.pub2, &b2, &err), QR_OK);
    qr_pubkey *both[2] = {b2, a}, *only_b[1] = {b2};
    qr_sig_result res;
    qr_bundle *b = NULL;
    size_t len;
    char *text = read_file(s.dir, QR_BUNDLE_MANIFEST, &len);
    uint8_t digest[QR_SHA256_BYTES];
    char sha[QR_SHA256_HEX_SIZE];
    assert_int_equal(qr_sha256_buffer(text, len, "m", digest, &err), QR_OK);
    qr_sha256_to_hex(digest, sha);

    assert_int_equal(qr_bundle_load_trusted(s.dir, both, 2, &b, &res, &err), QR_OK);
    assert_int_equal(res.verdict, QR_SIG_GOOD);
    assert_string_equal(res.key_id, qr_pubkey_id(a));
    assert_int_equal(res.key_index, 1);
    assert_string_equal(res.manifest_sha256, sha);
    qr_bundle_free(b);

    assert_int_equal(qr_bundle_load_trusted(s.dir, only_b, 1, &b, &res, &err), QR_ERR_FORMAT);
    assert_null(b);
    assert_int_equal(res.verdict, QR_SIG_UNKNOWN_KEY);
    assert_string_equal(res.key_id, qr_pubkey_id(a));
    assert_string_equal(res.manifest_sha256, sha);

    /* No keys: nothing is checked; the signature and the key it names are reported. */
    assert_int_equal(qr_bundle_load_trusted(s.dir, NULL, 0, &b, &res, &err), QR_OK);
    assert_int_equal(res.verdict, QR_SIG_UNCHECKED);
    assert_string_equal(res.key_id, qr_pubkey_id(a));
    qr_bundle_free(b);
    char *sig_path = qr_bundle_path(s.dir, QR_BUNDLE_SIGNATURE);
    size_t sig_len;
    char *sig = read_file(s.dir, QR_BUNDLE_SIGNATURE, &sig_len);
    unlink(sig_path);
    assert_int_equal(qr_bundle_load_trusted(s.dir, NULL, 0, &b, &res, &err), QR_OK);
    assert_int_equal(res.verdict, QR_SIG_UNSIGNED);
    assert_string_equal(res.key_id, "");
    qr_bundle_free(b);
    assert_int_equal(qr_bundle_load_trusted(s.dir, both, 2, &b, &res, &err), QR_ERR_NOT_FOUND);
    assert_int_equal(res.verdict, QR_SIG_UNSIGNED);
    /* a signature that cannot be read: no keys, no matter ("not checked"); with keys, an error */
    assert_int_equal(mkdir(sig_path, 0755), 0);
    assert_int_equal(qr_bundle_load_trusted(s.dir, NULL, 0, &b, &res, &err), QR_OK);
    assert_int_equal(res.verdict, QR_SIG_UNCHECKED);
    qr_bundle_free(b);
    assert_int_equal(qr_bundle_load_trusted(s.dir, both, 2, &b, &res, &err), QR_ERR_IO);
    assert_null(b);
    assert_non_null(strstr(err.msg, sig_path));
    assert_int_equal(rmdir(sig_path), 0);

    /* qr_sig_check over bytes: the same verdicts without files; with no keys it refuses to judge. */
    assert_int_equal(qr_sig_check(both, 2, text, len, (uint8_t *)sig, sig_len, "m", &res, &err), QR_OK);
    assert_int_equal(res.verdict, QR_SIG_GOOD);
    text[0] ^= 1;
    assert_int_equal(qr_sig_check(both, 2, text, len, (uint8_t *)sig, sig_len, "m", &res, &err), QR_ERR_FORMAT);
    assert_int_equal(res.verdict, QR_SIG_BAD);
    assert_string_equal(res.key_id, qr_pubkey_id(a));
    assert_int_equal(qr_sig_check(both, 0, text, len, (uint8_t *)sig, sig_len, "m", &res, &err), QR_ERR_INVALID);
    assert_int_equal(strcmp(qr_sig_verdict_name(QR_SIG_UNKNOWN_KEY), "unknown key"), 0);
    free(sig);
    free(sig_path);
    free(text);
    qr_pubkey_free(a);
    qr_pubkey_free(b2);

    /* A private key is not a trusted key. */
    assert_int_equal(qr_pubkey_load(s.priv, &a, &err), QR_ERR_FORMAT);
    assert_null(a);
    assert_non_null(strstr(err.msg, s.priv));
    free_signed(&s);
}

static void test_sign_data(void **state)
{
    (void)state;
    signed_bundle s;
    make_signed(&s);
    qr_error err = {0};
    uint8_t sig[QR_SIG_MAX_BYTES], sig2[QR_SIG_MAX_BYTES];
    size_t n, n2;
    assert_int_equal(qr_sign_data(s.priv, "hello", 5, sig, &n, &err), QR_OK);
    assert_int_equal(qr_sign_verify_data(s.pub, "hello", 5, sig, n, "hello", &err), QR_OK);
    assert_int_equal(qr_sign_verify_data(s.pub, "hellp", 5, sig, n, "hellp", &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "hellp: the signature does not match"));
    assert_int_equal(qr_sign_verify_data(s.pub2, "hello", 5, sig, n, "hello", &err), QR_ERR_FORMAT);
    /* RFC 6979: the same key and data give the same signature. */
    assert_int_equal(qr_sign_data(s.priv, "hello", 5, sig2, &n2, &err), QR_OK);
    assert_int_equal(n2, n);
    assert_memory_equal(sig, sig2, n);
    /* Empty data is data too. */
    assert_int_equal(qr_sign_data(s.priv, "", 0, sig, &n, &err), QR_OK);
    assert_int_equal(qr_sign_verify_data(s.pub, "", 0, sig, n, "empty", &err), QR_OK);
    free_signed(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_and_load),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_validation_rules),
        cmocka_unit_test(test_json_edge_cases),
        cmocka_unit_test(test_writer_refuses_invalid),
        cmocka_unit_test(test_write_to_missing_directory),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_verify_variant),
        cmocka_unit_test(test_keygen_files),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_bad_key_files),
        cmocka_unit_test(test_key_id_openssl),
        cmocka_unit_test(test_trusted_set),
        cmocka_unit_test(test_sign_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
