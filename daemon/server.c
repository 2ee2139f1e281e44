/* server.c: the socket, the connections' bytes, the signals and the shutdown sequence. What a
 * line means is dispatch.c's; budgets, policy and reload are control.c's. */
#include "server_impl.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sd_glue.h"
#include "socket_access.h"
#include "release_memory.h"
#include "reply.h"
#include "task_impl.h"

#define SHUTDOWN_GRACE_S 10.0

/* ---------------------------------------------------------------- writing */

typedef struct {
    uv_write_t req;
    char *line;
} write_req;

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    qd_conn *c = req->handle->data;
    free(w->line);
    free(w);
    if (status < 0 && status != UV_ECANCELED && c && !c->closing) {
        qd_log(QD_LOG_DEBUG, "connection: write failed: %s", uv_strerror(status));
        qd_conn_close(c);
    } else if (c && !c->closing) {
        qd_flow_written(c);
    }
}

void qd_conn_send(qd_conn *c, char *line, size_t len)
{
    if (!line)
        return;
    if (c->closing) {
        free(line);
        return;
    }
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
    if (queued + len > c->srv->cfg.max_output) {
        qd_log(QD_LOG_WARNING, "dropping a client that reads too slowly (%zu bytes waiting, limit %zu)", queued + len,
               c->srv->cfg.max_output);
        free(line);
        qd_conn_close(c);
        return;
    }
    write_req *w = malloc(sizeof *w);
    if (!w) {
        free(line);
        qd_conn_close(c);
        return;
    }
    w->line = line;
    uv_buf_t buf = uv_buf_init(line, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written);
    if (r < 0) {
        free(line);
        free(w);
        qd_conn_close(c);
        return;
    }
    qd_flow_sent(c);
}

/* ---------------------------------------------------------------- closing */

static void on_conn_closed(uv_handle_t *h)
{
    qd_conn *c = h->data;
    qd_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->lim.n_conns--;
    s->lim.closed++;
    qi_line_reader_free(c->reader);
    qd_flow_forget(c);
    free(c);
}

void qd_conn_close(qd_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    bool poke = false;
    for (qd_job *j = c->jobs, *next; j; j = next) {
        next = j->conn_next;
        int none = QD_CANCEL_NONE;
        atomic_compare_exchange_strong(&j->cancel, &none, QD_CANCEL_GONE);
        j->conn = NULL;
        j->conn_prev = j->conn_next = NULL;
        poke = true;
    }
    c->jobs = NULL;
    if (c->srv->reload && c->srv->reload->conn == c)
        c->srv->reload->conn = NULL;
    if (poke)
        qd_engine_poke(c->srv->engine);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_flushed(uv_shutdown_t *req, int status)
{
    (void)status;
    qd_conn_close(req->data);
}

/* Stops reading and closes once every queued reply is written. */
void qd_conn_end(qd_conn *c)
{
    if (c->ending || c->closing)
        return;
    c->ending = true;
    qd_conn_read_stop(c);
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe, on_flushed) < 0)
        qd_conn_close(c);
}

/* ---------------------------------------------------------------- reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    qd_conn *c = h->data;
    *buf = uv_buf_init(c->srv->read_buf, sizeof c->srv->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    qd_conn *c = stream->data;
    if (nread < 0) {
        if (nread != UV_EOF)
            qd_log(QD_LOG_DEBUG, "connection: read failed: %s", uv_strerror((int)nread));
        qd_conn_close(c);
        return;
    }
    qd_flow_feed(c, buf->base, (size_t)nread);
}

void qd_conn_read_start(qd_conn *c)
{
    c->reading = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0;
}

void qd_conn_read_stop(qd_conn *c)
{
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->reading = false;
}

/* A connection limits.c accepted and will have served: the bookkeeping, then reading. */
qd_conn *qd_conn_open(qd_server *s, int fd)
{
    qd_conn *c = calloc(1, sizeof *c);
    if (!c || qi_line_reader_new(s->cfg.limits.max_line, &c->reader, NULL)) {
        free(c);
        return NULL;
    }
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
        c->has_cred = true;
        c->uid = cred.uid;
        c->gid = cred.gid;
    }
    c->srv = s;
    c->last_active = qd_now();
    uv_pipe_init(&s->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->lim.n_conns++;
    if (uv_pipe_open(&c->pipe, fd) < 0) {
        qd_conn_close(c); /* the handle never took fd */
        return NULL;
    }
    s->connections++;
    c->serial = s->connections;
    qd_conn_read_start(c);
    return c;
}

