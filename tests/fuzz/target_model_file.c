/* target_model_file.c: fuzz the .qslm reader. Any input must be either refused with an error or
 * accepted as a file whose every tensor lies inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
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
    /* The classification heads' names and labels (runtime/heads.c): refused with an error, or
     * each head named within its alphabet with 1.. labels of 1..64 bytes, none repeated. */
    qr_heads h;
    if (qr_heads_read(mf, &h, &err) == QR_OK) {
        if (h.n > QR_HEADS_MAX)
            abort();
        for (size_t i = 0; i < h.n; i++) {
            const qr_head_info *hi = &h.heads[i];
            if (!hi->name[0] || strlen(hi->name) > QR_TASK_NAME_MAX || hi->n_classes < 1 ||
                hi->n_classes > QR_CLASSES_MAX || qr_heads_find(&h, hi->name) != (int)i)
                abort();
            for (size_t c = 0; c < hi->n_classes; c++) {
                size_t n = strlen(hi->labels[c]);
                if (n < 1 || n > QR_LABEL_MAX)
                    abort();
                sum += (uint8_t)hi->labels[c][n - 1];
            }
        }
        qr_heads_free(&h);
    } else if (err.status != QR_ERR_FORMAT && err.status != QR_ERR_NOMEM) {
        abort();
    }
    qr_model_file_close(mf);
    return (int)(sum & 0);
}
