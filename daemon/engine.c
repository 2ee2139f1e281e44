/* engine.c: the inference thread's loop: take new jobs and the target variant, apply a switch,
 * admit and cancel, run one round, post events. See engine.h. */
#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fair.h"
#include "task.h"
#include "release_memory.h"
#include "reply.h"
#include "task_impl.h"

struct qd_engine {
    qd_engine_config cfg;
    qd_wake_fn wake;
    void *wake_ctx;
    pthread_t thread;
    bool started;
    qr_pool *pool;

    /* shared with the loop, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping, poked;
    qd_job *incoming, *incoming_tail;
    uint32_t n_incoming;
    bool target_changed;
    qd_bundle *target_bundle; /* a reference */
    int target_variant;
    bool target_unload_first;
    double target_since;
    qd_event_list events;
    uint32_t waiting_count, active_count;
    _Atomic uint64_t held_bytes; /* qd_engine_held_bytes: written by the thread, read by the loop */

    /* the thread's own */
    qd_job *waiting, *waiting_tail;
    uint32_t n_waiting;
    qd_task **active;
    size_t n_active;
    qd_bundle *want_bundle; /* what the loop last asked for (a reference) */
    int want_variant;
    bool want_unload_first;
    bool switch_pending;    /* want_* differs from what is loaded: apply once the hold is over */
    double pending_since;
    size_t hold_rounds;     /* rounds before the next switch may happen (see apply_target) */
    qd_loaded *loaded;
    size_t rows;            /* the runner's rows: max(batch, chunk) */
    float *logits, *features; /* batch × vocab, batch × d of the loaded model */
    qd_slot *slots;         /* a round's steps */
    size_t slots_cap;
    qd_slot *chunks;        /* a round's chunks of input */
    size_t chunks_cap;
    /* a round's plan (fair.h), max_active entries each: per flow with a request being
     * computed, then per active request */
    uint64_t *flow_key;
    size_t *flow_demand, *flow_give, *task_flow, *task_demand, *task_give, *sub_demand, *sub_give, *task_readers;
    size_t rotate; /* moves every round, so the split's leftovers rotate */
    /* the round's clock (plan_chunks): seconds per token of input read in chunks, and seconds a
     * round's steps took, both moving averages of recent rounds; 0 until measured */
    double chunk_s_per_token, steps_s;
    qr_state **states;  /* batch */
    int32_t *tokens;    /* batch */
};

/* After a switch, the next one waits until the requests it restarted have read their input
 * again (qd_task_rebase), for at most this many rounds: under switches quicker than a prompt,
 * short inputs still complete on one variant. */
#define QD_SWITCH_HOLD_MAX 32

/* max_active / QD_RESERVE_DIV slots are kept for flows with no request being computed. */
#define QD_RESERVE_DIV 4

/* The most chunks one round reads (besides the hold's one per reading sequence), whatever the
 * clock says. */
#define QD_ROUND_CHUNKS_MAX 4096

/* Weight of the last round in the round clock's moving averages. */
#define QD_CLOCK_WEIGHT 0.25

/* ---------------------------------------------------------------- the thread's helpers */

static void remove_active(qd_engine *e, size_t i)
{
    qd_task_free(e->active[i]);
    e->active[i] = e->active[--e->n_active];
}

static void fail_all_active(qd_engine *e, qi_code code, const char *msg, qd_event_list *out)
{
    while (e->n_active) {
        qd_task_fail(e->active[0], code, msg, out);
        remove_active(e, 0);
    }
}

/* Ends a job that never started. */
static void end_unstarted(qd_job *job, qd_cancel_reason why, qd_event_list *out)
{
    if (why == QD_CANCEL_SHUTDOWN) {
        qd_event_error(out, job, QI_ERR_SHUTTING_DOWN, NULL, "the daemon is stopping");
    } else if (why == QD_CANCEL_REQUEST && job->req.op == QI_OP_GENERATE) {
        /* a generate cancelled before its first token still gets its done message */
        qi_gen_stats st = {.stop_reason = QI_STOP_CANCELLED, .ms = (qd_now() - job->t_received) * 1e3};
        char *line = NULL;
        size_t len = 0;
        qi_reply_done(&job->req.id, "", 0, &st, &line, &len, NULL);
        qd_event_final(out, job, line, len, 0, true);
    } else if (why == QD_CANCEL_REQUEST) {
        qd_event_error(out, job, QI_ERR_CANCELLED, NULL, "cancelled before it started");
    } else if (why == QD_CANCEL_FAULT) {
        qd_event_error(out, job, QI_ERR_INTERNAL, NULL, "inference failed");
    } else {
        qd_event_final(out, job, NULL, 0, 0, true);
    }
}

