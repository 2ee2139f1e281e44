/* bundle.c: reading and validating a bundle manifest (runtime/BUNDLE.md) with json-c.
 *
 * json-c does the parsing (strict mode, UTF-8 checked, nothing after the closing brace); this
 * file only walks the tree, checking every key against the schema as it copies it into a
 * qr_bundle. Every refusal goes through fail_at, so each message reads
 * "<manifest>: <JSON path>: <what is wrong>". Not here: writing (bundle_write.c), hashing the
 * model files (bundle_verify.c), signatures (bundle_sign.c). */
#include "bundle.h"

#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "tensor_types.h"

#define PATH_MAX_LEN 320 /* a JSON path in a message: "variants[1023].setting[\"<255 bytes>\"]" */

typedef struct {
    const char *name; /* the manifest, for messages */
    qr_error *err;
} ctx;

__attribute__((format(printf, 3, 4)))
static qr_status fail_at(const ctx *c, const char *path, const char *fmt, ...)
{
    char detail[QR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return qr_fail(c->err, QR_ERR_FORMAT, "%s: %s: %s", c->name, path, detail);
}

/* A key as it may appear in a message: at most 255 bytes, non-printable bytes as '?', so a
 * hostile key cannot forge or garble the line. */
static void printable(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[i] = '\0';
}

/* "<parent>.<key>", or "<key>" at the top level. */
static void child_path(char *out, const char *parent, const char *key)
{
    char k[256];
    printable(key, k, sizeof k);
    snprintf(out, PATH_MAX_LEN, "%s%s%s", parent, parent[0] ? "." : "", k);
}

/* ---------------------------------------------------------------- typed fields */

/* Refuses any key of obj not in `known` (a NULL-terminated list). */
static qr_status check_keys(const ctx *c, json_object *obj, const char *path,
                            const char *const *known)
{
    json_object_object_foreach(obj, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            char p[PATH_MAX_LEN];
            child_path(p, path, key);
            return fail_at(c, p, "unknown key");
        }
    }
    return QR_OK;
}

/* The member `key` of obj; refuses its absence. JSON null is present, with *val NULL. */
static qr_status member(const ctx *c, json_object *obj, const char *path, const char *key,
                        json_object **val, char *p)
{
    child_path(p, path, key);
    if (!json_object_object_get_ex(obj, key, val))
        return fail_at(c, p, "missing");
    return QR_OK;
}

static qr_status get_object(const ctx *c, json_object *obj, const char *path, const char *key,
                            json_object **out, char *p)
{
    qr_status st = member(c, obj, path, key, out, p);
    if (st == QR_OK && !json_object_is_type(*out, json_type_object))
        return fail_at(c, p, "must be an object");
    return st;
}

static qr_status get_array(const ctx *c, json_object *obj, const char *path, const char *key,
                           json_object **out, char *p)
{
    qr_status st = member(c, obj, path, key, out, p);
    if (st == QR_OK && !json_object_is_type(*out, json_type_array))
        return fail_at(c, p, "must be an array");
    return st;
}

/* A JSON string as a C string: refuses other types, the empty string and embedded NULs. */
static qr_status string_value(const ctx *c, json_object *v, const char *p, const char **out)
{
    if (!json_object_is_type(v, json_type_string))
        return fail_at(c, p, "must be a string");
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len == 0)
        return fail_at(c, p, "must not be empty");
    if (strlen(s) != len)
        return fail_at(c, p, "must not contain a NUL character");
    *out = s;
    return QR_OK;
}

/* A string member, copied into *out (malloc'ed). */
static qr_status get_string(const ctx *c, json_object *obj, const char *path, const char *key,
                            char **out)
{
    char p[PATH_MAX_LEN];
    json_object *v;
    const char *s;
    qr_status st = member(c, obj, path, key, &v, p);
    if (st == QR_OK)
        st = string_value(c, v, p, &s);
    if (st != QR_OK)
        return st;
    if (!(*out = strdup(s)))
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    return QR_OK;
}

