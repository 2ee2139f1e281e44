/* metrics.h: qslmd's state as Prometheus text exposition (format 0.0.4), the one text that answers
 * the `metrics` op and fills metrics_file (metrics_file.h).
 *
 * Rendered on the event loop from what the loop already holds, as `status` is: the counters, the
 * policy's decision, and the telemetry snapshot of the last policy tick (no file is read here).
 * Families (README "Metrics" lists them with their labels): build and start, the variants (which
 * serves, footprints, energy per token, switches by reason and their duration), the budgets in
 * force, the telemetry readings (memory available, the cgroup's limits, usage and events, memory
 * pressure, each power reading and battery charge), connections, the queue, requests and errors
 * per op, request duration and time to first token, tokens generated and read. */
#ifndef QD_METRICS_H
#define QD_METRICS_H

#include <stddef.h>

struct qd_server;

/* The text (malloc'ed, NUL-terminated; *len without the NUL), or NULL when out of memory. */
char *qd_metrics_render(struct qd_server *s, size_t *len);

#endif
