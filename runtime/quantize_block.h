/* quantize_block.h: one block's quantization in two steps, shared by the plain quantizer
 * (quantize.c) and error-compensating rounding (quantize_ec.c), which rounds a block's weights
 * one column at a time after its header is chosen: first the header (scale, minimum) is fitted
 * to the block's 32 weights, then each weight is rounded to the grid that header defines. The
 * plain quantizer does both at once, so both paths store the same bytes for the same inputs.
 * Internal to the runtime. */
#ifndef QR_QUANTIZE_BLOCK_H
#define QR_QUANTIZE_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "tensor_types.h"

enum { QR_GRID_SYM, QR_GRID_MIN, QR_GRID_SMALL };

/* The levels a block's codes select: d·(q − 2^(B−1)) (SYM), d·q + m (MIN), d·(q − 2^(B−1) + ½)
 * (SMALL); id = 1/d, or 0 when d is 0. */
typedef struct {
    int kind, bits;
    float d, id, m;
} qr_block_grid;

/* Chooses the header of a block of 32 weights x, minimising Σw·(x − level)² (w: 32 weights, all
 * positive or a uniform 1), writes it at the start of `block` and describes the grid in g. */
void qr_block_fit(const qr_type_info *t, const float *x, const float *w, uint8_t *block, qr_block_grid *g);

/* Bytes of a block's header: the codes are packed after it (blocks.h). */
size_t qr_block_header_bytes(const qr_type_info *t);

/* Round to nearest even by the 1.5·2^23 trick (|t| < 2^22 after the clamps). */
static inline float qr_round_clamped(float t, float lo, float hi)
{
    t = t < lo ? lo : t;
    t = t > hi ? hi : t;
    return (t + 12582912.0f) - 12582912.0f;
}

/* The code of the level nearest x. */
static inline uint8_t qr_block_code(const qr_block_grid *g, float x)
{
    float half = (float)(1 << (g->bits - 1));
    switch (g->kind) {
    case QR_GRID_MIN:
        return (uint8_t)qr_round_clamped((x - g->m) * g->id, 0.0f, (float)((1 << g->bits) - 1));
    case QR_GRID_SMALL:
        return (uint8_t)((int)qr_round_clamped(x * g->id - 0.5f, -half, half - 1.0f) + (int)half);
    default:
        return (uint8_t)((int)qr_round_clamped(x * g->id, -half, half - 1.0f) + (int)half);
    }
}

/* The value code q stands for, as the kernels' to_float computes it. */
static inline float qr_block_value(const qr_block_grid *g, uint8_t q)
{
    float half = (float)(1 << (g->bits - 1));
    switch (g->kind) {
    case QR_GRID_MIN: {
        float t = g->d * (float)q;
        return t + g->m;
    }
    case QR_GRID_SMALL:
        return g->d * ((float)q - (half - 0.5f));
    default:
        return g->d * ((float)q - half);
    }
}

#endif
