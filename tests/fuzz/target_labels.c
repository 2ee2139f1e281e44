/* target_labels.c: fuzz the JSON Lines reader of labelled sentences (runtime/dataset.h). Any
 * bytes must give either items (each with tokens, a label in range) or an error naming a line;
 * never a crash or a leak. The tokenizer is a built-in byte-level one (256 tokens, no merges),
 * so every text encodes. */
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "fuzz_tokenizer.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CLASSES 3

static qr_tokenizer *byte_tokenizer(void)
{
    json_object *root = json_object_new_object(), *model = json_object_new_object();
    json_object *vocab = json_object_new_object(), *pre = json_object_new_object();
    for (unsigned b = 0; b < 256; b++) {
        char key[4];
        key[gpt2_spell_byte((uint8_t)b, key)] = '\0';
        json_object_object_add(vocab, key, json_object_new_int((int)b));
    }
    json_object_object_add(pre, "type", json_object_new_string("ByteLevel"));
    json_object_object_add(pre, "add_prefix_space", json_object_new_boolean(0));
    json_object_object_add(model, "type", json_object_new_string("BPE"));
    json_object_object_add(model, "vocab", vocab);
    json_object_object_add(model, "merges", json_object_new_array());
    json_object_object_add(root, "pre_tokenizer", pre);
    json_object_object_add(root, "model", model);
    return fuzz_tokenizer_from_json(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static qr_tokenizer *tok; /* built once per process: the fuzzer calls this millions of times */
    if (!tok)
        tok = byte_tokenizer();
    qr_labelled *items;
    size_t n, total;
    qr_error err;
    if (qr_labels_parse((const char *)data, size, "fuzz", tok, 256, CLASSES, &items, &n, &total, &err) == QR_OK) {
        size_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i].n_tokens == 0 || items[i].label < 0 || items[i].label >= CLASSES)
                abort();
            for (size_t k = 0; k < items[i].n_tokens; k++)
                if (items[i].tokens[k] < 0 || items[i].tokens[k] >= 256)
                    abort();
            sum += items[i].n_tokens;
        }
        if (sum != total || n == 0)
            abort();
        qr_labels_free(items, n);
    } else if (strncmp(err.msg, "fuzz", 4) != 0) {
        abort(); /* every error names the input */
    }
    return 0;
}
