/* fuzz_tokenizer.h: what the fuzz targets that build their own byte-level tokenizer.json share:
 * GPT-2's byte alphabet (printable Latin-1 bytes stand for themselves, the others for code points
 * from U+0100 up) and loading the built JSON. */
#ifndef QSLM_FUZZ_TOKENIZER_H
#define QSLM_FUZZ_TOKENIZER_H

#include <json.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Writes byte b's symbol as UTF-8 (1 or 2 bytes) into out; returns its length. */
size_t gpt2_spell_byte(uint8_t b, char *out);

/* Loads a tokenizer from the tokenizer.json object root, then releases root; aborts if the
 * built-in JSON is refused (a bug in the target, not a finding). */
qr_tokenizer *fuzz_tokenizer_from_json(json_object *root);

#endif
