/* target_tokenizer_encode.c: fuzz encoding. The input is text (any bytes); a small built-in
 * byte-level vocab (and GPT-2's, when $QSLM_DATA_DIR/gpt2 holds it) must encode it into ids that
 * decode to the same bytes, and the streaming decoder must hand those bytes back in order
 * without ever splitting a character of valid input. A second built-in vocab has what GPT-NeoX's
 * has (an NFC normalizer, normalized added runs of spaces, no tokens for 0xC0, 0xC1, 0xF5..0xFF),
 * and so has 20B_tokenizer.json itself when $QSLM_SOURCE_DIR is set: for those, valid UTF-8 must
 * decode to its NFC form, and any input must encode. The ids themselves are not checked here. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tokenizer.h"
#include "tokenizer.h"
#include "unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void spell(const char *raw, char *out)
{
    size_t o = 0;
    for (const uint8_t *p = (const uint8_t *)raw; *p; p++)
        o += gpt2_spell_byte(*p, out + o);
    out[o] = '\0';
}

/* Merges in rank order; "aa a" before "a a" on purpose (a merge using a later merge's token). */
static const char *const merges[][2] = {
    {"t", "h"}, {"th", "e"}, {" ", "the"}, {"i", "n"}, {"in", "g"}, {" ", " "}, {"  ", "  "},
    {"\xC3", "\xA9"}, {"\xF0", "\x9F"}, {"\xF0\x9F", "\x98"}, {"'", "s"}, {"e", "r"}, {"a", "n"},
    {"an", "d"}, {" ", "and"}, {"1", "2"}, {"12", "3"}, {"\xE4", "\xB8"}, {"aa", "a"}, {"a", "a"},
    {"\xFF", "\xFF"}, {"\n", "\n"}, {"\t", "\t"}, {".", "."}, {"..", "."},
};

/* Bytes that well-formed UTF-8 never holds: the NeoX-like vocab has no token for them. */
static bool never_in_utf8(uint8_t b)
{
    return b == 0xC0 || b == 0xC1 || b >= 0xF5;
}

/* The built-in tokenizer.json: 256 byte tokens, the merges above, two added tokens. neox: like
 * GPT-NeoX's instead (NFC; added runs of 2 and 3 spaces, normalized, with ids of their own
 * although "  " is also a vocab token; the 13 non-UTF-8 bytes missing). */
static qr_tokenizer *tiny(bool neox)
{
    json_object *root = json_object_new_object(), *model = json_object_new_object();
    json_object *vocab = json_object_new_object(), *jm = json_object_new_array();
    json_object *pre = json_object_new_object(), *added = json_object_new_array();
    int id = 0;
    for (int b = 0; b < 256; b++) {
        char key[4];
        key[gpt2_spell_byte((uint8_t)b, key)] = '\0';
        if (!(neox && never_in_utf8((uint8_t)b)))
            json_object_object_add(vocab, key, json_object_new_int(id++));
    }
    for (size_t i = 0; i < sizeof merges / sizeof *merges; i++) {
        if (neox && never_in_utf8((uint8_t)merges[i][0][0]))
            continue;
        char a[32], b[32], line[80], raw[32], tok[64];
        spell(merges[i][0], a);
        spell(merges[i][1], b);
        snprintf(line, sizeof line, "%s %s", a, b);
        json_object_array_add(jm, json_object_new_string(line));
        snprintf(raw, sizeof raw, "%s%s", merges[i][0], merges[i][1]);
        spell(raw, tok);
        if (!json_object_object_get_ex(vocab, tok, NULL))
            json_object_object_add(vocab, tok, json_object_new_int(id++));
    }
    static const char *const specials[][2] = {{"<|endoftext|>", "1"}, {"[U]", "0"},
                                              {"  ", "n"}, {"   ", "n"}};
    for (size_t i = 0; i < (neox ? 4u : 2u); i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int(id++));
        json_object_object_add(o, "content", json_object_new_string(specials[i][0]));
        json_object_object_add(o, "special", json_object_new_boolean(specials[i][1][0] == '1'));
        json_object_object_add(o, "normalized", json_object_new_boolean(specials[i][1][0] == 'n'));
        json_object_array_add(added, o);
    }
    if (neox) {
        json_object *norm = json_object_new_object();
        json_object_object_add(norm, "type", json_object_new_string("NFC"));
        json_object_object_add(root, "normalizer", norm);
    }
    json_object_object_add(pre, "type", json_object_new_string("ByteLevel"));
    json_object_object_add(pre, "add_prefix_space", json_object_new_boolean(0));
    json_object_object_add(model, "type", json_object_new_string("BPE"));
    json_object_object_add(model, "vocab", vocab);
    json_object_object_add(model, "merges", jm);
    json_object_object_add(root, "added_tokens", added);
    json_object_object_add(root, "pre_tokenizer", pre);
    json_object_object_add(root, "model", model);
    return fuzz_tokenizer_from_json(root);
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

