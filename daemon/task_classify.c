/* task_classify.c: one classify request: every text is its own sequence, read in chunks (the
 * texts take the round's chunks in turn); the mean of ln_out(x) over a text's tokens, summed in
 * double in token order, goes through the classifier head (as runtime/eval.c computes accuracy),
 * and a softmax gives the probabilities. */
#include "task_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "footprint.h"
#include "reply.h"

typedef struct {
    int32_t *ids;
    size_t n, fed; /* fed: whole chunks, until the last */
    qr_state *state;
    double *sums; /* d */
    size_t grant; /* chunks given this round (qd_classification_chunks) */
} text_seq;

struct qd_classification {
    qd_job *job;
    text_seq *seqs;
    size_t n;
    size_t d;
    size_t chunk;   /* tokens per chunk (the engine's) */
    char task[QR_TASK_NAME_MAX + 1]; /* the head's name: looked up again in whichever variant settles */
    size_t n_classes;
    bool restarted; /* the texts were read again after a switch (once at most) */
    size_t next;    /* the text that gets the first chunk next round */
};

qd_classification *qd_classification_start(qd_task *t, const qd_task_env *env, qd_event_list *out)
{
    qd_job *job = t->job;
    const qi_classify *rq = &job->req.u.classify;
    const qr_model *m = env->model;
    if (m->head_info.n == 0) {
        qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, NULL, "the model has no classifier head");
        return NULL;
    }
    int head = qr_model_task(m, rq->task);
    if (head < 0) {
        char tasks[QR_HEADS_MAX * (QR_TASK_NAME_MAX + 2) + 1];
        size_t used = 0;
        for (size_t i = 0; i < m->head_info.n; i++)
            used += (size_t)snprintf(tasks + used, sizeof tasks - used, "%s%s", i ? ", " : "",
                                     m->head_info.heads[i].name);
        qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, "task", "task: unknown task '%s'; the model's tasks: %s",
                       rq->task, tasks);
        return NULL;
    }
    qd_classification *c = calloc(1, sizeof *c);
    if (!c || !(c->seqs = calloc(rq->n_texts, sizeof *c->seqs))) {
        free(c);
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    c->job = job;
    c->n = rq->n_texts;
    c->d = m->d;
    c->chunk = env->chunk;
    snprintf(c->task, sizeof c->task, "%s", m->head_info.heads[head].name);
    c->n_classes = m->cls[head].n_classes;
    for (size_t i = 0; i < c->n; i++) {
        text_seq *s = &c->seqs[i];
        qr_error err;
        char field[32];
        if (rq->single)
            snprintf(field, sizeof field, "text");
        else
            snprintf(field, sizeof field, "texts[%zu]", i);
        if (qr_encode_for_model(env->tok, m->vocab, rq->texts[i], strlen(rq->texts[i]), field, &s->ids, &s->n,
                                &err)) {
            qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, field, "%s: %s", field, err.msg);
            goto fail;
        }
        if (s->n == 0) {
            qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, field, "%s: encodes to no token", field);
            goto fail;
        }
        if (qr_state_new(m, &s->state, &err) || !(s->sums = calloc(c->d, sizeof *s->sums))) {
            qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "out of memory");
            goto fail;
        }
    }
    return c;
fail:
    qd_classification_free(c);
    return NULL;
}

static size_t chunks_left(const qd_classification *c, const text_seq *s)
{
    return (s->n - s->fed + c->chunk - 1) / c->chunk;
}

size_t qd_classification_chunk_demand(const qd_classification *c, size_t *readers)
{
    size_t k = 0, r = 0;
    for (size_t i = 0; i < c->n; i++) {
        size_t left = chunks_left(c, &c->seqs[i]);
        k += left;
        r += left > 0;
    }
    *readers = r;
    return k;
}

/* One chunk for each text still being read, in turn from c->next on, until max are given or
 * none is left: max-min fair across the texts, the remainder rotating. Then each text's chunks,
 * in order. */
