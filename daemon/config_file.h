/* config_file.h: qslmd.conf, the INI file of qslmd's settings, and how it meets the command line.
 *
 * The file is read with libinih; what this module adds is strictness: every key belongs to one
 * section, every value has one grammar and one range, and anything else (an unknown section or
 * key, a bad value, a key given twice, a line that is not `key = value`, `[section]`, a comment
 * or blank) refuses the whole file with one line naming it:
 *
 *   /etc/qslm/qslmd.conf:12: [daemon] threads: 'four' is not a whole number (expected 0..256)
 *
 * Grammar (qslmd.conf(5) says it for users): `[section]` lines; `key = value` lines (whitespace
 * around both is ignored, indentation is allowed, no quotes: the value is the rest of the line);
 * comments are lines starting with '#' or ';' (a ';' after whitespace also ends a value); at
 * most QD_CONFIG_LINE_MAX characters per line. The keys, their grammars and defaults are the
 * table in config_file.c and etc/qslmd.conf.in, which a test keeps equal to qd_config_init.
 *
 * It deliberately does not apply anything to a running daemon: it builds a qd_config, and the
 * caller (qslmd.c at start, the reload path on SIGHUP) decides what to do with it. It never
 * prints. */
#ifndef QD_CONFIG_FILE_H
#define QD_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

/* Longest line, in characters without the newline (libinih reads lines into a 200-byte buffer,
 * with room for the newline and a NUL). */
#define QD_CONFIG_LINE_MAX 198
/* Largest file read. */
#define QD_CONFIG_FILE_MAX (1u << 20)

/* Every key of the file, in the file's order. */
typedef enum {
    /* [daemon] */
    QD_KEY_SOCKET,
    QD_KEY_BUNDLE,
    QD_KEY_TRUSTED_KEYS,
    QD_KEY_THREADS,
    QD_KEY_BATCH,
    QD_KEY_MAX_ACTIVE,
    QD_KEY_MAX_ACTIVE_PER_CONN,
    QD_KEY_ROUND_TOKENS,
    QD_KEY_PREFILL_CHUNK,
    QD_KEY_ROUND_MS,
    QD_KEY_SHARE_BY_UID,
    QD_KEY_MLOCK,
    QD_KEY_LOG_LEVEL,
    QD_KEY_ADMIN_GROUP,
    QD_KEY_SOCKET_MODE,
    QD_KEY_SOCKET_GROUP,
    QD_KEY_METRICS_FILE,
    QD_KEY_METRICS_INTERVAL,
    /* [limits] */
    QD_KEY_MAX_LINE,
    QD_KEY_MAX_TOKENS,
    QD_KEY_QUEUE_DEPTH,
    QD_KEY_MAX_IN_FLIGHT,
    QD_KEY_MAX_OUTPUT,
    QD_KEY_MAX_CONNECTIONS,
    QD_KEY_IDLE_TIMEOUT,
    /* [policy] */
    QD_KEY_INTERVAL,
    QD_KEY_UP_DELAY,
    QD_KEY_UP_HEADROOM,
    QD_KEY_RESERVE,
    QD_KEY_CGROUP_RESERVE,
    QD_KEY_PSI_THRESHOLD,
    QD_KEY_PSI_HOLD,
    QD_KEY_POWER_BUDGET,
    QD_KEY_MEMORY_BUDGET,
    /* [telemetry] */
    QD_KEY_TELEMETRY_ROOT,
    QD_KEY_COUNT
} qd_config_key;

/* "daemon", "socket", ...; NULL out of range. */
const char *qd_config_key_section(qd_config_key k);
const char *qd_config_key_name(qd_config_key k);

/* True for the keys a running daemon cannot change without a restart (socket, threads, batch,
 * max_active, max_active_per_conn, round_tokens, prefill_chunk, round_ms, mlock, telemetry
 * root): a reload that changes one keeps the old value and says so; the others take effect at
 * the reload. */
bool qd_config_key_needs_restart(qd_config_key k);

/* Parses value with k's grammar and range and stores it in cfg. On failure cfg is untouched and
 * err says what is wrong and what was expected, without naming the key ("'x' is not a whole
 * number (expected 0..256)"): the caller prefixes the file, line and key, or the flag. */
qr_status qd_config_set_key(qd_config *cfg, qd_config_key k, const char *value, qr_error *err);

/* Whether a and b hold the same value for k. */
bool qd_config_key_equal(const qd_config *a, const qd_config *b, qd_config_key k);

/* Every key equal, and the initial budget. */
bool qd_config_equal(const qd_config *a, const qd_config *b);

/* Applies every key present in the file at path over what cfg holds (so: qd_config_init first).
 * Errors: QR_ERR_NOT_FOUND when the file does not exist, QR_ERR_IO when it cannot be read,
 * QR_ERR_FORMAT "PATH:LINE: [section] key: what is wrong (expected ...)" for its content;
 * on any failure cfg is untouched. */
qr_status qd_config_load_file(const char *path, qd_config *cfg, qr_error *err);

/* The same over text of len bytes already in memory (which need not be NUL-terminated);
 * name stands for the file in messages. */
qr_status qd_config_load_buffer(const char *name, const char *text, size_t len, qd_config *cfg,
                                qr_error *err);

/* Whether every field is in its key's range and the fields agree with each other: what the
 * file and the command line already ensure, for a config assembled in code (a test, a reload
 * path editing fields). QR_ERR_INVALID naming the key(s). */
qr_status qd_config_check(const qd_config *cfg, qr_error *err);

/* ---------------------------------------------------------------- file + command line */

/* Where a configuration comes from: the defaults, then the file (if any), then the command
 * line's values. Kept by the daemon for the life of the process, so a reload builds the config
 * again exactly as the start did and the command line keeps overriding the file. */
typedef struct {
    const char *path;                   /* the file; NULL: none. Borrowed (argv, a literal) */
    bool missing_ok;                    /* a missing file means the defaults (true for the
                                           default path, false for one given with --config) */
    const char *override[QD_KEY_COUNT]; /* the command line's value of each key, NULL where
                                           not given. Borrowed (argv, a literal) */
} qd_config_source;

/* No file, no overrides. */
void qd_config_source_init(qd_config_source *src);

/* Records the command line's value of k, after checking it with k's grammar (so a bad flag is
 * refused at once, with qd_config_set_key's message, and src is untouched); a later value
 * replaces an earlier one. value is borrowed. */
qr_status qd_config_source_set(qd_config_source *src, qd_config_key k, const char *value,
                               qr_error *err);

/* Builds the configuration src describes into *out: qd_config_init, the file's keys
 * (qd_config_load_file; a missing file is the defaults only when src->missing_ok), the
 * overrides, then qd_config_check. On failure *out is untouched and err has the file's error
 * (or the check's). It holds no state between calls and has no side effect.
 *
 * Start: qslmd.c calls it once. Reload (SIGHUP, `qslmctl reload`): call it again with the same
 * src; on success apply the new config (the keys qd_config_key_needs_restart says keep their
 * old values: compare with qd_config_key_equal and log those that changed), on failure log
 * err and keep running with the old config. */
qr_status qd_config_load(const qd_config_source *src, qd_config *out, qr_error *err);

#endif
