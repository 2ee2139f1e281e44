/* log.c: see log.h. The level is the one piece of process-wide state in the daemon: logging
 * is process-wide by nature, and only main() sets it. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static int max_level = QD_LOG_INFO;
static bool journal_prefix = false;

void qd_log_setup(int level, bool journal)
{
    max_level = level;
    journal_prefix = journal;
}

void qd_log_set_level(int level)
{
    max_level = level;
}

void qd_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"};
    if (level > max_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (journal_prefix)
        fprintf(stderr, "<%d>%s\n", level, msg);
    else
        fprintf(stderr, "qslmd: %s: %s\n", names[level & 7], msg);
    fflush(stderr);
}
