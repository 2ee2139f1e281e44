/* task_generate.c: one generate request: read the prompt in chunks (the last one gives the
 * logits of the prompt's last token, hence the first token), then sample one token per round,
 * stream each token's text (held back while it may be a stop string or half a UTF-8
 * character), and end with the done message and its stats.
 *
 * Text rule (PROTOCOL.md 2.1): the concatenation of the token events' text is the done
 * message's text. Text still held back when the generation ends at max_tokens is released with
 * the last token's event; an end-of-text token gets its own event carrying it; a cancelled or
 * failed generation drops it (it was never shown). */
#include "task_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "dataset.h"
#include "footprint.h"
#include "reply.h"
#include "sampler.h"
#include "stop.h"

#define REPETITION_WINDOW 64

typedef struct {
    char *variant;
    uint32_t from, to;
} span;

struct qd_generation {
    qd_job *job;
    const qr_tokenizer *tok;
    int32_t eot;
    qr_state *state;
    int32_t *ids;          /* prompt, then generated tokens */
    size_t n_prompt, n_ids;
    size_t chunk;          /* prompt tokens per chunk (the engine's) */
    size_t fed;            /* prompt tokens fed so far: whole chunks, until the last */
    qr_sampler *sampler;
    qr_stop *stop;
    qr_utf8_stream utf8;
    char *text;            /* everything sent so far */
    size_t text_len, text_cap;
    span *spans;
    size_t n_spans;
    uint32_t generated, max_tokens;
    bool finished;
    bool restarted;        /* the prompt was read again after a switch (once at most) */
    qi_stop_reason reason;
    double t_gen_start;
    double switch_wait_ms; /* waited with no variant loaded (qd_task_waited) */
};

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
        s = (uint64_t)(qd_now() * 1e9);
    return s;
}

qd_generation *qd_generation_start(qd_task *t, const qd_task_env *env, qd_event_list *out)
{
    qd_job *job = t->job;
    const qi_generate *rq = &job->req.u.generate;
    if (!env->model->has_lm_head) {
        qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, NULL, "the model has no LM head: it cannot generate");
        return NULL;
    }
    qd_generation *g = calloc(1, sizeof *g);
    if (!g) {
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    g->job = job;
    g->tok = env->tok;
    g->eot = env->eot;
    g->chunk = env->chunk;
    g->max_tokens = rq->max_tokens;
    qr_utf8_stream_init(&g->utf8);
    qr_error err;
    int32_t *ids = NULL;
    size_t n = 0;
    if (qr_encode_for_model(env->tok, env->model->vocab, rq->prompt, strlen(rq->prompt), "prompt", &ids,
                            &n, &err)) {
        qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, "prompt", "prompt: %s", err.msg);
        goto fail;
    }
    if (n == 0) {
        free(ids);
        qd_event_error(out, job, QI_ERR_INVALID_ARGUMENT, "prompt", "prompt: encodes to no token");
        goto fail;
    }
    g->ids = realloc(ids, (n + rq->max_tokens) * sizeof *g->ids);
    if (!g->ids) {
        free(ids);
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "out of memory for a %zu-token prompt", n);
        goto fail;
    }
    g->n_prompt = g->n_ids = n;
    qr_sampler_params sp = qr_sampler_defaults();
    sp.temperature = (float)rq->temperature;
    sp.top_k = rq->top_k;
    sp.top_p = (float)rq->top_p;
    sp.repetition_penalty = (float)rq->repetition_penalty;
    sp.repetition_window = REPETITION_WINDOW;
    sp.seed = rq->has_seed ? rq->seed : random_seed();
    if (qr_state_new(env->model, &g->state, &err) ||
        qr_sampler_new(env->model->vocab, &sp, &g->sampler, &err) ||
        qr_stop_new((const char *const *)rq->stop, rq->n_stop, &g->stop, &err)) {
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "%s", err.msg);
        goto fail;
    }
    return g;
fail:
    qd_generation_free(g);
    return NULL;
}

size_t qd_generation_demand(const qd_generation *g)
{
    return !g->finished && g->fed == g->n_prompt;
}

size_t qd_generation_chunk_demand(const qd_generation *g)
{
    return (g->n_prompt - g->fed + g->chunk - 1) / g->chunk;
}

