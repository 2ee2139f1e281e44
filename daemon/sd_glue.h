/* sd_glue.h: qslmd's side of systemd (libsystemd 252): socket activation, readiness and status,
 * the watchdog, reload and stop notices.
 *
 * Everything here is a no-op when the daemon does not run under systemd (no $NOTIFY_SOCKET, no
 * $LISTEN_FDS), so the same binary runs by hand, in tests and as a unit. */
#ifndef QD_SD_GLUE_H
#define QD_SD_GLUE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* The listening socket systemd passed (socket activation), or -1 when it passed none. Exactly
 * one Unix stream socket in listening state is accepted; anything else is an error naming what
 * was passed, since serving on a socket the unit did not mean would be worse than failing.
 * path_out (may be NULL, cap bytes) receives the socket's path, when it has one. */
int qd_sd_listen_socket(char *path_out, size_t cap, qr_error *err);

/* READY=1 with a STATUS= line. */
void qd_sd_ready(const char *status);

/* STATUS= only: the active variant and the budget, for `systemctl status`. */
void qd_sd_status(const char *status);

/* While a slow start runs (hashing a big bundle): asks systemd for usec more. */
void qd_sd_extend_timeout(uint64_t usec);

/* RELOADING=1 ... READY=1 around a reload; STOPPING=1 at shutdown. */
void qd_sd_reloading(void);
void qd_sd_stopping(void);

/* The watchdog interval systemd expects pings within (0: no watchdog). */
uint64_t qd_sd_watchdog_usec(void);
void qd_sd_watchdog_ping(void);

/* True when stderr goes to the journal ($JOURNAL_STREAM names stderr's device and inode), so
 * log lines should carry <N> priority prefixes. */
bool qd_sd_stderr_is_journal(void);

#endif