static void post_switch(qd_event_list *out, qd_event_kind kind, qd_bundle *b, int variant, double latency_ms,
                        const char *msg)
{
    qd_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return; /* the loop's view of the active variant lags until the next switch */
    ev->kind = kind;
    ev->variant = variant;
    ev->latency_ms = latency_ms;
    if (b) {
        qd_bundle_ref(b);
        ev->bundle = b;
    }
    snprintf(ev->msg, sizeof ev->msg, "%s", msg ? msg : "");
    qd_event_push(out, ev);
}

/* Output buffers sized for the model about to serve. */
static qr_status size_buffers(qd_engine *e, const qr_model *m, qr_error *err)
{
    float *lg = realloc(e->logits, e->cfg.batch * m->vocab * sizeof *lg);
    if (lg)
        e->logits = lg;
    float *ft = realloc(e->features, e->cfg.batch * m->d * sizeof *ft);
    if (ft)
        e->features = ft;
    if (!lg || !ft)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the output buffers");
    return QR_OK;
}

/* Is variant v of b the very file already loaded (a reload that left it unchanged)? The new
 * bundle hashed every file when it was opened, so equal hashes and sizes mean equal bytes. */
static bool same_image(const qd_loaded *l, const qd_bundle *b, int v)
{
    const qr_bundle_variant *now = &l->bundle->manifest->variants[l->index];
    const qr_bundle_variant *next = &b->manifest->variants[v];
    return b->usable[v] && now->file_bytes == next->file_bytes && strcmp(now->sha256, next->sha256) == 0;
}

/* Loads variant v of b with the output buffers sized for it. */
static qr_status load_variant(qd_engine *e, qd_bundle *b, size_t v, qd_loaded **out, qr_error *err)
{
    atomic_fetch_add(&e->held_bytes, qd_bundle_footprint(b, v)); /* apply_target settles it */
    qr_status s = qd_variant_load(b, v, e->pool, e->rows, e->cfg.lock_memory, out, err);
    if (s == QR_OK)
        s = size_buffers(e, (*out)->model, err);
    if (s) {
        qd_variant_unload(*out);
        *out = NULL;
    }
    return s;
}

/* What the engine holds once a switch is over (or once the old variant of an unload-first switch
 * is gone and trimmed): the loaded variant's footprint. Otherwise held_bytes only grows during a
 * switch (load_variant adds each image it starts), so the loop never sees less than the images
 * still charged to the service: an unloaded one counts until its memory went back to the kernel. */
static void settle_held_bytes(qd_engine *e)
{
    atomic_store(&e->held_bytes, e->loaded ? qd_bundle_footprint(e->loaded->bundle, e->loaded->index) : 0);
}

/* Every request in flight waited ms between two tokens while nothing was loaded. */
static void note_wait(qd_engine *e, double ms)
{
    for (size_t i = 0; i < e->n_active; i++)
        qd_task_waited(e->active[i], ms);
}

/* Makes the loop's wish the served variant. The old variant goes before the new one loads when
 * the loop said so (the two do not fit together); if the new one then fails, the old one is
 * loaded back so the requests in flight carry on. */
