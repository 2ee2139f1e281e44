/* config.c: the defaults (documented in qslmd --help, etc/qslmd.conf.in, qslmd.conf(5)). */
#include "config.h"

#include <string.h>

#include "footprint.h"
#include "forward.h"
#include "log.h"

_Static_assert(QD_PREFILL_CHUNK_MAX < 2 * QR_PART_MIN_ROWS, "a chunk's runner would keep per-thread copies");
_Static_assert(QR_PREFILL_CHUNK >= 1 && QR_PREFILL_CHUNK <= QD_PREFILL_CHUNK_MAX, "the default chunk is out of range");

void qd_config_init(qd_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->socket_path, QD_DEFAULT_SOCKET);
    c->socket_mode = -1;
    strcpy(c->bundle_dir, QSLM_BUNDLE_DIR);
    strcpy(c->telemetry_root, "/");
    strcpy(c->admin_group, QD_DEFAULT_ADMIN_GROUP);
    c->threads = 0;
    c->batch = 4;
    c->max_active = 32;
    c->max_active_per_conn = 4;
    c->round_tokens = 16;
    c->prefill_chunk = QR_PREFILL_CHUNK;
    c->round_ms = 5;
    c->lock_memory = false;
    c->limits = qi_limits_default();
    c->max_output = (size_t)8 << 20;
    c->max_connections = 0;
    c->idle_timeout_s = 300;
    c->policy_interval_s = 1.0;
    c->metrics_interval_s = QD_DEFAULT_METRICS_INTERVAL_S;
    c->policy = qd_policy_config_default();
    c->log_level = QD_LOG_INFO;
}

qr_status qd_config_set_string(char *dst, size_t cap, const char *s, qr_error *err)
{
    size_t n = strlen(s);
    if (n >= cap)
        return qr_fail(err, QR_ERR_INVALID, "%zu bytes is too long (expected at most %zu)", n, cap - 1);
    memcpy(dst, s, n + 1);
    return QR_OK;
}
