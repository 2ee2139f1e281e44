/* prom_check.c: the strict Prometheus text reader of prom_check.h. */
#include "prom_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 16

typedef struct {
    char name[128];
    char type[16];
    bool has_help, has_type, ended; /* ended: its group of samples is over */
} family;

/* One label set of a histogram (its labels without le), as the buckets come. */
typedef struct {
    char family[128];
    char key[512];
    double last_le;
    double last_count;
    bool has_bucket, has_inf, has_sum, has_count;
    double inf_count, count;
} hist_group;

typedef struct {
    pc_doc *doc;
    family *fams;
    size_t n_fams, cap_fams;
    hist_group *groups;
    size_t n_groups, cap_groups;
    int current; /* the family whose samples came last (-1: none) */
    int line;
    const char *text; /* the line being read, for messages */
    size_t text_len;
} reader;

static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(reader *r, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(r->doc->err, sizeof r->doc->err, "line %d: %s: %.*s", r->line, what,
             (int)(r->text_len > 160 ? 160 : r->text_len), r->text);
    return -1;
}

static bool name_start(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool name_char(char c, bool colon)
{
    return name_start(c, colon) || (c >= '0' && c <= '9');
}

/* A metric name (colon) or label name at *p, copied into out; advances *p. */
static bool read_name(const char **p, const char *end, bool colon, char *out, size_t cap)
{
    const char *s = *p;
    if (s >= end || !name_start(*s, colon))
        return false;
    size_t n = 0;
    while (s + n < end && name_char(s[n], colon))
        n++;
    if (n >= cap)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return true;
}

/* A Go float: [+-]digits[.digits][(e|E)[+-]digits], [+-].digits..., NaN, +Inf, -Inf. */
static bool read_value(const char *s, size_t n, double *v)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "NaN") == 0) {
        *v = NAN;
        return true;
    }
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "-Inf") == 0) {
        *v = buf[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    size_t i = buf[0] == '+' || buf[0] == '-';
    size_t digits = 0;
    while (buf[i] >= '0' && buf[i] <= '9')
        i++, digits++;
    if (buf[i] == '.') {
        i++;
        while (buf[i] >= '0' && buf[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return false;
    if (buf[i] == 'e' || buf[i] == 'E') {
        i++;
        i += buf[i] == '+' || buf[i] == '-';
        size_t e = 0;
        while (buf[i] >= '0' && buf[i] <= '9')
            i++, e++;
        if (e == 0)
            return false;
    }
    if (buf[i] != '\0')
        return false;
    *v = strtod(buf, NULL);
    return true;
}

static family *find_family(reader *r, const char *name)
{
    for (size_t i = 0; i < r->n_fams; i++)
        if (strcmp(r->fams[i].name, name) == 0)
            return &r->fams[i];
    return NULL;
}

static family *add_family(reader *r, const char *name)
{
    family *f = find_family(r, name);
    if (f)
        return f;
    if (r->n_fams == r->cap_fams) {
        r->cap_fams = r->cap_fams ? 2 * r->cap_fams : 64;
        r->fams = realloc(r->fams, r->cap_fams * sizeof *r->fams);
        if (!r->fams)
            abort();
    }
    f = &r->fams[r->n_fams++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    r->doc->n_families = r->n_fams;
    return f;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* `# HELP name text` or `# TYPE name type`. */
static int comment(reader *r, const char *p, const char *end)
{
    bool help = end - p > 7 && memcmp(p, "# HELP ", 7) == 0;
    bool type = end - p > 7 && memcmp(p, "# TYPE ", 7) == 0;
    if (!help && !type)
        return fail(r, "a comment that is neither # HELP nor # TYPE");
    p += 7;
    char name[128];
    if (!read_name(&p, end, true, name, sizeof name))
        return fail(r, "a bad metric name");
    if (p >= end || *p != ' ')
        return fail(r, "no space after the name");
    p++;
    family *f = add_family(r, name);
    if (f->ended || (r->current >= 0 && &r->fams[r->current] == f))
        return fail(r, "%s after the family's samples", help ? "HELP" : "TYPE");
    if (r->current >= 0) /* another family's lines: the one before is over */
        r->fams[r->current].ended = true;
    r->current = -1;
    if (help) {
        if (f->has_help)
            return fail(r, "a second HELP for %s", name);
        f->has_help = true;
        for (; p < end; p++)
            if (*p == '\\' && (p + 1 >= end || (p[1] != '\\' && p[1] != 'n')))
                return fail(r, "a HELP text escape other than \\\\ and \\n");
            else if (*p == '\\')
                p++;
        return 0;
    }
    if (f->has_type)
        return fail(r, "a second TYPE for %s", name);
    size_t n = (size_t)(end - p);
    if (!((n == 7 && memcmp(p, "counter", 7) == 0) || (n == 5 && memcmp(p, "gauge", 5) == 0) ||
          (n == 9 && memcmp(p, "histogram", 9) == 0)))
        return fail(r, "a type other than counter, gauge or histogram");
    memcpy(f->type, p, n);
    f->type[n] = '\0';
    f->has_type = true;
    if (strcmp(f->type, "counter") == 0 && !ends_with(name, "_total"))
        return fail(r, "a counter whose name does not end in _total");
    return 0;
}

/* The family a sample belongs to: its own name's, or a histogram's for _bucket, _sum, _count. */
static family *family_of(reader *r, const char *name, const char **suffix)
{
    static const char *const parts[] = {"_bucket", "_sum", "_count"};
    *suffix = "";
    for (size_t i = 0; i < 3; i++) {
        if (!ends_with(name, parts[i]))
            continue;
        char base[128];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(parts[i])), name);
        family *f = find_family(r, base);
        if (f && strcmp(f->type, "histogram") == 0) {
            *suffix = parts[i];
            return f;
        }
    }
    return find_family(r, name);
}

static hist_group *group_of(reader *r, const char *fam, const char *key)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].family, fam) == 0 && strcmp(r->groups[i].key, key) == 0)
            return &r->groups[i];
    if (r->n_groups == r->cap_groups) {
        r->cap_groups = r->cap_groups ? 2 * r->cap_groups : 64;
        r->groups = realloc(r->groups, r->cap_groups * sizeof *r->groups);
        if (!r->groups)
            abort();
    }
    hist_group *g = &r->groups[r->n_groups++];
    memset(g, 0, sizeof *g);
    snprintf(g->family, sizeof g->family, "%s", fam);
    snprintf(g->key, sizeof g->key, "%s", key);
    g->last_le = -INFINITY;
    return g;
}