static bool switch_variant(qd_engine *e, double since, qd_event_list *out)
{
    qd_bundle *b = e->want_bundle;
    int v = e->want_variant;
    if (e->loaded && b == e->loaded->bundle && v == (int)e->loaded->index)
        return false;
    if (v < 0) {
        if (e->loaded) {
            qd_variant_unload(e->loaded);
            e->loaded = NULL;
            post_switch(out, QD_EV_SWITCH, b, -1, (qd_now() - since) * 1e3, NULL);
        }
        fail_all_active(e, QI_ERR_NO_VARIANT_FITS, "no variant fits the budgets in force any more", out);
        return true;
    }
    if (e->loaded && same_image(e->loaded, b, v)) {
        qd_bundle_ref(b);
        qd_bundle_unref(e->loaded->bundle);
        e->loaded->bundle = b;
        e->loaded->index = (size_t)v;
        post_switch(out, QD_EV_SWITCH, b, v, (qd_now() - since) * 1e3, "kept the loaded copy: the file is unchanged");
        return false;
    }
    qd_bundle *old_bundle = NULL; /* set when the old variant went first */
    size_t old_index = 0;
    double wait_from = 0;
    bool unloaded_first = e->loaded && e->want_unload_first;
    if (unloaded_first) {
        old_bundle = e->loaded->bundle;
        qd_bundle_ref(old_bundle);
        old_index = e->loaded->index;
        wait_from = qd_now();
        qd_variant_unload(e->loaded);
        e->loaded = NULL;
        /* its memory back to the kernel now, so the count can drop it before the new one loads */
        qd_release_freed_memory();
        settle_held_bytes(e);
    }
    qd_loaded *next = NULL;
    qr_error err;
    if (load_variant(e, b, (size_t)v, &next, &err)) {
        post_switch(out, QD_EV_REFUSED, b, v, 0, err.msg);
        if (old_bundle) {
            qr_error back_err;
            if (load_variant(e, old_bundle, old_index, &e->loaded, &back_err)) {
                fail_all_active(e, QI_ERR_INTERNAL, "the variant serving could not be loaded back after a failed switch", out);
                post_switch(out, QD_EV_SWITCH, old_bundle, -1, (qd_now() - since) * 1e3, back_err.msg);
            }
            note_wait(e, (qd_now() - wait_from) * 1e3);
            qd_bundle_unref(old_bundle);
        }
        return true;
    }
    if (old_bundle) {
        note_wait(e, (qd_now() - wait_from) * 1e3);
        qd_bundle_unref(old_bundle);
    }
    e->hold_rounds = 0;
    for (size_t i = 0; i < e->n_active;) {
        if (qd_task_fits(e->active[i], next->model)) {
            qd_task_rebase(e->active[i]);
            /* rounds to read it again at one chunk a round */
            size_t left = qd_task_input_left(e->active[i]), rounds = (left + e->cfg.chunk - 1) / e->cfg.chunk;
            if (left && rounds > e->hold_rounds)
                e->hold_rounds = rounds < QD_SWITCH_HOLD_MAX ? rounds : QD_SWITCH_HOLD_MAX;
            i++;
            continue;
        }
        qd_task_fail(e->active[i], QI_ERR_INTERNAL,
                     "the new variant's model has another shape: this request cannot carry on", out);
        remove_active(e, i);
    }
    qd_variant_unload(e->loaded);
    e->loaded = next;
    post_switch(out, QD_EV_SWITCH, b, v, (qd_now() - since) * 1e3, unloaded_first ? "unloaded the old variant first" : NULL);
    return true;
}

/* switch_variant, then, when it loaded or unloaded anything, the freed memory goes back to the
 * kernel. A variant's buffers are large enough that glibc's sliding mmap threshold puts the next
 * ones on the heap, where an unloaded variant (and a load's scratch) would stay counted in the
 * service's cgroup: the policy would take it for other memory, and the budget would depend on
 * when the loop last trimmed. */
static void apply_target(qd_engine *e, double since, qd_event_list *out)
{
    if (switch_variant(e, since, out))
        qd_release_freed_memory();
    settle_held_bytes(e);
}

/* Takes job (whose predecessor in the waiting list is prev, NULL for the head) off the list. */
static void unlink_waiting(qd_engine *e, qd_job *job, qd_job *prev)
{
    if (prev)
        prev->queue_next = job->queue_next;
    else
        e->waiting = job->queue_next;
    if (e->waiting_tail == job)
        e->waiting_tail = prev;
    e->n_waiting--;
}

/* Ends every waiting job that was cancelled: it need not wait for a slot to be told. */
static void end_cancelled_waiting(qd_engine *e, qd_event_list *out)
{
    for (qd_job *job = e->waiting, *prev = NULL, *next; job; job = next) {
        next = job->queue_next;
        qd_cancel_reason why = (qd_cancel_reason)atomic_load(&job->cancel);
        if (why == QD_CANCEL_NONE) {
            prev = job;
            continue;
        }
        unlink_waiting(e, job, prev);
        end_unstarted(job, why, out);
    }
}

static size_t flow_active(const qd_engine *e, uint64_t flow)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_active; i++)
        n += qd_task_job(e->active[i])->flow == flow;
    return n;
}

