/* prom.h: writing the Prometheus text exposition format, version 0.0.4, into a growing buffer.
 *
 * One job: the syntax. A family is a `# HELP` and a `# TYPE` line, then its samples, one per
 * line: `name{label="value",...} number`. Label values are escaped as the format asks (\\, \",
 * \n) and any other control byte becomes '?', so a telemetry source's name read from sysfs
 * cannot break a line; numbers are integers when integral, else the shortest decimal that reads
 * back to the same double, NaN and +Inf/-Inf as the format spells them; a histogram is written
 * as its cumulative `_bucket{le="..."}` lines ending with `le="+Inf"`, then `_sum` and `_count`.
 * What is exported, and under which names, is metrics.c's; names are the caller's to get right
 * (they are not checked). Nothing here parses. */
#ifndef QD_PROM_H
#define QD_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *text;  /* NUL-terminated; NULL until something is written */
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed: text is incomplete, take nothing */
} qd_prom;

typedef struct {
    const char *name;
    const char *value;
} qd_prom_label;

/* `# HELP name help` and `# TYPE name type` (counter, gauge, histogram). */
void qd_prom_family(qd_prom *p, const char *name, const char *type, const char *help);

/* One sample: name{labels} value (no braces without labels). */
void qd_prom_sample(qd_prom *p, const char *name, const qd_prom_label *labels, size_t n_labels, double value);

/* A histogram's samples for one label set: name_bucket{labels,le="b"} for each of the n_bounds
 * bounds (ascending) and +Inf, cumulative over counts (n_bounds + 1 per-bucket counts, the last
 * above every bound), then name_sum and name_count. */
void qd_prom_histogram(qd_prom *p, const char *name, const qd_prom_label *labels, size_t n_labels,
                       const double *bounds, const uint64_t *counts, size_t n_bounds, double sum);

/* Hands the text over (malloc'ed; the caller frees it) and its length; NULL when an allocation
 * failed (p's buffer is then freed). p is empty again afterwards. */
char *qd_prom_take(qd_prom *p, size_t *len);

#endif