static qr_status get_sha256(const ctx *c, json_object *obj, const char *path, const char *key,
                            char out[QR_SHA256_HEX_SIZE])
{
    char p[PATH_MAX_LEN];
    json_object *v;
    const char *s;
    qr_status st = member(c, obj, path, key, &v, p);
    if (st == QR_OK)
        st = string_value(c, v, p, &s);
    if (st != QR_OK)
        return st;
    if (!qr_sha256_from_hex(s, NULL))
        return fail_at(c, p, "must be a SHA-256: 64 lowercase hex digits");
    memcpy(out, s, QR_SHA256_HEX_SIZE);
    return QR_OK;
}

/* An integer 0..2^63-1. json-c clamps larger integers to 2^64-1 without telling, so anything
 * beyond the int64 range is refused rather than trusted. */
static qr_status u64_value(const ctx *c, json_object *v, const char *p, uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int))
        return fail_at(c, p, "must be a whole number of bytes (an integer)");
    if (json_object_get_int64(v) < 0)
        return fail_at(c, p, "must not be negative");
    uint64_t u = json_object_get_uint64(v);
    if (u > (uint64_t)INT64_MAX)
        return fail_at(c, p, "too large (the limit is 2^63-1)");
    *out = u;
    return QR_OK;
}

static qr_status get_u64(const ctx *c, json_object *obj, const char *path, const char *key,
                         uint64_t *out)
{
    char p[PATH_MAX_LEN];
    json_object *v;
    qr_status st = member(c, obj, path, key, &v, p);
    return st ? st : u64_value(c, v, p, out);
}

/* A finite number in [lo, hi] (integers are numbers too). `range` words the bounds. */
static qr_status number_value(const ctx *c, json_object *v, const char *p, double lo, double hi,
                              const char *range, double *out)
{
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return fail_at(c, p, "must be a number");
    /* An integer literal beyond 64 bits is clamped by json-c to one of these without a word. */
    if (json_object_is_type(v, json_type_int) &&
        (json_object_get_uint64(v) == UINT64_MAX || json_object_get_int64(v) == INT64_MIN))
        return fail_at(c, p, "integer out of the 64-bit range (write it with an exponent)");
    double d = json_object_get_double(v);
    if (!isfinite(d))
        return fail_at(c, p, "must be a finite number");
    if (!(d >= lo && d <= hi))
        return fail_at(c, p, "must be %s, not %g", range, d);
    *out = d == 0.0 ? 0.0 : d; /* -0 is 0: one value, one text when written back */
    return QR_OK;
}

/* A metric: a number in [lo, hi], or null. */
static qr_status get_metric(const ctx *c, json_object *obj, const char *path, const char *key,
                            double lo, double hi, const char *range, qr_bundle_metric *out)
{
    char p[PATH_MAX_LEN];
    json_object *v;
    qr_status st = member(c, obj, path, key, &v, p);
    if (st != QR_OK)
        return st;
    out->known = v != NULL;
    out->value = 0.0;
    return v ? number_value(c, v, p, lo, hi, range, &out->value) : QR_OK;
}

/* ---------------------------------------------------------------- names */

static bool valid_variant_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > QR_BUNDLE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* A plain file name inside the bundle directory: no directory part, no way out of it, and not
 * one of the bundle's own files. Empty and NUL-bearing names never get here (string_value). */
static const char *bad_file_name(const char *s)
{
    if (strlen(s) > QR_BUNDLE_FILE_MAX)
        return "must be at most 255 bytes";
    if (strchr(s, '/'))
        return "must be a plain file name inside the bundle directory (no '/')";
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return "must be a file name, not '.' or '..'";
    if (strcmp(s, QR_BUNDLE_MANIFEST) == 0 || strcmp(s, QR_BUNDLE_MANIFEST ".sig") == 0)
        return "must not be the manifest or its signature";
    return NULL;
}

/* ---------------------------------------------------------------- sections */