/* Flows with a request being computed or waiting (e->flow_key is the scratch). */
static size_t count_flows(qd_engine *e)
{
    size_t nf = 0;
    for (size_t i = 0; i < e->n_active; i++) {
        uint64_t flow = qd_task_job(e->active[i])->flow;
        size_t f = 0;
        while (f < nf && e->flow_key[f] != flow)
            f++;
        if (f == nf)
            e->flow_key[nf++] = flow;
    }
    size_t n = nf;
    for (const qd_job *job = e->waiting; job; job = job->queue_next) {
        size_t f = 0;
        while (f < nf && e->flow_key[f] != job->flow)
            f++;
        if (f == nf) {
            n++; /* counted, not remembered: flow_key has room for max_active flows only */
            if (nf < e->cfg.max_active)
                e->flow_key[nf++] = job->flow;
        }
    }
    return n;
}

/* The waiting job to start next: the oldest job (the list is in arrival order) of the flow with
 * the fewest requests being computed, among the flows below their share: max_active_per_flow,
 * or fewer when many flows have work (the slots outside the reserve, split evenly, at least 1).
 * The reserve, the last QD_RESERVE_DIV-th of the slots, goes only to flows with nothing being
 * computed: a newcomer never waits for a long request of a flooding connection to end. NULL
 * when no waiting job may start now. */
static qd_job *pick_waiting(qd_engine *e, qd_job **prev_out)
{
    size_t reserve = e->cfg.max_active / QD_RESERVE_DIV;
    size_t free_slots = e->cfg.max_active - e->n_active;
    size_t flows = count_flows(e);
    size_t share = (e->cfg.max_active - reserve + flows - 1) / (flows ? flows : 1);
    if (share > e->cfg.max_active_per_flow)
        share = e->cfg.max_active_per_flow;
    if (share < 1)
        share = 1;
    qd_job *best = NULL, *best_prev = NULL;
    size_t best_n = SIZE_MAX;
    for (qd_job *job = e->waiting, *prev = NULL; job; prev = job, job = job->queue_next) {
        size_t n = flow_active(e, job->flow);
        if (n >= share || n >= best_n || (n > 0 && free_slots <= reserve))
            continue;
        best = job;
        best_prev = prev;
        best_n = n;
        if (n == 0)
            break; /* nobody can have fewer */
    }
    *prev_out = best_prev;
    return best;
}

static void admit(qd_engine *e, qd_event_list *out)
{
    end_cancelled_waiting(e, out);
    while (e->waiting && e->n_active < e->cfg.max_active) {
        if (!e->loaded && e->want_variant >= 0)
            return; /* a variant is being loaded: wait for it */
        qd_job *prev;
        qd_job *job = pick_waiting(e, &prev);
        if (!job)
            return; /* the flows waiting are at their cap */
        unlink_waiting(e, job, prev);
        if (!e->loaded) {
            qd_event_error(out, job, QI_ERR_NO_VARIANT_FITS, NULL, "no variant fits the budgets in force");
            continue;
        }
        qd_task_env env = {e->loaded->bundle->tokenizer, e->loaded->bundle->eot, e->loaded->model, e->loaded->bundle,
                           e->cfg.chunk};
        qd_task *t = qd_task_start(job, &env, out);
        if (t)
            e->active[e->n_active++] = t;
    }
}

static void reap_cancelled(qd_engine *e, qd_event_list *out)
{
    for (size_t i = 0; i < e->n_active;) {
        qd_cancel_reason why = (qd_cancel_reason)atomic_load(&qd_task_job(e->active[i])->cancel);
        if (why == QD_CANCEL_NONE) {
            i++;
            continue;
        }
        qd_task_abort(e->active[i], why, out);
        remove_active(e, i);
    }
}

/* Runs the steps [0, n) that want the same outputs through the model, batch by batch. */
static void run_group(qd_engine *e, qd_slot *slots, size_t n, bool logits, bool features, qd_event_list *out)
{
    const qr_model *m = e->loaded->model;
    const char *name = qd_loaded_name(e->loaded);
    for (size_t i0 = 0; i0 < n; i0 += e->cfg.batch) {
        size_t nb = n - i0 < e->cfg.batch ? n - i0 : e->cfg.batch;
        for (size_t b = 0; b < nb; b++) {
            e->states[b] = slots[i0 + b].state;
            e->tokens[b] = slots[i0 + b].tokens[0];
        }
        qr_error err;
        if (qr_forward(e->loaded->runner, e->states, e->tokens, nb, logits ? e->logits : NULL,
                       features ? e->features : NULL, &err)) {
            /* cannot happen for tokens the tasks encoded for this model; fail them, not the daemon */
            for (size_t b = 0; b < nb; b++)
                atomic_store(&qd_task_job(slots[i0 + b].task)->cancel, QD_CANCEL_FAULT);
            continue;
        }
        for (size_t b = 0; b < nb; b++)
            qd_task_step(slots[i0 + b].task, &slots[i0 + b], logits ? e->logits + b * m->vocab : NULL,
                         features ? e->features + b * m->d : NULL, name, m, out);
    }
}

