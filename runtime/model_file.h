/* model_file.h: reading a .qslm model file (format in runtime/FORMAT.md).
 *
 * Opening a file maps it read-only and validates the header, every metadata entry and every
 * tensor entry against the file's size before returning; after a successful open, every pointer
 * handed out is inside the mapping and every size is consistent. Tensor data is never copied.
 * This file does not interpret the model (see the forward pass); it only checks the container
 * and the presence and types of the required keys. */
#ifndef QR_MODEL_FILE_H
#define QR_MODEL_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define QR_FILE_MAGIC "QSLM"
#define QR_FILE_VERSION 1u
#define QR_FILE_HEADER_SIZE 64u
#define QR_FILE_ALIGN 64u
#define QR_MAX_DIMS 4
#define QR_MAX_NAME_LEN 255u
#define QR_MAX_TENSORS (1u << 20)
#define QR_MAX_META (1u << 16)

typedef enum {
    QR_META_U64 = 1,
    QR_META_I64 = 2,
    QR_META_F64 = 3,
    QR_META_BOOL = 4,
    QR_META_STRING = 5,
    QR_META_BYTES = 6,
} qr_meta_type;

typedef struct {
    const char *key;      /* NUL-terminated */
    qr_meta_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
    } num;
    const char *str;      /* STRING: NUL-terminated copy; BYTES: points into the mapping */
    uint64_t len;         /* STRING and BYTES: length in bytes (without the NUL) */
} qr_meta_entry;

typedef struct {
    const char *name;             /* NUL-terminated */
    uint32_t type;                /* a code from tensor_types.h */
    uint32_t n_dims;
    uint64_t dims[QR_MAX_DIMS];   /* PyTorch order: dims[n_dims-1] is contiguous */
    uint64_t n_elements;
    uint64_t offset;              /* absolute, in the file */
    uint64_t size;                /* bytes */
    const void *data;             /* inside the read-only mapping */
} qr_tensor_info;

typedef struct qr_model_file qr_model_file;

/* Maps and validates the file at path. On failure *out is NULL and err names the file and fault. */
qr_status qr_model_file_open(const char *path, qr_model_file **out, qr_error *err);

/* Validates a file image already in memory (fuzzing, tests). The buffer is borrowed: it must
 * outlive the returned object. `name` is used in error messages. */
qr_status qr_model_file_from_memory(const void *data, size_t size, const char *name,
                                    qr_model_file **out, qr_error *err);

void qr_model_file_close(qr_model_file *mf);

/* Drops the whole pages of [data, data + bytes) from the process's resident set, when they lie
 * in a mapped file: the mapping is read-only, so they stay in the page cache and come back on
 * the next touch, unchanged. QSLM calls it for f32 matrices a setting holds quantized copies of
 * (at 216M the master is 864 MB, and a setting's copies as much again). Does nothing for files
 * read from memory. */
void qr_model_file_release(const qr_model_file *mf, const void *data, uint64_t bytes);

const char *qr_model_file_path(const qr_model_file *mf);
uint64_t qr_model_file_size(const qr_model_file *mf);

size_t qr_model_file_tensor_count(const qr_model_file *mf);
const qr_tensor_info *qr_model_file_tensor(const qr_model_file *mf, size_t index);
/* The tensor called name, or NULL. */
const qr_tensor_info *qr_model_file_find_tensor(const qr_model_file *mf, const char *name);

size_t qr_model_file_meta_count(const qr_model_file *mf);
const qr_meta_entry *qr_model_file_meta_at(const qr_model_file *mf, size_t index);
/* The metadata entry called key, or NULL. */
const qr_meta_entry *qr_model_file_meta(const qr_model_file *mf, const char *key);

/* Typed look-ups with a default: return the default when the key is absent, QR_ERR_FORMAT (naming
 * the file and key) when it is present with another type. */
qr_status qr_model_file_get_u64(const qr_model_file *mf, const char *key, uint64_t dflt,
                                uint64_t *out, qr_error *err);
qr_status qr_model_file_get_f64(const qr_model_file *mf, const char *key, double dflt,
                                double *out, qr_error *err);
qr_status qr_model_file_get_bool(const qr_model_file *mf, const char *key, bool dflt,
                                 bool *out, qr_error *err);
/* STRING or BYTES value; *out NULL and *len 0 when absent. */
qr_status qr_model_file_get_blob(const qr_model_file *mf, const char *key, const char **out,
                                 uint64_t *len, qr_error *err);

#endif
