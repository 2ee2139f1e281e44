/* requantize.h: a model file rewritten at another quantization setting.
 *
 * Every 2-D tensor (a matrix) is dequantized to f32, whatever its stored type, and quantized to
 * the type a callback picks for it; every other tensor (layer norms, time-mix vectors, biases)
 * is written as f32. A tensor whose type does not change is copied byte for byte. A matrix whose
 * last dimension is not a multiple of the chosen type's block (32 for every quantized type)
 * cannot be quantized: it keeps its input type (f16 if that was a quantized type, which cannot
 * happen for a valid file). All metadata is copied; `quant.setting` becomes a JSON map of every
 * matrix's name to its type and `general.provenance` gains a note of the conversion. This file
 * does not decide a setting (that is QSLM's search, quant/); it applies one. */
#ifndef QR_REQUANTIZE_H
#define QR_REQUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model_file.h"
#include "pool.h"
#include "quantize.h"

/* Per-column importance of one matrix: mean squared activation of each input feature; with
 * `ec`, the factor of the inputs' whole second-moment matrix, and the matrix is quantized with
 * error-compensating rounding (qr_quantize_tensor_ec) instead. With `quantized`, the caller
 * has quantized the matrix itself (QSLM's sequential refinement, which needs the rest of the
 * setting): when the chooser picks quantized_type, those bytes are written as they are. */
typedef struct {
    const char *name;     /* tensor name, e.g. "blocks.3.ffn.value.weight" */
    const float *values;  /* n = the tensor's last dimension, each finite and ≥ 0 */
    size_t n;
    const qr_ec_factor *ec; /* NULL, or of the n × n E[x xᵀ] over the calibration inputs */
    const void *quantized;  /* NULL, or the matrix at quantized_type (its rows' bytes), borrowed
                               until qr_requantize returns */
    uint32_t quantized_type;
} qr_importance_entry;

typedef struct {
    const qr_importance_entry *entries;
    size_t count;
    /* Optional: called once an entry's matrix is written, so that a caller keeping factors in a
     * mapped file can drop their pages (they are read once per file). */
    void (*done)(void *ctx, const qr_importance_entry *e);
    void *done_ctx;
} qr_importance;

/* The storage type for a matrix (asked once per 2-D tensor). Returning a code that is not a
 * known type makes qr_requantize fail with QR_ERR_INVALID. */
typedef uint32_t (*qr_type_chooser)(void *ctx, const char *name, uint32_t n_dims,
                                    const uint64_t *dims);

/* Writes `in` at the chosen setting to out_path (atomically). importance (NULL: uniform) weights
 * each listed matrix's squared error per column; pool (NULL: the calling thread) spreads the
 * quantization over threads. Each converted tensor's pages of `in` leave the resident set once
 * read (qr_model_file_release): at 216M the input is 864 MB beside the output being built. */
qr_status qr_requantize(const qr_model_file *in, const char *out_path, qr_type_chooser choose,
                        void *ctx, const qr_importance *importance, qr_pool *pool, qr_error *err);

#endif
