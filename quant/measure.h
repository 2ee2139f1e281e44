/* measure.h: how good a quantization setting is, measured by running it.
 *
 * A setting (a storage type per tensor of the f32 master) is written as a variant file with the
 * runtime's requantizer and evaluated with the runtime's batched evaluator — the code the daemon
 * serves with, so what QSLM measures is what users get. On the calibration split the LM is scored
 * by its mean KL divergence from the f32 model's next-token distributions (steadier than NLL on a
 * small set) and the classifier by the KL of its class distributions; on any split, NLL /
 * perplexity and accuracy. */
#ifndef QQ_MEASURE_H
#define QQ_MEASURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eval.h"
#include "forward.h"
#include "model_file.h"
#include "pool.h"
#include "requantize.h"

#define QQ_HEADS_MAX 16          /* = QR_HEADS_MAX: classifier heads measured */

/* Labelled sentences of one classifier head. */
typedef struct {
    const qr_labelled *items;
    size_t n_items;
} qq_head_items;

typedef struct {
    const int32_t *tokens;    /* LM text (may be NULL) */
    size_t n_tokens;
    const qr_labelled *items; /* classifier sentences (may be NULL) */
    size_t n_items;
    size_t window;            /* tokens per perplexity window; 0: the measurer's */
    qq_head_items heads[QQ_HEADS_MAX]; /* heads[h], h ≥ 1: sentences of head h (accuracy only);
                                          head 0's are items above */
} qq_split;

typedef struct {
    bool lm, cls;             /* which parts were measured */
    double kl;                /* LM: mean KL(f32 ‖ variant) per prediction, nats (reference runs) */
    double nll, ppl;          /* LM: mean NLL per prediction, exp of it */
    uint64_t predictions;
    double cls_kl;            /* classifier: mean KL of the class distributions (reference runs) */
    double accuracy, cls_nll; /* head 0's */
    bool head_measured[QQ_HEADS_MAX];   /* per head: accuracy measured ([0] is cls) */
    double head_accuracy[QQ_HEADS_MAX]; /* per head ([0] is accuracy) */
    /* Per head, against the f32 master on the same sentences (McNemar's discordant pairs), when
     * head_paired: how many sentences f32 classifies right and this setting wrong (lost), and
     * the reverse (gained). So accuracy − f32's = (gained − lost) / items. */
    bool head_paired[QQ_HEADS_MAX];
    uint64_t head_items[QQ_HEADS_MAX];
    uint64_t head_lost[QQ_HEADS_MAX], head_gained[QQ_HEADS_MAX];
} qq_metrics;

typedef struct qq_measurer qq_measurer;

/* Prepares to measure settings of `master` (an open f32 model file, kept open by the caller).
 * Runs the master once on `calib` to keep its outputs as the reference. Settings are tried in
 * memory: each matrix is quantized once per type on first use (the same bytes a variant file
 * gets) and the model's matrices are pointed at those copies, so no file is written per try.
 * The reference run also gathers each matrix's mean squared input per column, and every
 * quantization weights its errors by it (the importance of llama.cpp's imatrix). */
qr_status qq_measurer_new(const qr_model_file *master, qr_pool *pool, const qq_split *calib,
                          size_t window, size_t batch, qq_measurer **out, qr_error *err);
void qq_measurer_free(qq_measurer *q);

/* How the quantized copies (and written variants) are rounded: each block to its nearest levels
 * with uniform weights, or weighted by the columns' importance (the default), or with
 * error-compensating rounding (after qq_measurer_gather_hessians). */
typedef enum { QQ_ROUND_IMPORTANCE = 0, QQ_ROUND_NEAREST, QQ_ROUND_EC } qq_rounding;

/* Switches the rounding; the copies and remembered measurements made with another are dropped.
 * QR_ERR_INVALID for QQ_ROUND_EC before the Hessians are gathered. */
qr_status qq_measurer_set_rounding(qq_measurer *q, qq_rounding rounding, qr_error *err);
qq_rounding qq_measurer_rounding(const qq_measurer *q);

/* Turns on error-compensating rounding (qr_quantize_tensor_ec) for every matrix the LM multiplies:
 * runs the f32 master over `tokens` (windows of the measurer's calibration window), in as many
 * passes as keep each pass's sums of x xᵀ within 96 MB, and keeps each matrix's factor
 * (cols² + cols floats), which every quantized copy and written variant then uses, with
 * dampening `damp` (0.01: GPTQ's). The factors are kept in an unlinked file in spill_dir when
 * one can be made there (mapped; each factor's pages are dropped after use), else in memory.
 * Matrices the text does not reach (the classifier heads, the embedding) keep the plain
 * quantizer. Only before any setting is measured. */
qr_status qq_measurer_gather_hessians(qq_measurer *q, const int32_t *tokens, size_t n_tokens, double damp,
                                      const char *spill_dir, qr_error *err);

