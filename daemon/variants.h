/* variants.h: the bundle qslmd serves, and the one variant it has loaded from it.
 *
 * Opening a bundle reads its manifest and hashes every variant file against it, so a variant
 * that was truncated, corrupted or replaced is refused (and said why) before anything is served;
 * the tokenizer comes from the first variant that passed. Loading a variant reads its file into
 * an anonymous mapping, hashes exactly the bytes it will serve, then makes the mapping
 * read-only: a file changed after the check cannot change what is served, and truncating it
 * cannot fault the daemon (a file mapping would SIGBUS). Unloading unmaps it, so its pages leave
 * the resident set at once.
 *
 * A bundle is shared by the event loop and the inference thread, and replaced by `reload`
 * while a variant of the old one may still be serving: it is reference-counted, and immutable
 * once opened.
 *
 * Footprints. A variant's served footprint is what footprint.h counts for its model served with
 * qslmd's batch and chunk (qr_footprint_serving), computed from its file when the bundle is
 * opened: the one figure the policy, `variants` and `status` use. The manifest's footprint_bytes
 * is QSLM's figure for the batch and the runtime it was built with; the daemon's own settings
 * and runtime decide what it allocates. */
#ifndef QD_VARIANTS_H
#define QD_VARIANTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "pool.h"
#include "tokenizer.h"

#define QD_REFUSAL_MAX 512

typedef struct {
    char *dir;
    qr_bundle *manifest;
    bool *usable;                /* per variant: its file matched the manifest when opened */
    char (*refusal)[QD_REFUSAL_MAX]; /* per variant: why it was refused ("" when usable) */
    size_t n_usable;
    qr_heads *heads;             /* per variant: its classifier heads (read when it passed) */
    uint64_t *footprint;         /* per variant: its served footprint (above); 0 when unusable */
    qr_tokenizer *tokenizer;     /* from the first usable variant's file */
    int32_t eot;                 /* "<|endoftext|>", or -1 */
    atomic_int refs;
} qd_bundle;

/* Opens the bundle in dir and verifies every variant; footprints are for serving batches of
 * batch sequences and chunks of chunk tokens. Fails (naming the manifest, or every refusal)
 * when the manifest is bad or no variant passes; variants that fail while others pass are
 * kept, marked unusable with their refusal. */
qr_status qd_bundle_open(const char *dir, size_t batch, size_t chunk, qd_bundle **out, qr_error *err);

/* Variant i's served footprint (the manifest's when it is unusable, for messages). */
static inline uint64_t qd_bundle_footprint(const qd_bundle *b, size_t i)
{
    return b->footprint[i] ? b->footprint[i] : b->manifest->variants[i].footprint_bytes;
}

void qd_bundle_ref(qd_bundle *b);
/* Drops a reference; the last one frees the bundle. NULL is ignored. */
void qd_bundle_unref(qd_bundle *b);

/* Summary of the refusals, "8M: ...; 16M: ..." (empty when none), into buf. */
void qd_bundle_refusals(const qd_bundle *b, char *buf, size_t size);

/* A variant ready to run: its image, model and forward-pass scratch. */
typedef struct {
    qd_bundle *bundle;   /* holds a reference */
    size_t index;        /* in bundle->manifest->variants */
    void *image;         /* anonymous mapping of the file's bytes, read-only */
    size_t image_bytes;
    bool locked;         /* mlock succeeded */
    qr_model_file *file;
    qr_model *model;
    qr_runner *runner;
} qd_loaded;

/* Loads variant index of b for forward calls of up to max_batch rows (max(batch, chunk) of
 * qd_bundle_open) on pool. lock: try to mlock the image (a failure is not an error: *out's
 * locked says). */
qr_status qd_variant_load(qd_bundle *b, size_t index, qr_pool *pool, size_t max_batch, bool lock,
                          qd_loaded **out, qr_error *err);
void qd_variant_unload(qd_loaded *v);

static inline const char *qd_loaded_name(const qd_loaded *v)
{
    return v->bundle->manifest->variants[v->index].name;
}

#endif