/* Runs each chunk through the model on its own (qr_forward_sequence): one call reads its n
 * tokens of one sequence as rows of one state, every product over all of them at once, the head
 * on the last one when the chunk wants logits. A call holds one chunk and nothing else, so a
 * sequence's rows meet the same products whatever else runs. Returns the tokens read. */
static size_t run_chunks(qd_engine *e, const qd_slot *chunks, size_t n, qd_event_list *out)
{
    const qr_model *m = e->loaded->model;
    const char *name = qd_loaded_name(e->loaded);
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        const qd_slot *c = &chunks[i];
        qd_job *job = qd_task_job(c->task);
        if (atomic_load(&job->cancel) == QD_CANCEL_FAULT)
            continue; /* an earlier chunk of it failed: its state is behind */
        qr_error err;
        if (qr_forward_sequence(e->loaded->runner, c->state, c->tokens, c->n, c->want_logits ? e->logits : NULL,
                                c->feature_sum, &err)) {
            atomic_store(&job->cancel, QD_CANCEL_FAULT); /* cannot happen for tokens the tasks encoded */
            continue;
        }
        qd_task_step(c->task, c, c->want_logits ? e->logits : NULL, NULL, name, m, out);
        tokens += c->n;
    }
    return tokens;
}

/* Which flow each active request belongs to (e->task_flow, e->flow_key); returns the number of
 * flows. */
static size_t map_flows(qd_engine *e)
{
    size_t nf = 0;
    for (size_t i = 0; i < e->n_active; i++) {
        uint64_t flow = qd_task_job(e->active[i])->flow;
        size_t f = 0;
        while (f < nf && e->flow_key[f] != flow)
            f++;
        if (f == nf)
            e->flow_key[nf++] = flow;
        e->task_flow[i] = f;
    }
    return nf;
}

/* e->task_give: budget split max-min fairly across the nf flows by what their requests want
 * (e->task_demand), then within each flow across its requests (fair.h); leftovers rotate with
 * rot. */
static void split_by_flow(qd_engine *e, size_t nf, size_t budget, size_t rot)
{
    for (size_t f = 0; f < nf; f++)
        e->flow_demand[f] = 0;
    for (size_t i = 0; i < e->n_active; i++)
        e->flow_demand[e->task_flow[i]] += e->task_demand[i];
    qd_fair_split(e->flow_demand, nf, budget, rot, e->flow_give);
    for (size_t f = 0; f < nf; f++) {
        size_t m = 0;
        for (size_t i = 0; i < e->n_active; i++)
            if (e->task_flow[i] == f)
                e->sub_demand[m++] = e->task_demand[i];
        qd_fair_split(e->sub_demand, m, e->flow_give[f], rot, e->sub_give);
        m = 0;
        for (size_t i = 0; i < e->n_active; i++)
            if (e->task_flow[i] == f)
                e->task_give[i] = e->sub_give[m++];
    }
}

static bool grow(qd_slot **slots, size_t *cap, size_t want)
{
    if (want <= *cap)
        return true;
    qd_slot *s = realloc(*slots, want * sizeof *s);
    if (!s)
        return false;
    *slots = s;
    *cap = want;
    return true;
}

/* How many chunks this round reads: what fits in round_ms beside the round's steps (as long as
 * recent rounds' steps took, if any request steps now), at the rate recent chunks were read; at
 * least one. Before anything was measured, one. */
static size_t round_chunks(const qd_engine *e, bool stepping)
{
    if (e->chunk_s_per_token <= 0)
        return 1;
    double left = e->cfg.round_ms * 1e-3 - (stepping ? e->steps_s : 0);
    double fit = left / (e->chunk_s_per_token * (double)e->cfg.chunk);
    if (!(fit >= 1))
        return 1;
    return fit < QD_ROUND_CHUNKS_MAX ? (size_t)fit : QD_ROUND_CHUNKS_MAX;
}

