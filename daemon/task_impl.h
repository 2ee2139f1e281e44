/* task_impl.h: what task.c's dispatch shares with the two kinds of task. Private to the
 * engine's tasks. */
#ifndef QD_TASK_IMPL_H
#define QD_TASK_IMPL_H

#include "task.h"

typedef struct qd_generation qd_generation;
typedef struct qd_classification qd_classification;

struct qd_task {
    qd_job *job;
    qd_generation *gen;      /* exactly one of gen and cls */
    qd_classification *cls;
    qd_bundle *bundle;       /* a reference: the tokenizer the task uses is this bundle's */
};

/* monotonic seconds */
double qd_now(void);

qd_generation *qd_generation_start(qd_task *t, const qd_task_env *env, qd_event_list *out);
size_t qd_generation_slots(qd_generation *g, qd_task *t, qd_slot *slots);
size_t qd_generation_demand(const qd_generation *g);
size_t qd_generation_chunk_demand(const qd_generation *g);
size_t qd_generation_chunks(qd_generation *g, qd_task *t, qd_slot *slots, size_t max);
void qd_generation_read(qd_generation *g, size_t n, float *logits, const char *variant, qd_event_list *out);
bool qd_generation_settle(qd_generation *g, qd_event_list *out);
void qd_generation_abort(qd_generation *g, qd_cancel_reason why, qd_event_list *out);
bool qd_generation_fits(const qd_generation *g, const qr_model *m);
void qd_generation_rebase(qd_generation *g);
void qd_generation_waited(qd_generation *g, double ms);
size_t qd_generation_input_left(const qd_generation *g);
uint32_t qd_generation_tokens(const qd_generation *g);
void qd_generation_free(qd_generation *g);

qd_classification *qd_classification_start(qd_task *t, const qd_task_env *env, qd_event_list *out);
size_t qd_classification_chunk_demand(const qd_classification *c, size_t *readers);
size_t qd_classification_chunks(qd_classification *c, qd_task *t, qd_slot *slots, size_t max);
void qd_classification_read(qd_classification *c, size_t sub, size_t n);
bool qd_classification_settle(qd_classification *c, const qr_model *m, qd_event_list *out);
bool qd_classification_fits(const qd_classification *c, const qr_model *m);
void qd_classification_rebase(qd_classification *c);
size_t qd_classification_input_left(const qd_classification *c);
void qd_classification_free(qd_classification *c);

#endif
