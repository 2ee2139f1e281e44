/* log.h: the daemon's log lines, on stderr.
 *
 * Under the journal ($JOURNAL_STREAM set) each line starts with its syslog priority, "<6>", so
 * journald files it at the right level; elsewhere lines read "qslmd: info: ...". */
#ifndef QD_LOG_H
#define QD_LOG_H

#include <stdbool.h>

enum { QD_LOG_ERR = 3, QD_LOG_WARNING = 4, QD_LOG_NOTICE = 5, QD_LOG_INFO = 6, QD_LOG_DEBUG = 7 };

/* Sets the most verbose level written, and whether to write journal prefixes. */
void qd_log_setup(int max_level, bool journal);

/* Changes only the level (a reload). */
void qd_log_set_level(int max_level);

void qd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
