/* task.c: one interface over the two kinds of task (task_generate.c, task_classify.c). */
#include "task_impl.h"

#include <stdlib.h>
#include <time.h>

double qd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

qd_task *qd_task_start(qd_job *job, const qd_task_env *env, qd_event_list *out)
{
    qd_task *t = calloc(1, sizeof *t);
    if (!t) {
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    t->job = job;
    t->bundle = env->bundle;
    if (t->bundle)
        qd_bundle_ref(t->bundle);
    if (job->req.op == QI_OP_GENERATE)
        t->gen = qd_generation_start(t, env, out);
    else
        t->cls = qd_classification_start(t, env, out);
    if (!t->gen && !t->cls) { /* the start posted the error */
        qd_bundle_unref(t->bundle);
        free(t);
        return NULL;
    }
    return t;
}

size_t qd_task_width(const qd_task *t)
{
    return t->gen ? 1 : 0; /* a classify only reads */
}

size_t qd_task_slots(qd_task *t, qd_slot *slots, size_t max)
{
    if (!max || !t->gen)
        return 0;
    return qd_generation_slots(t->gen, t, slots);
}

size_t qd_task_demand(const qd_task *t)
{
    return t->gen ? qd_generation_demand(t->gen) : 0;
}

size_t qd_task_chunk_demand(const qd_task *t, size_t *readers)
{
    if (t->cls)
        return qd_classification_chunk_demand(t->cls, readers);
    size_t n = qd_generation_chunk_demand(t->gen);
    *readers = n > 0;
    return n;
}

size_t qd_task_chunks(qd_task *t, qd_slot *slots, size_t max)
{
    if (!max)
        return 0;
    return t->gen ? qd_generation_chunks(t->gen, t, slots, max) : qd_classification_chunks(t->cls, t, slots, max);
}

void qd_task_step(qd_task *t, const qd_slot *slot, float *logits, const float *features,
                  const char *variant, const qr_model *m, qd_event_list *out)
{
    (void)m;
    (void)features; /* a classify's chunks add theirs to feature_sum; a step wants none */
    if (t->cls)
        qd_classification_read(t->cls, slot->sub, slot->n);
    else
        qd_generation_read(t->gen, slot->n, slot->want_logits ? logits : NULL, variant, out);
}

bool qd_task_settle(qd_task *t, const qr_model *m, qd_event_list *out)
{
    return t->gen ? qd_generation_settle(t->gen, out) : qd_classification_settle(t->cls, m, out);
}

void qd_task_abort(qd_task *t, qd_cancel_reason why, qd_event_list *out)
{
    if (why == QD_CANCEL_FAULT) {
        qd_event_error(out, t->job, QI_ERR_INTERNAL, NULL, "inference failed on this request");
        return;
    }
    if (t->gen) {
        qd_generation_abort(t->gen, why, out);
        return;
    }
    if (why == QD_CANCEL_SHUTDOWN)
        qd_event_error(out, t->job, QI_ERR_SHUTTING_DOWN, NULL, "the daemon is stopping");
    else
        qd_event_error(out, t->job, QI_ERR_CANCELLED, NULL, "cancelled");
}

void qd_task_fail(qd_task *t, qi_code code, const char *message, qd_event_list *out)
{
    qd_event_error(out, t->job, code, NULL, "%s", message);
}

bool qd_task_fits(const qd_task *t, const qr_model *m)
{
    return t->gen ? qd_generation_fits(t->gen, m) : qd_classification_fits(t->cls, m);
}

void qd_task_rebase(qd_task *t)
{
    if (t->gen)
        qd_generation_rebase(t->gen);
    else
        qd_classification_rebase(t->cls);
}

void qd_task_waited(qd_task *t, double ms)
{
    if (t->gen)
        qd_generation_waited(t->gen, ms);
}

size_t qd_task_input_left(const qd_task *t)
{
    return t->gen ? qd_generation_input_left(t->gen) : qd_classification_input_left(t->cls);
}

qd_job *qd_task_job(const qd_task *t)
{
    return t->job;
}

uint32_t qd_task_tokens(const qd_task *t)
{
    return t->gen ? qd_generation_tokens(t->gen) : 0;
}

void qd_task_free(qd_task *t)
{
    if (!t)
        return;
    qd_generation_free(t->gen);
    qd_classification_free(t->cls);
    qd_bundle_unref(t->bundle);
    free(t);
}
