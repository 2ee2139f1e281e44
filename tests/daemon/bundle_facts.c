/* bundle_facts.c: see bundle_facts.h. */
#include "bundle_facts.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "footprint.h"
#include "model.h"
#include "model_file.h"

__attribute__((format(printf, 2, 3)))
static int fail(bf_bundle *b, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(b->err, sizeof b->err, f, ap);
    va_end(ap);
    return -1;
}

/* The served footprint of the model file at path, into *out. */
static int footprint_of(bf_bundle *b, const char *path, size_t batch, size_t chunk, uint64_t *out)
{
    qr_model_file *mf = NULL;
    qr_model *m = NULL;
    qr_error err;
    if (qr_model_file_open(path, &mf, &err) != QR_OK)
        return fail(b, "%s", err.msg);
    if (qr_model_bind(mf, &m, &err) != QR_OK) {
        qr_model_file_close(mf);
        return fail(b, "%s", err.msg);
    }
    *out = qr_footprint_serving(m, batch, chunk).total;
    qr_model_free(m);
    qr_model_file_close(mf);
    return 0;
}

static double metric(qr_bundle_metric m, double scale)
{
    return m.known ? m.value * scale : NAN;
}

/* One manifest entry into *v, its footprint read from its file. */
static int load_variant(bf_bundle *b, const qr_bundle_variant *mv, size_t batch, size_t chunk, bf_variant *v)
{
    snprintf(v->name, sizeof v->name, "%s", mv->name);
    snprintf(v->file, sizeof v->file, "%s", mv->file);
    v->file_bytes = mv->file_bytes;
    v->quality = metric(mv->metrics.ppl_test, 1);
    v->energy = metric(mv->metrics.energy_pj_per_token, 1e-12);
    char *path = qr_bundle_path(b->dir, mv->file);
    if (!path)
        return fail(b, "out of memory");
    int rc = footprint_of(b, path, batch, chunk, &v->footprint);
    free(path);
    return rc;
}

int bf_load(bf_bundle *b, size_t batch, size_t chunk)
{
    memset(b, 0, sizeof *b);
    const char *src = getenv("QSLM_SOURCE_DIR");
    if (!src || !src[0])
        return fail(b, "QSLM_SOURCE_DIR is not set");
    snprintf(b->dir, sizeof b->dir, "%s/models/bundle", src);
    qr_bundle *m = NULL;
    qr_error err;
    if (qr_bundle_load(b->dir, &m, &err) != QR_OK)
        return fail(b, "%s", err.msg);
    int rc = 0;
    if (m->n_variants > BF_MAX_VARIANTS)
        rc = fail(b, "%s: %zu variants, more than the %d these tests read", b->dir, m->n_variants, BF_MAX_VARIANTS);
    for (size_t i = 0; rc == 0 && i < m->n_variants; i++)
        rc = load_variant(b, &m->variants[i], batch, chunk, &b->v[b->n++]);
    qr_bundle_free(m);
    return rc;
}

int bf_load_served(bf_bundle *b)
{
    return bf_load(b, BF_DAEMON_BATCH, QR_PREFILL_CHUNK);
}

int bf_load_switchable(bf_bundle *b)
{
    if (bf_load_served(b) != 0)
        return -1;
    if (!bf_step_down(b, bf_top(b)))
        return fail(b, "%s: no variant fits under the best one's footprint (%s): these tests switch between two",
                    b->dir, bf_top(b)->name);
    return 0;
}

const bf_variant *bf_find(const bf_bundle *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i].name, name) == 0)
            return &b->v[i];
    return NULL;
}

/* Is a of better quality than b? Unknown is worse than any known; equal is not better. */
static bool better(const bf_variant *a, const bf_variant *b)
{
    return !isnan(a->quality) && (isnan(b->quality) || a->quality < b->quality);
}

const bf_variant *bf_best(const bf_bundle *b, uint64_t budget, const char *skip)
{
    const bf_variant *best = NULL;
    for (size_t i = 0; i < b->n; i++) {
        const bf_variant *v = &b->v[i];
        if (v->footprint <= budget && !(skip && strcmp(v->name, skip) == 0) && (!best || better(v, best)))
            best = v;
    }
    return best;
}

const bf_variant *bf_top(const bf_bundle *b)
{
    return bf_best(b, BF_NO_BUDGET, NULL);
}

const bf_variant *bf_smallest(const bf_bundle *b)
{
    const bf_variant *s = NULL;
    for (size_t i = 0; i < b->n; i++)
        if (!s || b->v[i].footprint < s->footprint)
            s = &b->v[i];
    return s;
}

static double energy_or_0(const bf_variant *v)
{
    return isnan(v->energy) ? 0 : v->energy;
}

const bf_variant *bf_least_energy(const bf_bundle *b)
{
    const bf_variant *e = NULL;
    for (size_t i = 0; i < b->n; i++)
        if (!e || energy_or_0(&b->v[i]) < energy_or_0(e) ||
            (energy_or_0(&b->v[i]) == energy_or_0(e) && better(&b->v[i], e)))
            e = &b->v[i];
    return e;
}

const bf_variant *bf_step_down(const bf_bundle *b, const bf_variant *from)
{
    return from->footprint ? bf_best(b, from->footprint - 1, NULL) : NULL;
}
