/* conn_limits.h: how many connections qslmd holds, for how long, and what it gives back after a flood.
 *
 * - Accepting: the loop accepts on the listening socket itself (a uv_poll_t, not uv_listen), so
 *   that every refusal is answered: past max connections, out of file descriptors (one spare
 *   descriptor is kept to be closed for the extra client, EMFILE/ENFILE) or out of memory, a
 *   new client gets one `too_many_connections` line, then is closed. libuv's own listener would
 *   close such a client silently (ECONNRESET) or stop accepting for good. When nothing can be
 *   accepted (no spare, ENOMEM) accepting pauses for 100 ms and resumes. One warning per burst
 *   of refusals, one notice when it ends.
 * - Idle: a connection without a complete request line while nothing of its is in flight, for
 *   idle_timeout, gets `idle_timeout` and is closed (a half line trickled byte by byte too).
 * - Memory: once no request, connection or close has come for a second after some did, and no
 *   reply waits to be written, malloc_trim(0) (at most every 5 s), so the allocator's retained
 *   heap does not count against the model.
 *
 * It does not decide what a line means (dispatch.c) nor read a connection's bytes (server.c). */
#ifndef QD_CONN_LIMITS_H
#define QD_CONN_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Descriptors kept for everything but connections when max_connections is 0 (auto): the
 * bundle's files, the journal, telemetry reads, libuv's own, the spare. */
#define QD_LIMITS_FD_RESERVE 32

struct qd_server;

typedef struct {
    uv_poll_t poll;        /* the listening socket's readability */
    bool has_poll, polling;
    uv_timer_t retry;      /* accepting paused: resumes from here */
    uv_timer_t tick;       /* idle sweep, end of a burst, malloc_trim */
    bool has_timers;
    int listen_fd;         /* -1 until listening */
    int spare_fd;          /* closed to accept one client when out of descriptors; -1: none */
    uint64_t nofile;       /* the soft RLIMIT_NOFILE at start */
    uint32_t n_conns;      /* connections open (accepted, not yet closed) */
    uint64_t closed;       /* connections closed since start */
    double tick_every_s;
    /* a burst of refusals */
    bool in_burst;
    uint64_t burst_refused;
    double last_refusal;
    /* idle sweep */
    uint64_t idle_closed_tick;
    /* malloc_trim */
    uint64_t activity_seen; /* requests + connections at the last tick */
    double last_activity, last_trim;
    bool dirty;             /* activity since the last trim */
    /* counters since start */
    uint64_t refused, idle_closed, trims;
} qd_limits;

/* In qd_server_new, before listening: the fd limit, the spare descriptor, the timers. */
void qd_limits_init(struct qd_server *s);

/* Instead of uv_listen: listen(2) on s->listener's descriptor and accept from the loop. A libuv
 * error code (< 0) on failure. */
int qd_limits_listen(struct qd_server *s, int backlog);

/* From qd_server_run: logs the limits in force, starts the tick. */
void qd_limits_start(struct qd_server *s);

/* Shutdown: stops accepting and closes the handles (before the listener is closed). */
void qd_limits_close(struct qd_server *s);

/* qd_server_free: the spare descriptor. */
void qd_limits_free(struct qd_server *s);

/* The connection cap in force: max_connections, or the fd limit less the reserve. */
size_t qd_limits_max_connections(const struct qd_server *s);

#endif
