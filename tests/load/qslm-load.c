/* qslm-load: a load test of a running qslmd (ipc/PROTOCOL.md), and its checker.
 *
 *   qslm-load --socket PATH [--clients N] [--requests N | --duration SEC] [--pipeline N]
 *             [--budget-every SEC] [--seed S] [--check-sample N] [--timeout SEC] [--json]
 *   qslm-load flood --socket PATH [...]   (load_flood.c: long-text classify floods next to short
 *                                          generates; `qslm-load flood --help`)
 *
 * N client threads, one connection each, pipeline a mix of requests (up to --pipeline unanswered
 * at a time): generate streamed and not (short max_tokens, fixed seeds), classify (1..4 texts),
 * cancel (of one of the client's own generates still in flight) and status. Another connection
 * cycles `set-budget` every --budget-every seconds across every variant's footprint (read from
 * the `variants` op, largest first) with `auto` between two. Ids are integers
 * counted per connection, and every reply is checked against the request it names:
 *   - lost: a request without a final reply when the load ends (or its connection broke);
 *   - duplicated: a second final reply, or any message after the final one, for an id;
 *   - bad: a line that is not a valid reply, a reply naming an id never sent, a token event out
 *     of order or for a request that does not stream, a done text that is not the concatenation
 *     of its token events, stats that do not add up, a result of the wrong shape, or an error
 *     reply other than `busy` (the queue is full: a legitimate answer, counted apart, and the
 *     same request is sent again as a new id after a short pause) and a classify's `cancelled`;
 *   - mismatched: a sampled streamed generation computed on a single variant (no switch) whose
 *     text differs from the same request replayed after the load with that variant pinned
 *     (batching does not change a request's tokens in qslmd, so the comparison is exact).
 * Prints requests/s, p50/p99 latency per op, the switches seen (status counters before and
 * after) and those counts; exits 0 only when lost, duplicated, bad and mismatched are all 0,
 * 1 when one is not, 2 on a usage or connection error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "load_flood.h"
#include "reply_parse.h"

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *socket;
    unsigned clients;
    uint64_t requests;
    double duration;     /* > 0: run this long instead of a request count */
    unsigned pipeline;
    double budget_every; /* <= 0: no budget client */
    uint64_t seed;
    unsigned check_sample;
    double timeout;      /* seconds without any reply before in-flight requests count as lost */
    bool json;
    bool verbose;
} options;

static options opt = {
    .clients = 64, .requests = 1000, .pipeline = 2, .budget_every = 1.0, .seed = 1, .check_sample = 16,
    .timeout = 60.0,
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) % n);
}

/* ---------------------------------------------------------------- the mix */

static const char *const prompts[] = {
    "The state of the Union",
    "My fellow Americans",
    "Mr. Speaker, Mr. Vice President",
    "We the people",
    "Tonight I ask the Congress",
    "The economy",
    "Our nation",
    "In the year ahead",
};
#define N_PROMPTS (sizeof prompts / sizeof *prompts)

static const char *const texts[] = {
    "This is a great day for our country.",
    "The plan failed and people suffered.",
    "We will build a stronger future together.",
    "Taxes rose again and wages fell.",
    "Hope",
    "The budget is balanced.",
};
#define N_TEXTS (sizeof texts / sizeof *texts)

typedef enum { OP_GEN, OP_GEN_STREAM, OP_CLASSIFY, OP_CANCEL, OP_STATUS, OP_BUDGET, OP_N } load_op;
static const char *const op_names[OP_N] = {"generate", "generate-stream", "classify", "cancel", "status",
                                           "set-budget"};

/* A request of a client, by its id (1-based index). */
typedef struct {
    uint8_t op;
    bool final;
    bool cancelled_by_us; /* a cancel naming it was sent */
    uint8_t prompt;
    uint8_t n_texts;
    uint32_t max_tokens;
    uint32_t next_index;  /* streamed: token events seen */
    uint64_t seed;
    double t_sent;
    char *text;           /* streamed: the events' text so far */
    size_t len;
} req_rec;

/* ---------------------------------------------------------------- results */

typedef struct {
    double *v;
    size_t n, cap;
} series;

