/* config_file.c: qslmd.conf read with libinih, one table of keys, and the strictness libinih
 * leaves to its caller (see config_file.h). Parsing happens into a copy, which replaces the
 * caller's config only when the whole file is good. */
#include "config_file.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "log.h"
#include "trust.h"

/* ---------------------------------------------------------------- the keys */

typedef enum {
    K_PATH,       /* a non-empty string without control characters */
    K_GROUP,      /* a group name or "" */
    K_GROUP_OPT,  /* a group name or gid; "none" or "" for none (stored as "") */
    K_MODE,       /* permission bits in octal, 0..0777 (3 or 4 digits); "umask" or "": none */
    K_UINT,       /* DIGITS in lo..hi */
    K_SIZE,       /* qi_parse_memory's grammar, in lo..hi bytes (lo 0: "0" too) */
    K_SECONDS,    /* DIGITS [. DIGITS] in lo..hi */
    K_PERCENT,    /* the same, stored / 100 */
    K_BOOL,       /* true false yes no on off 1 0 */
    K_LOG_LEVEL,  /* error warning notice info debug */
    K_POWER_OPT,  /* qi_parse_power's grammar, or none, or empty */
    K_MEMORY_OPT, /* qi_parse_memory's grammar, or auto */
    K_PROM_OPT,   /* an absolute path ending in .prom, or none or "" (stored as "") */
    K_KEYS,       /* trust.h's list of paths; "none" or "" for none (stored as "") */
} kind;

typedef struct {
    const char *section;
    const char *name;
    kind kind;
    double lo, hi;      /* K_UINT, K_SIZE, K_SECONDS, K_PERCENT (in percent) */
    bool restart;       /* a running daemon keeps the old value until restarted */
    const char *expect; /* for messages: "(expected ...)" */
} key_def;

#define SECTIONS_TEXT "[daemon], [limits], [policy] or [telemetry]"

static const char *const sections[] = {"daemon", "limits", "policy", "telemetry"};

