/* flow.c: how much one connection may make the loop do. Two bounds:
 *   - backpressure: a connection whose unwritten replies pass a high-water mark is not read until
 *     they drain below a low-water mark, so a client that pipelines without reading holds a
 *     bounded amount of the daemon's memory and is never dropped for it (the kernel's socket
 *     buffers hold its requests, then its own writes block);
 *   - a line budget: at most QD_FLOW_LINES_PER_TURN request lines per connection per loop turn.
 *     The rest of a read waits in the connection's `pend` bytes for the next turn (an idle
 *     handle), so one connection's pipeline cannot keep the loop from the others, the timers and
 *     the watchdog.
 * It frames and hands lines to dispatch.c; what a line means is not its business. Output still
 * pushed by running jobs (token streams) is bounded by max_output in qd_conn_send, not here. */
#include "server_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "task_impl.h"

/* The high-water mark: 256 KiB, or half of max_output when that is smaller (the drop at
 * max_output is for streams; a request-reply client must never reach it). */
static size_t high_water(const qd_server *s)
{
    size_t h = QD_FLOW_HIGH_WATER;
    return s->cfg.max_output / 2 < h ? s->cfg.max_output / 2 : h;
}

static size_t queued(qd_conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

static bool has_pend(const qd_conn *c)
{
    return c->pend_off < c->pend_len;
}

static void drop_pend(qd_conn *c)
{
    free(c->pend);
    c->pend = NULL;
    c->pend_off = c->pend_len = 0;
}

/* Reads only while nothing holds it back: not ending or closing, output under the mark, and no
 * bytes of an earlier read still waiting for their turn. */
static void update_reading(qd_conn *c)
{
    bool want = !c->closing && !c->ending && !c->full && !has_pend(c);
    if (want && !c->reading)
        qd_conn_read_start(c);
    else if (!want && c->reading && !c->closing)
        qd_conn_read_stop(c);
}

static void on_idle(uv_idle_t *h);

static void want_idle(qd_server *s)
{
    if (!s->flow_closed && !uv_is_active((uv_handle_t *)&s->flow_idle))
        uv_idle_start(&s->flow_idle, on_idle);
}

/* Frames data[0..len) and dispatches its lines until the turn's budget is spent or the output
 * is over the mark; returns the bytes consumed (all of them once the connection ends). */
static size_t feed_lines(qd_conn *c, const char *data, size_t len)
{
    qd_server *s = c->srv;
    if (c->turn != s->turn) {
        c->turn = s->turn;
        c->turn_lines = 0;
    }
    double t = qd_now();
    size_t off = 0, used;
    for (; off < len && !c->closing && !c->ending; off += used) {
        if (c->turn_lines >= QD_FLOW_LINES_PER_TURN || c->full)
            return off;
        const char *line;
        size_t line_len;
        switch (qi_line_reader_feed(c->reader, data + off, len - off, &used, &line, &line_len)) {
        case QI_LINE_NONE:
            break;
        case QI_LINE_READY:
            c->turn_lines++;
            c->last_active = t; /* conn_limits.c: only a whole request line counts as activity */
            qd_dispatch_line(c, line, line_len, t);
            break;
        case QI_LINE_TOO_LARGE: {
            char msg[96], *out = NULL;
            size_t out_len = 0;
            snprintf(msg, sizeof msg, "the line is longer than %zu bytes; closing the connection",
                     s->cfg.limits.max_line);
            qi_id none = qi_id_none();
            qd_stats_answered(&s->stats, QD_OP_NONE, QI_ERR_TOO_LARGE, qd_now() - t);
            if (qi_reply_error(&none, QI_ERR_TOO_LARGE, NULL, msg, &out, &out_len, NULL) == QI_OK)
                qd_conn_send(c, out, out_len);
            qd_conn_end(c);
            return len;
        }
        case QI_LINE_NOMEM:
            qd_conn_close(c);
            return len;
        }
    }
    return len;
}

/* Keeps data[0..len) after what already waits (the server's read buffer is shared: copy). */
static bool keep(qd_conn *c, const char *data, size_t len)
{
    size_t old = c->pend_len - c->pend_off;
    char *p = malloc(old + len);
    if (!p)
        return false;
    if (old)
        memcpy(p, c->pend + c->pend_off, old);
    memcpy(p + old, data, len);
    drop_pend(c);
    c->pend = p;
    c->pend_len = old + len;
    return true;
}

void qd_flow_feed(qd_conn *c, const char *data, size_t len)
{
    /* bytes still waiting go first (reading stops while there are any, so this is defensive) */
    size_t used = has_pend(c) ? 0 : feed_lines(c, data, len);
    if (used < len && !c->closing && !c->ending) {
        if (!keep(c, data + used, len - used)) {
            qd_conn_close(c);
            return;
        }
        if (!c->full)
            want_idle(c->srv);
    }
    update_reading(c);
}

/* Once per loop turn while some connection has bytes waiting and room for its replies: each
 * such connection gets its next budget of lines. */
static void on_idle(uv_idle_t *h)
{
    qd_server *s = h->data;
    bool more = false;
    for (qd_conn *c = s->conns; c; c = c->next) { /* closing ones stay listed until closed */
        if (!has_pend(c) || c->closing)
            continue;
        if (c->full)
            continue; /* qd_flow_written starts the idle again once it drained */
        c->pend_off += feed_lines(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (!has_pend(c) || c->closing || c->ending)
            drop_pend(c);
        else if (!c->full)
            more = true;
        update_reading(c);
    }
    if (!more)
        uv_idle_stop(h);
}

void qd_flow_sent(qd_conn *c)
{
    if (!c->full && !c->closing && queued(c) > high_water(c->srv)) {
        c->full = true;
        update_reading(c);
    }
}

void qd_flow_written(qd_conn *c)
{
    if (!c->full || c->closing || queued(c) > high_water(c->srv) / 4)
        return;
    c->full = false;
    if (has_pend(c))
        want_idle(c->srv);
    update_reading(c);
}

void qd_flow_forget(qd_conn *c)
{
    drop_pend(c);
}

/* After poll and the I/O callbacks: the next turn starts, with a fresh line budget for all. */
static void on_turn_end(uv_check_t *h)
{
    ((qd_server *)h->data)->turn++;
}

void qd_flow_init(qd_server *s)
{
    uv_idle_init(&s->loop, &s->flow_idle);
    uv_check_init(&s->loop, &s->flow_check);
    s->flow_idle.data = s->flow_check.data = s;
    uv_unref((uv_handle_t *)&s->flow_idle); /* neither keeps the loop alive on its own */
    uv_unref((uv_handle_t *)&s->flow_check);
    uv_check_start(&s->flow_check, on_turn_end);
}

void qd_flow_close(qd_server *s)
{
    if (s->flow_closed)
        return;
    s->flow_closed = true;
    uv_close((uv_handle_t *)&s->flow_idle, NULL);
    uv_close((uv_handle_t *)&s->flow_check, NULL);
}
