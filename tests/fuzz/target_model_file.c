/* target_model_file.c: fuzz the .qslm reader. Any input must be either refused with an error or
 * accepted as a file whose every tensor lies inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "model_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_model_file *mf = NULL;
    qr_error err;
    if (qr_model_file_from_memory(data, size, "fuzz", &mf, &err) != QR_OK)
        return 0;
    /* Touch every byte handed out, so a bad bound shows up as a sanitizer report. */
    unsigned sum = 0;
    for (size_t i = 0; i < qr_model_file_tensor_count(mf); i++) {
        const qr_tensor_info *t = qr_model_file_tensor(mf, i);
        if (t->offset + t->size > size)
            abort();
        const uint8_t *p = t->data;
        for (uint64_t b = 0; b < t->size; b++)
            sum += p[b];
        sum += (unsigned)t->name[0];
    }
    for (size_t i = 0; i < qr_model_file_meta_count(mf); i++) {
        const qr_meta_entry *e = qr_model_file_meta_at(mf, i);
        if ((e->type == QR_META_STRING || e->type == QR_META_BYTES) && e->len)
            sum += (uint8_t)e->str[e->len - 1];
    }
    qr_model_file_close(mf);
    return (int)(sum & 0);
}
