/* test_tokenizer_hf.c: the C tokenizer against the reference Hugging Face tokenizer, id for id,
 * on 1.25 MB of text, with GPT-NeoX's 20B_tokenizer.json and with our models/tokenizer.json.
 *
 * The golden files (tests/data/tokenizer/golden_hf_*.json) were written by make_golden_hf.js with
 * npm @anush008/tokenizers@0.6.0 (Rust tokenizers 0.22.2); its header says how and what the
 * corpus is. Per document this checks the text is the one the reference saw (sha256), then every
 * id: the count, a hash per block of 64 ids, the sha256 of all of them, and, where the golden file
 * has them (the Unicode stress text), the ids themselves. A mismatch prints the document and the
 * first differing position (exact with full ids, else the first differing block, and our ids
 * there). It also checks the round trip decode(encode(text)) == the text normalized as the
 * tokenizer's normalizer says (NFC for 20B, checked with utf8proc's own NFC), as the reference's
 * decode does. Needs $QSLM_DATA_DIR (scripts/fetch-data.sh): without it, exit 77 (skipped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <json.h>
#include <utf8proc.h>

#include "sha256.h"
#include "test_files.h"
#include "tokenizer.h"
#include "unicode.h"

static const char *source_dir(void)
{
    const char *s = getenv("QSLM_SOURCE_DIR");
    return s ? s : ".";
}

static const char *data_dir(void)
{
    const char *s = getenv("QSLM_DATA_DIR");
    return s ? s : ".data";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *str_of(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static int64_t int_of(json_object *o, const char *key)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_int));
    return json_object_get_int64(v);
}

/* Latin-1 bytes -> UTF-8 (each byte is the code point of the same value), malloc'ed. */
static char *latin1_to_utf8(const char *s, size_t len, size_t *out_len)
{
    char *out = malloc(2 * len + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xC0 | c >> 6);
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static void sha256_hex(const void *p, size_t n, char hex[QR_SHA256_HEX_SIZE])
{
    uint8_t d[QR_SHA256_BYTES];
    qr_error err = {0};
    assert_int_equal(qr_sha256_buffer(p, n, "test", d, &err), QR_OK);
    qr_sha256_to_hex(d, hex);
}

/* FNV-1a 64 over the little-endian bytes of ids[0..n), as make_golden_hf.js hashes a block. */
static uint64_t block_hash(const int32_t *ids, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            h = (h ^ ((uint32_t)ids[i] >> (8 * k) & 0xFF)) * 0x100000001b3ull;
    return h;
}

/* Prints our ids from `from` (a few) and the text they decode to, for a mismatch report. */
static void show_ids(const qr_tokenizer *t, const int32_t *ids, size_t n, size_t from)
{
    size_t to = from + 12 < n ? from + 12 : n;
    fprintf(stderr, "  ours from %zu:", from);
    for (size_t i = from; i < to; i++) {
        size_t len;
        const uint8_t *b = qr_tokenizer_decode_token(t, ids[i], &len);
        fprintf(stderr, " %d\"%.*s\"", (int)ids[i], (int)len, (const char *)b);
    }
    fprintf(stderr, "\n");
}

/* Compares our ids for one document with the golden entry; returns false (after printing where)
 * on the first difference. */
static bool compare_ids(const qr_tokenizer *t, const char *source, json_object *doc,
                        const int32_t *ids, size_t n, size_t block)
{
    json_object *full;
    if (json_object_object_get_ex(doc, "ids", &full)) {
        size_t want_n = json_object_array_length(full);
        size_t m = n < want_n ? n : want_n;
        for (size_t i = 0; i < m; i++) {
            int32_t want = (int32_t)json_object_get_int(json_object_array_get_idx(full, i));
            if (ids[i] != want) {
                fprintf(stderr, "%s: id %zu is %d, the reference has %d\n", source, i, (int)ids[i],
                        (int)want);
                show_ids(t, ids, n, i > 4 ? i - 4 : 0);
                return false;
            }
        }
        if (n != want_n) {
            fprintf(stderr, "%s: %zu ids, the reference has %zu (equal up to there)\n", source, n,
                    want_n);
            return false;
        }
    }
    const char *blocks = str_of(doc, "blocks");
    size_t n_blocks = 0;
    for (size_t b = 0; b * block < n; b++, n_blocks++) {
        size_t k = n - b * block < block ? n - b * block : block;
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)block_hash(ids + b * block, k));
        const char *want = blocks + b * 17;
        if (strlen(blocks) < b * 17 + 16 || memcmp(want, hex, 16) != 0) {
            fprintf(stderr, "%s: first difference in ids %zu..%zu (block %zu of %zu ids)\n", source,
                    b * block, b * block + k - 1, b, n);
            show_ids(t, ids, n, b * block);
            return false;
        }
    }
    if ((size_t)int_of(doc, "n_ids") != n || strlen(blocks) != (n_blocks ? n_blocks * 17 - 1 : 0)) {
        fprintf(stderr, "%s: %zu ids, the reference has %lld (equal up to there)\n", source, n,
                (long long)int_of(doc, "n_ids"));
        return false;
    }
    uint8_t *le = malloc(4 * n + 1);
    assert_non_null(le);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            le[4 * i + (size_t)k] = (uint8_t)((uint32_t)ids[i] >> (8 * k));
    char hex[QR_SHA256_HEX_SIZE];
    sha256_hex(le, 4 * n, hex);
    free(le);
    if (strcmp(hex, str_of(doc, "ids_sha256")) != 0) {
        fprintf(stderr, "%s: the ids' sha256 differs though every block hash matched\n", source);
        return false;
    }
    return true;
}

