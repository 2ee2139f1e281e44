/* server_impl.h: the loop's state, shared by server.c (socket and connections), flow.c
 * (backpressure, lines per turn), dispatch.c (requests) and control.c (policy, telemetry, reload, status). Private to the daemon. */
#ifndef QD_SERVER_IMPL_H
#define QD_SERVER_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "access.h"
#include "config.h"
#include "config_file.h"
#include "engine.h"
#include "job.h"
#include "conn_limits.h"
#include "line_reader.h"
#include "metrics_file.h"
#include "policy.h"
#include "request_stats.h"
#include "server.h"
#include "telemetry.h"
#include "variants.h"

#define QD_LATENCY_RING 1024
#define QD_FLOW_LINES_PER_TURN 32          /* request lines per connection per loop turn */
#define QD_FLOW_HIGH_WATER ((size_t)256 << 10) /* unwritten reply bytes that stop reading */

typedef struct qd_conn {
    uv_pipe_t pipe;
    uv_shutdown_t shutdown_req;
    struct qd_server *srv;
    qi_line_reader *reader;
    qd_job *jobs;          /* computing or waiting: the engine's until their FINAL event */
    uint32_t in_flight;    /* unanswered requests: jobs, plus a reload being prepared */
    bool closing;          /* uv_close called */
    bool ending;           /* no more reading: a too_large reply is flushing, then close */
    /* flow.c: reading stops while `full` (replies over the high-water mark) or while bytes of an
     * earlier read wait in pend[pend_off..pend_len) for a later turn */
    bool reading;          /* uv_read_start in force */
    bool full;
    char *pend;
    size_t pend_off, pend_len;
    uint64_t turn;         /* the loop turn turn_lines counts for */
    uint32_t turn_lines;
    bool has_cred;
    double last_active;    /* qd_now() of its last request line, or of when it last had
                              something in flight (conn_limits.c: idle_timeout) */
    uint64_t serial;       /* the connection's number since start: its jobs' flow (engine.h) */
    uid_t uid;
    gid_t gid;
    struct qd_conn *prev, *next;
} qd_conn;

/* A reload being prepared on the thread pool. */
typedef struct {
    uv_work_t work;
    struct qd_server *srv;
    qd_conn *conn;      /* who asked (NULL: SIGHUP, or the client left) */
    qi_id id;
    double t_received;  /* qd_now() when it was asked */
    qd_config cfg;      /* the configuration re-read (when the server has a source), or a copy
                           of the running one (the bundle and trusted_keys to read) */
    bool has_cfg;       /* cfg was re-read: apply it */
    char trust[512];    /* the trusted keys as loaded (qd_trust_describe), for the log */
    size_t batch, chunk; /* the running ones, for the new bundle's footprints */
    qd_bundle *bundle;  /* the result */
    qr_error err;
    qr_status status;
} qd_reload;

struct qd_server {
    qd_config cfg;
    qd_config_source source; /* where cfg came from, to read it again on reload */
    qd_admin admin;          /* cfg.admin_group resolved */
    bool has_source;
    uv_loop_t loop;
    uv_pipe_t listener;
    bool listening;
    bool activated;          /* the socket came from systemd (not ours to unlink) */
    char listen_path[108];   /* the socket's path, for logs and status */
    bool ready;              /* READY=1 sent */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t policy_timer, shutdown_timer, watchdog_timer;
    uv_async_t wake;
    char read_buf[65536];
    uv_idle_t flow_idle;     /* flow.c: runs while connections have lines waiting */
    uv_check_t flow_check;   /* flow.c: counts loop turns */
    uint64_t turn;
    bool flow_closed;

    qd_engine *engine;
    qd_telemetry *telemetry;
    qd_bundle *bundle;       /* the one served (a reference) */
    char (*refused)[QD_REFUSAL_MAX]; /* per variant of bundle: why its load failed since it was
                                        opened ("" while it has not) */
    qd_conn *conns;
    qd_limits lim;           /* accepting, connection cap, idle timeout, malloc_trim */
    uint32_t n_jobs;         /* jobs the engine holds */
    double job_ms;           /* smoothed time from request to final reply of answered jobs: the
                                base of `busy`'s retry_after_ms (dispatch.c) */
    qd_reload *reload;       /* at most one at a time */