size_t qd_generation_chunks(qd_generation *g, qd_task *t, qd_slot *slots, size_t max)
{
    size_t k = 0;
    for (size_t at = g->fed; k < max && at < g->n_prompt; at += g->chunk) {
        size_t n = g->n_prompt - at < g->chunk ? g->n_prompt - at : g->chunk;
        slots[k++] = (qd_slot){.task = t, .sub = 0, .state = g->state, .tokens = g->ids + at, .n = n,
                               .want_logits = at + n == g->n_prompt};
    }
    return k;
}

size_t qd_generation_slots(qd_generation *g, qd_task *t, qd_slot *slots)
{
    if (!qd_generation_demand(g))
        return 0;
    /* the last token sampled (ids holds the prompt, then each token sampled) */
    slots[0] = (qd_slot){.task = t, .sub = 0, .state = g->state, .tokens = g->ids + g->n_ids - 1, .n = 1,
                         .want_logits = true};
    return 1;
}

static bool text_append(qd_generation *g, const char *s, size_t n)
{
    if (g->text_len + n + 1 > g->text_cap) {
        size_t cap = g->text_cap ? g->text_cap : 256;
        while (cap < g->text_len + n + 1)
            cap *= 2;
        char *p = realloc(g->text, cap);
        if (!p)
            return false;
        g->text = p;
        g->text_cap = cap;
    }
    memcpy(g->text + g->text_len, s, n);
    g->text_len += n;
    g->text[g->text_len] = '\0';
    return true;
}

/* Records that token index `generated` was computed by variant. */
static void note_span(qd_generation *g, const char *variant)
{
    if (g->n_spans && strcmp(g->spans[g->n_spans - 1].variant, variant) == 0) {
        g->spans[g->n_spans - 1].to = g->generated + 1;
        return;
    }
    span *p = realloc(g->spans, (g->n_spans + 1) * sizeof *p);
    char *name = strdup(variant);
    if (!p || !name) {
        free(name);
        if (p)
            g->spans = p;
        return; /* the stats lose a span; the tokens are unaffected */
    }
    g->spans = p;
    g->spans[g->n_spans++] = (span){name, g->generated, g->generated + 1};
}

/* Passes token bytes through the stop matcher and the UTF-8 holder; writes what may be shown
 * now into buf (room: len + 2 × QR_UTF8_STREAM_MAX_HELD + QR_STOP_MAX_LEN). Returns true when a
 * stop string completed. With last, releases everything held. */
static bool release_text(qd_generation *g, const uint8_t *bytes, size_t len, bool last, uint8_t *buf,
                         size_t *n_out)
{
    const char *emit;
    size_t emit_len;
    bool stopped = qr_stop_feed(g->stop, (const char *)bytes, len, &emit, &emit_len);
    size_t n = qr_utf8_stream_feed(&g->utf8, (const uint8_t *)emit, emit_len, buf);
    if (last && !stopped) {
        qr_stop_flush(g->stop, &emit, &emit_len);
        n += qr_utf8_stream_feed(&g->utf8, (const uint8_t *)emit, emit_len, buf + n);
    }
    if (last || stopped)
        n += qr_utf8_stream_flush(&g->utf8, buf + n);
    *n_out = n;
    return stopped;
}

/* `read` tokens were read: a chunk of the prompt, or the last token sampled; with logits (the
 * prompt's last chunk, or a step), the next token is sampled from them. */
void qd_generation_read(qd_generation *g, size_t read, float *logits, const char *variant, qd_event_list *out)
{
    if (g->fed < g->n_prompt) {
        g->fed += read;
        g->job->tokens_read += (uint32_t)read;
        if (!logits)
            return;
        g->t_gen_start = qd_now();
        g->job->t_first_token = g->t_gen_start;
    }
    int32_t next = qr_sampler_sample(g->sampler, logits, g->ids, g->n_ids);
    g->ids[g->n_ids++] = next;
    note_span(g, variant);
    g->generated++;
    size_t len = 0;
    const uint8_t *bytes = next == g->eot ? NULL : qr_tokenizer_decode_token(g->tok, next, &len);
    bool last = next == g->eot || g->generated >= g->max_tokens;
    uint8_t buf[256 + 2 * QR_UTF8_STREAM_MAX_HELD + QR_STOP_MAX_LEN];
    uint8_t *big = len > 256 ? malloc(len + sizeof buf) : NULL;
    uint8_t *dst = big ? big : buf;
    size_t n = 0;
    bool stopped = release_text(g, bytes ? bytes : (const uint8_t *)"", bytes ? len : 0, last, dst, &n);
    text_append(g, (const char *)dst, n);
    if (g->job->req.u.generate.stream && atomic_load(&g->job->cancel) != QD_CANCEL_GONE) {
        char *line;
        size_t line_len;
        if (qi_reply_token(&g->job->req.id, (const char *)dst, n, next, g->generated - 1, &line, &line_len,
                           NULL) == QI_OK)
            qd_event_line(out, g->job, line, line_len);
    }
    free(big);
    if (next == g->eot) {
        g->finished = true;
        g->reason = QI_STOP_EOS;
    } else if (stopped) {
        g->finished = true;
        g->reason = QI_STOP_STOP;
    } else if (g->generated >= g->max_tokens) {
        g->finished = true;
        g->reason = QI_STOP_LENGTH;
    }
}

