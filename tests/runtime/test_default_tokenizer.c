/* test_default_tokenizer.c: the default model's tokenizer (models/tokenizer.json).
 *
 * The BPE in models/tokenizer.json is trained by models/train/train_tokenizer.py, whose Python
 * encoder tokenizes the training data. The C tokenizer must encode exactly like it: the ids of
 * tests/data/tokenizer/sotu_sample.txt (about 3 KB of the SOTU validation split plus non-ASCII
 * text, digits and an <|endoftext|>) must equal sotu_sample_ids.json, written by the Python
 * encoder, and decoding them must give the sample's bytes back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_files.h"
#include "tokenizer.h"

static void source_path(char *buf, size_t size, const char *rel)
{
    const char *dir = getenv("QSLM_SOURCE_DIR");
    snprintf(buf, size, "%s/%s", dir ? dir : ".", rel);
}

static qr_tokenizer *load_default(void)
{
    char path[4096];
    source_path(path, sizeof path, "models/tokenizer.json");
    qr_tokenizer *tok = NULL;
    qr_error err = {0};
    qr_status st = qr_tokenizer_load_hf_file(path, &tok, &err);
    if (st != QR_OK)
        fail_msg("loading %s: %s", path, err.msg);
    return tok;
}

static void test_vocab(void **state)
{
    (void)state;
    qr_tokenizer *tok = load_default();
    assert_int_equal(qr_tokenizer_vocab_size(tok), 4096);
    assert_int_equal(qr_tokenizer_token_id(tok, "<|endoftext|>"), 4095);
    assert_true(qr_tokenizer_is_special(tok, 4095));
    assert_false(qr_tokenizer_is_special(tok, 0));
    /* the 256 bytes are ids 0..255 */
    for (int b = 1; b < 256; b++) {
        size_t n = 0;
        const uint8_t *p = qr_tokenizer_decode_token(tok, b, &n);
        assert_non_null(p);
        assert_int_equal(n, 1);
        assert_int_equal(p[0], b);
    }
    qr_tokenizer_free(tok);
}

static void test_sample_ids(void **state)
{
    (void)state;
    char path[4096];
    size_t text_len = 0, ids_len = 0;
    source_path(path, sizeof path, "tests/data/tokenizer/sotu_sample.txt");
    char *text = test_read_whole(path, &text_len);
    assert_non_null(text);
    source_path(path, sizeof path, "tests/data/tokenizer/sotu_sample_ids.json");
    char *ids_json = test_read_whole(path, &ids_len);
    assert_non_null(ids_json);
    json_object *want = json_tokener_parse(ids_json);
    assert_non_null(want);
    assert_true(json_object_is_type(want, json_type_array));
    size_t n_want = json_object_array_length(want);
    assert_true(n_want > 500);

    qr_tokenizer *tok = load_default();
    int32_t *ids = NULL;
    size_t n = 0;
    qr_error err = {0};
    assert_int_equal(qr_tokenizer_encode(tok, text, text_len, 0, &ids, &n, &err), QR_OK);
    size_t first_diff = n < n_want ? n : n_want;
    for (size_t i = 0; i < n && i < n_want; i++) {
        if (ids[i] != json_object_get_int(json_object_array_get_idx(want, i))) {
            first_diff = i;
            break;
        }
    }
    if (n != n_want || first_diff != n)
        fail_msg("C encodes %zu ids, Python %zu; first difference at index %zu", n, n_want,
                 first_diff);

    /* decode round-trips to the sample's bytes */
    char *back = NULL;
    size_t back_len = 0;
    assert_int_equal(qr_tokenizer_decode(tok, ids, n, &back, &back_len, &err), QR_OK);
    assert_int_equal(back_len, text_len);
    assert_memory_equal(back, text, text_len);
    free(back);
    free(ids);

    /* with special tokens as text, <|endoftext|> is spelled out and still round-trips */
    assert_int_equal(qr_tokenizer_encode(tok, text, text_len, QR_TOKENIZE_SPECIAL_AS_TEXT, &ids,
                                         &n, &err), QR_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 4095);
    assert_int_equal(qr_tokenizer_decode(tok, ids, n, &back, &back_len, &err), QR_OK);
    assert_int_equal(back_len, text_len);
    assert_memory_equal(back, text, text_len);
    free(back);
    free(ids);

    qr_tokenizer_free(tok);
    json_object_put(want);
    free(ids_json);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_sample_ids),
    };
    return cmocka_run_group_tests_name("default_tokenizer", tests, NULL, NULL);
}