static const key_def keys[QD_KEY_COUNT] = {
    [QD_KEY_SOCKET] = {"daemon", "socket", K_PATH, 0, 0, true, "a socket path of at most 107 bytes"},
    [QD_KEY_BUNDLE] = {"daemon", "bundle", K_PATH, 0, 0, false, "a bundle directory"},
    [QD_KEY_TRUSTED_KEYS] = {"daemon", "trusted_keys", K_KEYS, 0, 0, false,
                             "public key files or directories separated by commas, or none"},
    [QD_KEY_THREADS] = {"daemon", "threads", K_UINT, 0, 256, true, "0..256; 0 = the CPUs qslmd may run on"},
    [QD_KEY_BATCH] = {"daemon", "batch", K_UINT, 1, 1024, true, "1..1024"},
    [QD_KEY_MAX_ACTIVE] = {"daemon", "max_active", K_UINT, 1, 4096, true, "1..4096"},
    [QD_KEY_MAX_ACTIVE_PER_CONN] = {"daemon", "max_active_per_conn", K_UINT, 1, 4096, true, "1..4096"},
    [QD_KEY_ROUND_TOKENS] = {"daemon", "round_tokens", K_UINT, 1, 65536, true, "1..65536"},
    [QD_KEY_PREFILL_CHUNK] = {"daemon", "prefill_chunk", K_UINT, 1, QD_PREFILL_CHUNK_MAX, true, "1..63"},
    [QD_KEY_ROUND_MS] = {"daemon", "round_ms", K_UINT, 1, 10000, true, "milliseconds in 1..10000"},
    [QD_KEY_SHARE_BY_UID] = {"daemon", "share_by_uid", K_BOOL, 0, 0, false, "true or false"},
    [QD_KEY_MLOCK] = {"daemon", "mlock", K_BOOL, 0, 0, true, "true or false"},
    [QD_KEY_LOG_LEVEL] = {"daemon", "log_level", K_LOG_LEVEL, 0, 0, false,
                          "error, warning, notice, info or debug"},
    [QD_KEY_ADMIN_GROUP] = {"daemon", "admin_group", K_GROUP, 0, 0, false,
                            "a group name, or nothing for root only"},
    [QD_KEY_SOCKET_MODE] = {"daemon", "socket_mode", K_MODE, 0, 0, true,
                            "an octal mode such as 0660, or umask"},
    [QD_KEY_SOCKET_GROUP] = {"daemon", "socket_group", K_GROUP_OPT, 0, 0, true,
                             "a group name or number, or none"},
    [QD_KEY_METRICS_FILE] = {"daemon", "metrics_file", K_PROM_OPT, 0, 0, false,
                             "an absolute path ending in .prom, or none"},
    [QD_KEY_METRICS_INTERVAL] = {"daemon", "metrics_interval", K_SECONDS, 0.1, 86400, false,
                                 "seconds in 0.1..86400"},
    [QD_KEY_MAX_LINE] = {"limits", "max_line", K_SIZE, 64, 64 << 20, false, "a size in 64..64M, such as 64K"},
    [QD_KEY_MAX_TOKENS] = {"limits", "max_tokens", K_UINT, 1, 1 << 20, false, "1..1048576"},
    [QD_KEY_QUEUE_DEPTH] = {"limits", "queue_depth", K_UINT, 1, 1 << 20, false, "1..1048576"},
    [QD_KEY_MAX_IN_FLIGHT] = {"limits", "max_in_flight", K_UINT, 1, 1 << 20, false, "1..1048576"},
    [QD_KEY_MAX_OUTPUT] = {"limits", "max_output", K_SIZE, 1024, (double)(SIZE_MAX > UINT32_MAX ? 1ull << 40 : UINT32_MAX),
                           false, "a size of at least 1K, such as 8M"},
    [QD_KEY_MAX_CONNECTIONS] = {"limits", "max_connections", K_UINT, 0, 1 << 20, false,
                                "0..1048576; 0 = the file descriptor limit less 32"},
    [QD_KEY_IDLE_TIMEOUT] = {"limits", "idle_timeout", K_SECONDS, 0, 86400, false,
                             "seconds in 0..86400; 0 = never"},
    [QD_KEY_INTERVAL] = {"policy", "interval", K_SECONDS, 0.01, 86400, false, "seconds in 0.01..86400"},
    [QD_KEY_UP_DELAY] = {"policy", "up_delay", K_SECONDS, 0, 86400, false, "seconds in 0..86400"},
    [QD_KEY_UP_HEADROOM] = {"policy", "up_headroom", K_PERCENT, 0, 90, false, "a percentage in 0..90"},
    [QD_KEY_RESERVE] = {"policy", "reserve", K_SIZE, 0, 0, false, "a size such as 64M, or 0"},
    [QD_KEY_CGROUP_RESERVE] = {"policy", "cgroup_reserve", K_SIZE, 0, 0, false, "a size such as 1M, or 0"},
    [QD_KEY_PSI_THRESHOLD] = {"policy", "psi_threshold", K_SECONDS, 0, 100, false,
                              "a percentage in 0..100; 0 = off"},
    [QD_KEY_PSI_HOLD] = {"policy", "psi_hold", K_SECONDS, 0, 86400, false, "seconds in 0..86400"},
    [QD_KEY_POWER_BUDGET] = {"policy", "power_budget", K_POWER_OPT, 0, 0, false,
                             "watts such as 3.5W or 3500mW, or none"},
    [QD_KEY_MEMORY_BUDGET] = {"policy", "memory_budget", K_MEMORY_OPT, 0, 0, false,
                              "a size such as 32M, or auto"},
    [QD_KEY_TELEMETRY_ROOT] = {"telemetry", "root", K_PATH, 0, 0, true, "a directory; / in production"},
};

_Static_assert(QD_PREFILL_CHUNK_MAX == 63, "prefill_chunk's range in the table says 1..63");

static const char *const log_levels[] = {"error", "warning", "notice", "info", "debug"}; /* 3..7 */

const char *qd_config_key_section(qd_config_key k)
{
    return (unsigned)k < QD_KEY_COUNT ? keys[k].section : NULL;
}

const char *qd_config_key_name(qd_config_key k)
{
    return (unsigned)k < QD_KEY_COUNT ? keys[k].name : NULL;
}

bool qd_config_key_needs_restart(qd_config_key k)
{
    return (unsigned)k < QD_KEY_COUNT && keys[k].restart;
}

/* ---------------------------------------------------------------- values */

/* v for a message: at most 48 characters, the rest as "...", bytes that are not printable
 * ASCII as \xNN; between quotes if quote. */