/* Quantized copies not used by the setting being measured are freed, least recently used first,
 * once they pass a limit (default: a sixteenth of the master's matrices, at least 64 MiB); they
 * are made again when needed. Settable for tests; the bytes held now. */
void qq_measurer_set_cache_limit(qq_measurer *q, uint64_t bytes);
uint64_t qq_measurer_cache_bytes(const qq_measurer *q);
/* Frees every quantized copy (the view goes back to the master's matrices): before a variant is
 * written and measured beside the measurer, which then needs none of them. */
void qq_measurer_drop_copies(qq_measurer *q);

/* The model the measurer runs (its matrices point at the setting last applied), its pool, and
 * the calibration split and window it was made with: for measurements of its own kind
 * (local.h) that share the quantized copies. */
const qr_model *qq_measurer_view(const qq_measurer *q);
qr_runner *qq_measurer_runner(const qq_measurer *q);
const qr_model_file *qq_measurer_master(const qq_measurer *q);
qr_pool *qq_measurer_pool(const qq_measurer *q);
const qq_split *qq_measurer_calib(const qq_measurer *q);
size_t qq_measurer_window(const qq_measurer *q);
size_t qq_measurer_batch(const qq_measurer *q);
/* Points the view's matrices at a setting (the quantized copies made on first use, as
 * qq_measure_setting does) without measuring anything. */
qr_status qq_measurer_apply(qq_measurer *q, const uint32_t *types, qr_error *err);

/* The master's own metrics on the calibration split (KL 0). */
const qq_metrics *qq_measurer_reference(const qq_measurer *q);

/* Measures a setting (types[i] for the master's tensor i; only matrices are looked at): against
 * the reference on the calibration split when split is NULL, else plain metrics on `split`. A
 * setting measured before on the same split (the same qq_split object) and window is answered
 * from memory: the measurement is deterministic. Every head with sentences is paired with the
 * f32 master's answers on the same split (head_paired, head_lost, head_gained): the master is
 * run on a split's sentences once, when first needed, and its answers kept. */
qr_status qq_measure_setting(qq_measurer *q, const uint32_t *types, const qq_split *split,
                             qq_metrics *out, qr_error *err);

/* Measures an existing model file on a split (no reference; its heads are paired with the
 * master's answers as above). */
qr_status qq_measure_file(qq_measurer *q, const char *path, const qq_split *split,
                          qq_metrics *out, qr_error *err);

/* The paper's baseline: every matrix per-tensor asymmetric min-max quantized to `bits` bits
 * and dequantized (qr_fake_quant_minmax_per_tensor), measured like a setting. */
qr_status qq_measure_minmax(qq_measurer *q, int bits, const qq_split *split, qq_metrics *out,
                            qr_error *err);

/* Writes the setting as a model file at path (atomically); importance may be NULL (uniform). */
qr_status qq_write_setting(const qr_model_file *master, const uint32_t *types, const char *path,
                           const qr_importance *importance, qr_pool *pool, qr_error *err);

/* Writes the setting with the importance gathered on the calibration split: the bytes the
 * measurer tried in memory. */
qr_status qq_measurer_write_setting(qq_measurer *q, const uint32_t *types, const char *path,
                                    qr_error *err);

/* Refined copies (refine.h): one setting at a time may have copies of its matrices made for it
 * alone. While they stand, measuring or writing exactly that setting uses them (measurements
 * are remembered apart from the plain setting's); any other setting gets the usual copies. */
/* The text and dampening the error-compensation factors were fitted with; false when the
 * measurer does not round with them. */
bool qq_measurer_ec_text(const qq_measurer *q, const int32_t **tokens, size_t *n_tokens, double *damp);
/* The master bound as a model (the f32 reference refinement runs beside the view). */
const qr_model *qq_measurer_base(const qq_measurer *q);
/* The master tensor a matrix of the view or of the base is (a product observer's argument),
 * or the tensor count when it is none of them. */
size_t qq_measurer_tensor_of(const qq_measurer *q, const qr_matrix *w);
/* The f32 matrix of a master tensor (NULL for a vector). */
const qr_matrix *qq_measurer_master_matrix(const qq_measurer *q, size_t tensor);
/* The error-compensation factor of a master tensor, or NULL. */
const qr_ec_factor *qq_measurer_ec_factor(const qq_measurer *q, size_t tensor);
/* Takes copies[i] (n_tensors pointers, NULL where the setting's usual copy stands) for types,
 * replacing any refined setting before; copies[] is left all NULL, also on failure. */
qr_status qq_measurer_set_refined(qq_measurer *q, const uint32_t *types, void **copies, qr_error *err);
bool qq_measurer_is_refined(const qq_measurer *q, const uint32_t *types);
void qq_measurer_drop_refined(qq_measurer *q);

#endif
