/* config.h: everything qslmd can be told, with its defaults.
 *
 * One struct, filled from the defaults, then the configuration file (config_file.h), then the
 * command line (qslmd.c), so the rest of the daemon reads one place. Its strings are arrays
 * inside the struct: a qd_config owns everything it holds, a plain struct copy is a full copy
 * (the server keeps one; a reload swaps one in), and there is nothing to free. */
#ifndef QD_CONFIG_H
#define QD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "policy.h"
#include "request.h"

#define QD_DEFAULT_SOCKET "/run/qslmd.sock"
#define QD_DEFAULT_ADMIN_GROUP "qslm-admin"

#define QD_SOCKET_PATH_MAX 108 /* sizeof sun_path, with its NUL */
#define QD_PATH_MAX 4096       /* PATH_MAX, with its NUL */
#define QD_GROUP_MAX 128

#define QD_DEFAULT_METRICS_INTERVAL_S 15.0

/* The largest prefill_chunk: below 2 x QR_PART_MIN_ROWS rows the runner keeps no per-thread
 * copies of itself (forward.h), which chunks (rows of one state) could not use. */
#define QD_PREFILL_CHUNK_MAX 63

typedef struct {
    char socket_path[QD_SOCKET_PATH_MAX]; /* where to listen */
    int socket_mode;                      /* our socket's permission bits (0..0777); -1: what the
                                             umask leaves. Not for systemd's socket (SocketMode=) */
    char socket_group[QD_GROUP_MAX];      /* our socket's group (a name or a gid); "": the
                                             daemon's own. Not for systemd's (SocketGroup=) */
    char bundle_dir[QD_PATH_MAX];         /* the bundle to serve */
    char trusted_keys[QD_PATH_MAX];       /* public keys a bundle must be signed by (trust.h):
                                             comma-separated files or directories; "": off */
    char telemetry_root[QD_PATH_MAX];     /* "/" in production; a fake tree in tests */
    char admin_group[QD_GROUP_MAX];       /* members may use the control ops (set-budget, pin,
                                             unpin, reload), as root may; "": root only */
    char metrics_file[QD_PATH_MAX];       /* the Prometheus text file written every
                                             metrics_interval_s (metrics_file.h); "": none */
    double metrics_interval_s;
    int threads;              /* inference threads; 0: the CPUs this process may run on */
    size_t batch;             /* generation steps per forward call */
    size_t max_active;        /* requests computed at once */
    size_t max_active_per_conn; /* of those, at most this many from one connection; the rest of
                                   its requests wait (engine.h: fair scheduling) */
    size_t round_tokens;      /* steps (one token of a generation) computed per round, shared
                                 fairly across connections */
    size_t prefill_chunk;     /* tokens of a prompt or text read at once, as rows of one state
                                 (1..QD_PREFILL_CHUNK_MAX); footprints count a runner for
                                 max(batch, prefill_chunk) rows (variants.h) */
    unsigned round_ms;        /* a round aims at this many milliseconds: the chunks it reads fill
                                 what its steps leave */
    bool share_by_uid;        /* the share is the peer uid's, not the connection's: one user's
                                 connections share one share */
    bool lock_memory;         /* mlock the served variant */
    qi_limits limits;         /* max line, max tokens, queue depth, max in flight */
    size_t max_output;        /* bytes queued to one slow client before it is dropped */
    size_t max_connections;   /* connections open at once; 0: the fd limit less a reserve
                                 (conn_limits.h); more get too_many_connections */
    double idle_timeout_s;    /* a connection without a request line or anything in flight
                                 this long gets idle_timeout and is closed; 0: never */
    double policy_interval_s; /* how often telemetry is read and the policy re-run */
    qd_policy_config policy;
    qd_budget initial_budget; /* as if set by `set-budget` at start */
    int log_level;            /* 3 error .. 7 debug (syslog levels); default 6 (info) */
} qd_config;

/* The defaults (documented in qslmd --help, etc/qslmd.conf.in and qslmd.conf(5)). */
void qd_config_init(qd_config *c);

/* Copies s into one of c's string fields (dst, of cap bytes); QR_ERR_INVALID, dst untouched,
 * when s does not fit. */
qr_status qd_config_set_string(char *dst, size_t cap, const char *s, qr_error *err);

#endif