static const char *shown(const char *v, size_t len, bool quote, char *buf, size_t cap)
{
    size_t o = 0;
    if (quote)
        buf[o++] = '\'';
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (i == 48) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        unsigned char ch = (unsigned char)v[i];
        if (ch >= 0x20 && ch < 0x7f)
            buf[o++] = (char)ch;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    if (quote)
        buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

static const char *quoted(const char *v, char *buf, size_t cap)
{
    return shown(v, strlen(v), true, buf, cap);
}

typedef struct {
    uint64_t u;  /* K_UINT, K_SIZE, K_MEMORY_OPT bytes */
    double d;    /* K_SECONDS, K_PERCENT (already / 100), K_POWER_OPT watts */
    bool b;      /* K_BOOL; K_POWER_OPT, K_MEMORY_OPT: a budget is set */
    int level;   /* K_LOG_LEVEL */
    int mode;    /* K_MODE: 0..0777, -1 for umask */
} parsed;

static bool all_digits(const char *v)
{
    return v[0] && strspn(v, "0123456789") == strlen(v);
}

static qr_status bad(qr_error *err, const key_def *d, const char *v, const char *what)
{
    char q[256];
    return qr_fail(err, QR_ERR_INVALID, "%s %s (expected %s)", quoted(v, q, sizeof q), what, d->expect);
}

static qr_status parse(const key_def *d, size_t cap, const char *v, parsed *x, qr_error *err)
{
    memset(x, 0, sizeof *x);
    size_t len = strlen(v);
    switch (d->kind) {
    case K_PATH:
        if (len == 0)
            return qr_fail(err, QR_ERR_INVALID, "empty (expected %s)", d->expect);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                return bad(err, d, v, "holds a control character");
        if (len >= cap)
            return qr_fail(err, QR_ERR_INVALID, "%zu bytes is too long (expected %s, at most %zu bytes)",
                           len, d->expect, cap - 1);
        return QR_OK;
    case K_MODE:
        x->mode = -1;
        if (len == 0 || strcmp(v, "umask") == 0)
            return QR_OK;
        if (len < 3 || len > 4 || strspn(v, "01234567") != len || (len == 4 && v[0] != '0'))
            return bad(err, d, v, "is not an octal mode");
        x->mode = (int)strtol(v, NULL, 8);
        return QR_OK;
    case K_PROM_OPT:
        if (len == 0 || strcmp(v, "none") == 0)
            return QR_OK;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                return bad(err, d, v, "holds a control character");
        if (v[0] != '/' || len < 7 || strcmp(v + len - 5, ".prom") != 0 || v[len - 6] == '/')
            return bad(err, d, v, "is not an absolute path to a .prom file");
        if (len + 4 >= cap) /* room for the temporary file's ".tmp" */
            return qr_fail(err, QR_ERR_INVALID, "%zu bytes is too long (expected %s, at most %zu bytes)", len,
                           d->expect, cap - 5);
        return QR_OK;
    case K_GROUP_OPT:
    case K_GROUP:
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f || v[i] == ':' || v[i] == ',' || v[i] == '/')
                return bad(err, d, v, "is not a group name");
        if (len >= cap)
            return qr_fail(err, QR_ERR_INVALID, "%zu bytes is too long (expected %s, at most %zu bytes)",
                           len, d->expect, cap - 1);
        return QR_OK;
    case K_UINT: {
        if (!all_digits(v) || len > 20)
            return bad(err, d, v, "is not a whole number");
        errno = 0;
        unsigned long long n = strtoull(v, NULL, 10);
        if (errno || (double)n < d->lo || (double)n > d->hi)
            return bad(err, d, v, "is out of range");
        x->u = n;
        return QR_OK;
    }
    case K_SIZE:
    case K_MEMORY_OPT: {
        if (d->kind == K_MEMORY_OPT && strcmp(v, "auto") == 0)
            return QR_OK;
        if (d->kind == K_SIZE && d->lo == 0 && len > 0 && strspn(v, "0") == len)
            return QR_OK; /* "0": qi_parse_memory's sizes start at 1 byte */
        qi_error e;
        if (qi_parse_memory(v, len, NULL, &x->u, &e) != QI_OK)
            return bad(err, d, v, "is not a size");
        if (d->kind == K_SIZE && d->hi > 0 && ((double)x->u < d->lo || (double)x->u > d->hi))
            return bad(err, d, v, "is out of range");
        x->b = true;
        return QR_OK;
    }
    case K_SECONDS:
    case K_PERCENT: {
        size_t dots = 0;
        for (size_t i = 0; i < len; i++)
            dots += v[i] == '.';
        if (len == 0 || len > 32 || strspn(v, "0123456789.") != len || dots > 1 || len == dots)
            return bad(err, d, v, "is not a number");
        double n = strtod(v, NULL);
        if (!isfinite(n) || n < d->lo || n > d->hi)
            return bad(err, d, v, "is out of range");
        x->d = d->kind == K_PERCENT ? n / 100 : n;
        return QR_OK;
    }
    case K_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(v, yes[i]) == 0) {
                x->b = true;
                return QR_OK;
            }
            if (strcmp(v, no[i]) == 0)
                return QR_OK;
        }
        return bad(err, d, v, "is not a boolean");
    }
    case K_LOG_LEVEL:
        for (int i = 0; i < 5; i++)
            if (strcmp(v, log_levels[i]) == 0) {
                x->level = QD_LOG_ERR + i;
                return QR_OK;
            }
        return bad(err, d, v, "is not a log level");
    case K_KEYS: {
        qr_error e;
        if (qd_trust_check_spec(v, &e) != QR_OK)
            return bad(err, d, v, e.msg);
        if (len >= cap)
            return qr_fail(err, QR_ERR_INVALID, "%zu bytes is too long (expected %s, at most %zu bytes)",
                           len, d->expect, cap - 1);
        return QR_OK;
    }
    case K_POWER_OPT: {
        if (len == 0 || strcmp(v, "none") == 0)
            return QR_OK;
        uint64_t uw;
        qi_error e;
        if (qi_parse_power(v, len, NULL, &uw, &e) != QI_OK)
            return bad(err, d, v, "is not a power");
        x->b = true;
        x->d = (double)uw / 1e6;
        return QR_OK;
    }
    }
    return qr_fail(err, QR_ERR_INVALID, "unknown kind of value");
}