static qr_status parse_model(const ctx *c, json_object *root, qr_bundle *b)
{
    static const char *const keys[] = {"name", "source_file", "source_sha256", NULL};
    char p[PATH_MAX_LEN];
    json_object *m;
    qr_status st = get_object(c, root, "", "model", &m, p);
    if (!st) st = check_keys(c, m, "model", keys);
    if (!st) st = get_string(c, m, "model", "name", &b->model_name);
    if (!st) st = get_string(c, m, "model", "source_file", &b->source_file);
    if (!st && strchr(b->source_file, '/'))
        st = fail_at(c, "model.source_file", "must be a file name (no '/')");
    if (!st) st = get_sha256(c, m, "model", "source_sha256", b->source_sha256);
    return st;
}

static qr_status parse_setting(const ctx *c, json_object *v, const char *path, qr_bundle_variant *out)
{
    char p[PATH_MAX_LEN];
    json_object *s;
    qr_status st = get_object(c, v, path, "setting", &s, p);
    if (st != QR_OK)
        return st;
    size_t n = (size_t)json_object_object_length(s);
    if (n == 0)
        return fail_at(c, p, "must map at least one tensor to a type");
    out->setting = calloc(n, sizeof *out->setting);
    if (!out->setting)
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    json_object_object_foreach(s, tensor, type) {
        char tp[PATH_MAX_LEN + 264], k[256];
        printable(tensor, k, sizeof k);
        snprintf(tp, sizeof tp, "%s[\"%s\"]", p, k);
        const char *name;
        uint32_t code;
        if (tensor[0] == '\0' || strlen(tensor) > 255)
            return fail_at(c, tp, "a tensor name must be 1..255 bytes");
        if ((st = string_value(c, type, tp, &name)) != QR_OK)
            return st;
        if (!qr_type_from_name(name, &code)) {
            char t[64];
            printable(name, t, sizeof t);
            return fail_at(c, tp, "unknown type \"%s\" (f32, f16, q8_0 ... q2_1, q4_s ... q2_s)", t);
        }
        qr_bundle_setting *e = &out->setting[out->n_setting++];
        e->type = code;
        if (!(e->tensor = strdup(tensor)))
            return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    }
    return QR_OK;
}

/* A task name as FORMAT.md's heads allow it: 1..32 characters of a-z 0-9 _ -. */
static bool valid_task_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* metrics.accuracy_by_task (optional): {"task": accuracy or null, ...}, one per classifier head
 * measured, in the model's head order. */
static qr_status parse_by_task(const ctx *c, json_object *m, const char *mp, qr_bundle_variant *out)
{
    json_object *o;
    char p[PATH_MAX_LEN];
    if (!json_object_object_get_ex(m, "accuracy_by_task", &o))
        return QR_OK;
    child_path(p, mp, "accuracy_by_task");
    if (!json_object_is_type(o, json_type_object))
        return fail_at(c, p, "must be an object");
    size_t n = (size_t)json_object_object_length(o);
    if (n > 16)
        return fail_at(c, p, "at most 16 tasks");
    out->metrics.by_task = calloc(n ? n : 1, sizeof *out->metrics.by_task);
    if (!out->metrics.by_task)
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    json_object_object_foreach(o, task, val) {
        char tp[PATH_MAX_LEN + 80], k[64];
        printable(task, k, sizeof k);
        snprintf(tp, sizeof tp, "%s[\"%s\"]", p, k);
        if (!valid_task_name(task))
            return fail_at(c, tp, "a task name is 1..32 characters of a-z 0-9 _ -");
        qr_bundle_task_metric *t = &out->metrics.by_task[out->metrics.n_by_task];
        t->accuracy.known = val != NULL;
        if (val) {
            qr_status st = number_value(c, val, tp, 0.0, 1.0, "between 0 and 1", &t->accuracy.value);
            if (st)
                return st;
        }
        if (!(t->task = strdup(task)))
            return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
        out->metrics.n_by_task++;
    }
    return QR_OK;
}

