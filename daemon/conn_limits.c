/* conn_limits.c: accepting with an answer for every refusal, the idle timeout, and giving the
 * allocator's retained memory back after a flood (conn_limits.h says why each exists). */
#include "server_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "release_memory.h"
#include "reply.h"
#include "task_impl.h"

#define ACCEPT_BATCH 64     /* connections taken per wake-up, so a storm cannot starve the loop */
#define ACCEPT_PAUSE_MS 100 /* when nothing can be accepted now */
#define BURST_END_S 2.0     /* no refusal for this long ends a burst */
#define TRIM_QUIET_S 1.0    /* no request, connection or close for this long: trim */
#define TRIM_EVERY_S 5.0    /* at most one trim per this long */

/* ---------------------------------------------------------------- refusing */

/* The spare descriptor: /dev/null (PrivateDevices= keeps it), else the root directory. */
static int open_spare(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : open("/", O_RDONLY | O_CLOEXEC);
}

/* One error line to a client we will not serve, then close. The client's request may already
 * be in our receive queue: it is read and dropped first, since closing a Unix socket with
 * unread data resets the peer (which still reads our line first). Never blocks. */
static void refuse(int fd, qi_code code, const char *msg)
{
    static const char fallback[] =
        "{\"id\":null,\"error\":{\"code\":\"too_many_connections\",\"message\":\"out of memory\"}}\n";
    qi_id none = qi_id_none();
    char *line = NULL;
    size_t len = 0;
    if (qi_reply_error(&none, code, NULL, msg, &line, &len, NULL) == QI_OK)
        (void)!send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    else
        (void)!send(fd, fallback, sizeof fallback - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(line);
    char drain[4096];
    for (int i = 0; i < 16 && recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0; i++) {
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* Counts a refusal; the first of a burst is logged, the rest only in the burst's summary. */
static void refused(qd_server *s, const char *why)
{
    qd_limits *l = &s->lim;
    l->refused++;
    l->burst_refused++;
    l->last_refusal = qd_now();
    if (l->in_burst)
        return;
    l->in_burst = true;
    qd_log(QD_LOG_WARNING,
           "refusing new connections with too_many_connections: %s (%u open, max_connections %zu); "
           "the rest of this burst is logged when it ends",
           why, l->n_conns, qd_limits_max_connections(s));
}

/* ---------------------------------------------------------------- accepting */

static void on_listen_readable(uv_poll_t *p, int status, int events);

static void on_retry(uv_timer_t *t)
{
    qd_server *s = t->data;
    qd_limits *l = &s->lim;
    if (l->spare_fd < 0)
        l->spare_fd = open_spare();
    if (l->has_poll && !l->polling && !s->shutting_down && uv_poll_start(&l->poll, UV_READABLE, on_listen_readable) == 0)
        l->polling = true;
}

/* Nothing can be accepted now (the backlog would wake the loop at once, again and again):
 * stop watching the socket and look again in a moment. */
static void pause_accepting(qd_server *s)
{
    qd_limits *l = &s->lim;
    if (l->polling)
        uv_poll_stop(&l->poll);
    l->polling = false;
    uv_timer_start(&l->retry, on_retry, ACCEPT_PAUSE_MS, 0);
}

/* A client accepted: served, or refused when at the cap or out of memory. */
static void take(qd_server *s, int fd)
{
    qd_limits *l = &s->lim;
    size_t cap = qd_limits_max_connections(s);
    if (s->shutting_down) {
        refuse(fd, QI_ERR_SHUTTING_DOWN, "the server is stopping");
        return;
    }
    if (l->n_conns >= cap) {
        char msg[128];
        snprintf(msg, sizeof msg, "the server is at its limit of %zu connections; try again later", cap);
        refuse(fd, QI_ERR_TOO_MANY_CONNECTIONS, msg);
        refused(s, "at the connection limit");
        return;
    }
    if (!qd_conn_open(s, fd)) {
        refuse(fd, QI_ERR_TOO_MANY_CONNECTIONS, "the server is out of memory; try again later");
        refused(s, "out of memory");
    }
}

/* accept(2) failed with EMFILE/ENFILE: the spare descriptor makes room for one client, who
 * gets the error line. 1: one refused, go on; 0: nothing was pending; -1: no room (pause). */
static int refuse_without_fds(qd_server *s, int why)
{
    qd_limits *l = &s->lim;
    if (l->spare_fd < 0)
        return -1;
    close(l->spare_fd);
    l->spare_fd = -1;
    int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    int e = errno;
    if (fd >= 0) {
        refuse(fd, QI_ERR_TOO_MANY_CONNECTIONS, "the server is out of file descriptors; try again later");
        refused(s, why == ENFILE ? "the system is out of file descriptors (ENFILE)"
                                 : "out of file descriptors (EMFILE: raise LimitNOFILE= or lower max_connections)");
    }
    l->spare_fd = open_spare();
    if (fd >= 0)
        return l->spare_fd >= 0 ? 1 : -1;
    return e == EAGAIN || e == EWOULDBLOCK ? 0 : -1;
}

static void on_listen_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    qd_server *s = p->data;
    qd_limits *l = &s->lim;
    if (status < 0) {
        qd_log(QD_LOG_WARNING, "accept: %s", uv_strerror(status));
        pause_accepting(s);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            take(s, fd);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        if (e == EINTR || e == ECONNABORTED || e == EPROTO)
            continue;
        if (e == EMFILE || e == ENFILE) {
            int r = refuse_without_fds(s, e);
            if (r > 0)
                continue;
            if (r == 0)
                return;
        } else if (!l->in_burst) { /* ENOMEM, ENOBUFS: the client waits in the backlog */
            l->in_burst = true;
            l->last_refusal = qd_now();
            qd_log(QD_LOG_WARNING, "accept: %s; pausing accepting for %d ms at a time", strerror(e),
                   ACCEPT_PAUSE_MS);
        }
        pause_accepting(s);
        return;
    }
}

int qd_limits_listen(qd_server *s, int backlog)
{
    qd_limits *l = &s->lim;
    uv_os_fd_t fd;
    int r = uv_fileno((uv_handle_t *)&s->listener, &fd);
    if (r < 0)
        return r;
    if (listen(fd, backlog) != 0)
        return -errno;
    if ((r = uv_poll_init(&s->loop, &l->poll, fd)) < 0)
        return r;
    l->poll.data = s;
    l->has_poll = true;
    l->listen_fd = fd;
    if ((r = uv_poll_start(&l->poll, UV_READABLE, on_listen_readable)) < 0)
        return r;
    l->polling = true;
    return 0;
}

/* ---------------------------------------------------------------- idle, bursts, memory */

/* Closes the connections idle for idle_timeout; one with anything in flight is busy, and its
 * idle time starts when the last reply is out. */
static void sweep_idle(qd_server *s, double now)
{
    double limit = s->cfg.idle_timeout_s;
    uint64_t closed = 0;
    for (qd_conn *c = s->conns; c; c = c->next) {
        if (c->closing || c->ending)
            continue;
        if (c->in_flight || c->jobs) {
            c->last_active = now;
            continue;
        }
        if (limit <= 0 || now - c->last_active < limit)
            continue;
        char msg[128];
        snprintf(msg, sizeof msg, "no request for %g s; closing the connection", limit);
        qi_id none = qi_id_none();
        char *line = NULL;
        size_t len = 0;
        if (qi_reply_error(&none, QI_ERR_IDLE_TIMEOUT, NULL, msg, &line, &len, NULL) == QI_OK)
            qd_conn_send(c, line, len);
        qd_conn_end(c);
        closed++;
    }
    if (closed) {
        s->lim.idle_closed += closed;
        qd_log(QD_LOG_INFO, "closed %llu connection%s idle for %g s (idle_timeout)", (unsigned long long)closed,
               closed == 1 ? "" : "s", limit);
    }
}

/* Whether any reply is still queued to a client: its buffers are about to be freed, so a trim
 * now would come too early. */
static bool writes_pending(const qd_server *s)
{
    for (const qd_conn *c = s->conns; c; c = c->next)
        if (uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) > 0)
            return true;
    return false;
}

/* glibc keeps freed heap (in every thread's arena) for reuse; after a flood that is tens of
 * MB the service's cgroup counts as its own, taken from the model's budget. Once things are
 * quiet (no request, connection or close for a second, no reply waiting to be written, no job
 * running), give it back. */
static void maybe_trim(qd_server *s, double now)
{
    qd_limits *l = &s->lim;
    uint64_t activity = qd_stats_requests(&s->stats) + s->connections + l->closed;
    if (activity != l->activity_seen) {
        l->activity_seen = activity;
        l->last_activity = now;
        l->dirty = true;
        return;
    }
    if (!l->dirty || now - l->last_activity < TRIM_QUIET_S || now - l->last_trim < TRIM_EVERY_S ||
        s->n_jobs || writes_pending(s))
        return;
    l->dirty = false;
    l->last_trim = now;
    l->trims++;
    if (qd_release_freed_memory())
        qd_log(QD_LOG_DEBUG, "quiet after a burst: allocator memory returned (malloc_trim)");
}

static double tick_period(const qd_server *s)
{
    double t = s->cfg.idle_timeout_s / 4;
    return t <= 0 || t > 1.0 ? 1.0 : t < 0.05 ? 0.05 : t;
}

static void on_tick(uv_timer_t *t)
{
    qd_server *s = t->data;
    qd_limits *l = &s->lim;
    double now = qd_now();
    sweep_idle(s, now);
    if (l->in_burst && now - l->last_refusal >= BURST_END_S) {
        l->in_burst = false;
        qd_log(QD_LOG_NOTICE, "accepting connections again: %llu refused in the burst (%u open now)",
               (unsigned long long)l->burst_refused, l->n_conns);
        l->burst_refused = 0;
    }
    maybe_trim(s, now);
    double every = tick_period(s); /* a reload may have changed idle_timeout */
    if (every != l->tick_every_s) {
        l->tick_every_s = every;
        uv_timer_set_repeat(t, (uint64_t)(every * 1000));
    }
}

/* ---------------------------------------------------------------- life cycle */

size_t qd_limits_max_connections(const qd_server *s)
{
    if (s->cfg.max_connections)
        return s->cfg.max_connections;
    uint64_t n = s->lim.nofile;
    if (n > (1u << 20))
        n = 1u << 20;
    return n > QD_LIMITS_FD_RESERVE + 1 ? (size_t)(n - QD_LIMITS_FD_RESERVE) : 1;
}

void qd_limits_init(qd_server *s)
{
    qd_limits *l = &s->lim;
    l->listen_fd = -1;
    struct rlimit rl;
    l->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (uint64_t)rl.rlim_cur : 1u << 20;
    l->spare_fd = open_spare();
    uv_timer_init(&s->loop, &l->retry);
    uv_timer_init(&s->loop, &l->tick);
    l->retry.data = l->tick.data = s;
    l->has_timers = true;
    l->last_trim = l->last_activity = qd_now();
}

void qd_limits_start(qd_server *s)
{
    qd_limits *l = &s->lim;
    size_t cap = qd_limits_max_connections(s);
    qd_log(QD_LOG_INFO, "connections: at most %zu at once (%s; file descriptor limit %llu), idle timeout %s%g s",
           cap, s->cfg.max_connections ? "max_connections" : "the fd limit less 32",
           (unsigned long long)l->nofile, s->cfg.idle_timeout_s > 0 ? "" : "off, ", s->cfg.idle_timeout_s);
    if (s->cfg.max_connections && l->nofile > QD_LIMITS_FD_RESERVE &&
        s->cfg.max_connections > l->nofile - QD_LIMITS_FD_RESERVE)
        qd_log(QD_LOG_WARNING,
               "max_connections %zu is above what the file descriptor limit (%llu, less %d kept for the rest) "
               "allows: once descriptors run out, new clients get too_many_connections",
               s->cfg.max_connections, (unsigned long long)l->nofile, QD_LIMITS_FD_RESERVE);
    l->tick_every_s = tick_period(s);
    uint64_t ms = (uint64_t)(l->tick_every_s * 1000);
    uv_timer_start(&l->tick, on_tick, ms, ms);
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void qd_limits_close(qd_server *s)
{
    qd_limits *l = &s->lim;
    if (l->has_poll)
        close_if_open((uv_handle_t *)&l->poll);
    l->has_poll = l->polling = false;
    if (l->has_timers) {
        close_if_open((uv_handle_t *)&l->retry);
        close_if_open((uv_handle_t *)&l->tick);
    }
    l->has_timers = false;
}

void qd_limits_free(qd_server *s)
{
    if (s->lim.spare_fd >= 0)
        close(s->lim.spare_fd);
    s->lim.spare_fd = -1;
}