/* The histogram rules for one sample of family f. */
static int histogram_sample(reader *r, const family *f, const char *suffix, const char *key, const char *le,
                            double v)
{
    hist_group *g = group_of(r, f->name, key);
    if (strcmp(suffix, "_bucket") == 0) {
        double b;
        if (!le)
            return fail(r, "a bucket without le");
        if (g->has_sum || g->has_count || g->has_inf)
            return fail(r, "a bucket after the +Inf bucket, _sum or _count of its label set");
        if (!read_value(le, strlen(le), &b) || isnan(b))
            return fail(r, "le is not a number");
        if (!(b > g->last_le))
            return fail(r, "le does not increase");
        if (v != floor(v) || v < 0 || (g->has_bucket && v < g->last_count))
            return fail(r, "bucket counts are not cumulative whole numbers");
        g->has_bucket = true;
        g->last_le = b;
        g->last_count = v;
        if (isinf(b)) {
            g->has_inf = true;
            g->inf_count = v;
        }
        return 0;
    }
    if (le)
        return fail(r, "le on %s", suffix);
    if (!g->has_inf)
        return fail(r, "%s before the +Inf bucket", suffix);
    if (strcmp(suffix, "_sum") == 0) {
        if (g->has_sum)
            return fail(r, "a second _sum");
        g->has_sum = true;
        return 0;
    }
    if (g->has_count)
        return fail(r, "a second _count");
    g->has_count = true;
    g->count = v;
    if (v != g->inf_count)
        return fail(r, "_count %g is not the +Inf bucket's %g", v, g->inf_count);
    return 0;
}

