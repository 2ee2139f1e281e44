/* sampler.h: picking the next token from logits.
 *
 * Greedy, temperature, top-k, top-p and a repetition penalty, driven by a seeded generator of
 * our own (xoshiro256**), so a given seed gives the same tokens on every machine and every run.
 * Stop strings are text, not tokens: see stop.h. */
#ifndef QR_SAMPLER_H
#define QR_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct {
    float temperature;         /* <= 0: greedy (argmax, lowest id on ties) */
    size_t top_k;              /* 0: off */
    float top_p;               /* >= 1: off */
    float repetition_penalty;  /* 1: off; > 1 discourages tokens in the history */
    size_t repetition_window;  /* how many of the latest history tokens count (0: all) */
    uint64_t seed;
} qr_sampler_params;

/* temperature 1, no top-k, top-p 1, no penalty, seed 0 */
qr_sampler_params qr_sampler_defaults(void);

typedef struct qr_sampler qr_sampler;

/* Checks the parameters (finite, in range) and allocates scratch for `vocab` logits. */
qr_status qr_sampler_new(size_t vocab, const qr_sampler_params *params, qr_sampler **out,
                         qr_error *err);
void qr_sampler_free(qr_sampler *s);

/* Picks a token. `logits` (vocab values) is modified in place. `history` is the sequence so
 * far (prompt and generated), used only by the repetition penalty. */
int32_t qr_sampler_sample(qr_sampler *s, float *logits, const int32_t *history, size_t n_history);

/* The generator, exposed for tests: uniform in [0, 1). */
double qr_sampler_uniform(qr_sampler *s);

#endif
