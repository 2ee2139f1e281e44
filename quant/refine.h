/* refine.h: a setting's matrices quantized again, each fitted to the inputs the quantized
 * matrices before it give it (sequential error compensation).
 *
 * Error-compensating rounding (quantize.h) fits every matrix to the inputs the f32 model gives
 * it. In the quantized model those inputs have drifted, and on a spiking model the drift is
 * large: a small change of a sub-block's output flips spikes, and a flipped spike adds a whole
 * step to the residual stream. Refinement runs the f32 master and the setting side by side over
 * the error-compensation text, gathers per matrix H = E[x_q x_qᵀ] (its inputs in the setting)
 * and C = E[x_f x_qᵀ] (with the master's), and quantizes each matrix again with error
 * compensation under H, towards the weights that keep W·x_f from x_q (qr_ec_drift_target).
 * All matrices are fitted from one pair of runs over the setting as first quantized, not one
 * matrix after the other: on the default model both give the same perplexity, and one pair of
 * runs costs a thirteenth. The embedding (a lookup) and heads the text does not run keep their
 * usual copies. The copies are handed to the measurer (measure.h) for this setting alone. */
#ifndef QQ_REFINE_H
#define QQ_REFINE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "measure.h"

/* How far each matrix's target goes from W towards the least-squares fit (qr_ec_drift_target's
 * mix). Every matrix of the default model at q2_s, validation perplexity on 40,000 tokens:
 * plain error compensation +10.33%; refined with mix 0 (H of the drifted inputs only) +10.56%,
 * 0.35 +8.23%, 0.5 +8.76%, 1 (on 8,192 tokens) +11.08% against +9.59%. */
#define QQ_REFINE_MIX 0.35

typedef struct {
    size_t matrices;  /* refined */
    size_t passes;    /* pairs of runs over the text */
    double seconds;
} qq_refine_stats;

/* Refines `types` (n_tensors type codes; the measurer must round with error compensation) and
 * installs the copies with qq_measurer_set_refined. Settings without a matrix at 4 or fewer bits
 * are left alone (stats->matrices 0): above that error compensation is already within noise of
 * f32. stats may be NULL. */
qr_status qq_refine_setting(qq_measurer *q, const uint32_t *types, qq_refine_stats *stats, qr_error *err);

/* True when refining `types` would change anything (a matrix at 4 or fewer bits). */
bool qq_refine_applies(const qq_measurer *q, const uint32_t *types);

#endif
