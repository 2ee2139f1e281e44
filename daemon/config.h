/* config.h: everything qslmd can be told, with its defaults.
 *
 * One struct, filled from the defaults and then the command line (qslmd.c), so the rest of
 * the daemon reads one place. */
#ifndef QD_CONFIG_H
#define QD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "request.h"

#define QD_DEFAULT_SOCKET "/run/qslmd.sock"

typedef struct {
    char *socket_path;        /* where to listen */
    char *bundle_dir;         /* the bundle to serve */
    char *telemetry_root;     /* "/" in production; a fake tree in tests */
    int threads;              /* inference threads; 0: the CPUs this process may run on */
    size_t batch;             /* sequences per forward call (the manifest's footprint assumes 4) */
    size_t max_active;        /* requests computed at once */
    bool lock_memory;         /* mlock the served variant */
    qi_limits limits;         /* max line, max tokens, queue depth, max in flight */
    size_t max_output;        /* bytes queued to one slow client before it is dropped */
    double policy_interval_s; /* how often telemetry is read and the policy re-run */
    qd_policy_config policy;
    qd_budget initial_budget; /* as if set by `set-budget` at start */
    int log_level;            /* 3 error .. 7 debug (syslog levels); default 6 (info) */
} qd_config;

/* The defaults; strings are static (qd_config_free frees only what was replaced). */
void qd_config_init(qd_config *c);

#endif
