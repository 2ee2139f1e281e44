/* gpt2_bytes.h: GPT-2's byte alphabet, for fuzz targets that build a byte-level tokenizer.json:
 * printable Latin-1 bytes stand for themselves, the others for code points from U+0100 up. */
#ifndef QSLM_FUZZ_GPT2_BYTES_H
#define QSLM_FUZZ_GPT2_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Writes byte b's symbol as UTF-8 (1 or 2 bytes) into out; returns its length. */
size_t gpt2_spell_byte(uint8_t b, char *out);

#endif
