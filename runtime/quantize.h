/* quantize.h: f32 weights to any storage type, and the paper's per-tensor baseline.
 *
 * Each block of 32 weights gets the scale (and, for the _1 types, the minimum) that minimises
 * its squared error, optionally weighted per column by an importance (the mean squared
 * activation the column meets on calibration data, as llama.cpp's imatrix): a small search over
 * clipping, each candidate's scale refined by least squares on its integer codes (the approach
 * of ggml's make_qx_quants / make_qkx2_quants, written anew). Deterministic: the same input gives
 * the same bytes on every platform. Layouts: runtime/FORMAT.md. Dequantizing is the kernels'
 * to_float (kernels/kernels.h). */
#ifndef QR_QUANTIZE_H
#define QR_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "pool.h"

/* Quantizes n weights (a multiple of the type's block) of one row into dst (the type's size for
 * n weights). importance: n non-negative finite weights of the squared error, or NULL for
 * uniform. f32 copies, f16 rounds to nearest even. QR_ERR_INVALID for an unknown type, an n
 * that is not a whole number of blocks, a non-finite weight or a bad importance. */
qr_status qr_quantize_row(uint32_t type, const float *src, size_t n, const float *importance,
                          void *dst);

/* Quantizes a row-major rows × cols matrix, row by row (rows are independent, so dst is rows
 * rows of the type's row size); importance has cols entries or is NULL. The rows are spread
 * over `pool` when it is not NULL. */
qr_status qr_quantize_tensor(uint32_t type, const float *src, size_t rows, size_t cols,
                             const float *importance, void *dst, qr_pool *pool);

/* Error-compensating rounding (GPTQ; quantize_ec.c) needs, per matrix, a factor of its inputs'
 * second moments H = E[x xᵀ]: computed once and shared by every type the matrix is quantized
 * to. The caller owns the storage (n × n + n floats), so it may keep factors in memory or in a
 * mapped file. */
typedef struct {
    size_t n;          /* the matrix's columns */
    const float *u;    /* n × n, row-major, upper triangle: H⁻¹ = UᵀU (zeros below) */
    const float *diag; /* n: each column's mean square input, floored: the headers' fit weights */
} qr_ec_factor;

/* Computes u (n × n) and diag (n) from H (n × n, row-major, symmetric positive semi-definite)
 * with damp·mean(diag H) added to its diagonal (0.01 is GPTQ's; raised tenfold, up to five
 * times, while the factorisation fails). QR_ERR_INVALID for non-finite or negative-diagonal
 * input or a matrix that cannot be factorised; QR_ERR_NOMEM. */
qr_status qr_ec_factor_compute(const float *hessian, size_t n, double damp, float *u, float *diag);

/* A row-major rows × cols matrix quantized to a quantized type with error-compensating
 * rounding: the same blocks as qr_quantize_tensor, with codes chosen so that the rows' outputs
 * on the calibration inputs stay close, rather than each weight. f: of a cols × cols Hessian. */
qr_status qr_quantize_tensor_ec(uint32_t type, const float *src, size_t rows, size_t cols, const qr_ec_factor *f,
                                void *dst, qr_pool *pool);

/* The weights a matrix is quantized towards once the matrices before it are quantized: its
 * inputs are then x_q, not the f32 model's x_f, and W·x_f is what its outputs should stay close
 * to. The least-squares fit of that is W·C·H⁻¹ with H = E[x_q x_qᵀ] and C = E[x_f x_qᵀ]; each
 * is given ridge·mean(diag H) on its diagonal, which pulls columns the calibration text barely
 * exercises back to W, and the fit is taken a fraction `mix` of the way from W (1: all the way;
 * the full fit follows the calibration text's drift too closely). h, c: cols × cols, row-major;
 * w, out: rows × cols (out may not alias w). QR_ERR_INVALID for non-finite input, a mix outside
 * [0, 1] or an H that cannot be factorised; QR_ERR_NOMEM. */
qr_status qr_ec_drift_target(const float *w, size_t rows, size_t cols, const float *h, const float *c,
                             double ridge, double mix, float *out);

/* The baseline of the QSLM paper: per-tensor asymmetric min-max quantization to `bits` bits
 * (1..16; the paper uses 4, 8, 12, 16), immediately dequantized, so dst (n floats, may equal
 * src) holds what a model quantized that way would compute with. */
qr_status qr_fake_quant_minmax_per_tensor(const float *src, size_t n, int bits, float *dst);

#endif