static qr_status parse_metrics(const ctx *c, json_object *v, const char *path, qr_bundle_variant *out)
{
    static const char *const keys[] = {"ppl_test", "ppl_valid", "accuracy", "tokens_per_s",
                                       "energy_pj_per_token", "accuracy_by_task", NULL};
    char p[PATH_MAX_LEN];
    json_object *m;
    qr_status st = get_object(c, v, path, "metrics", &m, p);
    char mp[PATH_MAX_LEN];
    snprintf(mp, sizeof mp, "%s", p);
    if (!st) st = check_keys(c, m, mp, keys);
    if (!st) st = get_metric(c, m, mp, "ppl_test", 1.0, INFINITY, "at least 1", &out->metrics.ppl_test);
    if (!st) st = get_metric(c, m, mp, "ppl_valid", 1.0, INFINITY, "at least 1", &out->metrics.ppl_valid);
    if (!st) st = get_metric(c, m, mp, "accuracy", 0.0, 1.0, "between 0 and 1", &out->metrics.accuracy);
    if (!st) st = get_metric(c, m, mp, "tokens_per_s", 0.0, INFINITY, "at least 0", &out->metrics.tokens_per_s);
    if (!st) st = get_metric(c, m, mp, "energy_pj_per_token", 0.0, INFINITY, "at least 0",
                             &out->metrics.energy_pj_per_token);
    if (!st) st = parse_by_task(c, m, mp, out);
    return st;
}

static qr_status parse_variant(const ctx *c, json_object *v, const char *path, qr_bundle_variant *out)
{
    static const char *const keys[] = {"name", "file", "sha256", "file_bytes", "footprint_bytes",
                                       "budget_bytes", "bits_per_weight", "setting", "metrics", NULL};
    char p[PATH_MAX_LEN];
    json_object *val;
    if (!json_object_is_type(v, json_type_object))
        return fail_at(c, path, "a variant must be an object");
    qr_status st = check_keys(c, v, path, keys);
    if (!st) st = get_string(c, v, path, "name", &out->name);
    if (!st && !valid_variant_name(out->name)) {
        child_path(p, path, "name");
        return fail_at(c, p, "must be 1..%d characters of A-Z a-z 0-9 . _ -", QR_BUNDLE_NAME_MAX);
    }
    if (!st) st = get_string(c, v, path, "file", &out->file);
    if (!st) {
        const char *why = bad_file_name(out->file);
        child_path(p, path, "file");
        if (why)
            return fail_at(c, p, "%s", why);
    }
    if (!st) st = get_sha256(c, v, path, "sha256", out->sha256);
    if (!st) st = get_u64(c, v, path, "file_bytes", &out->file_bytes);
    if (!st) st = get_u64(c, v, path, "footprint_bytes", &out->footprint_bytes);
    if (!st && out->footprint_bytes < out->file_bytes) {
        child_path(p, path, "footprint_bytes");
        return fail_at(c, p, "must be at least file_bytes (the mapped file is resident)");
    }
    if (!st) st = member(c, v, path, "budget_bytes", &val, p);
    if (!st && (out->has_budget = val != NULL))
        st = u64_value(c, val, p, &out->budget_bytes);
    if (!st) st = member(c, v, path, "bits_per_weight", &val, p);
    if (!st) st = number_value(c, val, p, 0.0, 32.0, "in (0, 32]", &out->bits_per_weight);
    if (!st && out->bits_per_weight == 0.0)
        return fail_at(c, p, "must be in (0, 32], not 0");
    if (!st) st = parse_setting(c, v, path, out);
    if (!st) st = parse_metrics(c, v, path, out);
    return st;
}

/* Names and files must each be unique: a name picks one variant, and two variants sharing a
 * file would make one of their hashes a lie. Quadratic, over at most QR_BUNDLE_MAX_VARIANTS. */
