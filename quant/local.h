/* local.h: layer-local measurements, the module tier's cheap estimate of a matrix's damage.
 *
 * Measuring a matrix end to end (sensitivity.h) runs the whole model on the calibration text:
 * at SpikeGPT-216M's 128 matrices and several types each, hours. A matrix inside layer L can
 * only change the model's outputs through layer L's output, so this keeps, from one f32 run on
 * the calibration text, the residual stream entering every layer, and measures a setting of
 * layer L's matrices by running layer L alone on those inputs: the mean squared change of its
 * output (one layer instead of the model: about 1/n_layer of a pass, without the head).
 *
 * A change of the residual stream is not KL. Per layer, the search scales changes to damage with
 * the layer's own block-tier sensitivities, measured end to end at several types: the scale is
 * fitted on those pairs (qq_local_fit_scale), and a matrix's estimated damage is that scale
 * times its layer-local change. quant/README.md reports how well the estimates rank against end
 * to end measurements (`qslm-quant sensitivity --tier module --check-local`). */
#ifndef QQ_LOCAL_H
#define QQ_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hierarchy.h"
#include "measure.h"
#include "sensitivity.h"
#include "setting.h"

typedef struct qq_local qq_local;

/* Runs the f32 master (the measurer's view) once over the measurer's calibration text, keeping
 * every layer's input. Fails with QR_ERR_INVALID when the calibration split has no LM text (a
 * classifier-only model: the search then measures modules end to end). */
qr_status qq_local_new(qq_measurer *m, qq_local **out, qr_error *err);
void qq_local_free(qq_local *l);

/* The mean, over calibration positions, of the squared change (summed over channels) of the
 * residual stream after `layer` when that layer's matrices take their types from `types`
 * (the other layers' types do not matter: only this layer runs), against f32. Leaves the
 * measurer's view at `types`. */
qr_status qq_local_change(qq_local *l, const uint32_t *types, size_t layer, double *out, qr_error *err);

/* The layer-local change of node's matrices alone at `rung` (everything else f32), for a node
 * inside a layer's block (a matrix, a sub-block, or the block itself); remembered, so each is
 * run once. Fails for nodes outside the layers (the embedding, the head, the classifier). */
qr_status qq_local_node_change(qq_local *l, const qq_hierarchy *h, const qq_costs *costs, size_t node,
                               size_t rung, double *out, qr_error *err);

/* The scale of a layer's block (qq_local_fit_scale) over every rung whose block sensitivity is
 * already known (measured or cached: the block tier measured them), and how many pairs it was
 * fitted on (0: none known; then the scale is 0 and the search measures that layer's matrices
 * end to end). */
qr_status qq_local_block_scale(qq_local *l, qq_sensitivity *sens, const qq_hierarchy *h, const qq_costs *costs,
                               size_t block, size_t lo, size_t hi, double *scale, size_t *pairs, qr_error *err);

/* The factor that turns layer-local changes into damage (nats), fitted on n pairs of a layer's
 * measured damage and change at the same types: the geometric mean of damage / change over the
 * pairs where both are positive (so each type weighs alike, whatever its size). 0 when no pair
 * has both positive: a layer whose matrices never change the outputs measured has no damage to
 * scale to. */
double qq_local_fit_scale(const double *damage, const double *change, size_t n);

/* Spearman's rank correlation of two series (average ranks for ties); 0 if either is constant. */
double qq_rank_correlation(const double *a, const double *b, size_t n);

#endif