/* ---------------------------------------------------------------- the socket */

/* A socket file left by a daemon that died (kill -9) must not block a restart; a live one must
 * not be stolen from. */
static qr_status clear_stale_socket(const char *path, qr_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? QR_OK : qr_fail(err, QR_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return qr_fail(err, QR_ERR_IO, "%s exists and is not a socket: refusing to replace it", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(fd);
    if (r == 0)
        return qr_fail(err, QR_ERR_IO, "%s: another server is listening there", path);
    if (e != ECONNREFUSED)
        return qr_fail(err, QR_ERR_IO, "%s: cannot tell whether it is in use: %s", path, strerror(e));
    if (unlink(path) != 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot remove the stale socket: %s", path, strerror(errno));
    qd_log(QD_LOG_NOTICE, "removed a stale socket at %s", path);
    return QR_OK;
}

/* The socket systemd passed (qslmd.socket), else our own at cfg.socket_path. */
static qr_status listen_on(qd_server *s, qr_error *err)
{
    char activated_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd = qd_sd_listen_socket(activated_path, sizeof activated_path, err);
    if (fd == -2)
        return err ? err->status : QR_ERR_INVALID;
    if (fd >= 0) {
        uv_pipe_init(&s->loop, &s->listener, 0);
        s->listener.data = s;
        s->listening = true;
        s->activated = true;
        int r = uv_pipe_open(&s->listener, fd);
        if (r == 0)
            r = qd_limits_listen(s, 128);
        if (r < 0)
            return qr_fail(err, QR_ERR_IO, "the socket systemd passed: cannot listen: %s", uv_strerror(r));
        if (activated_path[0] && strcmp(activated_path, s->cfg.socket_path) != 0)
            qd_log(QD_LOG_NOTICE, "serving on %s, the socket systemd passed (the configuration says %s)",
                   activated_path, s->cfg.socket_path);
        if (activated_path[0])
            snprintf(s->listen_path, sizeof s->listen_path, "%s", activated_path);
        if (s->cfg.socket_mode >= 0 || s->cfg.socket_group[0])
            qd_log(QD_LOG_NOTICE, "socket_mode and socket_group are for a socket qslmd creates; "
                                  "qslmd.socket's SocketMode= and SocketGroup= apply to this one");
        return QR_OK;
    }
    const char *path = s->cfg.socket_path;
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return qr_fail(err, QR_ERR_INVALID, "%s: too long for a socket path", path);
    qr_status st = clear_stale_socket(path, err);
    if (st)
        return st;
    uv_pipe_init(&s->loop, &s->listener, 0);
    s->listener.data = s;
    s->listening = true;
    int r = uv_pipe_bind(&s->listener, path);
    if (r == 0 && (st = qd_socket_set_access(path, s->cfg.socket_mode, s->cfg.socket_group, err))) {
        unlink(path); /* nobody could connect yet: listen comes after */
        return st;
    }
    if (r == 0)
        r = qd_limits_listen(s, 128);
    if (r < 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot listen: %s", path, uv_strerror(r));
    snprintf(s->listen_path, sizeof s->listen_path, "%s", path);
    return QR_OK;
}

/* ---------------------------------------------------------------- events, signals, shutdown */

static void on_wake(uv_async_t *a)
{
    qd_server *s = a->data;
    qd_event_list l;
    qd_engine_take_events(s->engine, &l);
    for (qd_event *ev = l.head, *next; ev; ev = next) {
        next = ev->next;
        qd_handle_event(s, ev);
    }
}

static void engine_wake(void *ctx)
{
    uv_async_send(ctx);
}

static void on_policy_timer(uv_timer_t *t)
{
    qd_control_tick(t->data);
}

/* Pings from the loop itself: a loop that stops turning stops the pings, and systemd restarts
 * the service. */
static void on_watchdog_timer(uv_timer_t *t)
{
    (void)t;
    qd_sd_watchdog_ping();
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Second step of a shutdown: every job has had its final reply (or the grace ran out). The
 * engine stops (ending what is left), the replies are flushed, then connections close. */
static void finish_shutdown(qd_server *s)
{
    qd_engine_stop(s->engine);
    on_wake(&s->wake); /* the replies the stop produced */
    for (qd_conn *c = s->conns; c; c = c->next)
        qd_conn_end(c);
    close_handle((uv_handle_t *)&s->policy_timer);
    close_handle((uv_handle_t *)&s->watchdog_timer);
    qd_metrics_file_stop(s);
    close_handle((uv_handle_t *)&s->sig_term);
    close_handle((uv_handle_t *)&s->sig_int);
    close_handle((uv_handle_t *)&s->sig_hup);
    close_handle((uv_handle_t *)&s->wake);
    qd_flow_close(s);
}

/* Runs every 20 ms while stopping: waits for the jobs, then for the flushes, each with a
 * deadline so a client that never reads cannot hold the daemon up. */
static void on_shutdown_timer(uv_timer_t *t)
{
    qd_server *s = t->data;
    uint64_t now = uv_now(&s->loop);
    if (!s->flushing) {
        if (s->n_jobs && now < s->shutdown_deadline)
            return;
        if (s->n_jobs)
            qd_log(QD_LOG_WARNING, "%u request%s still running after %.0f s: ending them", s->n_jobs,
                   s->n_jobs == 1 ? "" : "s", SHUTDOWN_GRACE_S);
        finish_shutdown(s);
        s->flushing = true;
        s->shutdown_deadline = now + 2000;
        return;
    }
    if (s->conns && now < s->shutdown_deadline)
        return;
    for (qd_conn *c = s->conns; c; c = c->next)
        qd_conn_close(c);
    uv_timer_stop(t);
    close_handle((uv_handle_t *)t);
}

static void begin_shutdown(qd_server *s, const char *why)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    qd_log(QD_LOG_NOTICE, "%s: stopping (%u request%s in flight end%s with shutting_down)", why, s->n_jobs,
           s->n_jobs == 1 ? "" : "s", s->n_jobs == 1 ? "s" : "");
    qd_sd_stopping();
    qd_limits_close(s); /* stops accepting, before the listener closes */
    if (s->listening) {
        close_handle((uv_handle_t *)&s->listener);
        if (!s->activated) /* systemd's socket stays: it starts the next qslmd */
            unlink(s->cfg.socket_path);
        s->listening = false;
    }
    for (qd_conn *c = s->conns; c; c = c->next)
        for (qd_job *j = c->jobs; j; j = j->conn_next) {
            int none = QD_CANCEL_NONE;
            atomic_compare_exchange_strong(&j->cancel, &none, QD_CANCEL_SHUTDOWN);
        }
    qd_engine_poke(s->engine);
    s->exit_code = 0;
    s->shutdown_deadline = uv_now(&s->loop) + (uint64_t)(SHUTDOWN_GRACE_S * 1000);
    uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 0, 20);
}

static void on_signal(uv_signal_t *h, int signum)
{
    qd_server *s = h->data;
    if (signum == SIGHUP) {
        qd_log(QD_LOG_NOTICE, "SIGHUP: reloading the bundle");
        qd_control_start_reload(s, NULL, NULL);
        return;
    }
    begin_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---------------------------------------------------------------- life cycle */

/* threads = 0: one per CPU qslmd may run on. Resolved here, not in the configuration, so a
 * reload compares the configured 0 with the configured 0 and says nothing changed. */
static int cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}

qr_status qd_server_new(const qd_config *cfg, qd_server **out, qr_error *err)
{
    *out = NULL;
    qd_server *s = calloc(1, sizeof *s);
    if (!s)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    s->lim.spare_fd = s->lim.listen_fd = -1;
    s->target = s->active = s->pinned = -1;
    s->budget = cfg->initial_budget;
    s->started = qd_now();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    s->started_unix = (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9;
    s->last_tick = s->started;
    qd_policy_state_init(&s->policy_state);
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        return qr_fail(err, QR_ERR_IO, "cannot create the event loop");
    }
    const char *why;
    qd_admin_resolve(&s->admin, cfg->admin_group, &why);
    if (why)
        qd_log(QD_LOG_NOTICE, "admin group '%s': %s", cfg->admin_group, why);
    qd_sd_extend_timeout(120 * 1000000ull); /* every variant is hashed before READY */
    char trust[512];
    qr_status st = qd_control_open_bundle(cfg, cfg->batch, cfg->prefill_chunk, &s->bundle, trust, sizeof trust, err);
    if (st == QR_OK)
        qd_control_log_bundle(s->bundle, trust, "start");
    if (st == QR_OK && !(s->refused = calloc(s->bundle->manifest->n_variants, sizeof *s->refused)))
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory");
    if (st == QR_OK) {
        s->cfg.limits.vocab = (uint32_t)qr_tokenizer_vocab_size(s->bundle->tokenizer);
        st = qd_telemetry_new(cfg->telemetry_root, &s->telemetry, err);
    }
    if (st == QR_OK) {
        uv_async_init(&s->loop, &s->wake, on_wake);
        s->wake.data = s;
        qd_engine_config ec = {.threads = cfg->threads ? cfg->threads : cpus_allowed(), .batch = cfg->batch,
                               .max_active = cfg->max_active, .max_active_per_flow = cfg->max_active_per_conn,
                               .round_tokens = cfg->round_tokens, .chunk = cfg->prefill_chunk,
                               .round_ms = cfg->round_ms, .lock_memory = cfg->lock_memory};
        st = qd_engine_new(&ec, engine_wake, &s->wake, &s->engine, err);
        if (st)
            uv_close((uv_handle_t *)&s->wake, NULL);
    }
    if (st == QR_OK)
        qd_limits_init(s);
    if (st == QR_OK && (st = listen_on(s, err)) != QR_OK) {
        qd_limits_close(s);
        /* listen_on may fail before the listener was initialised (a live or foreign file at
         * the path): closing a zeroed handle aborts in libuv */
        if (s->listening)
            close_handle((uv_handle_t *)&s->listener);
        s->listening = false;
        uv_close((uv_handle_t *)&s->wake, NULL);
    }
    if (st) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        qd_limits_free(s);
        qd_engine_free(s->engine);
        qd_telemetry_free(s->telemetry);
        qd_bundle_unref(s->bundle);
        free(s->refused);
        uv_loop_close(&s->loop);
        free(s);
        return st;
    }
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
    uv_timer_init(&s->loop, &s->policy_timer);
    uv_timer_init(&s->loop, &s->shutdown_timer);
    uv_timer_init(&s->loop, &s->watchdog_timer);
    s->policy_timer.data = s->shutdown_timer.data = s->watchdog_timer.data = s;
    qd_flow_init(s);
    *out = s;
    return QR_OK;
}

void qd_server_set_source(qd_server *s, const qd_config_source *src)
{
    s->source = *src;
    s->has_source = true;
}

void qd_server_restart_policy_timer(qd_server *s)
{
    uint64_t every = (uint64_t)(s->cfg.policy_interval_s * 1000);
    uv_timer_start(&s->policy_timer, on_policy_timer, every ? every : 1, every ? every : 1);
}

int qd_server_run(qd_server *s)
{
    uint64_t wd = qd_sd_watchdog_usec();
    if (wd) {
        uint64_t half_ms = wd / 2000 ? wd / 2000 : 1;
        uv_timer_start(&s->watchdog_timer, on_watchdog_timer, 0, half_ms);
        qd_log(QD_LOG_INFO, "watchdog: pinging every %llu ms", (unsigned long long)half_ms);
    }
    /* Start-up's scratch (the manifest, the tokenizer's JSON, hashing the bundle) is freed but
     * still counted in the cgroup; the first decision would take it for other memory. */
    qd_release_freed_memory();
    qd_control_tick(s); /* first decision: which variant to load */
    if (s->target < 0) /* nothing to load: ready as we are (status says why) */
        qd_control_ready(s);
    qd_server_restart_policy_timer(s);
    qd_metrics_file_start(s);
    qd_limits_start(s);
    char where[QD_BUNDLE_WHERE_MAX];
    qd_bundle_where(s->bundle, where, sizeof where);
    qd_log(QD_LOG_INFO, "listening on %s; bundle %s (%zu variant%s; signer %s)", s->listen_path, where,
           s->bundle->manifest->n_variants, s->bundle->manifest->n_variants == 1 ? "" : "s", s->bundle->signer);
    qd_log(QD_LOG_INFO,
           "rounds of about %u ms: prompts and texts read in chunks of %zu tokens, as many as fit beside up to %zu "
           "generation steps",
           s->cfg.round_ms, s->cfg.prefill_chunk, s->cfg.round_tokens);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}

void qd_server_free(qd_server *s)
{
    if (!s)
        return;
    qd_engine_free(s->engine);
    uv_run(&s->loop, UV_RUN_NOWAIT);
    uv_loop_close(&s->loop);
    qd_limits_free(s);
    qd_telemetry_free(s->telemetry);
    qd_bundle_unref(s->bundle);
    free(s->refused);
    free(s);
}
