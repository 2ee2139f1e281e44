/* target_ipc_line_reader.c: fuzz the line framing (ipc/line_reader.h) against a plain model.
 *
 * Input: byte 0 picks max_line (1..64), byte 1 seeds the chunk sizes (1..32 bytes), the rest
 * is the stream. The reader, fed in those chunks, must report exactly what splitting the whole
 * stream at '\n' predicts: each line of at most max_line bytes, one too_large per longer line
 * (even one still unfinished), and the unfinished rest as pending; its buffer never above
 * max_line + 1 bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "line_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next chunk size from a small xorshift generator. */
static size_t next_chunk(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return 1 + *s % 32;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = 1 + data[0] % 64;
    uint32_t seed = 0x9e3779b9u ^ data[1];
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    qi_line_reader *r;
    if (qi_line_reader_new(max, &r, NULL) != QI_OK)
        abort();

    size_t model = 0; /* where the model's next line starts in s */
    for (size_t pos = 0; pos < n;) {
        size_t piece = next_chunk(&seed);
        if (piece > n - pos)
            piece = n - pos;
        for (size_t off = 0, used; off < piece; off += used) {
            const char *line = NULL;
            size_t len = 0;
            qi_line_event ev =
                qi_line_reader_feed(r, s + pos + off, piece - off, &used, &line, &len);
            if (used > piece - off || qi_line_reader_capacity(r) > max + 1)
                abort();
            if (ev == QI_LINE_NONE) {
                if (used != piece - off)
                    abort();
                continue;
            }
            if (used == 0)
                abort();
            /* The model: the segment starting at `model`, up to its '\n' or the end. */
            const char *nl = memchr(s + model, '\n', n - model);
            size_t seg = nl ? (size_t)(nl - (s + model)) : n - model;
            if (ev == QI_LINE_READY) {
                if (!nl || seg > max || len != seg || memcmp(line, s + model, len) != 0 ||
                    line[len] != '\0')
                    abort();
            } else if (ev == QI_LINE_TOO_LARGE) {
                if (seg <= max)
                    abort();
            } else {
                abort(); /* QI_LINE_NOMEM: no allocation may fail at these sizes */
            }
            model = nl ? (size_t)(nl - s) + 1 : n;
        }
        pos += piece;
    }
    /* Whatever the model has left is an unfinished line: pending, or being skipped. */
    size_t rest = n - model;
    if (rest > max) {
        abort(); /* its too_large should have been reported, moving model to the end */
    } else if (qi_line_reader_skipping(r)) {
        if (rest != 0)
            abort();
    } else if (qi_line_reader_pending(r) != rest || memchr(s + model, '\n', rest)) {
        abort();
    }
    qi_line_reader_free(r);
    return 0;
}