/* The string field of k, and its size; NULL for keys that are not strings. */
static char *string_field(qd_config *c, qd_config_key k, size_t *cap)
{
    switch (k) {
    case QD_KEY_SOCKET: *cap = sizeof c->socket_path; return c->socket_path;
    case QD_KEY_SOCKET_GROUP: *cap = sizeof c->socket_group; return c->socket_group;
    case QD_KEY_BUNDLE: *cap = sizeof c->bundle_dir; return c->bundle_dir;
    case QD_KEY_TRUSTED_KEYS: *cap = sizeof c->trusted_keys; return c->trusted_keys;
    case QD_KEY_ADMIN_GROUP: *cap = sizeof c->admin_group; return c->admin_group;
    case QD_KEY_TELEMETRY_ROOT: *cap = sizeof c->telemetry_root; return c->telemetry_root;
    case QD_KEY_METRICS_FILE: *cap = sizeof c->metrics_file; return c->metrics_file;
    default: *cap = 0; return NULL;
    }
}

qr_status qd_config_set_key(qd_config *cfg, qd_config_key k, const char *v, qr_error *err)
{
    if ((unsigned)k >= QD_KEY_COUNT)
        return qr_fail(err, QR_ERR_INVALID, "no such key");
    size_t cap;
    char *str = string_field(cfg, k, &cap);
    parsed x;
    qr_status st = parse(&keys[k], cap, v, &x, err);
    if (st)
        return st;
    if (str) {
        if ((keys[k].kind == K_GROUP_OPT || keys[k].kind == K_PROM_OPT || keys[k].kind == K_KEYS) &&
            strcmp(v, "none") == 0)
            v = "";
        memcpy(str, v, strlen(v) + 1); /* parse checked it fits */
        return QR_OK;
    }
    switch (k) {
    case QD_KEY_SOCKET_MODE: cfg->socket_mode = x.mode; break;
    case QD_KEY_THREADS: cfg->threads = (int)x.u; break;
    case QD_KEY_BATCH: cfg->batch = (size_t)x.u; break;
    case QD_KEY_MAX_ACTIVE: cfg->max_active = (size_t)x.u; break;
    case QD_KEY_MAX_ACTIVE_PER_CONN: cfg->max_active_per_conn = (size_t)x.u; break;
    case QD_KEY_ROUND_TOKENS: cfg->round_tokens = (size_t)x.u; break;
    case QD_KEY_PREFILL_CHUNK: cfg->prefill_chunk = (size_t)x.u; break;
    case QD_KEY_ROUND_MS: cfg->round_ms = (unsigned)x.u; break;
    case QD_KEY_SHARE_BY_UID: cfg->share_by_uid = x.b; break;
    case QD_KEY_MLOCK: cfg->lock_memory = x.b; break;
    case QD_KEY_LOG_LEVEL: cfg->log_level = x.level; break;
    case QD_KEY_MAX_LINE: cfg->limits.max_line = (size_t)x.u; break;
    case QD_KEY_MAX_TOKENS: cfg->limits.max_tokens = (uint32_t)x.u; break;
    case QD_KEY_QUEUE_DEPTH: cfg->limits.queue_depth = (uint32_t)x.u; break;
    case QD_KEY_MAX_IN_FLIGHT: cfg->limits.max_in_flight = (uint32_t)x.u; break;
    case QD_KEY_MAX_OUTPUT: cfg->max_output = (size_t)x.u; break;
    case QD_KEY_MAX_CONNECTIONS: cfg->max_connections = (size_t)x.u; break;
    case QD_KEY_IDLE_TIMEOUT: cfg->idle_timeout_s = x.d; break;
    case QD_KEY_METRICS_INTERVAL: cfg->metrics_interval_s = x.d; break;
    case QD_KEY_INTERVAL: cfg->policy_interval_s = x.d; break;
    case QD_KEY_UP_DELAY: cfg->policy.up_delay_s = x.d; break;
    case QD_KEY_UP_HEADROOM: cfg->policy.up_headroom = x.d; break;
    case QD_KEY_RESERVE: cfg->policy.reserve_bytes = x.u; break;
    case QD_KEY_CGROUP_RESERVE: cfg->policy.cgroup_reserve_bytes = x.u; break;
    case QD_KEY_PSI_THRESHOLD: cfg->policy.psi_threshold = x.d; break;
    case QD_KEY_PSI_HOLD: cfg->policy.psi_hold_s = x.d; break;
    case QD_KEY_POWER_BUDGET:
        cfg->policy.has_default_power = x.b;
        cfg->policy.default_power_w = x.d;
        break;
    case QD_KEY_MEMORY_BUDGET:
        cfg->initial_budget.has_memory = x.b;
        cfg->initial_budget.memory_bytes = x.u;
        break;
    default: break; /* the strings, above */
    }
    return QR_OK;
}

