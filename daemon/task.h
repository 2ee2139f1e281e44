/* task.h: the per-request work the inference thread interleaves, one token per sequence per
 * round at most.
 *
 * A generate request is one sequence; a classify request is one sequence per text. Each round
 * the engine asks every task for up to its share of next input tokens (slots; engine.h says how
 * the shares are made), runs them through the model in
 * batches, and hands each task its outputs back. A task builds its own reply lines (token
 * events, the done message, the classification result) and ends by posting its job's FINAL
 * event. Tasks never see the variant directly: the engine passes the model and the variant's
 * name for each round, since a switch may happen between any two rounds. */
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

/* One sequence's next step: feed token into state; the task wants the logits and/or the
 * features of that step. */
typedef struct {
    qd_task *task;
    size_t sub;       /* which of the task's sequences */
    qr_state *state;
    int32_t token;
    bool want_logits, want_features;
} qd_slot;

/* What a task needs to start: the tokenizer of the bundle and the model serving now. The task
 * keeps a reference on bundle, the tokenizer's owner, for as long as it lives: a reload may
 * switch the engine to another bundle while a generation still decodes with this one's
 * tokenizer. */
typedef struct {
    const qr_tokenizer *tok;
    int32_t eot;
    const qr_model *model;
    qd_bundle *bundle;
} qd_task_env;

/* Starts job's task: tokenizes, allocates states and samplers. On failure it has posted the
 * job's FINAL error event to out and returns NULL. */
qd_task *qd_task_start(qd_job *job, const qd_task_env *env, qd_event_list *out);

/* Appends at most max of the task's slots for this round to slots (room for at least
 * min(max, qd_task_width)) and returns how many. A task given fewer slots than it wants
 * rotates which of its sequences advance, so all of them do over a few rounds. */
size_t qd_task_slots(qd_task *t, qd_slot *slots, size_t max);

/* How many slots the task would give this round without a limit (its sequences still reading
 * or generating). */
size_t qd_task_demand(const qd_task *t);

/* The most slots the task can give in one round. */
size_t qd_task_width(const qd_task *t);

/* The outputs of one of its slots: logits (vocab floats, may be modified) and/or features (d
 * floats), as the slot asked; variant names the variant that computed them. */
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
