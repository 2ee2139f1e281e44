/* target_tokenizer_json.c: fuzz the tokenizer.json loader. Any input must be refused with an
 * error, or load into a tokenizer that encodes a fixed text and the input itself into ids that
 * decode back to the same bytes, and whose every token's bytes can be read. It does not check
 * what the ids are (test_tokenizer.c does, against the reference). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "tokenizer_internal.h" /* add_prefix_space: the one option that changes the bytes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes text both ways (specials matched, specials as text), decodes, and aborts unless the
 * bytes come back; with add_prefix_space the decoded text may only have grown. With a normalizer,
 * or a vocab that lacks some bytes (which are then dropped), the text may change: then only
 * that encode and decode succeed is checked (test_tokenizer_hf.c checks what they give). */
static void round_trip(const qr_tokenizer *t, const void *text, size_t len)
{
    for (unsigned flags = 0; flags <= QR_TOKENIZE_SPECIAL_AS_TEXT; flags += QR_TOKENIZE_SPECIAL_AS_TEXT) {
        int32_t *ids = NULL;
        size_t n = 0;
        qr_error err;
        if (qr_tokenizer_encode(t, text, len, flags, &ids, &n, &err) != QR_OK)
            abort();
        char *back = NULL;
        size_t back_len = 0;
        if (qr_tokenizer_decode(t, ids, n, &back, &back_len, &err) != QR_OK)
            abort();
        bool lossy = t->n_norm > 0;
        for (unsigned b = 0; b < 256 && !lossy; b++)
            lossy = t->byte_token[b] < 0;
        if (!lossy && (t->add_prefix_space ? back_len < len
                                           : back_len != len || (len && memcmp(back, text, len) != 0)))
            abort();
        free(back);
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_tokenizer *t = NULL;
    qr_error err;
    if (qr_tokenizer_load_hf_json((const char *)data, size, "fuzz", &t, &err) != QR_OK) {
        if (t || err.msg[0] == '\0' || strncmp(err.msg, "fuzz: ", 6) != 0)
            abort(); /* a refusal must leave nothing and say which file */
        return 0;
    }
    static const char fixed[] = "Hello, world! It's 2021 \xE2\x80\x94 caf\xC3\xA9  \t\n"
                                "\xF0\x9F\x98\x80<|endoftext|> \xFF\xC0 don't\r\n";
    round_trip(t, fixed, sizeof fixed - 1);
    round_trip(t, data, size);
    size_t total = 0;
    for (size_t id = 0; id < qr_tokenizer_vocab_size(t); id++) {
        size_t len;
        const uint8_t *p = qr_tokenizer_decode_token(t, (int32_t)id, &len);
        if (!p || len == 0)
            abort();
        total += p[len - 1];
    }
    qr_tokenizer_free(t);
    return (int)(total & 0);
}
