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
    /* Symmetric, blocks of 32: w = d·(q − 2^(B−1)), q an unsigned B-bit code, d an f16 scale. */
    QR_TYPE_Q8_0 = 16,
    QR_TYPE_Q6_0 = 17,
    QR_TYPE_Q5_0 = 18,
    QR_TYPE_Q4_0 = 19,
    QR_TYPE_Q3_0 = 20,
    QR_TYPE_Q2_0 = 21,
    /* With a minimum, blocks of 32: w = d·q + m, d and m f16. */
    QR_TYPE_Q8_1 = 22,
    QR_TYPE_Q6_1 = 23,
    QR_TYPE_Q5_1 = 24,
    QR_TYPE_Q4_1 = 25,
    QR_TYPE_Q3_1 = 26,
    QR_TYPE_Q2_1 = 27,
    /* Small header, blocks of 32: w = d·(q − 2^(B−1) + ½), d ≥ 0 an 8-bit float (E5M3: the top
     * byte of an f16 scale), so the header costs 0.25 bit per weight instead of 0.5 and the
     * levels sit symmetrically about zero (issue 19). */
    QR_TYPE_Q4_S = 28,
    QR_TYPE_Q3_S = 29,
    QR_TYPE_Q2_S = 30,
    QR_TYPE_LAST_QUANT = 30,  /* the highest code this build knows */
    QR_TYPE_CODE_LIMIT = 64,  /* codes at or above this are never valid */
} qr_type;

typedef struct {
    const char *name;        /* "f32", "f16", ... as used in settings and manifests */
    uint32_t block_weights;  /* weights per block; the last dimension must be a multiple */
    uint32_t block_bytes;    /* bytes per block */
    uint32_t bits;           /* bits of each integer code (0 for f32 and f16) */
    bool has_min;            /* the block stores a minimum m beside the scale d */
    bool small_scale;        /* an 8-bit E5M3 scale and mid-rise levels (the _s types) */
} qr_type_info;

/* The description of a type code, or NULL if this build does not know the code. */
const qr_type_info *qr_type_get(uint32_t code);

/* The type code whose name is `name`; false if there is none. */
bool qr_type_from_name(const char *name, uint32_t *code);

/* True for the group-quantized integer types (codes QR_TYPE_Q8_0..QR_TYPE_LAST_QUANT). */
bool qr_type_is_quantized(uint32_t code);

/* Bits per weight of a type, headers included (e.g. 4.5 for q4_0). 0 for an unknown code. */
double qr_type_bits_per_weight(uint32_t code);

/* Bytes taken by n_weights weights of a type. False if n_weights is not a whole number of blocks
 * or the size overflows. */
bool qr_type_bytes(uint32_t code, uint64_t n_weights, uint64_t *bytes);

#endif
