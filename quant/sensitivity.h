/* sensitivity.h: how much each unit of the hierarchy minds being quantized to each type.
 *
 * The sensitivity of (unit, type) is measured, not estimated: that unit's matrices alone are
 * stored at the type, everything else stays f32, and the model runs on the calibration split
 * (measure.h). The damage is the mean KL divergence from the f32 model's next-token
 * distributions plus that of the classifier's class distributions, in nats. Results are cached
 * in a JSON Lines file keyed by the model's SHA-256 and the calibration data, so a second run —
 * or another budget of the same build — measures nothing twice. */
#ifndef QQ_SENSITIVITY_H
#define QQ_SENSITIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hierarchy.h"
#include "measure.h"

typedef struct {
    double damage;      /* kl + cls_kl, nats */
    double kl, cls_kl;
    double nll, accuracy;
} qq_sens;

typedef struct qq_sensitivity qq_sensitivity;

/* Called after each new measurement (not for cached ones), for progress. */
typedef void (*qq_sens_progress_fn)(void *ctx, const char *unit, uint32_t type, const qq_sens *s,
                                    size_t measured);

/* The cache key of a model and the calibration data its sensitivities are measured on:
 * "<model sha256> calib <sha256 of the content> ...". The content is everything a measurement on
 * calibration depends on: the LM tokens, each labelled item's tokens and label, the perplexity
 * window (calib->window, else `window`), and the quantizer's version; so other text of the same
 * length never answers from another's entries, and the same text does wherever it is held. */
#define QQ_SENS_KEY_SIZE 256
qr_status qq_sensitivity_key(const char *model_sha256, const qq_split *calib, size_t window,
                             char key[QQ_SENS_KEY_SIZE], qr_error *err);
/* Appends " " and a formatted description of another input of the measurements (how the
 * quantizer rounds, say) to a key; QR_ERR_INVALID if the key would not fit. */
qr_status qq_sensitivity_key_append(char key[QQ_SENS_KEY_SIZE], qr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* cache_path may be NULL (no cache). key identifies the model and calibration data; entries
 * with another key in the file are ignored. */
qr_status qq_sensitivity_new(qq_measurer *m, const qr_model_file *master, const qq_hierarchy *h,
                             const char *cache_path, const char *key, qq_sens_progress_fn progress,
                             void *progress_ctx, qq_sensitivity **out, qr_error *err);
void qq_sensitivity_free(qq_sensitivity *s);

/* The sensitivity of node (any tier) at `type` (f32 is 0 damage without a run). */
qr_status qq_sensitivity_get(qq_sensitivity *s, size_t node, uint32_t type, qq_sens *out,
                             qr_error *err);

/* The sensitivity if it is already known (measured or cached), without measuring. */
bool qq_sensitivity_lookup(qq_sensitivity *s, size_t node, uint32_t type, qq_sens *out);

/* How many (unit, type) pairs were measured / answered from the cache so far. */
size_t qq_sensitivity_measured(const qq_sensitivity *s);
size_t qq_sensitivity_cached(const qq_sensitivity *s);

#endif
