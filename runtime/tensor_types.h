/* tensor_types.h: the storage types a tensor in a model file may have.
 *
 * Every type is described by its block: how many weights one block holds and how many bytes it
 * takes. f32 and f16 are blocks of one weight. The group-quantized integer types (issue 5) take
 * codes from QR_TYPE_FIRST_QUANT up; a reader refuses any code this table does not list, so a
 * file written by a newer qslm fails cleanly instead of being misread. */
#ifndef QR_TENSOR_TYPES_H
#define QR_TENSOR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    QR_TYPE_F32 = 0,
    QR_TYPE_F16 = 1,
    QR_TYPE_FIRST_QUANT = 16, /* codes 16..63: group-quantized integer types */
    QR_TYPE_CODE_LIMIT = 64,  /* codes at or above this are never valid */
} qr_type;

typedef struct {
    const char *name;        /* "f32", "f16", ... as used in settings and manifests */
    uint32_t block_weights;  /* weights per block; the last dimension must be a multiple */
    uint32_t block_bytes;    /* bytes per block */
} qr_type_info;

/* The description of a type code, or NULL if this build does not know the code. */
const qr_type_info *qr_type_get(uint32_t code);

/* The type code whose name is `name`; false if there is none. */
bool qr_type_from_name(const char *name, uint32_t *code);

/* Bytes taken by n_weights weights of a type. False if n_weights is not a whole number of blocks
 * or the size overflows. */
bool qr_type_bytes(uint32_t code, uint64_t n_weights, uint64_t *bytes);

#endif
