/* metrics_file.h: the metrics (metrics.h) written to `metrics_file` every `metrics_interval`, for
 * node_exporter's textfile collector.
 *
 * Off the request path: a libuv timer renders the text on the loop (it reads the loop's state;
 * that takes microseconds), and libuv's thread pool writes it, so the loop never waits on the
 * disk. The write is atomic: PATH.tmp in the same directory (not *.prom, so the collector never
 * reads it half written) is written, made mode 0644 (node_exporter runs as another user; the
 * service's UMask would hide the file), fsync'ed, then renamed over PATH. A tick that finds the
 * previous write still running is skipped. A failure is logged once, with the path, the step and
 * errno, and logged again only when the error changes; the first success after a failure is
 * logged once too. At a clean stop the file is removed, so the collector does not go on exporting
 * a stopped daemon's figures as current; after a crash it stays, and node_exporter's
 * node_textfile_mtime_seconds tells its age. A reload that changes metrics_file or
 * metrics_interval applies at once, and removes the file at the old path. */
#ifndef QD_METRICS_FILE_H
#define QD_METRICS_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

struct qd_server;

typedef struct {
    uv_timer_t timer;
    bool timer_open;        /* initialised and not closed */
    bool stopped;           /* the daemon is stopping: nothing more is written */
    int logged_err;         /* the errno last logged (0: none, or the last write succeeded) */
    /* the write on the thread pool: the loop does not touch these while busy */
    uv_work_t work;
    bool busy;
    char path[QD_PATH_MAX]; /* the file written */
    char *text;
    size_t len;
    int err;                /* its errno; 0 when it succeeded */
    const char *step;       /* what failed: "open", "write", "chmod", "fsync", "close", "rename" */
} qd_metrics_file;

/* At the start of the run: with a metrics_file, the first write now, then every interval. */
void qd_metrics_file_start(struct qd_server *s);

/* A reload is about to make next the configuration: a changed path or interval takes effect
 * now, and the file at a path no longer configured is removed. */
void qd_metrics_file_apply(struct qd_server *s, const qd_config *next);

/* The shutdown: no more writes, the timer closed, the file removed (once a write in flight is
 * done). */
void qd_metrics_file_stop(struct qd_server *s);

#endif