static void series_add(series *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *p = realloc(s->v, cap * sizeof *p);
        if (!p)
            return;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

/* A streamed generation computed on one variant, to replay pinned. */
typedef struct {
    char *variant;
    uint8_t prompt;
    uint32_t max_tokens;
    uint64_t seed;
    char *text;
} sample;

#define SAMPLE_CAND_MAX 20000

typedef struct {
    pthread_mutex_t mu;
    series lat[OP_N];
    uint64_t finals, lost, duplicated, bad, mismatched, busy, cancelled_classify, verified, tokens;
    uint64_t gen_cancelled; /* generations that ended with stop_reason cancelled */
    uint64_t errors_by_code[QI_ERR_UNKNOWN_CODE + 1];
    uint64_t budget_changes, budget_bad;
    sample *cand;
    size_t n_cand;
    uint64_t seen_cand;
    int notes; /* problems printed so far */
} results;

static results res = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Prints a problem (the first 20 only), under res.mu. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (res.notes++ >= 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qslm-load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---------------------------------------------------------------- the variants */

typedef struct {
    char name[QI_VARIANT_NAME_MAX + 1];
    uint64_t footprint;
} variant_info;

static variant_info *variants;
static size_t n_variants;

static atomic_uint_fast64_t claimed; /* requests handed out (request-count mode) */
static atomic_bool load_over;
static double t_start, t_end_planned;

static bool may_send(void)
{
    if (atomic_load(&load_over))
        return false;
    if (opt.duration > 0)
        return now_s() < t_end_planned;
    return atomic_fetch_add(&claimed, 1) < opt.requests;
}

/* ---------------------------------------------------------------- one client */

typedef struct {
    unsigned index;
    uint64_t rng;
    qi_client *c;
    req_rec *recs;   /* recs[id - 1] */
    size_t n_sent, cap;
    size_t base;     /* ids 1..base were all answered and their records dropped (recs[0] is
                        id base + 1): a long --duration run keeps a bounded window */
    unsigned in_flight;
    series lat[OP_N];
    uint64_t finals, duplicated, bad, busy, cancelled_classify, gen_cancelled, tokens;
    uint64_t errors_by_code[QI_ERR_UNKNOWN_CODE + 1];
    bool broken;
    /* requests answered `busy`, sent again (as new ids) once due: at most pipeline of them */
    struct {
        req_rec rec;
        double due;
    } retry[16];
    unsigned n_retry;
} client;

static void client_bad(client *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_bad(client *cl, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cl->bad++;
    pthread_mutex_lock(&res.mu);
    note("client %u: %s", cl->index, msg);
    pthread_mutex_unlock(&res.mu);
}

static bool send_line(client *cl, const char *line)
{
    qi_error e;
    if (qi_client_send_line(cl->c, line, strlen(line), &e) != QI_OK) {
        pthread_mutex_lock(&res.mu);
        note("client %u: send: %s", cl->index, e.msg);
        pthread_mutex_unlock(&res.mu);
        cl->broken = true;
        return false;
    }
    return true;
}

/* An in-flight generate of this client not yet named by a cancel, or 0. */
static uint64_t pick_cancel_target(client *cl)
{
    uint64_t found[64];
    unsigned n = 0;
    for (size_t i = cl->n_sent; i > cl->base && n < 64; i--) {
        req_rec *r = &cl->recs[i - 1 - cl->base];
        if (!r->final && !r->cancelled_by_us && (r->op == OP_GEN || r->op == OP_GEN_STREAM))
            found[n++] = i;
        if (cl->n_sent - i > 64)
            break;
    }
    return n ? found[rng_below(&cl->rng, n)] : 0;
}

/* Sends a new request of the mix, or again the one in *again (answered busy). */
static bool send_one(client *cl, const req_rec *again)
{
    if (cl->n_sent - cl->base >= 8192) { /* drop the oldest 4096 records if all answered */
        bool all = true;
        for (size_t i = 0; i < 4096 && all; i++)
            all = cl->recs[i].final;
        if (all) {
            memmove(cl->recs, cl->recs + 4096, (cl->n_sent - cl->base - 4096) * sizeof *cl->recs);
            cl->base += 4096;
        }
    }
    if (cl->n_sent - cl->base == cl->cap) {
        size_t cap = cl->cap ? 2 * cl->cap : 64;
        req_rec *p = realloc(cl->recs, cap * sizeof *p);
        if (!p)
            return false;
        cl->recs = p;
        cl->cap = cap;
    }
    uint64_t id = cl->n_sent + 1;
    req_rec *r = &cl->recs[cl->n_sent - cl->base];
    memset(r, 0, sizeof *r);
    unsigned roll = rng_below(&cl->rng, 100);
    load_op op = roll < 30 ? OP_GEN_STREAM : roll < 50 ? OP_GEN : roll < 75 ? OP_CLASSIFY : roll < 85 ? OP_CANCEL
                                                                                                      : OP_STATUS;
    if (again)
        op = (load_op)again->op;
    uint64_t target = 0;
    if (op == OP_CANCEL && !(target = pick_cancel_target(cl)))
        op = OP_STATUS;
    char line[1024];
    switch (op) {
    case OP_GEN:
    case OP_GEN_STREAM:
        r->prompt = (uint8_t)rng_below(&cl->rng, N_PROMPTS);
        r->max_tokens = 1 + rng_below(&cl->rng, 16);
        r->seed = rng_below(&cl->rng, 1000);
        if (again) {
            r->prompt = again->prompt;
            r->max_tokens = again->max_tokens;
            r->seed = again->seed;
        }
        snprintf(line, sizeof line,
                 "{\"id\":%llu,\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":%u,\"seed\":%llu,\"stream\":%s}",
                 (unsigned long long)id, prompts[r->prompt], r->max_tokens, (unsigned long long)r->seed,
                 op == OP_GEN_STREAM ? "true" : "false");
        break;
    case OP_CLASSIFY: {
        r->n_texts = (uint8_t)(1 + rng_below(&cl->rng, 4));
        int n = snprintf(line, sizeof line, "{\"id\":%llu,\"op\":\"classify\",\"texts\":[", (unsigned long long)id);
        for (unsigned i = 0; i < r->n_texts; i++)
            n += snprintf(line + n, sizeof line - (size_t)n, "%s\"%s\"", i ? "," : "",
                          texts[rng_below(&cl->rng, N_TEXTS)]);
        snprintf(line + n, sizeof line - (size_t)n, "]}");
        break;
    }
    case OP_CANCEL:
        cl->recs[target - 1 - cl->base].cancelled_by_us = true;
        snprintf(line, sizeof line, "{\"id\":%llu,\"op\":\"cancel\",\"target\":%llu}", (unsigned long long)id,
                 (unsigned long long)target);
        break;
    default:
        snprintf(line, sizeof line, "{\"id\":%llu,\"op\":\"status\"}", (unsigned long long)id);
        break;
    }
    r->op = (uint8_t)op;
    r->t_sent = now_s();
    cl->n_sent++;
    cl->in_flight++;
    return send_line(cl, line);
}

/* Checks a done message's stats (PROTOCOL.md 2.1); returns a complaint or NULL. */
static const char *stats_problem(const qi_reply *d, const req_rec *r)
{
    const qi_gen_stats *st = &d->stats;
    if (st->tokens > r->max_tokens)
        return "more tokens than max_tokens";
    if (st->stop_reason == QI_STOP_LENGTH && st->tokens != r->max_tokens)
        return "stop_reason length before max_tokens";
    if (st->tokens == 0)
        return st->n_spans || st->switches ? "spans or switches without tokens" : NULL;
    if (st->n_spans < 1 || st->spans[0].from != 0 || st->spans[st->n_spans - 1].to != st->tokens)
        return "spans do not cover the tokens";
    for (size_t i = 0; i < st->n_spans; i++) {
        if (st->spans[i].from >= st->spans[i].to)
            return "an empty span";
        if (i && (st->spans[i].from != st->spans[i - 1].to || !strcmp(st->spans[i].variant, st->spans[i - 1].variant)))
            return "spans not contiguous runs";
    }
    if (st->switches != st->n_spans - 1)
        return "switches is not spans - 1";
    return NULL;
}

static void add_candidate(client *cl, const req_rec *r, const qi_reply *d)
{
    pthread_mutex_lock(&res.mu);
    res.seen_cand++;
    size_t slot = res.n_cand;
    if (res.n_cand == SAMPLE_CAND_MAX) { /* reservoir */
        uint64_t k = rng_next(&cl->rng) % res.seen_cand;
        slot = k < SAMPLE_CAND_MAX ? (size_t)k : SIZE_MAX;
    }
    if (slot != SIZE_MAX) {
        char *variant = strdup(d->stats.spans[0].variant), *text = strdup(d->text);
        if (variant && text) {
            if (slot == res.n_cand) {
                if (res.n_cand % 256 == 0) {
                    sample *p = realloc(res.cand, (res.n_cand + 256) * sizeof *p);
                    if (!p) {
                        free(variant);
                        free(text);
                        pthread_mutex_unlock(&res.mu);
                        return;
                    }
                    res.cand = p;
                }
                res.n_cand++;
            } else {
                free(res.cand[slot].variant);
                free(res.cand[slot].text);
            }
            res.cand[slot] = (sample){variant, r->prompt, r->max_tokens, r->seed, text};
        } else {
            free(variant);
            free(text);
        }
    }
    pthread_mutex_unlock(&res.mu);
}

static void on_final(client *cl, req_rec *r)
{
    r->final = true;
    cl->in_flight--;
    cl->finals++;
    series_add(&cl->lat[r->op], (now_s() - r->t_sent) * 1e3);
    free(r->text);
    r->text = NULL;
}

static void handle_line(client *cl, const char *line, size_t len)
{
    qi_reply rp;
    qi_error e;
    if (qi_reply_parse(line, len, &rp, &e) != QI_OK) {
        client_bad(cl, "a line that is not a reply (%s): %.200s", e.msg, line);
        return;
    }
    if (rp.id.kind != QI_ID_INT || rp.id.num == 0 || rp.id.num > cl->n_sent) {
        char buf[80];
        client_bad(cl, "a reply for an id never sent (%s): %.200s", qi_id_format(&rp.id, buf, sizeof buf), line);
        qi_reply_free(&rp);
        return;
    }
    req_rec *r = rp.id.num > cl->base ? &cl->recs[rp.id.num - 1 - cl->base] : NULL;
    if (!r || r->final) {
        cl->duplicated++;
        pthread_mutex_lock(&res.mu);
        note("client %u: a message after the final reply of id %llu: %.200s", cl->index,
             (unsigned long long)rp.id.num, line);
        pthread_mutex_unlock(&res.mu);
        qi_reply_free(&rp);
        return;
    }
    bool gen = r->op == OP_GEN || r->op == OP_GEN_STREAM;
    switch (rp.kind) {
    case QI_REPLY_TOKEN: {
        if (r->op != OP_GEN_STREAM) {
            client_bad(cl, "a token event for id %llu, a %s", (unsigned long long)rp.id.num, op_names[r->op]);
            break;
        }
        if (rp.index != r->next_index) {
            client_bad(cl, "id %llu: token event index %u, expected %u", (unsigned long long)rp.id.num, rp.index,
                       r->next_index);
            r->next_index = rp.index;
        }
        r->next_index++;
        char *p = realloc(r->text, r->len + rp.text_len + 1);
        if (p) {
            memcpy(p + r->len, rp.text, rp.text_len);
            r->len += rp.text_len;
            p[r->len] = '\0';
            r->text = p;
        }
        break;
    }
    case QI_REPLY_DONE: {
        if (!gen) {
            client_bad(cl, "a done message for id %llu, a %s", (unsigned long long)rp.id.num, op_names[r->op]);
            on_final(cl, r);
            break;
        }
        const char *why = stats_problem(&rp, r);
        if (why)
            client_bad(cl, "id %llu: %s: %.300s", (unsigned long long)rp.id.num, why, line);
        if (r->op == OP_GEN_STREAM) {
            if (rp.stats.tokens != r->next_index)
                client_bad(cl, "id %llu: %u token events, stats say %u", (unsigned long long)rp.id.num,
                           r->next_index, rp.stats.tokens);
            else if (rp.text_len != r->len || (r->len && memcmp(rp.text, r->text, r->len) != 0))
                client_bad(cl, "id %llu: the done text is not the token events' text", (unsigned long long)rp.id.num);
            else if (!why && rp.stats.n_spans == 1 && rp.stats.stop_reason != QI_STOP_CANCELLED)
                add_candidate(cl, r, &rp);
        }
        if (rp.stats.stop_reason == QI_STOP_CANCELLED) {
            cl->gen_cancelled++;
            if (!r->cancelled_by_us)
                client_bad(cl, "id %llu: cancelled, but nobody cancelled it", (unsigned long long)rp.id.num);
        }
        cl->tokens += rp.stats.tokens;
        on_final(cl, r);
        break;
    }
    case QI_REPLY_ERROR:
        if (rp.code == QI_ERR_BUSY && (gen || r->op == OP_CLASSIFY)) {
            /* the queue is full: a legitimate answer; the same request goes again later */
            cl->busy++;
            if (cl->n_retry < sizeof cl->retry / sizeof *cl->retry) {
                cl->retry[cl->n_retry].rec = *r;
                cl->retry[cl->n_retry].rec.text = NULL;
                cl->retry[cl->n_retry].due = now_s() + 0.02 + 0.001 * rng_below(&cl->rng, 180);
                cl->n_retry++;
            }
            r->final = true; /* answered; not counted as a completed request */
            cl->in_flight--;
            free(r->text);
            r->text = NULL;
            qi_reply_free(&rp);
            return;
        } else if (rp.code == QI_ERR_CANCELLED && r->op == OP_CLASSIFY && r->cancelled_by_us) {
            cl->cancelled_classify++;
        } else {
            cl->errors_by_code[rp.code <= QI_ERR_UNKNOWN_CODE ? rp.code : QI_ERR_UNKNOWN_CODE]++;
            client_bad(cl, "id %llu (%s): error %s: %s", (unsigned long long)rp.id.num, op_names[r->op], rp.code_name,
                       rp.message ? rp.message : "");
        }
        on_final(cl, r);
        break;
    case QI_REPLY_RESULT: {
        json_object *v = NULL;
        bool ok = false;
        if (r->op == OP_CLASSIFY) {
            ok = json_object_object_get_ex(rp.body, "results", &v) && json_object_is_type(v, json_type_array) &&
                 json_object_array_length(v) == r->n_texts;
            for (size_t i = 0; ok && i < r->n_texts; i++) {
                json_object *probs = NULL, *item = json_object_array_get_idx(v, i);
                ok = json_object_object_get_ex(item, "probs", &probs) && json_object_is_type(probs, json_type_array);
                double sum = 0;
                for (size_t k = 0; ok && k < json_object_array_length(probs); k++)
                    sum += json_object_get_double(json_object_array_get_idx(probs, k));
                ok = ok && fabs(sum - 1.0) < 1e-3;
            }
        } else if (r->op == OP_CANCEL) {
            json_object *found = NULL;
            ok = json_object_object_get_ex(rp.body, "ok", &v) && json_object_get_boolean(v) &&
                 json_object_object_get_ex(rp.body, "found", &found) && json_object_is_type(found, json_type_boolean);
        } else if (r->op == OP_STATUS) {
            ok = json_object_object_get_ex(rp.body, "protocol", &v) && json_object_get_int(v) == QI_PROTOCOL_VERSION &&
                 json_object_object_get_ex(rp.body, "counters", &v);
        }
        if (!ok)
            client_bad(cl, "id %llu (%s): an unexpected result: %.300s", (unsigned long long)rp.id.num,
                       op_names[r->op], line);
        on_final(cl, r);
        break;
    }
    }
    qi_reply_free(&rp);
}

static void *client_main(void *arg)
{
    client *cl = arg;
    qi_error e;
    if (qi_client_connect(opt.socket, &cl->c, &e) != QI_OK) {
        pthread_mutex_lock(&res.mu);
        note("client %u: connect: %s", cl->index, e.msg);
        pthread_mutex_unlock(&res.mu);
        cl->broken = true;
        return NULL;
    }
    bool more = true;
    double last_reply = now_s();
    for (;;) {
        /* requests answered busy go again once due; then new ones while the pipeline has room */
        double t = now_s(), next_due = 0;
        for (unsigned i = 0; i < cl->n_retry && !cl->broken;) {
            if (cl->retry[i].due > t) {
                next_due = next_due == 0 || cl->retry[i].due < next_due ? cl->retry[i].due : next_due;
                i++;
                continue;
            }
            req_rec again = cl->retry[i].rec;
            cl->retry[i] = cl->retry[--cl->n_retry];
            send_one(cl, &again);
        }
        while (more && !cl->broken && cl->in_flight + cl->n_retry < opt.pipeline)
            if (!(more = may_send()) || !send_one(cl, NULL))
                break;
        if (cl->broken || (cl->in_flight == 0 && cl->n_retry == 0 && !more))
            break;
        int wait_ms = (int)(opt.timeout * 1000);
        if (next_due > 0)
            wait_ms = (int)((next_due - now_s()) * 1000) + 1;
        if (wait_ms < 0)
            wait_ms = 0;
        if (cl->in_flight == 0) { /* only retries pending: wait for the first one */
            sleep_s(wait_ms / 1000.0);
            continue;
        }
        const char *line;
        size_t len;
        qi_code rc = qi_client_read_line(cl->c, wait_ms, &line, &len, &e);
        if (rc == QI_OK) {
            last_reply = now_s();
            handle_line(cl, line, len);
            continue;
        }
        if (rc == QI_ERR_TIMEOUT && now_s() - last_reply < opt.timeout)
            continue; /* a retry is due */
        if (rc == QI_ERR_PROTOCOL) { /* a line longer than the client accepts */
            client_bad(cl, "%s", e.msg);
            continue;
        }
        pthread_mutex_lock(&res.mu);
        note("client %u: %s with %u requests unanswered: %s", cl->index,
             rc == QI_ERR_TIMEOUT ? "no reply in time" : "the connection broke", cl->in_flight, e.msg);
        pthread_mutex_unlock(&res.mu);
        break;
    }
    qi_client_close(cl->c);
    cl->c = NULL;
    return NULL;
}

/* ---------------------------------------------------------------- the control connection */

/* Sends a line and reads its one final reply (a result or an error) on c; token events and
 * replies of other ids are not expected here. */
static bool rpc(qi_client *c, qi_reply *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool rpc(qi_client *c, qi_reply *out, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return false;
    qi_error e;
    qi_code rc = qi_client_send_line(c, line, (size_t)n, &e);
    free(line);
    if (rc == QI_OK)
        rc = qi_client_read_reply(c, (int)(opt.timeout * 1000), out, &e);
    if (rc != QI_OK) {
        pthread_mutex_lock(&res.mu);
        note("control: %s", e.msg);
        pthread_mutex_unlock(&res.mu);
        return false;
    }
    return true;
}

static bool read_variants(qi_client *c)
{
    qi_reply r;
    if (!rpc(c, &r, "{\"id\":\"v\",\"op\":\"variants\"}"))
        return false;
    json_object *vs = NULL;
    bool ok = r.kind == QI_REPLY_RESULT && json_object_object_get_ex(r.body, "variants", &vs) &&
              json_object_is_type(vs, json_type_array) && json_object_array_length(vs) > 0;
    if (ok) {
        n_variants = json_object_array_length(vs);
        variants = calloc(n_variants, sizeof *variants);
        for (size_t i = 0; variants && i < n_variants; i++) {
            json_object *v = json_object_array_get_idx(vs, i), *name = NULL, *fp = NULL;
            ok = ok && json_object_object_get_ex(v, "name", &name) && json_object_object_get_ex(v, "footprint_bytes", &fp);
            if (ok) {
                snprintf(variants[i].name, sizeof variants[i].name, "%s", json_object_get_string(name));
                variants[i].footprint = (uint64_t)json_object_get_int64(fp);
            }
        }
        ok = ok && variants;
    }
    if (!ok)
        fprintf(stderr, "qslm-load: unexpected variants reply: %s\n", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    return ok;
}

/* The status counters' switches, or -1. */
static int64_t read_switches(qi_client *c)
{
    qi_reply r;
    if (!rpc(c, &r, "{\"id\":\"s\",\"op\":\"status\"}"))
        return -1;
    json_object *cs = NULL, *sw = NULL;
    int64_t v = -1;
    if (r.kind == QI_REPLY_RESULT && json_object_object_get_ex(r.body, "counters", &cs) &&
        json_object_object_get_ex(cs, "switches", &sw))
        v = json_object_get_int64(sw);
    qi_reply_free(&r);
    return v;
}

static int cmp_fp_desc(const void *a, const void *b)
{
    const variant_info *x = a, *y = b;
    return x->footprint < y->footprint ? 1 : x->footprint > y->footprint ? -1 : 0;
}

/* One budget change: bytes 0 means auto. */
static void set_budget(qi_client *c, uint64_t bytes)
{
    double t0 = now_s();
    qi_reply r;
    bool ok;
    if (bytes)
        ok = rpc(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":%llu}", (unsigned long long)bytes);
    else
        ok = rpc(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":\"auto\"}");
    pthread_mutex_lock(&res.mu);
    if (!ok) {
        res.budget_bad++;
    } else {
        json_object *v = NULL;
        bool good = r.kind == QI_REPLY_RESULT && json_object_object_get_ex(r.body, "memory_bytes", &v) &&
                    (bytes ? (uint64_t)json_object_get_int64(v) == bytes : v == NULL);
        if (good) {
            res.budget_changes++;
            series_add(&res.lat[OP_BUDGET], (now_s() - t0) * 1e3);
        } else {
            res.budget_bad++;
            note("set-budget: unexpected reply: %s", json_object_to_json_string(r.body));
        }
        qi_reply_free(&r);
    }
    pthread_mutex_unlock(&res.mu);
}

static void *budget_main(void *arg)
{
    (void)arg;
    qi_client *c = NULL;
    qi_error e;
    if (qi_client_connect(opt.socket, &c, &e) != QI_OK) {
        pthread_mutex_lock(&res.mu);
        note("budget client: connect: %s", e.msg);
        res.budget_bad++;
        pthread_mutex_unlock(&res.mu);
        return NULL;
    }
    /* each footprint from the largest down, with auto between two: a footprint below the one
     * served switches down at once, auto switches back up after the daemon's up-delay (if that
     * is shorter than --budget-every) */
    variant_info *order = malloc(n_variants * sizeof *order);
    if (!order) {
        qi_client_close(c);
        return NULL;
    }
    memcpy(order, variants, n_variants * sizeof *order);
    qsort(order, n_variants, sizeof *order, cmp_fp_desc);
    size_t steps = 2 * n_variants, k = 0;
    double next = now_s() + opt.budget_every;
    while (!atomic_load(&load_over)) {
        if (now_s() < next) {
            sleep_s(fmin(0.02, next - now_s()));
            continue;
        }
        next += opt.budget_every;
        size_t step = k++ % steps; /* even: the footprints, largest first; odd: auto */
        uint64_t bytes = step % 2 == 0 ? order[step / 2].footprint : 0;
        set_budget(c, bytes);
    }
    set_budget(c, 0); /* leave it as the daemon had it: auto */
    free(order);
    qi_client_close(c);
    return NULL;
}

/* ---------------------------------------------------------------- the reference runs */

/* Replays the samples of variant v (indices idx[0..n)) with it pinned; counts mismatches. */
static bool replay_variant(qi_client *c, const variant_info *v, sample *const *smp, size_t n)
{
    qi_reply r;
    if (!rpc(c, &r, "{\"id\":\"pin\",\"op\":\"pin\",\"variant\":\"%s\"}", v->name))
        return false;
    bool ok = r.kind == QI_REPLY_RESULT;
    if (!ok)
        fprintf(stderr, "qslm-load: pin %s: %s\n", v->name, json_object_to_json_string(r.body));
    qi_reply_free(&r);
    if (!ok)
        return false;
    /* wait until the engine serves it */
    double end = now_s() + opt.timeout;
    for (;;) {
        if (!rpc(c, &r, "{\"id\":\"s\",\"op\":\"status\"}"))
            return false;
        json_object *a = NULL, *name = NULL;
        bool there = json_object_object_get_ex(r.body, "active", &a) && json_object_object_get_ex(a, "variant", &name) &&
                     name && !strcmp(json_object_get_string(name), v->name);
        qi_reply_free(&r);
        if (there)
            break;
        if (now_s() > end) {
            fprintf(stderr, "qslm-load: %s pinned but not served after %.0f s\n", v->name, opt.timeout);
            return false;
        }
        sleep_s(0.02);
    }
    for (size_t i = 0; i < n; i++) {
        const sample *s = smp[i];
        if (!rpc(c, &r,
                 "{\"id\":\"ref\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":%u,\"seed\":%llu,\"stream\":false}",
                 prompts[s->prompt], s->max_tokens, (unsigned long long)s->seed))
            return false;
        pthread_mutex_lock(&res.mu);
        if (r.kind != QI_REPLY_DONE || r.stats.n_spans > 1 ||
            (r.stats.n_spans == 1 && strcmp(r.stats.spans[0].variant, v->name) != 0)) {
            note("reference run on %s: unexpected reply %s", v->name, json_object_to_json_string(r.body));
            res.bad++;
        } else if (strcmp(r.text, s->text) != 0) {
            res.mismatched++;
            note("mismatch on %s: prompt \"%s\" max_tokens %u seed %llu: under load \"%s\", pinned \"%s\"", v->name,
                 prompts[s->prompt], s->max_tokens, (unsigned long long)s->seed, s->text, r.text);
        } else {
            res.verified++;
        }
        pthread_mutex_unlock(&res.mu);
        qi_reply_free(&r);
    }
    if (!rpc(c, &r, "{\"id\":\"unpin\",\"op\":\"unpin\"}"))
        return false;
    ok = r.kind == QI_REPLY_RESULT;
    qi_reply_free(&r);
    return ok;
}

/* Picks up to check_sample candidates, round-robin over the variants, and replays them. */
static bool reference_runs(qi_client *c)
{
    size_t want = opt.check_sample < res.n_cand ? opt.check_sample : res.n_cand;
    if (want == 0)
        return true;
    sample **per = calloc(n_variants * want, sizeof *per);
    size_t *count = calloc(n_variants, sizeof *count);
    bool *taken = calloc(res.n_cand, sizeof *taken);
    bool ok = per && count && taken;
    size_t picked = 0;
    while (ok && picked < want) {
        bool any = false;
        for (size_t v = 0; v < n_variants && picked < want; v++)
            for (size_t i = 0; i < res.n_cand; i++)
                if (!taken[i] && !strcmp(res.cand[i].variant, variants[v].name)) {
                    taken[i] = true;
                    per[v * want + count[v]++] = &res.cand[i];
                    picked++;
                    any = true;
                    break;
                }
        if (!any)
            break;
    }
    for (size_t v = 0; ok && v < n_variants; v++)
        if (count[v])
            ok = replay_variant(c, &variants[v], per + v * want, count[v]);
    free(per);
    free(count);
    free(taken);
    return ok;
}

/* ---------------------------------------------------------------- report */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void quantiles(series *s, double *p50, double *p99)
{
    *p50 = *p99 = NAN;
    if (!s->n)
        return;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    *p50 = s->v[(s->n - 1) / 2];
    *p99 = s->v[(size_t)ceil(0.99 * (double)s->n) - 1];
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qslm-load --socket PATH [options]\n"
            "       qslm-load flood --socket PATH [options]   (see qslm-load flood --help)\n"
            "Loads a running qslmd with concurrent pipelining clients and checks every reply.\n\n"
            "  --socket PATH         the daemon's socket (required)\n"
            "  --clients N           concurrent client connections (default 64)\n"
            "  --requests N          requests in all (default 1000)\n"
            "  --duration SEC        run this long instead of a request count\n"
            "  --pipeline N          unanswered requests per client (default 2)\n"
            "  --budget-every SEC    another client changes the memory budget this often, across every\n"
            "                        variant's footprint and auto (default 1; 0: never)\n"
            "  --seed S              the mix's seed (default 1)\n"
            "  --check-sample N      streamed generations replayed pinned and compared (default 16)\n"
            "  --timeout SEC         a client waiting this long for any reply gives up (default 60)\n"
            "  --json                the report as one JSON object on stdout\n"
            "  -h, --help            this text\n"
            "Exit status: 0 when no reply was lost, duplicated, bad or mismatched; 1 otherwise; 2 on\n"
            "a usage or connection error.\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    enum { O_SOCKET = 256, O_CLIENTS, O_REQUESTS, O_DURATION, O_PIPELINE, O_BUDGET, O_SEED, O_SAMPLE, O_TIMEOUT, O_JSON };
    static const struct option longopts[] = {
        {"socket", required_argument, 0, O_SOCKET},     {"clients", required_argument, 0, O_CLIENTS},
        {"requests", required_argument, 0, O_REQUESTS}, {"duration", required_argument, 0, O_DURATION},
        {"pipeline", required_argument, 0, O_PIPELINE}, {"budget-every", required_argument, 0, O_BUDGET},
        {"seed", required_argument, 0, O_SEED},         {"check-sample", required_argument, 0, O_SAMPLE},
        {"timeout", required_argument, 0, O_TIMEOUT},   {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0},
    };
    if (argc > 1 && strcmp(argv[1], "flood") == 0) /* the flood mode: load_flood.c */
        return qslm_load_flood(argc - 1, argv + 1);
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case O_SOCKET: opt.socket = optarg; break;
        case O_CLIENTS: ok = parse_num(optarg, 1, 4096, &v) && v == floor(v); opt.clients = (unsigned)v; break;
        case O_REQUESTS: ok = parse_num(optarg, 1, 1e12, &v) && v == floor(v); opt.requests = (uint64_t)v; break;
        case O_DURATION: ok = parse_num(optarg, 0.001, 1e7, &opt.duration); break;
        case O_PIPELINE: ok = parse_num(optarg, 1, 16, &v) && v == floor(v); opt.pipeline = (unsigned)v; break;
        case O_BUDGET: ok = parse_num(optarg, 0, 1e6, &opt.budget_every); break;
        case O_SEED: ok = parse_num(optarg, 0, 1e15, &v) && v == floor(v); opt.seed = (uint64_t)v; break;
        case O_SAMPLE: ok = parse_num(optarg, 0, 1e6, &v) && v == floor(v); opt.check_sample = (unsigned)v; break;
        case O_TIMEOUT: ok = parse_num(optarg, 0.1, 1e6, &opt.timeout); break;
        case O_JSON: opt.json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "qslm-load: %s: bad value '%s'\n", argv[optind - 1], optarg);
            return 2;
        }
    }
    if (!opt.socket || optind < argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    qi_client *ctl = NULL;
    qi_error e;
    if (qi_client_connect(opt.socket, &ctl, &e) != QI_OK) {
        fprintf(stderr, "qslm-load: %s\n", e.msg);
        return 2;
    }
    int64_t sw0;
    if (!read_variants(ctl) || (sw0 = read_switches(ctl)) < 0) {
        qi_client_close(ctl);
        return 2;
    }

    client *cls = calloc(opt.clients, sizeof *cls);
    pthread_t *th = calloc(opt.clients, sizeof *th);
    if (!cls || !th)
        return 2;
    t_start = now_s();
    t_end_planned = t_start + opt.duration;
    pthread_t budget_th;
    bool budget = opt.budget_every > 0;
    if (budget && pthread_create(&budget_th, NULL, budget_main, NULL) != 0)
        budget = false;
    unsigned started = 0;
    for (unsigned i = 0; i < opt.clients; i++) {
        cls[i].index = i;
        cls[i].rng = opt.seed * 1000003u + i;
        if (pthread_create(&th[i], NULL, client_main, &cls[i]) != 0)
            break;
        started++;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double elapsed = now_s() - t_start;
    atomic_store(&load_over, true);
    if (budget)
        pthread_join(budget_th, NULL);

    /* merge */
    uint64_t sent = 0;
    for (unsigned i = 0; i < opt.clients; i++) {
        client *cl = &cls[i];
        sent += cl->n_sent;
        for (size_t k = 0; k < cl->n_sent - cl->base; k++) {
            if (!cl->recs[k].final)
                res.lost++;
            free(cl->recs[k].text);
        }
        free(cl->recs);
        res.finals += cl->finals;
        res.duplicated += cl->duplicated;
        res.bad += cl->bad;
        res.busy += cl->busy;
        res.cancelled_classify += cl->cancelled_classify;
        res.gen_cancelled += cl->gen_cancelled;
        res.tokens += cl->tokens;
        for (int c = 0; c <= QI_ERR_UNKNOWN_CODE; c++)
            res.errors_by_code[c] += cl->errors_by_code[c];
        for (int o = 0; o < OP_N; o++) {
            for (size_t k = 0; k < cl->lat[o].n; k++)
                series_add(&res.lat[o], cl->lat[o].v[k]);
            free(cl->lat[o].v);
        }
        if (i >= started)
            res.bad++; /* a client that never ran */
    }
    int64_t sw1 = read_switches(ctl);
    bool ref_ok = reference_runs(ctl);
    qi_client_close(ctl);
    if (!ref_ok)
        res.bad++;
    if (sw1 < 0)
        res.bad++;
    res.bad += res.budget_bad;

    double rps = elapsed > 0 ? (double)res.finals / elapsed : 0;
    bool pass = !res.lost && !res.duplicated && !res.bad && !res.mismatched;
    double p50[OP_N], p99[OP_N];
    for (int o = 0; o < OP_N; o++)
        quantiles(&res.lat[o], &p50[o], &p99[o]);
    if (opt.json) {
        printf("{\"clients\":%u,\"pipeline\":%u,\"requests\":%llu,\"sent\":%llu,\"seconds\":%.3f,"
               "\"requests_per_s\":%.2f,\"tokens\":%llu,\"latency_ms\":{",
               opt.clients, opt.pipeline, (unsigned long long)res.finals, (unsigned long long)sent, elapsed, rps,
               (unsigned long long)res.tokens);
        for (int o = 0; o < OP_N; o++) {
            printf("%s\"%s\":{\"n\":%zu", o ? "," : "", op_names[o], res.lat[o].n);
            if (res.lat[o].n)
                printf(",\"p50\":%.2f,\"p99\":%.2f}", p50[o], p99[o]);
            else
                printf(",\"p50\":null,\"p99\":null}");
        }
        printf("},\"switches\":%lld,\"budget_changes\":%llu,\"lost\":%llu,\"duplicated\":%llu,\"bad\":%llu,"
               "\"mismatched\":%llu,\"verified\":%llu,\"busy\":%llu,\"cancelled\":%llu,\"errors\":{",
               sw1 >= 0 ? (long long)(sw1 - sw0) : -1LL, (unsigned long long)res.budget_changes,
               (unsigned long long)res.lost, (unsigned long long)res.duplicated, (unsigned long long)res.bad,
               (unsigned long long)res.mismatched, (unsigned long long)res.verified, (unsigned long long)res.busy,
               (unsigned long long)(res.gen_cancelled + res.cancelled_classify));
        bool first = true;
        for (int c = 0; c <= QI_ERR_UNKNOWN_CODE; c++)
            if (res.errors_by_code[c]) {
                printf("%s\"%s\":%llu", first ? "" : ",", c == QI_ERR_UNKNOWN_CODE ? "unknown" : qi_code_name((qi_code)c),
                       (unsigned long long)res.errors_by_code[c]);
                first = false;
            }
        printf("},\"pass\":%s}\n", pass ? "true" : "false");
    } else {
        printf("qslm-load: %u clients (pipeline %u), %llu requests in %.2f s: %.1f requests/s, %llu tokens\n",
               opt.clients, opt.pipeline, (unsigned long long)res.finals, elapsed, rps, (unsigned long long)res.tokens);
        printf("  %-16s %7s %10s %10s\n", "op", "n", "p50 ms", "p99 ms");
        for (int o = 0; o < OP_N; o++)
            printf("  %-16s %7zu %10.1f %10.1f\n", op_names[o], res.lat[o].n, p50[o], p99[o]);
        printf("  switches: %lld (status counters %lld -> %lld); budget changes: %llu\n",
               sw1 >= 0 ? (long long)(sw1 - sw0) : -1LL, (long long)sw0, (long long)sw1,
               (unsigned long long)res.budget_changes);
        printf("  busy: %llu (sent again; %llu lines sent in all); cancelled: %llu generations, %llu classifications\n",
               (unsigned long long)res.busy, (unsigned long long)sent,
               (unsigned long long)res.gen_cancelled, (unsigned long long)res.cancelled_classify);
        for (int c = 0; c <= QI_ERR_UNKNOWN_CODE; c++)
            if (res.errors_by_code[c])
                printf("  unexpected errors %s: %llu\n",
                       c == QI_ERR_UNKNOWN_CODE ? "unknown" : qi_code_name((qi_code)c),
                       (unsigned long long)res.errors_by_code[c]);
        printf("  lost %llu, duplicated %llu, bad %llu, mismatched %llu (%llu sampled streams verified pinned)\n",
               (unsigned long long)res.lost, (unsigned long long)res.duplicated, (unsigned long long)res.bad,
               (unsigned long long)res.mismatched, (unsigned long long)res.verified);
        printf("qslm-load: %s\n", pass ? "PASS" : "FAIL");
    }
    for (size_t i = 0; i < res.n_cand; i++) {
        free(res.cand[i].variant);
        free(res.cand[i].text);
    }
    free(res.cand);
    for (int o = 0; o < OP_N; o++)
        free(res.lat[o].v);
    free(variants);
    free(cls);
    free(th);
    return pass ? 0 : 1;
}
