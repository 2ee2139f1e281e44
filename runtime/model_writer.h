/* model_writer.h: writing a .qslm model file (format in runtime/FORMAT.md).
 *
 * Collect metadata and tensors, then write once. Tensor data is borrowed, not copied: the
 * caller keeps every buffer alive until qr_model_writer_write returns, so writing a model
 * does not double its memory. The file appears atomically (temporary file + rename). The writer
 * checks what it is given as strictly as the reader checks what it reads. */
#ifndef QR_MODEL_WRITER_H
#define QR_MODEL_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct qr_model_writer qr_model_writer;

qr_model_writer *qr_model_writer_new(void);
void qr_model_writer_free(qr_model_writer *w);

/* Metadata setters. A key set twice keeps its last value. */
qr_status qr_model_writer_set_u64(qr_model_writer *w, const char *key, uint64_t v, qr_error *err);
qr_status qr_model_writer_set_i64(qr_model_writer *w, const char *key, int64_t v, qr_error *err);
qr_status qr_model_writer_set_f64(qr_model_writer *w, const char *key, double v, qr_error *err);
qr_status qr_model_writer_set_bool(qr_model_writer *w, const char *key, bool v, qr_error *err);
qr_status qr_model_writer_set_string(qr_model_writer *w, const char *key, const char *v,
                                     qr_error *err);
/* Bytes are copied (metadata is small: a tokenizer, a setting). */
qr_status qr_model_writer_set_bytes(qr_model_writer *w, const char *key, const void *v,
                                    uint64_t len, qr_error *err);

/* Adds a tensor; `data` (size bytes, as the type requires for the shape) is borrowed. */
qr_status qr_model_writer_add_tensor(qr_model_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *dims, const void *data,
                                     uint64_t size, qr_error *err);

/* Writes the file image to an open stream. */
qr_status qr_model_writer_emit(const qr_model_writer *w, FILE *f, const char *name, qr_error *err);

/* Writes path atomically: path.tmp.PID, fsync, rename. */
qr_status qr_model_writer_write(const qr_model_writer *w, const char *path, qr_error *err);

#endif