/* Reads `{k="v",...}` at *p: the text between the braces into raw, it without le into key,
 * and le's value into le (NULL when absent). */
static int read_labels(reader *r, const char **pp, const char *end, char *raw, size_t raw_cap, char *key,
                       size_t key_cap, char *le, size_t le_cap, bool *has_le)
{
    const char *p = *pp + 1, *start = p;
    char names[MAX_LABELS][64];
    size_t n = 0, key_len = 0;
    *has_le = false;
    key[0] = '\0';
    for (;;) {
        if (n == MAX_LABELS)
            return fail(r, "too many labels");
        const char *item = p;
        if (!read_name(&p, end, false, names[n], sizeof names[n]))
            return fail(r, "a bad label name");
        if (strncmp(names[n], "__", 2) == 0)
            return fail(r, "a label name starting with __");
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], names[n]) == 0)
                return fail(r, "label %s twice", names[n]);
        if (end - p < 2 || p[0] != '=' || p[1] != '"')
            return fail(r, "a label without =\"value\"");
        p += 2;
        const char *value = p;
        while (p < end && *p != '"') {
            if (*p == '\n' || (unsigned char)*p < 0x20)
                return fail(r, "a control character in a label value");
            if (*p == '\\') {
                if (p + 1 >= end || (p[1] != '\\' && p[1] != '"' && p[1] != 'n'))
                    return fail(r, "a label value escape other than \\\\, \\\" and \\n");
                p++;
            }
            p++;
        }
        if (p >= end)
            return fail(r, "an unterminated label value");
        if (strcmp(names[n], "le") == 0) {
            *has_le = true;
            snprintf(le, le_cap, "%.*s", (int)(p - value), value);
        } else {
            key_len += (size_t)snprintf(key + key_len, key_cap - key_len, "%s%.*s", key_len ? "," : "",
                                        (int)(p + 1 - item), item);
            if (key_len >= key_cap)
                return fail(r, "labels too long");
        }
        p++;
        n++;
        if (p < end && *p == '}')
            break;
        if (p >= end || *p != ',' || p + 1 >= end || p[1] == '}')
            return fail(r, "labels not separated by one comma, or not closed by }");
        p++;
    }
    if ((size_t)(p - start) >= raw_cap)
        return fail(r, "labels too long");
    snprintf(raw, raw_cap, "%.*s", (int)(p - start), start);
    *pp = p + 1;
    return 0;
}

static int sample(reader *r, const char *p, const char *end)
{
    char name[128], raw[1024] = "", key[1024] = "", le[64];
    bool has_le = false;
    if (!read_name(&p, end, true, name, sizeof name))
        return fail(r, "a bad metric name");
    if (p < end && *p == '{' &&
        read_labels(r, &p, end, raw, sizeof raw, key, sizeof key, le, sizeof le, &has_le))
        return -1;
    if (p >= end || *p != ' ')
        return fail(r, "no single space before the value");
    p++;
    double v;
    if (!read_value(p, (size_t)(end - p), &v))
        return fail(r, "the value is not a number (or a timestamp follows)");
    const char *suffix;
    family *f = family_of(r, name, &suffix);
    if (!f || !f->has_type)
        return fail(r, "a sample of a family not TYPE-declared before");
    if (f->ended)
        return fail(r, "family %s's samples are not one group", f->name);
    int idx = (int)(f - r->fams);
    if (r->current >= 0 && r->current != idx)
        r->fams[r->current].ended = true;
    r->current = idx;
    double dup;
    if (pc_get(r->doc, name, raw, &dup))
        return fail(r, "the same sample twice");
    if (strcmp(f->type, "counter") == 0 && !(v >= 0))
        return fail(r, "a counter below 0 or NaN");
    if (strcmp(f->type, "histogram") == 0) {
        if (!*suffix)
            return fail(r, "a histogram sample that is not _bucket, _sum or _count");
        if (histogram_sample(r, f, suffix, key, has_le ? le : NULL, v))
            return -1;
    } else if (has_le) {
        /* le is only special in histograms; allowed elsewhere, but not written by qslmd */
        return fail(r, "le outside a histogram");
    }
    pc_doc *d = r->doc;
    pc_sample *s = realloc(d->samples, (d->n + 1) * sizeof *s);
    if (!s)
        abort();
    d->samples = s;
    d->samples[d->n++] = (pc_sample){strdup(name), strdup(raw), v};
    return 0;
}

