/* prom_check.h: a strict reader of the Prometheus text exposition format (0.0.4), for tests of
 * what qslmd writes (daemon/prom.c, daemon/metrics.c). Test code: the daemon parses none of it.
 *
 * Stricter than Prometheus, so that anything it accepts every scraper accepts:
 *   - every line ends in '\n' and is `# HELP name text`, `# TYPE name type` or a sample
 *     `name value` / `name{label="value",...} value`: no other comment, blank line, timestamp,
 *     space inside the braces or trailing comma;
 *   - names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not starting
 *     with "__", no label twice in a sample); label values are quoted with only \\, \" and \n
 *     escaped, HELP texts with only \\ and \n;
 *   - values are Go floats: decimal, optionally with an exponent, or NaN, +Inf, -Inf;
 *   - a family is TYPE-declared (counter, gauge or histogram) once, before its first sample, HELP
 *     at most once; its samples are one contiguous group; no sample twice;
 *   - counters' names end in _total and their values are >= 0;
 *   - a histogram's samples are name_bucket (with an le label), name_sum and name_count; per
 *     label set, the buckets' le values increase and end with +Inf, their counts are cumulative
 *     (never decrease) and the +Inf bucket equals name_count. */
#ifndef PROM_CHECK_H
#define PROM_CHECK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *name;   /* the sample's name (name_bucket etc. for a histogram) */
    char *labels; /* as written between the braces, "" without: `op="generate",le="0.5"` */
    double value;
} pc_sample;

typedef struct {
    pc_sample *samples;
    size_t n;
    size_t n_families;
    char err[512]; /* "line N: what is wrong: the line" after a failure */
} pc_doc;

/* Parses text[0..len). 0 when the whole text is valid; -1 with doc->err otherwise. The samples
 * read are kept either way (pc_free). */
int pc_parse(const char *text, size_t len, pc_doc *doc);
void pc_free(pc_doc *doc);

/* The value of the sample name{labels} (labels as written, "" for none); false if absent. */
bool pc_get(const pc_doc *doc, const char *name, const char *labels, double *value);

/* The sum of every sample called name, and how many there are (n may be NULL). */
double pc_sum(const pc_doc *doc, const char *name, size_t *n);

/* The unescaped value of label key of s into buf (cap bytes); false if s has no such label. */
bool pc_label(const pc_sample *s, const char *key, char *buf, size_t cap);

#endif
