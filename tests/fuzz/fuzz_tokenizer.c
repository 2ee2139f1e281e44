/* fuzz_tokenizer.c: see fuzz_tokenizer.h. */
#include "fuzz_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t gpt2_spell_byte(uint8_t b, char *out)
{
    unsigned c = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        unsigned n = 0;
        for (unsigned k = 0; k < b; k++)
            n += !((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || k >= 0xAE);
        c = 256 + n;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | c >> 6);
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

qr_tokenizer *fuzz_tokenizer_from_json(json_object *root)
{
    const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    qr_tokenizer *t = NULL;
    qr_error err;
    if (qr_tokenizer_load_hf_json(s, strlen(s), "built-in", &t, &err) != QR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    json_object_put(root);
    return t;
}