int pc_parse(const char *text, size_t len, pc_doc *doc)
{
    memset(doc, 0, sizeof *doc);
    reader r = {.doc = doc, .current = -1};
    int rc = 0;
    if (len > 0 && text[len - 1] != '\n') {
        r.text = "";
        rc = fail(&r, "the text does not end in a newline");
    }
    for (size_t off = 0; !rc && off < len;) {
        const char *nl = memchr(text + off, '\n', len - off);
        const char *line = text + off, *end = nl ? nl : text + len;
        r.line++;
        r.text = line;
        r.text_len = (size_t)(end - line);
        if (memchr(line, '\0', r.text_len) || memchr(line, '\r', r.text_len))
            rc = fail(&r, "a NUL or CR");
        else if (end == line)
            rc = fail(&r, "a blank line");
        else if (*line == '#')
            rc = comment(&r, line, end);
        else
            rc = sample(&r, line, end);
        off = (size_t)(end - text) + 1;
    }
    for (size_t i = 0; !rc && i < r.n_groups; i++) {
        hist_group *g = &r.groups[i];
        if (!g->has_inf || !g->has_sum || !g->has_count) {
            r.text = g->key;
            r.text_len = strlen(g->key);
            r.line = 0;
            rc = fail(&r, "histogram %s lacks its +Inf bucket, _sum or _count", g->family);
        }
    }
    free(r.fams);
    free(r.groups);
    return rc;
}

void pc_free(pc_doc *doc)
{
    for (size_t i = 0; i < doc->n; i++) {
        free(doc->samples[i].name);
        free(doc->samples[i].labels);
    }
    free(doc->samples);
    memset(doc, 0, sizeof *doc);
}

bool pc_get(const pc_doc *doc, const char *name, const char *labels, double *value)
{
    for (size_t i = 0; i < doc->n; i++)
        if (strcmp(doc->samples[i].name, name) == 0 && strcmp(doc->samples[i].labels, labels) == 0) {
            *value = doc->samples[i].value;
            return true;
        }
    return false;
}

double pc_sum(const pc_doc *doc, const char *name, size_t *n)
{
    double sum = 0;
    size_t k = 0;
    for (size_t i = 0; i < doc->n; i++)
        if (strcmp(doc->samples[i].name, name) == 0) {
            sum += doc->samples[i].value;
            k++;
        }
    if (n)
        *n = k;
    return sum;
}

bool pc_label(const pc_sample *s, const char *key, char *buf, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = s->labels; *p;) {
        const char *eq = strchr(p, '=');
        if (!eq)
            return false;
        bool match = (size_t)(eq - p) == klen && strncmp(p, key, klen) == 0;
        size_t o = 0;
        for (p = eq + 2; *p && *p != '"'; p++) {
            char c = *p;
            if (c == '\\') {
                p++;
                c = *p == 'n' ? '\n' : *p;
            }
            if (match && o + 1 < cap)
                buf[o++] = c;
        }
        if (match) {
            buf[o] = '\0';
            return true;
        }
        p += *p == '"';
        p += *p == ',';
    }
    return false;
}
