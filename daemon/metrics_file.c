/* metrics_file.c: the textfile collector's file, rendered on the loop and written on the thread
 * pool (metrics_file.h). The loop's own file calls are the unlinks at a reload or the stop: one
 * syscall each, once. */
#include "server_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "task_impl.h"

#define TMP_SUFFIX ".tmp" /* config_file.c leaves room for it after the path */

/* ---------------------------------------------------------------- on the thread pool */

static void fail(qd_metrics_file *mf, const char *step, int err)
{
    if (!mf->err) {
        mf->err = err ? err : EIO;
        mf->step = step;
    }
}

/* PATH.tmp written, made 0644, fsync'ed and renamed over PATH; on a failure the temporary file is
 * removed and err and step say what failed. Touches nothing of the loop's but mf's write fields. */
static void write_work(uv_work_t *w)
{
    qd_metrics_file *mf = &((qd_server *)w->data)->metrics_file;
    char tmp[QD_PATH_MAX + sizeof TMP_SUFFIX];
    snprintf(tmp, sizeof tmp, "%s" TMP_SUFFIX, mf->path);
    mf->err = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        fail(mf, "open", errno);
        return;
    }
    for (size_t off = 0; off < mf->len && !mf->err;) {
        ssize_t n = write(fd, mf->text + off, mf->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(mf, "write", n < 0 ? errno : EIO);
        else
            off += (size_t)n;
    }
    if (!mf->err && fchmod(fd, 0644) != 0)
        fail(mf, "chmod", errno);
    if (!mf->err && fsync(fd) != 0)
        fail(mf, "fsync", errno);
    if (close(fd) != 0)
        fail(mf, "close", errno);
    if (!mf->err && rename(tmp, mf->path) != 0)
        fail(mf, "rename", errno);
    if (mf->err)
        unlink(tmp);
}

/* ---------------------------------------------------------------- on the loop */

/* Logs the outcome only when it differs from the last one logged: a directory that is missing
 * for an hour is one line, not 240. */
static void report(qd_server *s)
{
    qd_metrics_file *mf = &s->metrics_file;
    if (mf->err == mf->logged_err)
        return;
    if (mf->err)
        qd_log(QD_LOG_WARNING, "metrics file %s: %s failed: %s (tried every %g s; said again only if this changes)",
               mf->path, mf->step, strerror(mf->err), s->cfg.metrics_interval_s);
    else
        qd_log(QD_LOG_NOTICE, "metrics file %s: written again", mf->path);
    mf->logged_err = mf->err;
}

static void write_done(uv_work_t *w, int status)
{
    qd_server *s = w->data;
    qd_metrics_file *mf = &s->metrics_file;
    mf->busy = false;
    free(mf->text);
    mf->text = NULL;
    if (status)
        fail(mf, "queue", -status);
    if (mf->stopped || strcmp(mf->path, s->cfg.metrics_file) != 0) {
        unlink(mf->path); /* stopped, or a reload moved the file while this one was written */
        return;
    }
    report(s);
}

static void on_tick(uv_timer_t *t)
{
    qd_server *s = t->data;
    qd_metrics_file *mf = &s->metrics_file;
    if (mf->busy || mf->stopped || !s->cfg.metrics_file[0])
        return;
    snprintf(mf->path, sizeof mf->path, "%s", s->cfg.metrics_file);
    mf->err = 0;
    mf->text = qd_metrics_render(s, &mf->len);
    if (!mf->text) {
        fail(mf, "render", ENOMEM);
        report(s);
        return;
    }
    mf->work.data = s;
    mf->busy = true;
    int r = uv_queue_work(&s->loop, &mf->work, write_work, write_done);
    if (r) {
        mf->busy = false;
        free(mf->text);
        mf->text = NULL;
        fail(mf, "queue", -r);
        report(s);
    }
}

/* Writes now, then every interval_s, to path (logged). */
static void schedule(qd_server *s, const char *path, double interval_s)
{
    uint64_t ms = (uint64_t)(interval_s * 1000 + 0.5);
    qd_log(QD_LOG_INFO, "metrics: writing %s every %g s", path, interval_s);
    uv_timer_start(&s->metrics_file.timer, on_tick, 0, ms ? ms : 1);
}

void qd_metrics_file_start(qd_server *s)
{
    qd_metrics_file *mf = &s->metrics_file;
    uv_timer_init(&s->loop, &mf->timer);
    mf->timer.data = s;
    mf->timer_open = true;
    if (s->cfg.metrics_file[0])
        schedule(s, s->cfg.metrics_file, s->cfg.metrics_interval_s);
}

void qd_metrics_file_apply(qd_server *s, const qd_config *next)
{
    qd_metrics_file *mf = &s->metrics_file;
    const char *old = s->cfg.metrics_file;
    bool moved = strcmp(old, next->metrics_file) != 0;
    if (!mf->timer_open || (!moved && next->metrics_interval_s == s->cfg.metrics_interval_s))
        return;
    if (moved && old[0] && !mf->busy) /* a busy write removes it when done (write_done) */
        unlink(old);
    if (moved)
        mf->logged_err = 0;
    uv_timer_stop(&mf->timer);
    if (next->metrics_file[0])
        schedule(s, next->metrics_file, next->metrics_interval_s);
    else
        qd_log(QD_LOG_INFO, "metrics: no metrics file any more");
}

void qd_metrics_file_stop(qd_server *s)
{
    qd_metrics_file *mf = &s->metrics_file;
    mf->stopped = true;
    if (mf->timer_open) {
        uv_timer_stop(&mf->timer);
        uv_close((uv_handle_t *)&mf->timer, NULL);
        mf->timer_open = false;
    }
    if (!mf->busy && s->cfg.metrics_file[0]) /* a busy write removes it when done (write_done) */
        unlink(s->cfg.metrics_file);
}