bool qd_config_key_equal(const qd_config *a, const qd_config *b, qd_config_key k)
{
    switch (k) {
    case QD_KEY_SOCKET: return strcmp(a->socket_path, b->socket_path) == 0;
    case QD_KEY_SOCKET_MODE: return a->socket_mode == b->socket_mode;
    case QD_KEY_SOCKET_GROUP: return strcmp(a->socket_group, b->socket_group) == 0;
    case QD_KEY_BUNDLE: return strcmp(a->bundle_dir, b->bundle_dir) == 0;
    case QD_KEY_TRUSTED_KEYS: return strcmp(a->trusted_keys, b->trusted_keys) == 0;
    case QD_KEY_ADMIN_GROUP: return strcmp(a->admin_group, b->admin_group) == 0;
    case QD_KEY_TELEMETRY_ROOT: return strcmp(a->telemetry_root, b->telemetry_root) == 0;
    case QD_KEY_METRICS_FILE: return strcmp(a->metrics_file, b->metrics_file) == 0;
    case QD_KEY_METRICS_INTERVAL: return a->metrics_interval_s == b->metrics_interval_s;
    case QD_KEY_THREADS: return a->threads == b->threads;
    case QD_KEY_BATCH: return a->batch == b->batch;
    case QD_KEY_MAX_ACTIVE: return a->max_active == b->max_active;
    case QD_KEY_MAX_ACTIVE_PER_CONN: return a->max_active_per_conn == b->max_active_per_conn;
    case QD_KEY_ROUND_TOKENS: return a->round_tokens == b->round_tokens;
    case QD_KEY_PREFILL_CHUNK: return a->prefill_chunk == b->prefill_chunk;
    case QD_KEY_ROUND_MS: return a->round_ms == b->round_ms;
    case QD_KEY_SHARE_BY_UID: return a->share_by_uid == b->share_by_uid;
    case QD_KEY_MLOCK: return a->lock_memory == b->lock_memory;
    case QD_KEY_LOG_LEVEL: return a->log_level == b->log_level;
    case QD_KEY_MAX_LINE: return a->limits.max_line == b->limits.max_line;
    case QD_KEY_MAX_TOKENS: return a->limits.max_tokens == b->limits.max_tokens;
    case QD_KEY_QUEUE_DEPTH: return a->limits.queue_depth == b->limits.queue_depth;
    case QD_KEY_MAX_IN_FLIGHT: return a->limits.max_in_flight == b->limits.max_in_flight;
    case QD_KEY_MAX_OUTPUT: return a->max_output == b->max_output;
    case QD_KEY_MAX_CONNECTIONS: return a->max_connections == b->max_connections;
    case QD_KEY_IDLE_TIMEOUT: return a->idle_timeout_s == b->idle_timeout_s;
    case QD_KEY_INTERVAL: return a->policy_interval_s == b->policy_interval_s;
    case QD_KEY_UP_DELAY: return a->policy.up_delay_s == b->policy.up_delay_s;
    case QD_KEY_UP_HEADROOM: return a->policy.up_headroom == b->policy.up_headroom;
    case QD_KEY_RESERVE: return a->policy.reserve_bytes == b->policy.reserve_bytes;
    case QD_KEY_CGROUP_RESERVE: return a->policy.cgroup_reserve_bytes == b->policy.cgroup_reserve_bytes;
    case QD_KEY_PSI_THRESHOLD: return a->policy.psi_threshold == b->policy.psi_threshold;
    case QD_KEY_PSI_HOLD: return a->policy.psi_hold_s == b->policy.psi_hold_s;
    case QD_KEY_POWER_BUDGET:
        return a->policy.has_default_power == b->policy.has_default_power &&
               (!a->policy.has_default_power || a->policy.default_power_w == b->policy.default_power_w);
    case QD_KEY_MEMORY_BUDGET:
        return a->initial_budget.has_memory == b->initial_budget.has_memory &&
               (!a->initial_budget.has_memory || a->initial_budget.memory_bytes == b->initial_budget.memory_bytes);
    default: return false;
    }
}

