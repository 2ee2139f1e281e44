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
 * One directory, one version. The configured path may be a symlink that an operator moves to
 * roll a new version out (README, "Rolling out a bundle"): it is resolved once, when the bundle
 * is opened (realpath), and every file of the bundle — the manifest, its signature, the variant
 * files hashed then and the ones loaded later by a switch — is read under that resolved
 * directory, so one opened bundle is one version, never half of two.
 *
 * Trust. With trusted keys (trust.h) the manifest must be signed by one of them: it is read once,
 * its signature checked on those bytes, and those same bytes parsed (runtime/bundle_trust.h);
 * every variant file is then held to that manifest's hashes, here and at every load.
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
#include "trust.h"

#define QD_REFUSAL_MAX 512
#define QD_SIGNER_MAX 32
#define QD_BUNDLE_WHERE_MAX 2048 /* qd_bundle_where's text */

typedef struct {
    char *source;                /* the directory as configured (may be a symlink) */
    char *dir;                   /* realpath(source) when opened: every file is read under it */
    qr_bundle *manifest;
    bool *usable;                /* per variant: its file matched the manifest when opened */
    char (*refusal)[QD_REFUSAL_MAX]; /* per variant: why it was refused ("" when usable) */
    size_t n_usable;
    qr_heads *heads;             /* per variant: its classifier heads (read when it passed) */
    uint64_t *footprint;         /* per variant: its served footprint (above); 0 when unusable */
    qr_tokenizer *tokenizer;     /* from the first usable variant's file */
    int32_t eot;                 /* "<|endoftext|>", or -1 */
    qr_sig_verdict signature;    /* GOOD (trusted keys set), UNSIGNED or UNCHECKED (not set) */
    char signer[QD_SIGNER_MAX];  /* the trusted key's id, "unsigned" or "not checked" */
    char manifest_sha256[QR_SHA256_HEX_SIZE]; /* of the manifest bytes read, checked and parsed */
    atomic_int refs;
} qd_bundle;

/* Opens the bundle in dir (resolved once) and verifies every variant; with trust's keys (n > 0;
 * trust may be NULL for none) its manifest must be signed by one of them. Footprints are for
 * serving batches of batch sequences and chunks of chunk tokens. Fails (naming the bundle, and
 * the manifest or every refusal; a refused signature reads "... signature refused (<verdict>;
 * key <id>): ...") when the directory cannot be resolved, the signature or the manifest is
 * bad, or no variant passes; variants that fail while others pass are kept, marked unusable
 * with their refusal. */
qr_status qd_bundle_open(const char *dir, const qd_trust *trust, size_t batch, size_t chunk, qd_bundle **out,
                         qr_error *err);

/* "DIR" or "SOURCE -> DIR" when the configured path was a link: for log lines. */
void qd_bundle_where(const qd_bundle *b, char *buf, size_t size);

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