size_t qd_classification_chunks(qd_classification *c, qd_task *t, qd_slot *slots, size_t max)
{
    size_t given = 0, i = c->next;
    for (size_t j = 0; j < c->n; j++)
        c->seqs[j].grant = 0;
    for (bool any = true; any && given < max;) {
        any = false;
        for (size_t seen = 0; seen < c->n && given < max; seen++, i = (i + 1) % c->n) {
            text_seq *s = &c->seqs[i];
            if (s->grant < chunks_left(c, s)) {
                s->grant++;
                given++;
                any = true;
            }
        }
    }
    c->next = i;
    size_t k = 0;
    for (size_t j = 0; j < c->n; j++) {
        text_seq *s = &c->seqs[j];
        for (size_t g = 0, at = s->fed; g < s->grant; g++, at += c->chunk)
            slots[k++] = (qd_slot){.task = t, .sub = j, .state = s->state, .tokens = s->ids + at,
                                   .n = s->n - at < c->chunk ? s->n - at : c->chunk, .feature_sum = s->sums};
    }
    return k;
}

/* n tokens of text sub were read, their features added to its sums (in token order, as one
 * token at a time adds them). */
void qd_classification_read(qd_classification *c, size_t sub, size_t n)
{
    c->seqs[sub].fed += n;
    c->job->tokens_read += (uint32_t)n;
}

bool qd_classification_settle(qd_classification *c, const qr_model *m, qd_event_list *out)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->seqs[i].fed < c->seqs[i].n)
            return false;
    int head = qr_model_task(m, c->task); /* fits() made sure the variant has it */
    if (head < 0) {
        qd_event_error(out, c->job, QI_ERR_INTERNAL, NULL, "task '%s' is gone from the variant", c->task);
        return true;
    }
    size_t k = m->cls[head].n_classes;
    float *mean = malloc(c->d * sizeof *mean);
    float *probs = malloc(c->n * k * sizeof *probs);
    qi_class_result *res = malloc(c->n * sizeof *res);
    char *line = NULL;
    size_t len = 0;
    if (!mean || !probs || !res) {
        free(mean);
        free(probs);
        free(res);
        qd_event_error(out, c->job, QI_ERR_INTERNAL, NULL, "out of memory");
        return true;
    }
    for (size_t i = 0; i < c->n; i++) {
        const text_seq *s = &c->seqs[i];
        for (size_t j = 0; j < c->d; j++)
            mean[j] = (float)(s->sums[j] / (double)s->n);
        float *p = probs + i * k;
        qr_classify_head(m, (size_t)head, mean, p);
        size_t best = 0;
        for (size_t j = 1; j < k; j++)
            if (p[j] > p[best])
                best = j;
        double z = 0.0, top = p[best];
        for (size_t j = 0; j < k; j++)
            z += exp((double)p[j] - top);
        for (size_t j = 0; j < k; j++)
            p[j] = (float)(exp((double)p[j] - top) / z);
        res[i] = (qi_class_result){.label = (int32_t)best, .probs = p, .n_probs = k};
    }
    const qr_head_info *hi = &m->head_info.heads[head];
    const qi_class_head hd = {hi->name, hi->labels, hi->n_classes};
    if (atomic_load(&c->job->cancel) != QD_CANCEL_GONE)
        qi_reply_classify(&c->job->req.id, &hd, res, c->n, &line, &len, NULL);
    qd_event_final(out, c->job, line, len, 0, false);
    free(mean);
    free(probs);
    free(res);
    return true;
}

bool qd_classification_fits(const qd_classification *c, const qr_model *m)
{
    const qr_state *s = c->seqs[0].state;
    int head = qr_model_task(m, c->task);
    return head >= 0 && m->cls[head].n_classes == c->n_classes && s->n_layer == m->n_layer && s->d == m->d &&
           qr_state_bytes(s) == qr_state_bytes_for(m);
}

/* Every text again from its start: the reply gives one result per text with no variant, so all
 * of them come from the variant that finishes them. */
void qd_classification_rebase(qd_classification *c)
{
    if (c->restarted)
        return;
    for (size_t i = 0; i < c->n; i++) {
        text_seq *s = &c->seqs[i];
        if (s->fed == 0)
            continue;
        c->restarted = true;
        qr_state_reset(s->state);
        memset(s->sums, 0, c->d * sizeof *s->sums);
        s->fed = 0;
    }
}

size_t qd_classification_input_left(const qd_classification *c)
{
    size_t left = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->seqs[i].n - c->seqs[i].fed > left)
            left = c->seqs[i].n - c->seqs[i].fed;
    return left;
}

void qd_classification_free(qd_classification *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->seqs[i].ids);
        free(c->seqs[i].sums);
        qr_state_free(c->seqs[i].state);
    }
    free(c->seqs);
    free(c);
}
