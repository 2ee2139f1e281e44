/* search.h: QSLM's tiered search for one memory budget.
 *
 *   global tier   one type for every matrix: each rung of the ladder that fits is measured
 *   block tier    one type per block (input, each layer, output), allowed within ±BLOCK_SPAN
 *                 rungs of the global choice
 *   module tier   one type per matrix, within ±MODULE_SPAN rungs of its block's choice
 *
 * In the block and module tiers, per-unit sensitivities (sensitivity.h) predict the damage of a
 * setting as their sum, and a greedy allocation buys, from the cheapest allowed setting up, the
 * upgrades with the best damage saved per byte until the budget is spent or an upgrade is no
 * longer worth its memory under the trade-off (tradeoff.h). Each tier's pick is then measured as a
 * whole on the validation split, where the performance floors are checked, and kept if it is
 * within them and better there than the tier before (quant/README.md: why calibration does not
 * decide). */
#ifndef QQ_SEARCH_H
#define QQ_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "hierarchy.h"
#include "local.h"
#include "measure.h"
#include "refine.h"
#include "sensitivity.h"
#include "setting.h"
#include "tradeoff.h"

/* The last tier a search runs. A tier costs a calibration pass per (unit, type) it has not
 * measured before; at hundreds of millions of parameters the module tier's passes take hours, so
 * a user may stop after the global or block tier and keep that tier's pick. */
typedef enum { QQ_TIER_GLOBAL, QQ_TIER_BLOCK, QQ_TIER_MODULE } qq_tier;

typedef struct {
    uint64_t budget;              /* served bytes */
    qq_floors floors;
    double lambda;                /* the trade-off's memory weight */
    qq_tier max_tier;             /* the last tier to run (QQ_TIER_MODULE: all three) */
} qq_constraints;

typedef struct {
    const qr_model_file *master;
    const qq_hierarchy *h;
    const qq_costs *costs;
    qq_measurer *meas;
    qq_sensitivity *sens;
    qq_local *local;              /* layer-local estimates for the module tier, or NULL: every
                                     matrix measured end to end */
    const qq_split *valid;
    qq_metrics valid_ref;         /* the f32 master on the validation split */
    bool refine;                  /* refine the kept setting (refine.h), kept if it does better, */
    double refine_from;           /* when it is at least this far (percent) over f32 on validation */
    /* Progress lines (may be NULL): a tier's outcome, in words. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} qq_search_ctx;

typedef struct {
    bool feasible;
    char reason[640];             /* when not feasible: why, with the numbers */
    uint32_t *types;              /* n_tensors, owned (NULL if nothing fits the budget) */
    const char *tier;             /* "global", "block" or "module": the tier whose pick was kept */
    uint64_t footprint_est;
    qq_metrics calib, valid;
    double objective;             /* on validation */
    bool refined;                 /* the setting's copies are the refined ones (refine.h): they
                                     stand in the measurer until the next search */
    qq_refine_stats refine;       /* when refinement ran (matrices 0: it did not) */
    size_t whole_measurements;    /* settings measured as a whole (calibration + validation) */
} qq_result;

qr_status qq_search(const qq_search_ctx *ctx, const qq_constraints *c, qq_result *out, qr_error *err);
void qq_result_free(qq_result *r);

#endif
