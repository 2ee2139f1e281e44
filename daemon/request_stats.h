/* request_stats.h: what became of the requests qslmd answered and of its variant switches, for
 * `status`'s counters and the metrics (metrics.h).
 *
 * Per op: how many were answered, how many of those with each error code, and how long each took
 * from its line being read to its final reply being queued (a histogram of fixed buckets); for
 * generations, the time to the first token; for switches, how many per reason (policy.h: qd_why)
 * and how long each took. Counting is a few additions into fixed arrays held in the server
 * struct: no allocation, no lock (the event loop counts; the inference thread never touches it).
 * Not here: connections, tokens, cancellations (the server's own counters), and any rendering. */
#ifndef QD_REQUEST_STATS_H
#define QD_REQUEST_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "ipc_error.h"
#include "policy.h"
#include "request.h"

/* The ops, and one more for a line whose op could not be read (invalid JSON, no op, an unknown
 * op, a line too long): QD_OP_NONE, named "none". */
#define QD_OP_NONE QI_OP_COUNT
#define QD_STATS_OPS (QI_OP_COUNT + 1)
/* The codes a reply can carry: QI_OK and the wire error codes. */
#define QD_STATS_CODES (QI_ERR_INTERNAL + 1)

/* Upper bounds of the histograms' buckets, in seconds (the last bucket, +Inf, is implicit):
 * 1 ms to 2 minutes, for a status answered at once as for a long generation on a slow board. */
#define QD_HIST_BOUNDS 16
extern const double qd_hist_bounds[QD_HIST_BOUNDS];

typedef struct {
    uint64_t count[QD_HIST_BOUNDS + 1]; /* observations per bucket (not cumulative); the last
                                           one is above every bound */
    double sum;                         /* of every observation, seconds */
} qd_histogram;

typedef struct {
    uint64_t answered[QD_STATS_OPS];                 /* final replies, per op; a request whose
                                                        client left counts too (no reply) */
    uint64_t errors[QD_STATS_OPS][QD_STATS_CODES];   /* error replies per op and code */
    qd_histogram duration[QD_STATS_OPS];             /* line read .. final reply queued */
    qd_histogram first_token;                        /* generate: line read .. first token */
    uint64_t switches[QD_WHY_COUNT];                 /* variant switches per reason */
    qd_histogram switch_duration;                    /* decision .. serving the new variant */
} qd_request_stats;

/* "generate", ..., "metrics", or "none" for QD_OP_NONE. */
const char *qd_stats_op_name(size_t op);

void qd_histogram_observe(qd_histogram *h, double seconds);
uint64_t qd_histogram_count(const qd_histogram *h);

/* A request of op (QD_OP_NONE when unknown) answered after `seconds`, with code (QI_OK for a
 * result or a generation's done message, or when nothing could be sent because the client left).
 * A code that is not a wire code counts as `internal`, as the reply says. */
void qd_stats_answered(qd_request_stats *st, size_t op, qi_code code, double seconds);

/* A variant switch that took `seconds`, decided for `why`. */
void qd_stats_switched(qd_request_stats *st, qd_why why, double seconds);

/* Totals over every op, code and reason: `status`'s requests, errors and switches. */
uint64_t qd_stats_requests(const qd_request_stats *st);
uint64_t qd_stats_errors(const qd_request_stats *st);
uint64_t qd_stats_switches(const qd_request_stats *st);

#endif