bool qd_config_equal(const qd_config *a, const qd_config *b)
{
    for (int k = 0; k < QD_KEY_COUNT; k++)
        if (!qd_config_key_equal(a, b, (qd_config_key)k))
            return false;
    return a->limits.vocab == b->limits.vocab &&
           a->initial_budget.has_power == b->initial_budget.has_power &&
           (!a->initial_budget.has_power || a->initial_budget.power_w == b->initial_budget.power_w);
}

/* ---------------------------------------------------------------- checking a config */

static bool in(double x, const key_def *d)
{
    return x >= d->lo && x <= d->hi;
}

/* Why k's value in c is not one the file could have set, or NULL. */
static const char *key_problem(const qd_config *c, qd_config_key k)
{
    const key_def *d = &keys[k];
    size_t cap;
    const char *s = string_field((qd_config *)c, k, &cap);
    if (s) {
        const char *nul = memchr(s, '\0', cap);
        if (!nul)
            return "not terminated";
        qr_error e;
        parsed x;
        return parse(d, cap, s, &x, &e) == QR_OK ? NULL : "not valid";
    }
    switch (k) {
    case QD_KEY_SOCKET_MODE: return c->socket_mode >= -1 && c->socket_mode <= 0777 ? NULL : "out of range";
    case QD_KEY_THREADS: return c->threads >= 0 && in(c->threads, d) ? NULL : "out of range";
    case QD_KEY_BATCH: return in((double)c->batch, d) ? NULL : "out of range";
    case QD_KEY_MAX_ACTIVE: return in((double)c->max_active, d) ? NULL : "out of range";
    case QD_KEY_MAX_ACTIVE_PER_CONN: return in((double)c->max_active_per_conn, d) ? NULL : "out of range";
    case QD_KEY_ROUND_TOKENS: return in((double)c->round_tokens, d) ? NULL : "out of range";
    case QD_KEY_PREFILL_CHUNK: return in((double)c->prefill_chunk, d) ? NULL : "out of range";
    case QD_KEY_ROUND_MS: return in(c->round_ms, d) ? NULL : "out of range";
    case QD_KEY_LOG_LEVEL: return c->log_level >= QD_LOG_ERR && c->log_level <= QD_LOG_DEBUG ? NULL : "out of range";
    case QD_KEY_MAX_LINE: return in((double)c->limits.max_line, d) ? NULL : "out of range";
    case QD_KEY_MAX_TOKENS: return in(c->limits.max_tokens, d) ? NULL : "out of range";
    case QD_KEY_QUEUE_DEPTH: return in(c->limits.queue_depth, d) ? NULL : "out of range";
    case QD_KEY_MAX_IN_FLIGHT: return in(c->limits.max_in_flight, d) ? NULL : "out of range";
    case QD_KEY_MAX_OUTPUT: return in((double)c->max_output, d) ? NULL : "out of range";
    case QD_KEY_MAX_CONNECTIONS: return in((double)c->max_connections, d) ? NULL : "out of range";
    case QD_KEY_IDLE_TIMEOUT: return in(c->idle_timeout_s, d) ? NULL : "out of range";
    case QD_KEY_METRICS_INTERVAL: return in(c->metrics_interval_s, d) ? NULL : "out of range";
    case QD_KEY_INTERVAL: return in(c->policy_interval_s, d) ? NULL : "out of range";
    case QD_KEY_UP_DELAY: return in(c->policy.up_delay_s, d) ? NULL : "out of range";
    case QD_KEY_UP_HEADROOM: return in(c->policy.up_headroom * 100, d) ? NULL : "out of range";
    case QD_KEY_PSI_THRESHOLD: return in(c->policy.psi_threshold, d) ? NULL : "out of range";
    case QD_KEY_PSI_HOLD: return in(c->policy.psi_hold_s, d) ? NULL : "out of range";
    case QD_KEY_POWER_BUDGET:
        return !c->policy.has_default_power ||
                       (c->policy.default_power_w > 0 && c->policy.default_power_w <= QI_POWER_MAX_UW / 1e6)
                   ? NULL
                   : "out of range";
    case QD_KEY_MEMORY_BUDGET:
        return !c->initial_budget.has_memory || c->initial_budget.memory_bytes > 0 ? NULL : "out of range";
    default: return NULL; /* mlock, reserve: every value is one */
    }
}

qr_status qd_config_check(const qd_config *c, qr_error *err)
{
    for (int k = 0; k < QD_KEY_COUNT; k++) {
        const char *why = key_problem(c, (qd_config_key)k);
        if (why)
            return qr_fail(err, QR_ERR_INVALID, "[%s] %s: %s (expected %s)", keys[k].section, keys[k].name, why,
                           keys[k].expect);
    }
    /* No two fields constrain each other today (a batch larger than max_active only runs
     * smaller batches); a rule that ties fields together goes here. */
    return QR_OK;
}