static void clock_update(double *avg, double sample)
{
    *avg = *avg > 0 ? (1 - QD_CLOCK_WEIGHT) * *avg + QD_CLOCK_WEIGHT * sample : sample;
}

/* Fills e->chunks with this round's chunks of input: round_chunks' budget split max-min fairly
 * across flows by the chunks they have to read, then across each flow's requests (engine.h).
 * While a switch is held every reading sequence gets one chunk first, then the budget is split
 * over the rest. Returns how many; 0 when there is nothing to read or no memory. */
static size_t plan_chunks(qd_engine *e, size_t nf, size_t rot, bool stepping)
{
    size_t readers = 0, wanted = 0;
    for (size_t i = 0; i < e->n_active; i++) {
        e->task_demand[i] = qd_task_chunk_demand(e->active[i], &e->task_readers[i]);
        wanted += e->task_demand[i];
        readers += e->task_readers[i];
    }
    if (!wanted)
        return 0;
    size_t budget = round_chunks(e, stepping), floor = e->hold_rounds ? readers : 0;
    if (!grow(&e->chunks, &e->chunks_cap, (budget > floor ? budget : floor)))
        return 0;
    if (floor)
        for (size_t i = 0; i < e->n_active; i++)
            e->task_demand[i] -= e->task_readers[i];
    split_by_flow(e, nf, budget > floor ? budget - floor : 0, rot);
    size_t n = 0;
    for (size_t i = 0; i < e->n_active; i++)
        n += qd_task_chunks(e->active[i], e->chunks + n, e->task_give[i] + (floor ? e->task_readers[i] : 0));
    return n;
}

/* Fills e->slots with this round's steps: the budget (round_tokens, or the number of flows with
 * steps to take if more) split max-min fairly across flows, then across each flow's requests
 * (engine.h). Returns how many. */
static size_t plan_steps(qd_engine *e, size_t nf, size_t rot)
{
    size_t width = 0, busy_flows = 0, total = 0;
    for (size_t f = 0; f < nf; f++)
        e->flow_give[f] = 0; /* marks the flows counted in busy_flows */
    for (size_t i = 0; i < e->n_active; i++) {
        width += qd_task_width(e->active[i]);
        e->task_demand[i] = qd_task_demand(e->active[i]);
        total += e->task_demand[i];
        if (e->task_demand[i] && !e->flow_give[e->task_flow[i]]) {
            e->flow_give[e->task_flow[i]] = 1;
            busy_flows++;
        }
    }
    if (!total || !grow(&e->slots, &e->slots_cap, width))
        return 0;
    /* every flow with steps gets one at least, however small round_tokens is; while a switch is
     * held (apply_target) every sequence advances, so the inputs it restarted are read again
     * within the hold, as the hold's length assumes */
    size_t budget = e->cfg.round_tokens > busy_flows ? e->cfg.round_tokens : busy_flows;
    if (e->hold_rounds && total > budget)
        budget = total;
    split_by_flow(e, nf, budget, rot);
    size_t n = 0;
    for (size_t i = 0; i < e->n_active; i++)
        n += qd_task_slots(e->active[i], e->slots + n, e->task_give[i]);
    return n;
}

/* One round: the chunks of input first (plan_chunks: a prompt's last chunk gives its first
 * token); then every step (plan_steps), grouped by the outputs they need; then every request
 * that is complete answers. The time each part took feeds the round clock. */
static void run_round(qd_engine *e, qd_event_list *out)
{
    size_t nf = map_flows(e), rot = e->rotate++;
    bool stepping = false;
    for (size_t i = 0; i < e->n_active && !stepping; i++)
        stepping = qd_task_demand(e->active[i]) > 0;
    double t0 = qd_now();
    size_t n_chunks = plan_chunks(e, nf, rot, stepping);
    if (n_chunks) {
        size_t tokens = run_chunks(e, e->chunks, n_chunks, out);
        if (tokens)
            clock_update(&e->chunk_s_per_token, (qd_now() - t0) / (double)tokens);
    }
    double t1 = qd_now();
    size_t n = plan_steps(e, nf, rot);
    /* stable partition: logits first, then features, then neither */
    size_t n_logits = 0, n_features = 0;
    qd_slot tmp;
    for (size_t i = 0; i < n; i++)
        if (e->slots[i].want_logits) {
            tmp = e->slots[i];
            memmove(e->slots + n_logits + 1, e->slots + n_logits, (i - n_logits) * sizeof tmp);
            e->slots[n_logits++] = tmp;
        }
    for (size_t i = n_logits; i < n; i++)
        if (e->slots[i].want_features) {
            tmp = e->slots[i];
            size_t at = n_logits + n_features;
            memmove(e->slots + at + 1, e->slots + at, (i - at) * sizeof tmp);
            e->slots[at] = tmp;
            n_features++;
        }
    run_group(e, e->slots, n_logits, true, false, out);
    run_group(e, e->slots + n_logits, n_features, false, true, out);
    run_group(e, e->slots + n_logits + n_features, n - n_logits - n_features, false, false, out);
    if (n)
        clock_update(&e->steps_s, qd_now() - t1);
    for (size_t i = 0; i < e->n_active;) {
        if (qd_task_settle(e->active[i], e->loaded->model, out))
            remove_active(e, i);
        else
            i++;
    }
}

