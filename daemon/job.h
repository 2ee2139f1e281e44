/* job.h: one inference request (generate or classify) on its way through the daemon, and the
 * events the inference thread sends back to the event loop.
 *
 * A job is created and freed by the event loop. The inference thread reads its request and
 * its cancel flag, and owns it from submission until it posts the job's FINAL event; after that
 * it never touches it again, so the loop may free it when it handles that event. Reply lines are
 * built on the inference thread (the ipc builders are pure), so the loop only writes bytes. */
#ifndef QD_JOB_H
#define QD_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"
#include "variants.h"

/* Why a job must end before its time (the loop sets it; the inference thread acts on it
 * between two tokens). */
typedef enum {
    QD_CANCEL_NONE = 0,
    QD_CANCEL_REQUEST,  /* a `cancel` op: generate ends with its done message, classify with `cancelled` */
    QD_CANCEL_GONE,     /* the connection closed: end quietly, nobody is listening */
    QD_CANCEL_SHUTDOWN, /* SIGTERM: end with `shutting_down` */
    QD_CANCEL_FAULT,    /* the model refused the step (cannot happen for valid tokens): `internal` */
} qd_cancel_reason;

struct qd_conn;

struct qd_job;

typedef enum {
    QD_EV_LINE,    /* a non-final line for job (a token event) */
    QD_EV_FINAL,   /* the job's final line (may be NULL: nobody to tell); the job is the loop's again */
    QD_EV_SWITCH,  /* the served variant changed: variant (-1: none loaded), after latency_ms */
    QD_EV_REFUSED, /* variant could not be loaded (msg says why); it is not servable */
} qd_event_kind;

typedef struct qd_event {
    struct qd_event *next;
    qd_event_kind kind;
    struct qd_job *job;
    bool embedded;     /* the job's own final event: freed with the job, not by qd_event_free */
    char *line;        /* malloc'ed, '\n'-terminated; the loop writes then frees it */
    size_t len;
    /* FINAL: what the loop counts */
    uint32_t tokens;
    qi_code code;      /* the error reply's code; QI_OK for a result or a done message */
    bool cancelled;
    /* SWITCH, REFUSED: which bundle (a reference the loop drops) and variant */
    qd_bundle *bundle;
    int variant;
    double latency_ms; /* SWITCH: from the decision to serving the new variant */
    char msg[QD_REFUSAL_MAX];
} qd_event;

typedef struct qd_job {
    qi_request req;      /* owns its strings */
    double t_received;   /* monotonic seconds when the request line was read */
    atomic_int cancel;   /* qd_cancel_reason */
    uint64_t flow;       /* whose share it counts against (engine.h): its connection */
    /* the loop's */
    struct qd_conn *conn; /* NULL once the connection is gone */
    struct qd_job *conn_prev, *conn_next;
    /* the inference thread's (the loop reads them once it has the FINAL event) */
    struct qd_job *queue_next;
    uint32_t tokens_read;  /* input tokens (prompt, texts) the model has read, a re-read counted again */
    double t_first_token;  /* generate: monotonic seconds of its first token; 0 before */
    qd_event final; /* its FINAL event, allocated with it so ending a job never fails */
} qd_job;

typedef struct {
    qd_event *head, *tail;
} qd_event_list;

void qd_event_push(qd_event_list *l, qd_event *e);

/* Appends a token event's line for job. Returns false when out of memory (the line is then
 * freed and the event lost). */
bool qd_event_line(qd_event_list *l, qd_job *job, char *line, size_t len);

/* Appends job's FINAL event (its embedded one) with line, which may be NULL: a result or a done
 * message (qd_event_error for an error reply). */
void qd_event_final(qd_event_list *l, qd_job *job, char *line, size_t len, uint32_t tokens,
                    bool cancelled);

/* Appends job's FINAL event carrying an error reply; when the connection is gone (job's cancel
 * is QD_CANCEL_GONE) no line is built. */
void qd_event_error(qd_event_list *l, qd_job *job, qi_code code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

void qd_event_free(qd_event *e);

#endif
