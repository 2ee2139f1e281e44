/* dispatch.c: what each request line does, in PROTOCOL.md's order of checks (parse, id,
 * permission, shutdown, limits, the bundle), and what the engine's events become on the wire. */
#include "server_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "task_impl.h"

/* The reply helpers return the code they answered with: qd_dispatch_line counts each line's
 * answer once, with its op (request_stats.h). */
static qi_code reply_error(qd_conn *c, const qi_id *id, qi_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static qi_code reply_error(qd_conn *c, const qi_id *id, qi_code code, const char *field, const char *fmt, ...)
{
    size_t len = 0;
    va_list ap;
    va_start(ap, fmt);
    char *line = qi_reply_errorv(id, code, field, &len, fmt, ap);
    va_end(ap);
    if (line)
        qd_conn_send(c, line, len);
    return code;
}

/* Sends a result line built for an answered request (NULL: out of memory, an internal error). */
static qi_code reply_line(qd_conn *c, const qi_id *id, char *line, size_t len)
{
    if (!line)
        return reply_error(c, id, QI_ERR_INTERNAL, NULL, "out of memory building the reply");
    qd_conn_send(c, line, len);
    return QI_OK;
}

/* access.h says who; a peer whose credentials could not be read is refused. */
static bool may_control(const qd_conn *c)
{
    uv_os_fd_t fd;
    return c->has_cred && uv_fileno((const uv_handle_t *)&c->pipe, &fd) == 0 &&
           qd_admin_allows(&c->srv->admin, fd, c->uid, c->gid);
}

static bool id_in_flight(const qd_conn *c, const qi_id *id)
{
    for (const qd_job *j = c->jobs; j; j = j->conn_next)
        if (qi_id_equal(&j->req.id, id))
            return true;
    const qd_reload *r = c->srv->reload;
    return r && r->conn == c && qi_id_equal(&r->id, id);
}

static qi_code no_variant_fits(qd_conn *c, const qi_id *id)
{
    return reply_error(c, id, QI_ERR_NO_VARIANT_FITS, NULL, "%s", c->srv->decision.reason);
}

/* A `busy` reply with a retry hint: `ahead` requests must end before this one would be taken,
 * `together` of them are computed at once, and one takes s->job_ms or so; the hint is that
 * estimate, clamped to 50 ms .. 60 s. */
static qi_code reply_busy(qd_conn *c, const qi_id *id, double ahead, double together, const char *why)
{
    qd_server *s = c->srv;
    double ms = s->job_ms * ahead / (together >= 1 ? together : 1);
    uint64_t hint = ms < 50 ? 50 : ms > 60000 ? 60000 : (uint64_t)ms;
    size_t len = 0;
    char *line = qi_reply_busyf(id, hint, &len, "%s; try again in about %llu ms", why, (unsigned long long)hint);
    if (line)
        qd_conn_send(c, line, len);
    return QI_ERR_BUSY;
}

/* generate and classify: queue a job for the engine (*queued: its answer is counted when the
 * engine ends it), or answer at once (the code returned). The queue depth bounds the jobs waiting
 * server-wide, but a connection with fewer requests in flight than its share of the model
 * (max_active_per_conn) is not refused for the others' backlog: a flood from some connections
 * must not turn every other client away. That lets at most max_active_per_conn jobs per
 * connection past the depth. */
static qi_code submit(qd_conn *c, qi_request *req, double t_received, bool *queued)
{
    qd_server *s = c->srv;
    uint32_t waiting, active;
    qd_engine_load(s->engine, &waiting, &active);
    char why[128];
    if (c->in_flight >= s->cfg.limits.max_in_flight) {
        snprintf(why, sizeof why, "this connection has %u requests in flight (the limit)", c->in_flight);
        size_t share = s->cfg.max_active_per_conn < c->in_flight ? s->cfg.max_active_per_conn : c->in_flight;
        return reply_busy(c, &req->id, 1, (double)share, why);
    }
    if (waiting >= s->cfg.limits.queue_depth && c->in_flight >= s->cfg.max_active_per_conn) {
        snprintf(why, sizeof why, "%u requests are waiting for the model (the queue depth)", waiting);
        return reply_busy(c, &req->id, (double)waiting - s->cfg.limits.queue_depth + 1, (double)s->cfg.max_active,
                          why);
    }
    if (s->target < 0) /* PROTOCOL.md's order: limits, then the bundle */
        return no_variant_fits(c, &req->id);
    qd_job *job = calloc(1, sizeof *job);
    if (!job)
        return reply_error(c, &req->id, QI_ERR_INTERNAL, NULL, "out of memory");
    job->req = *req;
    memset(req, 0, sizeof *req);
    job->t_received = t_received;
    atomic_init(&job->cancel, QD_CANCEL_NONE);
    job->conn = c;
    /* the fair share's owner (engine.h): the connection, or its peer's uid (set apart from
     * connection numbers by the top bit) */
    job->flow = s->cfg.share_by_uid && c->has_cred ? (UINT64_C(1) << 63) | (uint64_t)c->uid : c->serial;
    job->conn_next = c->jobs;
    if (c->jobs)
        c->jobs->conn_prev = job;
    c->jobs = job;
    c->in_flight++;
    s->n_jobs++;
    qd_engine_submit(s->engine, job);
    *queued = true;
    return QI_OK;
}

static qi_code do_cancel(qd_conn *c, const qi_request *req)
{
    bool found = false;
    for (qd_job *j = c->jobs; j; j = j->conn_next)
        if (qi_id_equal(&j->req.id, &req->u.cancel.target)) {
            int none = QD_CANCEL_NONE;
            found = atomic_compare_exchange_strong(&j->cancel, &none, QD_CANCEL_REQUEST);
            break;
        }
    if (found)
        qd_engine_poke(c->srv->engine);
    char *line = NULL;
    size_t len = 0;
    qi_reply_cancel(&req->id, found, &line, &len, NULL);
    return reply_line(c, &req->id, line, len);
}

static qi_code do_set_budget(qd_conn *c, const qi_request *req)
{
    qd_server *s = c->srv;
    const qi_set_budget *b = &req->u.set_budget;
    if (b->memory == QI_BUDGET_SET) {
        s->budget.has_memory = true;
        s->budget.memory_bytes = b->memory_bytes;
    } else if (b->memory == QI_BUDGET_AUTO) {
        s->budget.has_memory = false;
    }
    if (b->power == QI_BUDGET_SET) {
        s->budget.has_power = true;
        s->budget.power_w = (double)b->power_uw / 1e6;
    } else if (b->power == QI_BUDGET_AUTO) {
        s->budget.has_power = false;
    }
    qd_log(QD_LOG_INFO, "set-budget: memory %s, power %s", s->budget.has_memory ? "explicit" : "auto",
           s->budget.has_power ? "explicit" : "auto");
    qd_control_decide(s, true);
    char *line = NULL;
    size_t len = 0;
    qi_reply_set_budget(&req->id, s->budget.has_memory, s->budget.memory_bytes, s->budget.has_power,
                        (uint64_t)(s->budget.power_w * 1e6 + 0.5), &line, &len, NULL);
    return reply_line(c, &req->id, line, len);
}

static qi_code do_pin(qd_conn *c, const qi_request *req)
{
    qd_server *s = c->srv;
    const char *name = req->op == QI_OP_PIN ? req->u.pin.variant : NULL;
    if (name) {
        size_t index;
        if (!qr_bundle_find_variant(s->bundle->manifest, name, &index))
            return reply_error(c, &req->id, QI_ERR_NOT_FOUND, "variant", "variant: the bundle has no variant '%s'",
                               name);
        if (!s->bundle->usable[index] || s->refused[index][0])
            return reply_error(c, &req->id, QI_ERR_NOT_FOUND, "variant", "variant: '%s' was refused: %s", name,
                               s->bundle->refusal[index][0] ? s->bundle->refusal[index] : s->refused[index]);
        int before = s->pinned;
        s->pinned = (int)index;
        qd_control_decide(s, true);
        if (s->pinned != (int)index) { /* the policy dropped it: it does not fit */
            s->pinned = before;
            qd_control_decide(s, false);
            return reply_error(c, &req->id, QI_ERR_NO_VARIANT_FITS, NULL,
                               "'%s' does not fit the budgets in force: %s", name, s->pin_note);
        }
        s->pin_note[0] = '\0';
    } else {
        s->pinned = -1;
        qd_control_decide(s, true);
    }
    char *line = NULL;
    size_t len = 0;
    qi_reply_pin(&req->id, name, &line, &len, NULL);
    return reply_line(c, &req->id, line, len);
}

/* metrics: the text of metrics.h in one reply line. */
static qi_code do_metrics(qd_conn *c, const qi_request *req)
{
    size_t n = 0, len = 0;
    char *text = qd_metrics_render(c->srv, &n), *line = NULL;
    if (text)
        qi_reply_metrics(&req->id, text, n, &line, &len, NULL);
    free(text);
    return reply_line(c, &req->id, line, len);
}

/* Answers one line, or hands it over (the engine, a reload); a line answered here is counted
 * here, once, with its op and code. */
void qd_dispatch_line(qd_conn *c, const char *line, size_t len, double t_received)
{
    qd_server *s = c->srv;
    qi_request req;
    qi_error e;
    qi_code code;
    bool handed_over = false; /* counted when it is answered: qd_handle_event, reload_done */
    if (qi_request_parse(line, len, &s->cfg.limits, &req, &e) != QI_OK) {
        char *out = NULL;
        size_t out_len = 0;
        code = e.code;
        if (qi_reply_error_from(&req.id, &e, &out, &out_len, NULL) == QI_OK)
            qd_conn_send(c, out, out_len);
    } else if (id_in_flight(c, &req.id)) {
        /* id null: this error must not read as the final message of the request in flight */
        char *out = NULL;
        size_t out_len = 0;
        code = QI_ERR_INVALID_ARGUMENT;
        if (qi_reply_duplicate_id(&req.id, &out, &out_len, NULL) == QI_OK)
            qd_conn_send(c, out, out_len);
    } else if (qi_op_is_control(req.op) && !may_control(c)) {
        qd_log(QD_LOG_NOTICE, "refused %s from uid %ld gid %ld: not root, the daemon's user or in group '%s'",
               qi_op_name(req.op), c->has_cred ? (long)c->uid : -1L, c->has_cred ? (long)c->gid : -1L,
               s->admin.name);
        code = reply_error(c, &req.id, QI_ERR_PERMISSION_DENIED, NULL, "%s is for root and the admin group%s%s%s",
                           qi_op_name(req.op), s->admin.name[0] ? " (" : "", s->admin.name,
                           s->admin.name[0] ? ")" : "");
    } else if (s->shutting_down) {
        code = reply_error(c, &req.id, QI_ERR_SHUTTING_DOWN, NULL, "the daemon is stopping");
    } else {
        char *out = NULL;
        size_t out_len = 0;
        switch (req.op) {
        case QI_OP_GENERATE:
        case QI_OP_CLASSIFY:
            code = submit(c, &req, t_received, &handed_over); /* takes req's strings when queued */
            break;
        case QI_OP_CANCEL:
            code = do_cancel(c, &req);
            break;
        case QI_OP_STATUS:
            out = qd_control_status_line(s, &req.id, &out_len);
            code = reply_line(c, &req.id, out, out_len);
            break;
        case QI_OP_VARIANTS:
            out = qd_control_variants_line(s, &req.id, &out_len);
            code = reply_line(c, &req.id, out, out_len);
            break;
        case QI_OP_SET_BUDGET:
            code = do_set_budget(c, &req);
            break;
        case QI_OP_PIN:
        case QI_OP_UNPIN:
            code = do_pin(c, &req);
            break;
        case QI_OP_RELOAD:
            if (s->reload) {
                code = reply_error(c, &req.id, QI_ERR_BUSY, NULL, "a reload is already running");
            } else {
                c->in_flight++;
                qd_control_start_reload(s, c, &req.id);
                code = QI_OK;
                handed_over = true;
            }
            break;
        case QI_OP_METRICS:
            code = do_metrics(c, &req);
            break;
        case QI_OP_COUNT:
        default:
            code = QI_ERR_INTERNAL; /* not reached: the parser knows every op */
            break;
        }
    }
    if (!handed_over)
        qd_stats_answered(&s->stats, req.op, code, qd_now() - t_received);
    qi_request_free(&req);
}

/* ---------------------------------------------------------------- engine events */

static void job_done(qd_server *s, qd_job *job)
{
    qd_conn *c = job->conn;
    if (c) {
        if (job->conn_prev)
            job->conn_prev->conn_next = job->conn_next;
        else
            c->jobs = job->conn_next;
        if (job->conn_next)
            job->conn_next->conn_prev = job->conn_prev;
        c->in_flight--;
    }
    s->n_jobs--;
    qi_request_free(&job->req);
    qd_event_free(&job->final);
    free(job);
}

void qd_handle_event(qd_server *s, qd_event *ev)
{
    switch (ev->kind) {
    case QD_EV_LINE:
        if (ev->job->conn) {
            qd_conn_send(ev->job->conn, ev->line, ev->len);
            ev->line = NULL;
        }
        qd_event_free(ev);
        return;
    case QD_EV_FINAL: {
        qd_job *job = ev->job;
        double now = qd_now();
        s->tokens += ev->tokens;
        s->tokens_read += job->tokens_read;
        if (job->t_first_token > 0)
            qd_histogram_observe(&s->stats.first_token, job->t_first_token - job->t_received);
        if (!job->conn) { /* the client went away: nothing was sent, nobody cancelled it */
            s->disconnected++;
            qd_stats_answered(&s->stats, job->req.op, QI_OK, now - job->t_received);
        } else {
            qd_stats_answered(&s->stats, job->req.op, ev->code, now - job->t_received);
            s->cancelled += ev->cancelled;
            if (ev->code == QI_OK && !ev->cancelled) { /* the retry hint's base: recent answers weigh 1/8 */
                double ms = (now - job->t_received) * 1e3;
                s->job_ms = s->job_ms > 0 ? s->job_ms + (ms - s->job_ms) / 8 : ms;
            }
        }
        if (job->conn) {
            qd_conn_send(job->conn, ev->line, ev->len);
            ev->line = NULL;
        }
        job_done(s, job);
        return;
    }
    case QD_EV_SWITCH:
        s->loaded_footprint = ev->variant >= 0 ? qd_bundle_footprint(ev->bundle, (size_t)ev->variant) : 0;
        if (ev->bundle == s->bundle) {
            int from = s->active;
            s->active = ev->variant;
            if (from != ev->variant) {
                if (from >= 0 || ev->variant >= 0)
                    qd_stats_switched(&s->stats, s->target_why, ev->latency_ms / 1e3);
                s->latency_ms[s->n_latency++ % QD_LATENCY_RING] = ev->latency_ms;
            }
            qd_log(QD_LOG_NOTICE, "serving %s (%s); the switch took %.1f ms%s%s",
                   ev->variant >= 0 ? s->bundle->manifest->variants[ev->variant].name : "no variant",
                   s->decision.reason, ev->latency_ms, ev->msg[0] ? ": " : "", ev->msg);
            if (s->ready)
                qd_control_sd_status(s);
            else
                qd_control_ready(s);
        }
        qd_event_free(ev);
        return;
    case QD_EV_REFUSED:
        qd_log(QD_LOG_WARNING, "refused variant %s: %s",
               ev->bundle->manifest->variants[ev->variant].name, ev->msg);
        if (ev->bundle == s->bundle) {
            snprintf(s->refused[ev->variant], QD_REFUSAL_MAX, "%s", ev->msg[0] ? ev->msg : "it failed to load");
            s->refusals++;
            if (s->pinned == ev->variant)
                s->pinned = -1;
            s->target = -2; /* the engine serves what it had; decide again */
            qd_control_decide(s, true);
            if (s->target < 0)
                qd_control_ready(s); /* nothing left to load: ready, and status says why */
        }
        qd_event_free(ev);
        return;
    }
}