static void publish(qd_engine *e, qd_event_list *local)
{
    pthread_mutex_lock(&e->mu);
    if (local->head) {
        if (e->events.tail)
            e->events.tail->next = local->head;
        else
            e->events.head = local->head;
        e->events.tail = local->tail;
    }
    e->waiting_count = e->n_waiting + e->n_incoming;
    e->active_count = (uint32_t)e->n_active;
    pthread_mutex_unlock(&e->mu);
    if (local->head)
        e->wake(e->wake_ctx);
    local->head = local->tail = NULL;
}

static void *engine_main(void *arg)
{
    qd_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && !e->target_changed && !e->switch_pending && !e->incoming && !e->poked && e->n_active == 0 &&
               !(e->waiting && (e->loaded || e->want_variant < 0)))
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        if (e->incoming) {
            if (e->waiting_tail)
                e->waiting_tail->queue_next = e->incoming;
            else
                e->waiting = e->incoming;
            e->waiting_tail = e->incoming_tail;
            e->n_waiting += e->n_incoming;
            e->incoming = e->incoming_tail = NULL;
            e->n_incoming = 0;
        }
        if (e->target_changed) {
            double since = e->target_since;
            qd_bundle_unref(e->want_bundle);
            e->want_bundle = e->target_bundle;
            e->target_bundle = NULL;
            e->want_variant = e->target_variant;
            e->want_unload_first = e->target_unload_first;
            e->target_changed = false;
            e->switch_pending = true;
            e->pending_since = since;
        }
        e->poked = false;
        pthread_mutex_unlock(&e->mu);

        qd_event_list out = {0};
        /* a switch waits while requests restarted by the previous one read their input again
         * (at most QD_SWITCH_HOLD_MAX rounds); to no variant, it never waits */
        if (e->switch_pending && (e->hold_rounds == 0 || e->n_active == 0 || e->want_variant < 0 || !e->loaded)) {
            e->switch_pending = false;
            apply_target(e, e->pending_since, &out);
        }
        reap_cancelled(e, &out);
        admit(e, &out);
        if (e->loaded && e->n_active) {
            run_round(e, &out);
            if (e->hold_rounds)
                e->hold_rounds--;
        }
        publish(e, &out);
    }
    /* stopping: everything still held ends with shutting_down */
    qd_event_list out = {0};
    while (e->n_active) {
        qd_task_abort(e->active[0], QD_CANCEL_SHUTDOWN, &out);
        remove_active(e, 0);
    }
    pthread_mutex_lock(&e->mu);
    if (e->incoming) {
        if (e->waiting_tail)
            e->waiting_tail->queue_next = e->incoming;
        else
            e->waiting = e->incoming;
        e->n_waiting += e->n_incoming;
        e->incoming = e->incoming_tail = NULL;
        e->n_incoming = 0;
    }
    pthread_mutex_unlock(&e->mu);
    while (e->waiting) {
        qd_job *job = e->waiting;
        e->waiting = job->queue_next;
        qd_cancel_reason why = (qd_cancel_reason)atomic_load(&job->cancel);
        end_unstarted(job, why == QD_CANCEL_GONE ? why : QD_CANCEL_SHUTDOWN, &out);
    }
    e->waiting_tail = NULL;
    e->n_waiting = 0;
    qd_variant_unload(e->loaded);
    e->loaded = NULL;
    publish(e, &out);
    return NULL;
}

/* ---------------------------------------------------------------- the loop's side */

