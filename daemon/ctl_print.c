/* ctl_print.c: qslmctl's human output of result replies (status, variants, classify, ...).
 *
 * Reads the reply's json-c body as PROTOCOL.md section 6 asks of a client: unknown fields are
 * ignored, and a field that is missing, null or of an unexpected type prints as "-" instead of
 * failing, so an older or newer daemon still gets a readable table. Plain text, no colours, no
 * terminal queries: the same reply always prints the same bytes. Not here: --json (the lines
 * are copied as they come) and errors (qslmctl.c). */
#include "ctl.h"

#include <inttypes.h>
#include <json.h>
#include <math.h>
#include <string.h>

#define DASH "-"

/* ---------------------------------------------------------------- reading fields */

/* o[key], or NULL when o is not an object or the member is missing or null. */
static json_object *member(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static const char *str_of(json_object *v)
{
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : DASH;
}

/* A string from the server with control bytes shown as '?', so a label cannot move the cursor
 * or forge lines on the user's terminal; cut to fit buf. */
static const char *printable(json_object *v, char *buf, size_t cap)
{
    const char *s = json_object_get_string(v);
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

static bool is_number(json_object *v)
{
    return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double));
}

/* A number as text: integers exactly, other numbers with printf's fmt (one double), "-" for
 * anything else. */
static const char *num_of(json_object *v, const char *fmt, char *buf, size_t cap)
{
    if (v && json_object_is_type(v, json_type_int)) {
        if (json_object_get_int64(v) == INT64_MAX) /* json-c saturates; the value is unsigned */
            snprintf(buf, cap, "%" PRIu64, json_object_get_uint64(v));
        else
            snprintf(buf, cap, "%" PRId64, json_object_get_int64(v));
    } else if (is_number(v)) {
        snprintf(buf, cap, fmt, json_object_get_double(v));
    } else {
        snprintf(buf, cap, DASH);
    }
    return buf;
}

/* A number scaled by 1/div and printed with fmt (a double), or "-". */
static const char *scaled_of(json_object *v, double div, const char *fmt, char *buf, size_t cap)
{
    if (!is_number(v))
        return snprintf(buf, cap, DASH), buf;
    snprintf(buf, cap, fmt, json_object_get_double(v) / div);
    return buf;
}

/* "yes", "no" or "-". */
static const char *bool_of(json_object *v)
{
    if (!v || !json_object_is_type(v, json_type_boolean))
        return DASH;
    return json_object_get_boolean(v) ? "yes" : "no";
}

/* "" for 1, "s" for any other count: "1 token", "2 tokens". */
static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

/* The same for a count read from a reply ("-" and non-integers take the plural). */
static const char *plural_of(json_object *v)
{
    return v && json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 1 ? "" : "s";
}

static bool is_true(json_object *v)
{
    return v && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

/* ---------------------------------------------------------------- budgets */

/* A byte count as a size string plus the exact count: "32M (33554432 bytes)"; a count that
 * is no whole number of KiB (a measured MemAvailable) shows in MiB instead. */
static const char *memory_of(json_object *v, char *buf, size_t cap)
{
    if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)
        return snprintf(buf, cap, DASH), buf;
    uint64_t bytes = json_object_get_uint64(v);
    char size[QI_BUDGET_TEXT_MAX];
    qi_format_memory(bytes, size, sizeof size);
    if (strspn(size, "0123456789") == strlen(size))
        snprintf(size, sizeof size, "%.1f MiB", (double)bytes / 1048576.0);
    snprintf(buf, cap, "%s (%" PRIu64 " byte%s)", size, bytes, plural(bytes));
    return buf;
}

/* Watts as a power string ("3.5W"), rounded to the microwatt as the protocol does. */
static const char *power_of(json_object *v, char *buf, size_t cap)
{
    double w = is_number(v) ? json_object_get_double(v) : NAN;
    if (!(w > 0 && w <= 1e6))
        return snprintf(buf, cap, DASH), buf;
    uint64_t uw = (uint64_t)llround(w * 1e6);
    if (uw == 0)
        uw = 1;
    return qi_format_power(uw, buf, cap);
}

