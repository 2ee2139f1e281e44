/* sensitivity.c: measured (unit, type) damage with a JSON Lines cache. */
#include "sensitivity.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sha256.h"
#include "tensor_types.h"

typedef struct {
    char unit[96];
    uint32_t type;
    qq_sens s;
} entry;

struct qq_sensitivity {
    qq_measurer *meas;
    const qr_model_file *master;
    const qq_hierarchy *h;
    char *key;
    FILE *cache;               /* appended to; NULL without a cache */
    entry *entries;
    size_t n, cap;
    size_t measured, cached;
    qq_sens_progress_fn progress;
    void *progress_ctx;
    uint32_t *types;           /* scratch setting, one per tensor */
};

static entry *find(qq_sensitivity *s, const char *unit, uint32_t type)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->entries[i].type == type && strcmp(s->entries[i].unit, unit) == 0)
            return &s->entries[i];
    return NULL;
}

static entry *add(qq_sensitivity *s, const char *unit, uint32_t type, const qq_sens *v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 128;
        entry *e = realloc(s->entries, cap * sizeof *e);
        if (!e)
            return NULL;
        s->entries = e;
        s->cap = cap;
    }
    entry *e = &s->entries[s->n++];
    snprintf(e->unit, sizeof e->unit, "%s", unit);
    e->type = type;
    e->s = *v;
    return e;
}

static double num(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0.0;
}

/* Reads the cache's lines for this key; a malformed line is skipped (the file is a cache:
 * losing an entry costs one measurement, never a wrong answer, since each line is whole). */
static void load_cache(qq_sensitivity *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        json_object *o = json_tokener_parse(line), *k, *u, *t;
        uint32_t type;
        if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "key", &k) &&
            strcmp(json_object_get_string(k), s->key) == 0 && json_object_object_get_ex(o, "unit", &u) &&
            json_object_object_get_ex(o, "type", &t) && qr_type_from_name(json_object_get_string(t), &type) &&
            !find(s, json_object_get_string(u), type)) {
            qq_sens v = {num(o, "damage"), num(o, "kl"), num(o, "cls_kl"), num(o, "nll"), num(o, "accuracy")};
            add(s, json_object_get_string(u), type, &v);
        }
        json_object_put(o);
    }
    fclose(f);
}

/* Little-endian bytes into a growing buffer (sized beforehand: no failure here). */
static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* Bumped whenever what a cached measurement means changes (the quantizer, the damage). */
#define SENS_VERSION "quantizer importance-v1"

qr_status qq_sensitivity_key_append(char key[QQ_SENS_KEY_SIZE], qr_error *err, const char *fmt, ...)
{
    size_t used = strlen(key);
    va_list ap;
    va_start(ap, fmt);
    int n = used + 1 < QQ_SENS_KEY_SIZE ? vsnprintf(key + used + 1, QQ_SENS_KEY_SIZE - used - 1, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || used + 1 + (size_t)n >= QQ_SENS_KEY_SIZE) {
        key[used] = '\0';
        return qr_fail(err, QR_ERR_INVALID, "the sensitivity cache key is too long");
    }
    key[used] = ' ';
    return QR_OK;
}

qr_status qq_sensitivity_key(const char *model_sha256, const qq_split *calib, size_t window,
                             char key[QQ_SENS_KEY_SIZE], qr_error *err)
{
    /* Every count is written before what it counts, so no two contents serialise alike. */
    size_t n_tokens = calib->tokens ? calib->n_tokens : 0, n_items = calib->items ? calib->n_items : 0;
    size_t bytes = 8 * (3 + n_tokens + 2 * n_items);
    for (size_t i = 0; i < n_items; i++)
        bytes += 8 * calib->items[i].n_tokens;
    uint8_t *buf = malloc(bytes), *p = buf;
    if (!buf)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the sensitivity cache key");
    p = put_u64(p, calib->window ? calib->window : window);
    p = put_u64(p, n_tokens);
    for (size_t i = 0; i < n_tokens; i++)
        p = put_u64(p, (uint64_t)(int64_t)calib->tokens[i]);
    p = put_u64(p, n_items);
    for (size_t i = 0; i < n_items; i++) {
        const qr_labelled *it = &calib->items[i];
        p = put_u64(p, (uint64_t)(int64_t)it->label);
        p = put_u64(p, it->n_tokens);
        for (size_t k = 0; k < it->n_tokens; k++)
            p = put_u64(p, (uint64_t)(int64_t)it->tokens[k]);
    }
    uint8_t digest[QR_SHA256_BYTES];
    char hex[QR_SHA256_HEX_SIZE];
    qr_status st = qr_sha256_buffer(buf, (size_t)(p - buf), "the calibration data", digest, err);
    free(buf);
    if (st)
        return st;
    qr_sha256_to_hex(digest, hex);
    snprintf(key, QQ_SENS_KEY_SIZE, "%.64s calib %s %s", model_sha256, hex, SENS_VERSION);
    return QR_OK;
}