static void check(const qr_tokenizer *t, const uint8_t *data, size_t size, unsigned flags)
{
    int32_t *ids = NULL;
    size_t n = 0;
    qr_error err;
    if (qr_tokenizer_encode(t, data, size, flags, &ids, &n, &err) != QR_OK)
        abort();
    if (n > size || (size > 0 && n == 0))
        abort();
    char *back = NULL;
    size_t back_len = 0;
    if (qr_tokenizer_decode(t, ids, n, &back, &back_len, &err) != QR_OK || back_len != size ||
        (size && memcmp(back, data, size) != 0))
        abort();
    free(back);

    bool input_valid = valid_utf8(data, size);
    qr_utf8_stream s;
    qr_utf8_stream_init(&s);
    uint8_t *out = malloc(size + QR_UTF8_STREAM_MAX_HELD + 1);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *p = qr_tokenizer_decode_token(t, ids[i], &len);
        size_t k = qr_utf8_stream_feed(&s, p, len, out + total);
        if (input_valid && !valid_utf8(out + total, k))
            abort();
        total += k;
    }
    total += qr_utf8_stream_flush(&s, out + total);
    if (total != size || (size && memcmp(out, data, size) != 0))
        abort();
    free(out);
    free(ids);
}

/* NFC of data[0..size), piece by piece between the raw (not normalized) added tokens raw[],
 * matched leftmost-longest, as the tokenizer normalizes it; malloc'ed. */
static uint8_t *nfc_pieces(const uint8_t *data, size_t size, const char *const *raw, size_t n_raw,
                           size_t *out_len)
{
    static const qr_norm_form nfc = QR_NORM_NFC;
    uint8_t *out = malloc(3 * size + 1), *norm;
    size_t o = 0, seg = 0, i = 0, norm_len;
    qr_error err;
    while (i <= size) {
        size_t match = 0;
        for (size_t k = 0; k < n_raw && i < size; k++) {
            size_t len = strlen(raw[k]);
            if (len <= size - i && len > match && memcmp(data + i, raw[k], len) == 0)
                match = len;
        }
        if (match == 0 && i < size) {
            i++;
            continue;
        }
        if (qr_normalize(&nfc, 1, data + seg, i - seg, &norm, &norm_len, &err) != QR_OK)
            abort();
        memcpy(out + o, norm, norm_len); /* NFC grows text at most 3x (UAX #15) */
        o += norm_len;
        free(norm);
        if (i == size)
            break;
        memcpy(out + o, data + i, match);
        o += match;
        i += match;
        seg = i;
    }
    *out_len = o;
    return out;
}

/* For a tokenizer with an NFC normalizer: the ids of valid UTF-8 decode to its NFC form (taken
 * between the raw added tokens raw[]); of anything else, to no more bytes than that (the bytes
 * without a token are dropped). */
static void check_nfc(const qr_tokenizer *t, const char *const *raw, size_t n_raw,
                      const uint8_t *data, size_t size)
{
    int32_t *ids = NULL;
    size_t n = 0;
    qr_error err;
    if (qr_tokenizer_encode(t, data, size, 0, &ids, &n, &err) != QR_OK)
        abort();
    char *back = NULL;
    size_t back_len = 0;
    if (qr_tokenizer_decode(t, ids, n, &back, &back_len, &err) != QR_OK)
        abort();
    size_t want_len;
    uint8_t *want = nfc_pieces(data, size, raw, n_raw, &want_len);
    if (valid_utf8(data, size)) {
        if (back_len != want_len || (want_len && memcmp(back, want, want_len) != 0))
            abort();
    } else if (back_len > want_len) {
        abort();
    }
    free(want);
    free(back);
    free(ids);
}

/* Loaded once per process: building them for every input would drown the fuzzer. */
static qr_tokenizer *tiny_tok, *neox_tok, *gpt2_tok, *neox20b_tok;
static bool loaded;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loaded) {
        loaded = true;
        tiny_tok = tiny(false);
        neox_tok = tiny(true);
        const char *src = getenv("QSLM_SOURCE_DIR");
        if (src) {
            char path[4096];
            snprintf(path, sizeof path, "%s/models/tokenizers/20B_tokenizer.json", src);
            qr_error err;
            if (qr_tokenizer_load_hf_file(path, &neox20b_tok, &err) != QR_OK)
                abort(); /* it is in the repository: it must load */
        }
        const char *dir = getenv("QSLM_DATA_DIR");
        if (dir) {
            char enc[4096], bpe[4096];
            snprintf(enc, sizeof enc, "%s/gpt2/encoder.json", dir);
            snprintf(bpe, sizeof bpe, "%s/gpt2/vocab.bpe", dir);
            qr_error err;
            if (qr_tokenizer_load_gpt2(enc, bpe, &gpt2_tok, &err) != QR_OK)
                gpt2_tok = NULL; /* not fetched: the built-in vocab only */
        }
    }
    check(tiny_tok, data, size, 0);
    check(tiny_tok, data, size, QR_TOKENIZE_SPECIAL_AS_TEXT);
    if (gpt2_tok)
        check(gpt2_tok, data, size, 0);
    static const char *const tiny_raw[] = {"<|endoftext|>", "[U]"};
    static const char *const neox_raw[] = {"<|endoftext|>", "<|padding|>"};
    check_nfc(neox_tok, tiny_raw, 2, data, size);
    if (neox20b_tok)
        check_nfc(neox20b_tok, neox_raw, 2, data, size);
    return 0;
}