/* Posts the done message with the text so far and the stats. */
static void post_done(qd_generation *g, qi_stop_reason reason, qd_event_list *out)
{
    double now = qd_now();
    qi_span spans[64];
    size_t n_spans = 0;
    qi_span *sp = g->n_spans <= 64 ? spans : malloc(g->n_spans * sizeof *sp);
    if (sp) {
        for (size_t i = 0; i < g->n_spans; i++)
            sp[i] = (qi_span){g->spans[i].variant, g->spans[i].from, g->spans[i].to};
        n_spans = g->n_spans;
    }
    double gen_s = g->generated && g->t_gen_start > 0 ? now - g->t_gen_start : 0;
    qi_gen_stats st = {
        .prompt_tokens = (uint32_t)g->n_prompt,
        .tokens = g->generated,
        .ms = (now - g->job->t_received) * 1e3,
        .tokens_per_s = gen_s > 0 ? (double)g->generated / gen_s : 0,
        .stop_reason = reason,
        .spans = sp,
        .n_spans = n_spans,
        .switches = n_spans ? (uint32_t)(n_spans - 1) : 0,
        .switch_wait_ms = g->switch_wait_ms,
    };
    char *line = NULL;
    size_t len = 0;
    if (atomic_load(&g->job->cancel) != QD_CANCEL_GONE)
        qi_reply_done(&g->job->req.id, g->text ? g->text : "", g->text_len, &st, &line, &len, NULL);
    if (sp != spans)
        free(sp);
    qd_event_final(out, g->job, line, len, g->generated, reason == QI_STOP_CANCELLED);
}

bool qd_generation_settle(qd_generation *g, qd_event_list *out)
{
    if (!g->finished)
        return false;
    post_done(g, g->reason, out);
    return true;
}

void qd_generation_abort(qd_generation *g, qd_cancel_reason why, qd_event_list *out)
{
    g->finished = true;
    if (why == QD_CANCEL_SHUTDOWN)
        qd_event_error(out, g->job, QI_ERR_SHUTTING_DOWN, NULL,
                       "the daemon is stopping (%u token%s generated)", g->generated,
                       g->generated == 1 ? " was" : "s were");
    else
        post_done(g, QI_STOP_CANCELLED, out);
}

bool qd_generation_fits(const qd_generation *g, const qr_model *m)
{
    return g->state->n_layer == m->n_layer && g->state->d == m->d &&
           qr_state_bytes(g->state) == qr_state_bytes_for(m) && m->has_lm_head;
}

void qd_generation_waited(qd_generation *g, double ms)
{
    g->switch_wait_ms += ms;
}

/* A prompt half read on the old variant is read again from its start: the first token's span
 * names the variant that read the whole prompt. */
void qd_generation_rebase(qd_generation *g)
{
    if (g->fed == 0 || g->fed >= g->n_prompt || g->restarted)
        return;
    qr_state_reset(g->state);
    g->fed = 0;
    g->restarted = true;
}

size_t qd_generation_input_left(const qd_generation *g)
{
    return g->fed < g->n_prompt ? g->n_prompt - g->fed : 0;
}

uint32_t qd_generation_tokens(const qd_generation *g)
{
    return g->generated;
}

void qd_generation_free(qd_generation *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_spans; i++)
        free(g->spans[i].variant);
    free(g->spans);
    free(g->text);
    free(g->ids);
    qr_stop_free(g->stop);
    qr_sampler_free(g->sampler);
    qr_state_free(g->state);
    free(g);
}