/* Runs one golden file: every document's ids, and the round trip. */
static void run_golden(const char *golden_name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/tokenizer/%s", source_dir(), golden_name);
    json_object *g = json_object_from_file(path);
    if (!g)
        fail_msg("cannot read %s", path);
    snprintf(path, sizeof path, "%s/%s", source_dir(), str_of(g, "tokenizer"));
    char hex[QR_SHA256_HEX_SIZE];
    size_t tok_len;
    char *tok_json = test_read_whole(path, &tok_len);
    assert_non_null(tok_json);
    sha256_hex(tok_json, tok_len, hex);
    free(tok_json);
    if (strcmp(hex, str_of(g, "tokenizer_sha256")) != 0)
        fail_msg("%s is not the tokenizer the golden ids were made with", path);

    double t0 = now_s();
    qr_tokenizer *t = NULL;
    qr_error err = {0};
    if (qr_tokenizer_load_hf_file(path, &t, &err) != QR_OK)
        fail_msg("%s", err.msg);
    double t_load = now_s() - t0;
    bool nfc = strcmp(str_of(g, "decode_rule"), "NFC") == 0;
    assert_true(nfc || strcmp(str_of(g, "decode_rule"), "identity") == 0);
    size_t block = (size_t)int_of(g, "block");

    json_object *docs;
    assert_true(json_object_object_get_ex(g, "docs", &docs));
    size_t n_docs = json_object_array_length(docs), bad = 0, total_bytes = 0, total_ids = 0;
    double t_encode = 0;
    for (size_t d = 0; d < n_docs; d++) {
        json_object *doc = json_object_array_get_idx(docs, d);
        const char *source = str_of(doc, "source");
        bool in_repo = strncmp(source, "tests/", 6) == 0;
        snprintf(path, sizeof path, "%s/%s", in_repo ? source_dir() : data_dir(), source);
        size_t raw_len;
        char *raw = test_read_whole(path, &raw_len);
        if (!raw)
            fail_msg("cannot read %s (run scripts/fetch-data.sh)", path);
        size_t len = raw_len;
        char *text = raw;
        if (strcmp(str_of(doc, "decoding"), "latin-1") == 0) {
            text = latin1_to_utf8(raw, raw_len, &len);
            free(raw);
        } else {
            assert_string_equal(str_of(doc, "decoding"), "utf-8");
        }
        sha256_hex(text, len, hex);
        if (strcmp(hex, str_of(doc, "text_sha256")) != 0)
            fail_msg("%s: not the text the golden ids were made from (sha256 %s)", path, hex);

        int32_t *ids = NULL;
        size_t n = 0;
        double t1 = now_s();
        assert_int_equal(qr_tokenizer_encode(t, text, len, 0, &ids, &n, &err), QR_OK);
        t_encode += now_s() - t1;
        if (!compare_ids(t, source, doc, ids, n, block))
            bad++;

        /* Round trip: the ids decode to the text, normalized as the reference normalizes it. */
        char *back;
        size_t back_len;
        assert_int_equal(qr_tokenizer_decode(t, ids, n, &back, &back_len, &err), QR_OK);
        char *want = text;
        size_t want_len = len;
        uint8_t *norm = NULL;
        if (nfc) {
            utf8proc_ssize_t r = utf8proc_map((const uint8_t *)text, (utf8proc_ssize_t)len, &norm,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            assert_true(r >= 0);
            want = (char *)norm;
            want_len = (size_t)r;
        }
        if (back_len != want_len || memcmp(back, want, want_len) != 0) {
            size_t i = 0;
            while (i < back_len && i < want_len && back[i] == want[i])
                i++;
            fprintf(stderr, "%s: decode(encode(text)) differs from %s at byte %zu\n", source,
                    nfc ? "NFC(text)" : "the text", i);
            bad++;
        }
        free(norm);
        free(back);
        free(ids);
        free(text);
        total_bytes += len;
        total_ids += n;
    }
    fprintf(stderr, "%s: %zu documents, %zu bytes, %zu ids; load %.3f s, encode %.3f s (%.1f MB/s)\n",
            golden_name, n_docs, total_bytes, total_ids, t_load, t_encode,
            (double)total_bytes / 1e6 / t_encode);
    assert_int_equal(total_bytes, (size_t)int_of(g, "total_bytes"));
    assert_int_equal(total_ids, (size_t)int_of(g, "total_ids"));
    qr_tokenizer_free(t);
    json_object_put(g);
    if (bad)
        fail_msg("%zu of %zu documents differ from the reference (above)", bad, n_docs);
}

static void test_golden_20b(void **state)
{
    (void)state;
    run_golden("golden_hf_20B.json");
}

static void test_golden_default(void **state)
{
    (void)state;
    run_golden("golden_hf_default.json");
}

/* What 20B's file is: 50277 ids, its added runs of spaces, the bytes it lacks. */
static void test_20b_shape(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/tokenizers/20B_tokenizer.json", source_dir());
    qr_tokenizer *t = NULL;
    qr_error err = {0};
    if (qr_tokenizer_load_hf_file(path, &t, &err) != QR_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(qr_tokenizer_vocab_size(t), 50277);
    assert_int_equal(qr_tokenizer_token_id(t, "<|endoftext|>"), 0);
    assert_true(qr_tokenizer_is_special(t, 0));
    assert_int_equal(qr_tokenizer_token_id(t, "  "), 50276);   /* added, not vocab "ĠĠ" */
    assert_false(qr_tokenizer_is_special(t, 50276));
    assert_int_equal(qr_tokenizer_token_id(t, "\xFF"), -1);
    /* 30 spaces: the 24-space token, then the 6-space one; leftmost-longest. */
    int32_t *ids;
    size_t n;
    assert_int_equal(qr_tokenizer_encode(t, "a                              b", 32, 0, &ids, &n, &err),
                     QR_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], 50254);
    assert_int_equal(ids[2], 50272);
    free(ids);
    qr_tokenizer_free(t);
}

int main(void)
{
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/pkg/spam/data", data_dir());
    FILE *f = fopen(probe, "r");
    if (!f) {
        fprintf(stderr, "%s missing: skipped (run scripts/fetch-data.sh)\n", probe);
        return 77;
    }
    fclose(f);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_20b_shape),
        cmocka_unit_test(test_golden_20b),
        cmocka_unit_test(test_golden_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
