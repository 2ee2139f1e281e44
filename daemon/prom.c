/* prom.c: the Prometheus text format's syntax (prom.h). */
#include "prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"

/* Appends n bytes; on a failed allocation marks p failed and drops everything after. */
static void put(qd_prom *p, const char *s, size_t n)
{
    if (p->failed)
        return;
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 16384;
        while (cap < p->len + n + 1)
            cap *= 2;
        char *t = realloc(p->text, cap);
        if (!t) {
            p->failed = true;
            return;
        }
        p->text = t;
        p->cap = cap;
    }
    memcpy(p->text + p->len, s, n);
    p->len += n;
    p->text[p->len] = '\0';
}

static void puts_(qd_prom *p, const char *s)
{
    put(p, s, strlen(s));
}

/* A HELP text: backslash and newline escaped (the format's two escapes there). */
static void put_help(qd_prom *p, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            puts_(p, "\\\\");
        else if (*s == '\n')
            puts_(p, "\\n");
        else
            put(p, s, 1);
    }
}

/* A label value: backslash, quote and newline escaped; other control bytes become '?'. */
static void put_label_value(qd_prom *p, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            puts_(p, "\\\\");
        else if (c == '"')
            puts_(p, "\\\"");
        else if (c == '\n')
            puts_(p, "\\n");
        else if (c < 0x20 || c == 0x7f)
            puts_(p, "?");
        else
            put(p, s, 1);
    }
}

/* Integers exactly (a counter of 2^53 and more too, as far as a double holds it), other values
 * in the shortest form that reads back the same. */
static void put_number(qd_prom *p, double v)
{
    char buf[QI_NUMBER_TEXT_MAX];
    if (isnan(v))
        snprintf(buf, sizeof buf, "NaN");
    else if (isinf(v))
        snprintf(buf, sizeof buf, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e18)
        snprintf(buf, sizeof buf, "%.0f", v);
    else
        qi_number_text(v, buf);
    puts_(p, buf);
}

void qd_prom_family(qd_prom *p, const char *name, const char *type, const char *help)
{
    puts_(p, "# HELP ");
    puts_(p, name);
    puts_(p, " ");
    put_help(p, help);
    puts_(p, "\n# TYPE ");
    puts_(p, name);
    puts_(p, " ");
    puts_(p, type);
    puts_(p, "\n");
}

/* name{labels[,le="le"]} value; le may be NULL. */
static void sample(qd_prom *p, const char *name, const char *suffix, const qd_prom_label *labels, size_t n,
                   const char *le, double value)
{
    puts_(p, name);
    puts_(p, suffix);
    if (n || le) {
        puts_(p, "{");
        for (size_t i = 0; i < n; i++) {
            puts_(p, i ? "," : "");
            puts_(p, labels[i].name);
            puts_(p, "=\"");
            put_label_value(p, labels[i].value);
            puts_(p, "\"");
        }
        if (le) {
            puts_(p, n ? ",le=\"" : "le=\"");
            puts_(p, le);
            puts_(p, "\"");
        }
        puts_(p, "}");
    }
    puts_(p, " ");
    put_number(p, value);
    puts_(p, "\n");
}

void qd_prom_sample(qd_prom *p, const char *name, const qd_prom_label *labels, size_t n_labels, double value)
{
    sample(p, name, "", labels, n_labels, NULL, value);
}

void qd_prom_histogram(qd_prom *p, const char *name, const qd_prom_label *labels, size_t n_labels,
                       const double *bounds, const uint64_t *counts, size_t n_bounds, double sum)
{
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= n_bounds; b++) {
        char le[QI_NUMBER_TEXT_MAX];
        if (b < n_bounds)
            qi_number_text(bounds[b], le);
        else
            snprintf(le, sizeof le, "+Inf");
        cumulative += counts[b];
        sample(p, name, "_bucket", labels, n_labels, le, (double)cumulative);
    }
    sample(p, name, "_sum", labels, n_labels, NULL, sum);
    sample(p, name, "_count", labels, n_labels, NULL, (double)cumulative);
}

char *qd_prom_take(qd_prom *p, size_t *len)
{
    char *t = p->failed ? NULL : p->text;
    *len = t ? p->len : 0;
    if (!t)
        free(p->text);
    if (!t && !p->failed) /* nothing was written: an empty text */
        t = calloc(1, 1);
    memset(p, 0, sizeof *p);
    return t;
}