    /* policy */
    qd_budget budget;
    qd_policy_state policy_state;
    qd_decision decision;
    int target;              /* what the engine was told to serve (-1: none) */
    int active;              /* what it serves (from its SWITCH events; -1: none) */
    uint64_t loaded_footprint; /* the footprint of what the engine has loaded (0: nothing),
                                  whichever bundle it came from */
    int pinned;              /* -1: none */
    char pin_note[QD_POLICY_REASON_MAX];
    qd_telemetry_snapshot snap; /* taken by the policy tick only: status shows it, never re-reads */
    double snap_at;            /* qd_now() of that read */
    double rate_tokens_per_s;  /* smoothed tokens generated per second */
    uint64_t tokens_at_tick;
    double last_tick;

    /* counters */
    double started;
    double started_unix;     /* the wall clock at start (metrics: start time) */
    uint64_t connections, tokens, cancelled, disconnected, refusals;
    uint64_t tokens_read;    /* input tokens (prompts, texts) the model read */
    qd_request_stats stats;  /* requests, errors and switches, and their times */
    qd_why target_why;       /* why target was chosen: the reason its switch counts under */
    qd_metrics_file metrics_file; /* metrics_file.c: the textfile collector's file */
    double latency_ms[QD_LATENCY_RING]; /* switch latencies, a ring */
    uint64_t n_latency;

    bool shutting_down;
    bool flushing;             /* shutdown's second step */
    uint64_t shutdown_deadline; /* uv_now() in ms */
    int exit_code;
};

/* Can variant i of the bundle served be served: its file passed the hash check when the bundle
 * was opened, and it has not failed to load since? */
static inline bool qd_variant_servable(const struct qd_server *s, size_t i)
{
    return s->bundle->usable[i] && !s->refused[i][0];
}

/* server.c */
void qd_server_restart_policy_timer(struct qd_server *s); /* after the interval changed */
void qd_conn_send(qd_conn *c, char *line, size_t len); /* takes the line */
void qd_conn_close(qd_conn *c);
void qd_conn_end(qd_conn *c); /* stop reading, close once the queued replies are written */
qd_conn *qd_conn_open(struct qd_server *s, int fd); /* NULL: out of memory, fd still the caller's */
void qd_conn_read_start(qd_conn *c); /* uv_read_start with server.c's callbacks */
void qd_conn_read_stop(qd_conn *c);

/* flow.c */
void qd_flow_init(struct qd_server *s);
void qd_flow_close(struct qd_server *s);     /* in the shutdown: closes its handles */
void qd_flow_feed(qd_conn *c, const char *data, size_t len); /* bytes just read */
void qd_flow_sent(qd_conn *c);               /* a reply was queued: over the mark? */
void qd_flow_written(qd_conn *c);            /* a write completed: drained enough? */
void qd_flow_forget(qd_conn *c);             /* the connection is freed */

/* dispatch.c */
void qd_dispatch_line(qd_conn *c, const char *line, size_t len, double t_received);
void qd_handle_event(struct qd_server *s, qd_event *ev);

/* control.c */
void qd_control_tick(struct qd_server *s);           /* read telemetry, re-run the policy */
void qd_control_decide(struct qd_server *s, bool log_always);
void qd_control_start_reload(struct qd_server *s, qd_conn *c, const qi_id *id);
char *qd_control_status_line(struct qd_server *s, const qi_id *id, size_t *len);
char *qd_control_variants_line(struct qd_server *s, const qi_id *id, size_t *len);
bool qd_control_replace_bundle(struct qd_server *s, qd_bundle *b);
/* Loads the trusted keys cfg names, opens its bundle with them, frees the keys (start, and a
 * reload off the loop); trust_desc receives the keys' description for the log. */
qr_status qd_control_open_bundle(const qd_config *cfg, size_t batch, size_t chunk, qd_bundle **out,
                                 char *trust_desc, size_t cap, qr_error *err);
/* Logs the bundle just opened (`when`: "start" or "reload"): where, its signer, the keys; a
 * warning when nothing checks it and it is unsigned. On the loop thread. */
void qd_control_log_bundle(const qd_bundle *b, const char *trust_desc, const char *when);
void qd_control_ready(struct qd_server *s);   /* READY=1 (once) and STATUS= */
void qd_control_sd_status(struct qd_server *s); /* STATUS=: what is served and why */

#endif