qr_status qd_engine_new(const qd_engine_config *cfg, qd_wake_fn wake, void *wake_ctx, qd_engine **out,
                        qr_error *err)
{
    *out = NULL;
    if (cfg->batch < 1 || cfg->max_active < 1 || cfg->threads < 1 || cfg->max_active_per_flow < 1 ||
        cfg->round_tokens < 1 || cfg->chunk < 1 || cfg->round_ms < 1)
        return qr_fail(err, QR_ERR_INVALID, "engine: batch, max_active, max_active_per_flow, round_tokens, chunk, "
                                            "round_ms and threads must be at least 1");
    qd_engine *e = calloc(1, sizeof *e);
    if (!e)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    e->cfg = *cfg;
    e->wake = wake;
    e->wake_ctx = wake_ctx;
    e->want_variant = -1;
    e->target_variant = -1;
    atomic_init(&e->held_bytes, 0);
    e->rows = cfg->chunk > cfg->batch ? cfg->chunk : cfg->batch;
    e->active = calloc(cfg->max_active, sizeof *e->active);
    e->states = calloc(cfg->batch, sizeof *e->states);
    e->tokens = calloc(cfg->batch, sizeof *e->tokens);
    size_t **plan[] = {&e->flow_demand, &e->flow_give, &e->task_flow, &e->task_demand,
                       &e->task_give,   &e->sub_demand, &e->sub_give, &e->task_readers};
    bool plan_ok = (e->flow_key = calloc(cfg->max_active, sizeof *e->flow_key)) != NULL;
    for (size_t i = 0; i < sizeof plan / sizeof *plan; i++)
        plan_ok = (*plan[i] = calloc(cfg->max_active, sizeof **plan[i])) != NULL && plan_ok;
    if (!e->active || !e->states || !e->tokens || !plan_ok) {
        qd_engine_free(e);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    }
    qr_status s = qr_pool_new(cfg->threads, &e->pool, err);
    if (s) {
        qd_engine_free(e);
        return s;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        qr_pool_free(e->pool);
        e->pool = NULL;
        qd_engine_free(e);
        return qr_fail(err, QR_ERR_IO, "cannot start the inference thread");
    }
    e->started = true;
    *out = e;
    return QR_OK;
}

void qd_engine_stop(qd_engine *e)
{
    if (!e || !e->started)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->started = false;
}

void qd_engine_free(qd_engine *e)
{
    if (!e)
        return;
    bool had_thread = e->pool != NULL;
    qd_engine_stop(e);
    qd_event_list rest = {0};
    if (had_thread) {
        qd_engine_take_events(e, &rest);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    for (qd_event *ev = rest.head, *next; ev; ev = next) {
        next = ev->next;
        qd_event_free(ev);
    }
    qd_bundle_unref(e->target_bundle);
    qd_bundle_unref(e->want_bundle);
    qr_pool_free(e->pool);
    free(e->active);
    free(e->flow_key);
    free(e->flow_demand);
    free(e->flow_give);
    free(e->task_flow);
    free(e->task_demand);
    free(e->task_give);
    free(e->sub_demand);
    free(e->sub_give);
    free(e->task_readers);
    free(e->slots);
    free(e->chunks);
    free(e->states);
    free(e->tokens);
    free(e->logits);
    free(e->features);
    free(e);
}

void qd_engine_submit(qd_engine *e, qd_job *job)
{
    job->queue_next = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->incoming_tail)
        e->incoming_tail->queue_next = job;
    else
        e->incoming = job;
    e->incoming_tail = job;
    e->n_incoming++;
    e->waiting_count++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void qd_engine_poke(qd_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->poked = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void qd_engine_set_target(qd_engine *e, qd_bundle *b, int variant, bool unload_first)
{
    if (b)
        qd_bundle_ref(b);
    pthread_mutex_lock(&e->mu);
    qd_bundle_unref(e->target_bundle);
    e->target_bundle = b;
    e->target_variant = variant;
    e->target_unload_first = unload_first;
    e->target_changed = true;
    e->target_since = qd_now();
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void qd_engine_take_events(qd_engine *e, qd_event_list *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->events;
    e->events.head = e->events.tail = NULL;
    pthread_mutex_unlock(&e->mu);
}

uint64_t qd_engine_held_bytes(qd_engine *e)
{
    return atomic_load(&e->held_bytes);
}

void qd_engine_load(qd_engine *e, uint32_t *waiting, uint32_t *active)
{
    pthread_mutex_lock(&e->mu);
    *waiting = e->waiting_count;
    *active = e->active_count;
    pthread_mutex_unlock(&e->mu);
}