/* ---------------------------------------------------------------- reading the file */

typedef struct {
    const char *name;           /* the file, for messages */
    const char *p, *end;        /* what the reader has not handed to libinih yet */
    int lineno;                 /* the line last handed over */
    qd_config cfg;              /* the copy the file is applied to */
    int seen[QD_KEY_COUNT];     /* the line that set each key; 0: not set */
    int err_line;               /* the line of the first error found here; 0: none */
    qr_error err;
} load_ctx;

static void fail_at(load_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail_at(load_ctx *c, int line, const char *fmt, ...)
{
    if (c->err_line)
        return;
    char what[QR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->err_line = line;
    qr_fail(&c->err, QR_ERR_FORMAT, "%s:%d: %s", c->name, line, what);
}

static bool known_section(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        if (strlen(sections[i]) == n && memcmp(sections[i], s, n) == 0)
            return true;
    return false;
}

/* What libinih would let pass and we do not: a section we do not know (even one with no key in
 * it), text after a section's ']', a line without '=' (libinih refuses it too, with no word on
 * why), ':' between key and value (libinih's concession to Python). line: n characters,
 * stripped. */
static void sniff(load_ctx *c, const char *line, size_t n)
{
    char q[256];
    if (n == 0 || line[0] == '#' || line[0] == ';')
        return;
    if (line[0] == '[') {
        const char *close = memchr(line, ']', n);
        if (!close) {
            fail_at(c, c->lineno, "'[' without ']' (expected [section])");
            return;
        }
        size_t len = (size_t)(close - line - 1);
        if (!known_section(line + 1, len)) {
            fail_at(c, c->lineno, "[%s]: unknown section (expected " SECTIONS_TEXT ")",
                    shown(line + 1, len, false, q, sizeof q));
            return;
        }
        const char *rest = close + 1, *end = line + n;
        while (rest < end && isspace((unsigned char)*rest))
            rest++;
        if (rest < end && *rest != ';' && *rest != '#')
            fail_at(c, c->lineno, "[%s]: text after ']' (expected nothing, or a comment)",
                    shown(line + 1, len, false, q, sizeof q));
        return;
    }
    size_t sep = strcspn(line, "=:");
    if (sep >= n) {
        fail_at(c, c->lineno, "%s has no '=' (expected key = value, [section] or a comment)",
                shown(line, n, true, q, sizeof q));
    } else if (line[sep] == ':') {
        fail_at(c, c->lineno, "%s has ':' between key and value (expected key = value)",
                shown(line, n, true, q, sizeof q));
    }
}

/* libinih's fgets: one line per call, so its line numbers are ours, without the leading
 * whitespace (so an indented line is never taken for the continuation of the one before). */
static char *read_line(char *str, int num, void *stream)
{
    load_ctx *c = stream;
    if (c->p >= c->end || num < 3)
        return NULL;
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    const char *s = c->p, *e = nl ? nl : c->end;
    c->p = nl ? nl + 1 : c->end;
    c->lineno++;
    if (c->lineno == 1 && e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        s += 3; /* a UTF-8 byte order mark */
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    size_t n = (size_t)(e - s), max = (size_t)num - 2 < QD_CONFIG_LINE_MAX ? (size_t)num - 2 : QD_CONFIG_LINE_MAX;
    if (n > max) {
        fail_at(c, c->lineno, "%zu characters is too long (expected lines of at most %zu)", n, max);
        n = 0;
    }
    memcpy(str, s, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    sniff(c, str, n);
    return str;
}

static int key_of(const char *section, const char *name)
{
    for (int k = 0; k < QD_KEY_COUNT; k++)
        if ((!section || strcmp(keys[k].section, section) == 0) && strcmp(keys[k].name, name) == 0)
            return k;
    return -1;
}

static int on_key(void *user, const char *section, const char *name, const char *v)
{
    load_ctx *c = user;
    int line = c->lineno;
    if (c->err_line)
        return 1; /* the first error is the one reported */
    char q[256];
    if (section[0] == '\0') {
        int k = key_of(NULL, name);
        if (k >= 0)
            fail_at(c, line, "%s: a key before any section (expected it under [%s])", name, keys[k].section);
        else
            fail_at(c, line, "%s: a key before any section (expected " SECTIONS_TEXT " first)",
                    shown(name, strlen(name), false, q, sizeof q));
        return 0;
    }
    if (!known_section(section, strlen(section))) {
        fail_at(c, line, "[%s]: unknown section (expected " SECTIONS_TEXT ")", section);
        return 0;
    }
    if (name[0] == '\0') {
        fail_at(c, line, "[%s]: a value without a key (expected key = value)", section);
        return 0;
    }
    int k = key_of(section, name);
    if (k < 0) {
        char list[QR_ERROR_MSG_MAX / 2] = "";
        size_t o = 0;
        for (int i = 0; i < QD_KEY_COUNT; i++)
            if (strcmp(keys[i].section, section) == 0 && o < sizeof list)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", keys[i].name);
        int other = key_of(NULL, name);
        if (other >= 0)
            fail_at(c, line, "[%s] %s: unknown key here (expected it under [%s])", section, name, keys[other].section);
        else
            fail_at(c, line, "[%s] %s: unknown key (expected one of %s)", section,
                    shown(name, strlen(name), false, q, sizeof q), list);
        return 0;
    }
    if (c->seen[k]) {
        fail_at(c, line, "[%s] %s: set twice, first on line %d (expected each key once)", section, name, c->seen[k]);
        return 0;
    }
    c->seen[k] = line;
    qr_error e;
    if (qd_config_set_key(&c->cfg, (qd_config_key)k, v, &e) != QR_OK) {
        fail_at(c, line, "[%s] %s: %s", section, name, e.msg);
        return 0;
    }
    return 1;
}

qr_status qd_config_load_buffer(const char *name, const char *text, size_t len, qd_config *cfg, qr_error *err)
{
    load_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    c->name = name;
    c->p = text;
    c->end = text + len;
    c->cfg = *cfg;
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        fail_at(c, line, "a NUL byte (expected text)");
    } else {
        int rc = ini_parse_stream(read_line, c, on_key, c);
        if (rc > 0 && (!c->err_line || rc < c->err_line)) {
            c->err_line = 0; /* libinih found a line it cannot read before ours */
            fail_at(c, rc, "cannot read this line (expected key = value, [section] or a comment)");
        } else if (rc < 0 && !c->err_line) {
            fail_at(c, c->lineno, "out of memory");
        }
    }
    qr_status st = QR_OK;
    if (c->err_line)
        st = qr_fail(err, c->err.status, "%s", c->err.msg);
    else
        *cfg = c->cfg;
    free(c);
    return st;
}

qr_status qd_config_load_file(const char *path, qd_config *cfg, qr_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        return qr_fail(err, e == ENOENT ? QR_ERR_NOT_FOUND : QR_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    qr_status st = QR_OK;
    while (text) {
        if (len == cap) {
            if (cap > QD_CONFIG_FILE_MAX) {
                st = qr_fail(err, QR_ERR_FORMAT, "%s: more than %u bytes (expected a configuration file)", path,
                             QD_CONFIG_FILE_MAX);
                break;
            }
            char *bigger = realloc(text, cap * 2);
            if (!bigger)
                break;
            text = bigger;
            cap *= 2;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                st = qr_fail(err, QR_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!text)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    if (st == QR_OK && len > QD_CONFIG_FILE_MAX)
        st = qr_fail(err, QR_ERR_FORMAT, "%s: more than %u bytes (expected a configuration file)", path,
                     QD_CONFIG_FILE_MAX);
    if (st == QR_OK)
        st = qd_config_load_buffer(path, text, len, cfg, err);
    free(text);
    return st;
}

/* ---------------------------------------------------------------- file + command line */

void qd_config_source_init(qd_config_source *src)
{
    memset(src, 0, sizeof *src);
}

qr_status qd_config_source_set(qd_config_source *src, qd_config_key k, const char *value, qr_error *err)
{
    if ((unsigned)k >= QD_KEY_COUNT)
        return qr_fail(err, QR_ERR_INVALID, "no such key");
    qd_config *scratch = malloc(sizeof *scratch);
    if (!scratch)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    qd_config_init(scratch);
    qr_status st = qd_config_set_key(scratch, k, value, err);
    free(scratch);
    if (st == QR_OK)
        src->override[k] = value;
    return st;
}

qr_status qd_config_load(const qd_config_source *src, qd_config *out, qr_error *err)
{
    qd_config *c = malloc(sizeof *c);
    if (!c)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
    qd_config_init(c);
    qr_status st = QR_OK;
    if (src->path) {
        st = qd_config_load_file(src->path, c, err);
        if (st == QR_ERR_NOT_FOUND && src->missing_ok)
            st = QR_OK;
    }
    for (int k = 0; k < QD_KEY_COUNT && st == QR_OK; k++) {
        if (!src->override[k])
            continue;
        qr_error e;
        st = qd_config_set_key(c, (qd_config_key)k, src->override[k], &e);
        if (st)
            qr_fail(err, st, "command line, [%s] %s: %s", keys[k].section, keys[k].name, e.msg);
    }
    if (st == QR_OK)
        st = qd_config_check(c, err);
    if (st == QR_OK)
        *out = *c;
    free(c);
    return st;
}
