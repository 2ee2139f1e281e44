/* config.c: the defaults (documented in qslmd --help). */
#include "config.h"

#include <string.h>

#include "log.h"

void qd_config_init(qd_config *c)
{
    memset(c, 0, sizeof *c);
    c->socket_path = QD_DEFAULT_SOCKET;
    c->bundle_dir = QSLM_BUNDLE_DIR;
    c->telemetry_root = "/";
    c->threads = 0;
    c->batch = 4;
    c->max_active = 32;
    c->lock_memory = false;
    c->limits = qi_limits_default();
    c->max_output = (size_t)8 << 20;
    c->policy_interval_s = 1.0;
    c->policy = qd_policy_config_default();
    c->log_level = QD_LOG_INFO;
}