static qr_status check_unique(const ctx *c, const qr_bundle *b)
{
    for (size_t i = 1; i < b->n_variants; i++)
        for (size_t j = 0; j < i; j++) {
            char p[PATH_MAX_LEN];
            if (strcmp(b->variants[i].name, b->variants[j].name) == 0) {
                snprintf(p, sizeof p, "variants[%zu].name", i);
                return fail_at(c, p, "\"%s\" is also the name of variants[%zu]", b->variants[i].name, j);
            }
            if (strcmp(b->variants[i].file, b->variants[j].file) == 0) {
                char f[256];
                printable(b->variants[i].file, f, sizeof f);
                snprintf(p, sizeof p, "variants[%zu].file", i);
                return fail_at(c, p, "\"%s\" is also the file of variants[%zu]", f, j);
            }
        }
    return QR_OK;
}

static qr_status parse_variants(const ctx *c, json_object *root, qr_bundle *b)
{
    char p[PATH_MAX_LEN];
    json_object *arr;
    qr_status st = get_array(c, root, "", "variants", &arr, p);
    if (st != QR_OK)
        return st;
    size_t n = json_object_array_length(arr);
    if (n == 0)
        return fail_at(c, "variants", "must list at least one variant");
    if (n > QR_BUNDLE_MAX_VARIANTS)
        return fail_at(c, "variants", "%zu variants, more than the limit of %d", n, QR_BUNDLE_MAX_VARIANTS);
    if (!(b->variants = calloc(n, sizeof *b->variants)))
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "variants[%zu]", i);
        b->n_variants = i + 1; /* counted before parsing, so a half-filled one is freed too */
        if ((st = parse_variant(c, json_object_array_get_idx(arr, i), p, &b->variants[i])) != QR_OK)
            return st;
    }
    return check_unique(c, b);
}

static qr_status parse_infeasible(const ctx *c, json_object *root, qr_bundle *b)
{
    static const char *const keys[] = {"budget_bytes", "reason", NULL};
    char p[PATH_MAX_LEN];
    json_object *arr;
    qr_status st = get_array(c, root, "", "infeasible", &arr, p);
    if (st != QR_OK)
        return st;
    size_t n = json_object_array_length(arr);
    if (n > QR_BUNDLE_MAX_INFEASIBLE)
        return fail_at(c, "infeasible", "%zu entries, more than the limit of %d", n, QR_BUNDLE_MAX_INFEASIBLE);
    if (n && !(b->infeasible = calloc(n, sizeof *b->infeasible)))
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    for (size_t i = 0; i < n && st == QR_OK; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        snprintf(p, sizeof p, "infeasible[%zu]", i);
        b->n_infeasible = i + 1;
        if (!json_object_is_type(e, json_type_object))
            return fail_at(c, p, "must be an object");
        st = check_keys(c, e, p, keys);
        if (!st) st = get_u64(c, e, p, "budget_bytes", &b->infeasible[i].budget_bytes);
        if (!st) st = get_string(c, e, p, "reason", &b->infeasible[i].reason);
    }
    return st;
}

bool qr_bundle_created_valid(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != QR_BUNDLE_CREATED_LEN)
        return false;
    for (size_t i = 0; i < QR_BUNDLE_CREATED_LEN; i++)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return false;
    struct tm t = {0};
    t.tm_year = atoi(s) - 1900;
    t.tm_mon = atoi(s + 5) - 1;
    t.tm_mday = atoi(s + 8);
    t.tm_hour = atoi(s + 11);
    t.tm_min = atoi(s + 14);
    t.tm_sec = atoi(s + 17);
    /* timegm normalises out-of-range fields (Feb 30 becomes Mar 2): a real date comes back as
     * it went in */
    struct tm back = t, out;
    time_t when = timegm(&back);
    return when != (time_t)-1 && gmtime_r(&when, &out) && out.tm_year == t.tm_year && out.tm_mon == t.tm_mon &&
           out.tm_mday == t.tm_mday && out.tm_hour == t.tm_hour && out.tm_min == t.tm_min && out.tm_sec == t.tm_sec;
}