/* ---------------------------------------------------------------- status */

static void print_active(json_object *body)
{
    json_object *active = member(body, "active");
    printf("active:    %s%s\n", str_of(member(active, "variant")),
           is_true(member(active, "pinned")) ? " (pinned)" : "");
    printf("reason:    %s\n", str_of(member(active, "reason")));
}

/* The bundle served: where (and the link it was reached by), when it was built, who signed it.
 * Absent from a daemon before issue 21: nothing is printed then. */
static void print_bundle(json_object *body)
{
    json_object *b = member(body, "bundle");
    if (!b)
        return;
    char p[1024], c[1024];
    json_object *path = member(b, "path"), *conf = member(b, "configured");
    const char *ps = path && json_object_is_type(path, json_type_string) ? printable(path, p, sizeof p) : DASH;
    const char *cs = conf && json_object_is_type(conf, json_type_string) ? printable(conf, c, sizeof c) : NULL;
    if (cs && strcmp(cs, ps) != 0)
        printf("bundle:    %s (configured as %s)\n", ps, cs);
    else
        printf("bundle:    %s\n", ps);
    printf("created:   %s\n", str_of(member(b, "created")));
    printf("signer:    %s\n", str_of(member(b, "signer")));
    printf("manifest:  sha256 %s\n", str_of(member(b, "manifest_sha256")));
}

static void print_budgets(json_object *body)
{
    char a[96], b[96];
    json_object *budget = member(body, "budget");
    json_object *mem = member(budget, "memory"), *pow = member(budget, "power");
    printf("memory:    %s, source %s\n", memory_of(member(mem, "bytes"), a, sizeof a),
           str_of(member(mem, "source")));
    printf("power:     %s, source %s\n", power_of(member(pow, "watts"), b, sizeof b),
           str_of(member(pow, "source")));
}

/* One reading: "value unit", or "unavailable: note"; a note on an available value follows it
 * in parentheses. */
static void print_reading(json_object *r, int width)
{
    char buf[64];
    json_object *value = member(r, "value"), *note = member(r, "note");
    printf("  %-*s  ", width, str_of(member(r, "source")));
    if (!is_number(value)) {
        printf("unavailable%s%s\n", note ? ": " : "", note ? str_of(note) : "");
        return;
    }
    const char *unit = str_of(member(r, "unit"));
    printf("%s%s%s", num_of(value, "%.6g", buf, sizeof buf), unit[0] ? " " : "", unit); /* "" for a count */
    if (note)
        printf(" (%s)", str_of(note));
    putchar('\n');
}

static void print_readings(json_object *body)
{
    json_object *list = member(body, "readings");
    if (!list || !json_object_is_type(list, json_type_array)) {
        puts("readings:  -");
        return;
    }
    size_t n = json_object_array_length(list);
    int width = 0;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(str_of(member(json_object_array_get_idx(list, i), "source")));
        width = len > width ? len : width;
    }
    json_object *age = member(body, "readings_age_ms"); /* qslmd: as of its last policy tick */
    char a[32];
    if (n && age)
        printf("readings:  (%s ms ago)\n", num_of(age, "%g", a, sizeof a));
    else
        puts(n ? "readings:" : "readings:  none");
    for (size_t i = 0; i < n; i++)
        print_reading(json_object_array_get_idx(list, i), width);
}

static void print_queue_counters(json_object *body)
{
    /* each counter's key, its word for a count of 1, and the ending for other counts */
    static const struct {
        const char *key, *word, *plural;
    } counters[] = {{"connections", "connection", "s"}, {"requests", "request", "s"},
                    {"tokens", "token", "s"},           {"errors", "error", "s"},
                    {"cancelled", "cancelled", ""},     {"disconnected", "disconnected", ""},
                    {"switches", "switch", "es"}};
    char a[32], b[32], c[32];
    json_object *q = member(body, "queue"), *cnt = member(body, "counters");
    printf("queue:     %s waiting, %s active, limit %s\n", num_of(member(q, "waiting"), "%g", a, 32),
           num_of(member(q, "active"), "%g", b, 32), num_of(member(q, "limit"), "%g", c, 32));
    fputs("counters: ", stdout);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        json_object *v = member(cnt, counters[i].key);
        printf("%s %s %s%s", i ? "," : "", num_of(v, "%g", a, 32), counters[i].word,
               *plural_of(v) ? counters[i].plural : "");
    }
    putchar('\n');
}

