/* forward.h: the SpikeGPT forward pass over B rows, each one token of a sequence.
 *
 * B = 1 is decode (matrix-vector products on the worker pool). Up to 8 rows (a daemon serving a
 * few requests) run the same decode kernels, each slice of weights read once for all rows. More
 * rows (a chunk of one sequence's known tokens, or an evaluator's many sequences) are matrix-
 * matrix products on the pool: the integer gemm for the quantized types, x rounded to 8 bits
 * exactly as decode rounds it (linear.h). Every path runs the same code, so they compute the
 * same function; only the summation order inside the products differs. */
#ifndef QR_FORWARD_H
#define QR_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"
#include "pool.h"
#include "state.h"

/* Optional record of the spikes a forward pass emits. */
typedef struct {
    uint8_t *att_spikes;   /* n_layer × d: the last call's spikes of batch item 0, or NULL */
    uint8_t *ffn_spikes;   /* n_layer × d, or NULL */
    uint64_t *att_fired;   /* n_layer: spikes counted over all tokens and items, or NULL */
    uint64_t *ffn_fired;   /* n_layer, or NULL */
    uint8_t *hidden_spikes; /* n_layer × n_ffn (spike.ffn_hidden models), or NULL */
    uint64_t *hidden_fired; /* n_layer, or NULL */
    uint64_t tokens;       /* token × item count the counters cover */
    /* The last call's membrane values before the threshold, H = V + (in − V)/τ (a neuron fired
     * where H ≥ θ), of every row: rows × n_layer × d floats each, or NULL. Tests hold a chunk's
     * spikes to decode's with them: a spike may differ only where H is near θ. */
    float *att_h, *ffn_h;
} qr_spike_trace;

typedef struct qr_runner qr_runner;

/* A runner made with a pool of several threads and for at least 2 × QR_PART_MIN_ROWS rows keeps
 * up to QR_RUNNER_PARTS_MAX runners of its own: a call of that many rows whose states' rows are
 * consecutive (sequence-major) runs as one part per thread. */
#define QR_RUNNER_PARTS_MAX 8
#define QR_PART_MIN_ROWS 32

/* Scratch for batches of up to max_batch sequences. The pool (may be NULL: single-threaded)
 * and the model must outlive the runner. */
qr_status qr_runner_new(const qr_model *m, qr_pool *pool, size_t max_batch, qr_runner **out,
                        qr_error *err);
void qr_runner_free(qr_runner *r);
/* The bytes qr_runner_new allocates for this model and batch (the served footprint counts it). */
uint64_t qr_runner_bytes(const qr_model *m, size_t max_batch);
/* Records spikes into trace from now on (NULL stops recording). */
void qr_runner_set_trace(qr_runner *r, qr_spike_trace *trace);
const qr_model *qr_runner_model(const qr_runner *r);
/* The most rows one qr_forward call takes (the max_batch it was made for). */
size_t qr_runner_max_batch(const qr_runner *r);
/* The worker pool it was made with (NULL: single-threaded). Between qr_forward calls it is idle,
 * and the evaluators score a call's rows on it. */
qr_pool *qr_runner_pool(const qr_runner *r);
/* How many calls ran split into parts so far (benchmarks and tests look). */
uint64_t qr_runner_split_calls(const qr_runner *r);

/* Sees the input of every dense product before it runs: x is B rows of w->cols floats. QSLM
 * gathers each matrix's per-column mean squared activation with it (the importance its
 * quantizer weights errors by). NULL stops it. */
typedef void (*qr_product_observer)(void *ctx, const qr_matrix *w, const float *x, size_t B);
void qr_runner_set_observer(qr_runner *r, qr_product_observer fn, void *ctx);

/* Advances states[b] by tokens[b] for b < B. Rows run in order wherever one depends on another's
 * state, so a state may appear in several rows: rows t·S .. t·S + S - 1 holding S sequences at
 * step t, for T steps, advance each of them T tokens (a chunk), every product over all T·S rows
 * at once. The evaluators use that (eval.h). Writes, when not NULL, logits (B × vocab, needs an
 * LM head) and features (B × d: ln_out(x), what the classifier averages). Fails without touching
 * any state if a token is out of range or B exceeds the runner's batch. */
qr_status qr_forward(qr_runner *r, qr_state *const *states, const int32_t *tokens, size_t B,
                     float *logits, float *features, qr_error *err);

/* Advances one sequence by T known tokens (a prompt, a text to classify), in calls of up to the
 * runner's max_batch consecutive tokens (chunks): each product of a chunk is one matrix-matrix
 * product over its tokens, the WKV and the membranes run through them in order. Writes the
 * last token's logits when last_logits is not NULL (vocab floats; the head runs on that token
 * only), and adds every token's features (ln_out(x), what the classifier averages) to
 * feature_sum (d doubles) when it is not NULL. Computes what T one-token qr_forward calls
 * compute but for the products' rounding (tests/runtime/test_chunk.c states the bounds). Fails
 * without touching the state if a token is out of range. */
qr_status qr_forward_sequence(qr_runner *r, qr_state *state, const int32_t *tokens, size_t T, float *last_logits,
                              double *feature_sum, qr_error *err);

/* The pass in three stages, for measurements that change one layer and start from inputs kept
 * from an earlier run (QSLM's layer-local sensitivities): the embedding (ln0 of it) of B tokens
 * into x (B × d); layers [first, last) on x in place, advancing the states in those layers
 * only (rows as qr_forward takes them); and ln_out of x into features (B × d) and the head's
 * logits (B × vocab), either may be NULL. x is the residual stream, so embed, then layers 0..n,
 * then output computes what qr_forward does, to the bit. */
qr_status qr_forward_embed(qr_runner *r, const int32_t *tokens, size_t B, float *x, qr_error *err);
qr_status qr_forward_layers(qr_runner *r, qr_state *const *states, float *x, size_t B, size_t first,
                            size_t last, qr_error *err);
qr_status qr_forward_output(qr_runner *r, float *x, size_t B, float *logits, float *features,
                            qr_error *err);

/* Classifier logits (n_classes) of head 0 from the mean feature of a sequence. */
void qr_classify(const qr_model *m, const float *mean_feature, float *class_logits);
/* The same for head `head` (< m->head_info.n): m->cls[head].n_classes logits. */
void qr_classify_head(const qr_model *m, size_t head, const float *mean_feature, float *class_logits);

#endif