/* `created` (optional): when the bundle was built, in UTC. */
static qr_status parse_created(const ctx *c, json_object *root, qr_bundle *b)
{
    json_object *v;
    const char *s;
    if (!json_object_object_get_ex(root, "created", &v))
        return QR_OK;
    qr_status st = string_value(c, v, "created", &s);
    if (st)
        return st;
    if (!qr_bundle_created_valid(s))
        return fail_at(c, "created", "must be a UTC time written YYYY-MM-DDTHH:MM:SSZ");
    if (!(b->created = strdup(s)))
        return qr_fail(c->err, QR_ERR_NOMEM, "%s: out of memory", c->name);
    return QR_OK;
}

static qr_status parse_root(const ctx *c, json_object *root, qr_bundle *b)
{
    static const char *const keys[] = {"format", "version", "model", "created_by", "created", "variants",
                                       "infeasible", NULL};
    char p[PATH_MAX_LEN];
    json_object *v = NULL;
    const char *s = NULL;
    if (!json_object_is_type(root, json_type_object))
        return qr_fail(c->err, QR_ERR_FORMAT, "%s: the manifest must be a JSON object", c->name);
    qr_status st = check_keys(c, root, "", keys);
    if (!st) st = member(c, root, "", "format", &v, p);
    if (!st) st = string_value(c, v, p, &s);
    if (!st && strcmp(s, QR_BUNDLE_FORMAT) != 0)
        return fail_at(c, p, "must be \"" QR_BUNDLE_FORMAT "\"");
    if (!st) st = member(c, root, "", "version", &v, p);
    if (!st && !json_object_is_type(v, json_type_int))
        return fail_at(c, p, "must be an integer");
    if (!st && json_object_get_int64(v) != QR_BUNDLE_VERSION)
        return fail_at(c, p, "version %lld is not supported (this build reads %d)",
                       (long long)json_object_get_int64(v), QR_BUNDLE_VERSION);
    if (!st) st = parse_model(c, root, b);
    if (!st) st = get_string(c, root, "", "created_by", &b->created_by);
    if (!st) st = parse_created(c, root, b);
    if (!st) st = parse_variants(c, root, b);
    if (!st) st = parse_infeasible(c, root, b);
    return st;
}

/* ---------------------------------------------------------------- entry points */

qr_status qr_bundle_parse(const char *json, size_t len, const char *name, qr_bundle **out,
                          qr_error *err)
{
    *out = NULL;
    if (len > QR_BUNDLE_MANIFEST_MAX)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %zu bytes, larger than the %zu-byte limit of a manifest",
                       name, len, QR_BUNDLE_MANIFEST_MAX);
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success || end != len) {
        json_object_put(root);
        /* json-c stops at a NUL byte as if the text ended there; "continue" means it ran out. */
        const char *why = end < len && json[end] == '\0' ? "unexpected NUL byte"
                          : jerr == json_tokener_continue || jerr == json_tokener_success
                              ? "unexpected end of the text"
                              : json_tokener_error_desc(jerr);
        return qr_fail(err, QR_ERR_FORMAT, "%s: not valid JSON: %s at byte %zu", name, why, end);
    }
    qr_bundle *b = calloc(1, sizeof *b);
    if (!b) {
        json_object_put(root);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    }
    ctx c = {name, err};
    qr_status st = parse_root(&c, root, b);
    json_object_put(root);
    if (st != QR_OK) {
        qr_bundle_free(b);
        return st;
    }
    *out = b;
    return QR_OK;
}

char *qr_bundle_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    bool slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + slash + nl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

qr_status qr_bundle_load(const char *dir, qr_bundle **out, qr_error *err)
{
    *out = NULL;
    char *path = qr_bundle_path(dir, QR_BUNDLE_MANIFEST);
    if (!path)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    char *text;
    size_t len;
    qr_status st = qr_read_file(path, QR_BUNDLE_MANIFEST_MAX, &text, &len, err);
    if (st == QR_ERR_INVALID) /* over the size limit: the manifest's fault, not the caller's */
        st = qr_fail(err, QR_ERR_FORMAT, "%s: larger than the %zu-byte limit of a manifest", path,
                     QR_BUNDLE_MANIFEST_MAX);
    if (st == QR_OK) {
        st = qr_bundle_parse(text, len, path, out, err);
        free(text);
    }
    free(path);
    return st;
}

