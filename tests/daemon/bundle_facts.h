/* bundle_facts.h: the default bundle ($QSLM_SOURCE_DIR/models/bundle) as qslmd sees it, read in
 * the test from its manifest and model files with the runtime, and which variant qslmd's policy
 * serves under a memory or power budget: for tests that must not name the bundle's variants,
 * count them or quote their sizes. The bundle is rebuilt now and then (other budgets, another
 * model); a test that asks these helpers keeps holding the daemon to the same promise.
 *
 * The choice restates daemon/policy.h's rule on purpose, from the manifest and not from the
 * daemon's code, so that a test compares the daemon with an independent reading of the rule:
 * the best quality (lowest test perplexity; unknown ranks last; a tie goes to manifest order)
 * among the variants whose served footprint fits; when none fits the power budget, the least
 * energy per token (unknown counts as 0; a tie goes to the better quality, then to manifest
 * order).
 *
 * No cmocka here: bundle-facts (bundle_facts_tool.c) answers the shell tests with the same code. */
#ifndef BUNDLE_FACTS_H
#define BUNDLE_FACTS_H

#include <stddef.h>
#include <stdint.h>

#include "bundle.h"

#define BF_MAX_VARIANTS 16
#define BF_DAEMON_BATCH 4        /* qslmd's default batch (daemon/config.c), which it serves with */
#define BF_NO_BUDGET UINT64_MAX  /* a budget every variant fits */

typedef struct {
    char name[QR_BUNDLE_NAME_MAX + 1];
    char file[QR_BUNDLE_FILE_MAX + 1]; /* inside the bundle directory */
    uint64_t file_bytes;
    uint64_t footprint;  /* served with bf_load's batch and chunk (footprint.h), as qslmd reports it */
    double quality;      /* the manifest's ppl_test; NAN when not measured */
    double energy;       /* joules per token (the manifest's energy_pj_per_token); NAN when unknown */
} bf_variant;

typedef struct {
    char dir[4096];                   /* the bundle directory */
    size_t n;                         /* variants, in manifest order */
    bf_variant v[BF_MAX_VARIANTS];
    char err[512];                    /* why bf_load failed */
} bf_bundle;

/* Reads the default bundle: every variant's manifest facts and its footprint served with batches
 * of batch sequences and chunks of chunk tokens (qr_footprint_serving). 0, or -1 with b->err. */
int bf_load(bf_bundle *b, size_t batch, size_t chunk);

/* bf_load with qslmd's defaults: BF_DAEMON_BATCH and QR_PREFILL_CHUNK. */
int bf_load_served(bf_bundle *b);

/* bf_load_served, then what the tests of switches need: a variant under the best one's
 * footprint (bf_step_down(b, bf_top(b)) is not NULL). 0, or -1 with b->err. */
int bf_load_switchable(bf_bundle *b);

/* The variant called name, or NULL. */
const bf_variant *bf_find(const bf_bundle *b, const char *name);

/* What qslmd serves under a memory budget of `budget` bytes (BF_NO_BUDGET: none) with no power
 * budget, leaving out the variant called skip (NULL: none; a variant it refused); NULL when no
 * variant fits. */
const bf_variant *bf_best(const bf_bundle *b, uint64_t budget, const char *skip);

/* What qslmd serves with no budget at all: bf_best(b, BF_NO_BUDGET, NULL). */
const bf_variant *bf_top(const bf_bundle *b);

/* The variant with the smallest footprint (the first of a tie). */
const bf_variant *bf_smallest(const bf_bundle *b);

/* What qslmd serves with no memory budget when no variant fits the power budget: the least
 * energy per token. */
const bf_variant *bf_least_energy(const bf_bundle *b);

/* What qslmd steps down to from `from` under memory pressure: the best of those that fit one byte
 * under from's footprint (policy.h); NULL when none does (then it stays on from). */
const bf_variant *bf_step_down(const bf_bundle *b, const bf_variant *from);

#endif