static void print_status(json_object *body)
{
    char buf[32];
    print_active(body);
    print_bundle(body);
    print_budgets(body);
    print_readings(body);
    print_queue_counters(body);
    printf("uptime:    %s s\n", num_of(member(body, "uptime_s"), "%.1f", buf, sizeof buf));
}

/* ---------------------------------------------------------------- variants */

/* One row of the variants table; the name column is `width` wide. */
static void print_variant(json_object *v, int width)
{
    char mib[32], bits[32], ppl[32], acc[32], tps[32], mj[32];
    json_object *m = member(v, "metrics");
    bool active = is_true(member(v, "active")), pinned = is_true(member(v, "pinned"));
    printf("%-*s %9s %7s %9s %9s %9s %9s %9s", width, str_of(member(v, "name")),
           scaled_of(member(v, "footprint_bytes"), 1048576.0, "%.2f", mib, sizeof mib),
           scaled_of(member(v, "bits_per_weight"), 1, "%.2f", bits, sizeof bits),
           scaled_of(member(m, "ppl_test"), 1, "%.2f", ppl, sizeof ppl),
           scaled_of(member(m, "accuracy"), 0.01, "%.1f%%", acc, sizeof acc),
           scaled_of(member(m, "tokens_per_s"), 1, "%.0f", tps, sizeof tps),
           scaled_of(member(m, "energy_pj_per_token"), 1e9, "%.4g", mj, sizeof mj),
           bool_of(member(v, "verified")));
    if (active || pinned)
        printf("  %s%s%s", active ? "active" : "", active && pinned ? "," : "",
               pinned ? "pinned" : "");
    putchar('\n');
}

/* "8M tasks: sentiment (negative, positive); topic (...)", under the table, for a variant that
 * has classifier heads. */
static void print_variant_tasks(json_object *v, int width)
{
    json_object *tasks = member(v, "tasks");
    size_t n = tasks && json_object_is_type(tasks, json_type_array) ? json_object_array_length(tasks) : 0;
    if (n == 0)
        return;
    char buf[256];
    printf("%-*s tasks: ", width, str_of(member(v, "name")));
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tasks, i), *labels = member(t, "labels");
        json_object *name = member(t, "name");
        printf("%s%s (", i ? "; " : "", name && json_object_is_type(name, json_type_string)
                                            ? printable(name, buf, sizeof buf) : DASH);
        size_t k = labels && json_object_is_type(labels, json_type_array) ? json_object_array_length(labels) : 0;
        for (size_t j = 0; j < k; j++) {
            json_object *l = json_object_array_get_idx(labels, j);
            printf("%s%s", j ? ", " : "",
                   json_object_is_type(l, json_type_string) ? printable(l, buf, sizeof buf) : DASH);
        }
        putchar(')');
    }
    putchar('\n');
}

static void print_variants(json_object *body)
{
    json_object *list = member(body, "variants");
    size_t n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list)
                                                                   : 0;
    int width = 4; /* "NAME" */
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(str_of(member(json_object_array_get_idx(list, i), "name")));
        width = len > width ? len : width;
    }
    printf("%-*s %9s %7s %9s %9s %9s %9s %9s\n", width, "NAME", "MiB", "BITS/W", "PPL_TEST",
           "ACCURACY", "TOKENS/S", "mJ/TOKEN", "VERIFIED");
    for (size_t i = 0; i < n; i++)
        print_variant(json_object_array_get_idx(list, i), width);
    for (size_t i = 0; i < n; i++)
        print_variant_tasks(json_object_array_get_idx(list, i), width);
}

/* ---------------------------------------------------------------- the other ops */