void qr_bundle_free(qr_bundle *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n_variants; i++) {
        qr_bundle_variant *v = &b->variants[i];
        for (size_t j = 0; j < v->n_setting; j++)
            free(v->setting[j].tensor);
        free(v->setting);
        for (size_t j = 0; j < v->metrics.n_by_task; j++)
            free(v->metrics.by_task[j].task);
        free(v->metrics.by_task);
        free(v->name);
        free(v->file);
    }
    for (size_t i = 0; i < b->n_infeasible; i++)
        free(b->infeasible[i].reason);
    free(b->variants);
    free(b->infeasible);
    free(b->model_name);
    free(b->source_file);
    free(b->created_by);
    free(b->created);
    free(b);
}

bool qr_bundle_find_variant(const qr_bundle *b, const char *name, size_t *index)
{
    for (size_t i = 0; i < b->n_variants; i++)
        if (strcmp(b->variants[i].name, name) == 0) {
            if (index)
                *index = i;
            return true;
        }
    return false;
}

/* ---------------------------------------------------------------- equality */

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool metric_eq(qr_bundle_metric a, qr_bundle_metric b)
{
    return a.known == b.known && (!a.known || a.value == b.value);
}

static bool variant_eq(const qr_bundle_variant *a, const qr_bundle_variant *b)
{
    if (!str_eq(a->name, b->name) || !str_eq(a->file, b->file) || strcmp(a->sha256, b->sha256) != 0 ||
        a->file_bytes != b->file_bytes || a->footprint_bytes != b->footprint_bytes ||
        a->has_budget != b->has_budget || (a->has_budget && a->budget_bytes != b->budget_bytes) ||
        a->bits_per_weight != b->bits_per_weight || a->n_setting != b->n_setting)
        return false;
    for (size_t i = 0; i < a->n_setting; i++)
        if (!str_eq(a->setting[i].tensor, b->setting[i].tensor) || a->setting[i].type != b->setting[i].type)
            return false;
    if (a->metrics.n_by_task != b->metrics.n_by_task)
        return false;
    for (size_t i = 0; i < a->metrics.n_by_task; i++)
        if (!str_eq(a->metrics.by_task[i].task, b->metrics.by_task[i].task) ||
            !metric_eq(a->metrics.by_task[i].accuracy, b->metrics.by_task[i].accuracy))
            return false;
    return metric_eq(a->metrics.ppl_test, b->metrics.ppl_test) &&
           metric_eq(a->metrics.ppl_valid, b->metrics.ppl_valid) &&
           metric_eq(a->metrics.accuracy, b->metrics.accuracy) &&
           metric_eq(a->metrics.tokens_per_s, b->metrics.tokens_per_s) &&
           metric_eq(a->metrics.energy_pj_per_token, b->metrics.energy_pj_per_token);
}

bool qr_bundle_equal(const qr_bundle *a, const qr_bundle *b)
{
    if (!str_eq(a->model_name, b->model_name) || !str_eq(a->source_file, b->source_file) ||
        strcmp(a->source_sha256, b->source_sha256) != 0 || !str_eq(a->created_by, b->created_by) ||
        !str_eq(a->created, b->created) ||
        a->n_variants != b->n_variants || a->n_infeasible != b->n_infeasible)
        return false;
    for (size_t i = 0; i < a->n_variants; i++)
        if (!variant_eq(&a->variants[i], &b->variants[i]))
            return false;
    for (size_t i = 0; i < a->n_infeasible; i++)
        if (a->infeasible[i].budget_bytes != b->infeasible[i].budget_bytes ||
            !str_eq(a->infeasible[i].reason, b->infeasible[i].reason))
            return false;
    return true;
}