qr_status qq_sensitivity_new(qq_measurer *m, const qr_model_file *master, const qq_hierarchy *h,
                             const char *cache_path, const char *key, qq_sens_progress_fn progress,
                             void *progress_ctx, qq_sensitivity **out, qr_error *err)
{
    *out = NULL;
    qq_sensitivity *s = calloc(1, sizeof *s);
    size_t n = qr_model_file_tensor_count(master);
    if (!s || !(s->key = strdup(key)) || !(s->types = malloc((n ? n : 1) * sizeof *s->types))) {
        qq_sensitivity_free(s);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the sensitivity table");
    }
    s->meas = m;
    s->master = master;
    s->h = h;
    s->progress = progress;
    s->progress_ctx = progress_ctx;
    if (cache_path) {
        load_cache(s, cache_path);
        s->cache = fopen(cache_path, "a");
        if (!s->cache) {
            int e = errno;
            qq_sensitivity_free(s);
            return qr_fail(err, QR_ERR_IO, "%s: cannot open the sensitivity cache: %s", cache_path, strerror(e));
        }
    }
    *out = s;
    return QR_OK;
}

void qq_sensitivity_free(qq_sensitivity *s)
{
    if (!s)
        return;
    if (s->cache)
        fclose(s->cache);
    free(s->entries);
    free(s->key);
    free(s->types);
    free(s);
}

qr_status qq_sensitivity_get(qq_sensitivity *s, size_t node, uint32_t type, qq_sens *out,
                             qr_error *err)
{
    const qq_node *nd = &s->h->nodes[node];
    memset(out, 0, sizeof *out);
    if (type == QR_TYPE_F32)
        return QR_OK;
    entry *e = find(s, nd->name, type);
    if (e) {
        *out = e->s;
        s->cached++;
        return QR_OK;
    }
    size_t n = qr_model_file_tensor_count(s->master);
    for (size_t i = 0; i < n; i++)
        s->types[i] = QR_TYPE_F32;
    for (size_t i = nd->mod_first; i < nd->mod_first + nd->mod_count; i++) {
        int t = s->h->nodes[i].tensor;
        if (qr_model_file_tensor(s->master, (size_t)t)->n_dims == 2)
            s->types[t] = type;
    }
    qq_metrics met;
    qr_status st = qq_measure_setting(s->meas, s->types, NULL, &met, err);
    if (st)
        return st;
    *out = (qq_sens){met.kl + met.cls_kl, met.kl, met.cls_kl, met.nll, met.accuracy};
    if (!add(s, nd->name, type, out))
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the sensitivity table");
    s->measured++;
    if (s->cache) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "key", json_object_new_string(s->key));
        json_object_object_add(o, "unit", json_object_new_string(nd->name));
        json_object_object_add(o, "type", json_object_new_string(qr_type_get(type)->name));
        json_object_object_add(o, "damage", json_object_new_double(out->damage));
        json_object_object_add(o, "kl", json_object_new_double(out->kl));
        json_object_object_add(o, "cls_kl", json_object_new_double(out->cls_kl));
        json_object_object_add(o, "nll", json_object_new_double(out->nll));
        json_object_object_add(o, "accuracy", json_object_new_double(out->accuracy));
        fprintf(s->cache, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        fflush(s->cache);
        json_object_put(o);
    }
    if (s->progress)
        s->progress(s->progress_ctx, nd->name, type, out, s->measured);
    return QR_OK;
}

bool qq_sensitivity_lookup(qq_sensitivity *s, size_t node, uint32_t type, qq_sens *out)
{
    entry *e = find(s, s->h->nodes[node].name, type);
    if (e)
        *out = e->s;
    return e != NULL;
}

size_t qq_sensitivity_measured(const qq_sensitivity *s)
{
    return s->measured;
}

size_t qq_sensitivity_cached(const qq_sensitivity *s)
{
    return s->cached;
}
