/* task.h: the per-request work the inference thread interleaves.
 *
 * A generate request is one sequence; a classify request is one sequence per text. A sequence
 * first reads its input (a generate's prompt, a classify's text) in chunks: up to the engine's
 * chunk of consecutive tokens, run as rows of one state in one forward call
 * (qr_forward_sequence). A generate's last chunk gives the logits of the prompt's last token,
 * hence its first token; then it steps one token at a time, each step's logits giving the next.
 * Each round the engine asks every task for its share of chunks (qd_task_chunks) and of steps
 * (qd_task_slots: run in batches with other sequences' steps); engine.h says how the shares are
 * made. It hands each task its outputs back. A task builds its own reply lines (token events,
 * the done message, the classification result) and ends by posting its job's FINAL event. Tasks
 * never see the variant directly: the engine passes the model and the variant's name for each
 * round, since a switch may happen between any two rounds.
 *
 * Chunks start at multiples of the chunk size from the start of the input, whatever the shares:
 * a sequence's rows are grouped into forward calls the same way however busy the daemon is, so
 * its results do not depend on what else runs (qslm-generate reads a prompt in the same
 * chunks). */
#ifndef QD_TASK_H
#define QD_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "model.h"
#include "state.h"
#include "tokenizer.h"

typedef struct qd_task qd_task;

/* Some of one sequence's next tokens: feed tokens[0..n) into state, in order. A step (n is 1)
 * wants the logits and/or the features of its token; a chunk wants the logits of its last token
 * (want_logits) and/or its tokens' features added to feature_sum. */
typedef struct {
    qd_task *task;
    size_t sub;              /* which of the task's sequences */
    qr_state *state;
    const int32_t *tokens;   /* n tokens, in the task's own arrays (valid until the task ends) */
    size_t n;                /* 1 for a step; 1..chunk for a chunk of input */
    bool want_logits, want_features;
    double *feature_sum;     /* a chunk's: d doubles the task owns, or NULL */
} qd_slot;

/* What a task needs to start: the tokenizer of the bundle, the model serving now and the
 * engine's chunk (tokens of input per chunk, >= 1). The task keeps a reference on bundle, the
 * tokenizer's owner, for as long as it lives: a reload may switch the engine to another bundle
 * while a generation still decodes with this one's tokenizer. */
typedef struct {
    const qr_tokenizer *tok;
    int32_t eot;
    const qr_model *model;
    qd_bundle *bundle;
    size_t chunk;
} qd_task_env;

/* Starts job's task: tokenizes, allocates states and samplers. On failure it has posted the
 * job's FINAL error event to out and returns NULL. */
qd_task *qd_task_start(qd_job *job, const qd_task_env *env, qd_event_list *out);

/* Appends at most max of the task's steps for this round to slots (room for at least
 * min(max, qd_task_width)) and returns how many: one per generation past its prompt. */
size_t qd_task_slots(qd_task *t, qd_slot *slots, size_t max);

/* How many steps the task would give this round without a limit. */
size_t qd_task_demand(const qd_task *t);

/* The most steps the task can give in one round. */
size_t qd_task_width(const qd_task *t);

/* The chunks of input the task has still to read (all of its sequences'), and in *readers how
 * many of its sequences are still reading. */
size_t qd_task_chunk_demand(const qd_task *t, size_t *readers);

/* Appends at most max chunks of input to slots (room for max) and returns how many, each
 * sequence's in order. The chunks go one per reading sequence in turn, from where the last
 * round stopped, until max: so a task given at least as many as it has readers advances every
 * one of them, and one given fewer rotates which do. */
size_t qd_task_chunks(qd_task *t, qd_slot *slots, size_t max);

/* The outputs of one of its slots, as the slot asked: logits (vocab floats, may be modified: a
 * step's, or a chunk's last token's) and/or a step's features (d floats; a chunk's went to its
 * feature_sum); variant names the variant that computed them. Slots are handed back in the order
 * the task gave them. */
void qd_task_step(qd_task *t, const qd_slot *slot, float *logits, const float *features,
                  const char *variant, const qr_model *m, qd_event_list *out);

/* Called after each round: a task that is complete posts its FINAL event and returns true. */
bool qd_task_settle(qd_task *t, const qr_model *m, qd_event_list *out);

/* Ends the task now: cancel (done message with "cancelled" for generate, `cancelled` for
 * classify), shutdown (`shutting_down`), a vanished client (no line), or an error (code and
 * message). Posts the FINAL event. */
void qd_task_abort(qd_task *t, qd_cancel_reason why, qd_event_list *out);
void qd_task_fail(qd_task *t, qi_code code, const char *message, qd_event_list *out);

/* The served variant just changed (the task's states fit the new one): a sequence still
 * reading its input (a generate's prompt, a classify's texts) starts reading it again on the new
 * variant, so that no output mixes two variants' states where the reply cannot say so (a
 * generate's spans cover generated tokens only; a classify reply names no variant). Sequences
 * past their input carry on with their state, and their spans show the switch. A task restarts
 * once at most, so switches cannot starve it: after that its input carries on across switches
 * (the engine holds the next switch until restarted inputs are read, up to a bound, so this
 * happens only to long inputs under back-to-back switches). */
void qd_task_rebase(qd_task *t);

/* The task waited ms between two tokens while a switch unloaded the old variant before
 * loading the new one: a generation's done message reports the total (switch_wait_ms). */
void qd_task_waited(qd_task *t, double ms);

/* Input tokens the task has still to read (the longest of its sequences), 0 once it generates. */
size_t qd_task_input_left(const qd_task *t);

/* True when the task's states fit model m (a switch or reload to another shape cannot carry
 * them). */
bool qd_task_fits(const qd_task *t, const qr_model *m);

qd_job *qd_task_job(const qd_task *t);
uint32_t qd_task_tokens(const qd_task *t);

void qd_task_free(qd_task *t);

#endif
