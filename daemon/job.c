/* job.c: building and chaining the inference thread's events. */
#include "job.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

void qd_event_push(qd_event_list *l, qd_event *e)
{
    e->next = NULL;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
}

bool qd_event_line(qd_event_list *l, qd_job *job, char *line, size_t len)
{
    qd_event *e = calloc(1, sizeof *e);
    if (!e) {
        free(line);
        return false;
    }
    e->kind = QD_EV_LINE;
    e->job = job;
    e->line = line;
    e->len = line ? len : 0;
    e->variant = -1;
    qd_event_push(l, e);
    return true;
}

void qd_event_final(qd_event_list *l, qd_job *job, char *line, size_t len, uint32_t tokens,
                    bool cancelled)
{
    qd_event *e = &job->final;
    memset(e, 0, sizeof *e);
    e->kind = QD_EV_FINAL;
    e->embedded = true;
    e->job = job;
    e->line = line;
    e->len = line ? len : 0;
    e->tokens = tokens;
    e->code = QI_OK;
    e->cancelled = cancelled;
    e->variant = -1;
    qd_event_push(l, e);
}

void qd_event_error(qd_event_list *l, qd_job *job, qi_code code, const char *field,
                    const char *fmt, ...)
{
    char *line = NULL;
    size_t len = 0;
    if (atomic_load(&job->cancel) != QD_CANCEL_GONE) {
        va_list ap;
        va_start(ap, fmt);
        line = qi_reply_errorv(&job->req.id, code, field, &len, fmt, ap);
        va_end(ap);
    }
    qd_event_final(l, job, line, len, 0, code == QI_ERR_CANCELLED);
    job->final.code = code;
}

void qd_event_free(qd_event *e)
{
    if (!e)
        return;
    free(e->line);
    e->line = NULL;
    qd_bundle_unref(e->bundle);
    e->bundle = NULL;
    if (!e->embedded)
        free(e);
}
