/* state.h: the recurrent state of one sequence.
 *
 * SpikeGPT in RNN mode carries a fixed-size state per layer: RWKV-4's time-mix shift and WKV
 * accumulators and the channel-mix shift, plus the membrane potentials of the two LIF neurons.
 * It does not depend on how the weights are quantized, which is what lets the daemon move a
 * generation from one variant to another between two tokens. */
#ifndef QR_STATE_H
#define QR_STATE_H

#include <stddef.h>

#include "error.h"
#include "model.h"

/* The per-layer vectors, each of d floats, in this order. */
typedef enum {
    QR_STATE_ATT_XX = 0, /* previous token's ln1(x), for the time-mix shift */
    QR_STATE_AA,         /* WKV numerator accumulator */
    QR_STATE_BB,         /* WKV denominator accumulator */
    QR_STATE_PP,         /* WKV running max exponent (starts at -1e30) */
    QR_STATE_FFN_XX,     /* previous token's ln2(x), for the channel-mix shift */
    QR_STATE_V_ATT,      /* LIF membrane after the time-mix */
    QR_STATE_V_FFN,      /* LIF membrane after the channel-mix */
    QR_STATE_VECTORS
} qr_state_vector;

/* Models with spike.ffn_hidden add, after those, a membrane per channel-mix hidden unit
 * (n_ffn floats per layer). */
typedef struct {
    size_t n_layer, d;
    size_t n_hidden;     /* n_ffn with spike.ffn_hidden, else 0 */
    size_t layer_floats; /* QR_STATE_VECTORS × d + n_hidden */
    float *data;         /* n_layer × layer_floats */
} qr_state;

qr_status qr_state_new(const qr_model *m, qr_state **out, qr_error *err);
void qr_state_free(qr_state *s);
/* Back to the start of a sequence. */
void qr_state_reset(qr_state *s);
/* dst := src; both must be for the same model shape. */
void qr_state_copy(qr_state *dst, const qr_state *src);
size_t qr_state_bytes(const qr_state *s);

static inline float *qr_state_vec(qr_state *s, size_t layer, qr_state_vector v)
{
    return s->data + layer * s->layer_floats + (size_t)v * s->d;
}

/* The hidden LIF membranes of a layer (n_hidden floats); only for spike.ffn_hidden models. */
static inline float *qr_state_hidden_membrane(qr_state *s, size_t layer)
{
    return s->data + layer * s->layer_floats + QR_STATE_VECTORS * s->d;
}

#endif