/* "positive 0.88": the label's name and its probability, one line per text in request order.
 * A reply from a daemon older than named heads has an integer label: its index is printed. */
static void print_classify(json_object *body)
{
    json_object *list = member(body, "results");
    size_t n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list)
                                                                   : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(list, i), *label = member(r, "label");
        json_object *index = member(r, "label_index");
        json_object *probs = member(r, "probs"), *p = NULL;
        char lb[256], pb[32];
        if (!index && label && json_object_is_type(label, json_type_int))
            index = label;
        if (index && json_object_is_type(index, json_type_int) && probs &&
            json_object_is_type(probs, json_type_array) && json_object_get_int64(index) >= 0 &&
            (size_t)json_object_get_int64(index) < json_object_array_length(probs))
            p = json_object_array_get_idx(probs, (size_t)json_object_get_int64(index));
        const char *name = label && json_object_is_type(label, json_type_string) ? printable(label, lb, sizeof lb)
                                                                                  : num_of(label, "%g", lb, sizeof lb);
        printf("%s %s\n", name, scaled_of(p, 1, "%.2f", pb, sizeof pb));
    }
}

static void print_set_budget(json_object *body)
{
    char a[96], b[96];
    json_object *mem = member(body, "memory_bytes"), *pow = member(body, "power_w");
    printf("budget: memory %s, power %s\n", mem ? memory_of(mem, a, sizeof a) : "auto",
           pow ? power_of(pow, b, sizeof b) : "auto");
}

/* The text as the daemon wrote it (for a scraper), with control bytes other than '\n' shown as
 * '?' as in the tables (the daemon writes none); a reply without it prints nothing. */
static void print_metrics(json_object *body)
{
    json_object *text = member(body, "text");
    if (!text || !json_object_is_type(text, json_type_string))
        return;
    const char *s = json_object_get_string(text);
    for (size_t i = 0, n = (size_t)json_object_get_string_len(text); i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        putchar((c < 0x20 && c != '\n') || c == 0x7f ? '?' : c);
    }
}

void ctl_print_result(qi_op op, const qi_reply *r)
{
    char buf[32];
    json_object *body = r->body;
    switch (op) {
    case QI_OP_STATUS: print_status(body); break;
    case QI_OP_VARIANTS: print_variants(body); break;
    case QI_OP_CLASSIFY: print_classify(body); break;
    case QI_OP_SET_BUDGET: print_set_budget(body); break;
    case QI_OP_PIN: printf("pinned %s\n", str_of(member(body, "variant"))); break;
    case QI_OP_UNPIN: puts("unpinned: the policy chooses the variant"); break;
    case QI_OP_RELOAD:
        printf("reloaded: %s variant%s, active %s\n",
               num_of(member(body, "variants"), "%g", buf, sizeof buf),
               plural_of(member(body, "variants")), str_of(member(body, "active")));
        break;
    case QI_OP_METRICS: print_metrics(body); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- generation */

void ctl_print_gen_stats(FILE *f, const qi_gen_stats *s)
{
    fprintf(f, "qslmctl: %" PRIu32 " token%s; ", s->tokens, plural(s->tokens));
    if (isnan(s->tokens_per_s))
        fputs("- tokens/s; ", f);
    else
        fprintf(f, "%.1f tokens/s; ", s->tokens_per_s);
    if (isnan(s->ms))
        fputs("- ms; ", f);
    else
        fprintf(f, "%.1f ms; ", s->ms);
    fprintf(f, "stop: %s; variants: ", qi_stop_reason_name(s->stop_reason));
    if (s->n_spans == 0)
        fputs(DASH, f);
    for (size_t i = 0; i < s->n_spans; i++)
        fprintf(f, "%s%s [%" PRIu32 ",%" PRIu32 ")", i ? ", " : "", s->spans[i].variant,
                s->spans[i].from, s->spans[i].to);
    fprintf(f, "; switches: %" PRIu32, s->switches);
    if (s->switch_wait_ms > 0)
        fprintf(f, " (waited %.1f ms for one to load)", s->switch_wait_ms);
    fputc('\n', f);
}
