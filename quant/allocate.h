/* allocate.h: the tiers' decisions, as pure functions over numbers.
 *
 *   qq_allocate        which rung each unit takes: a greedy allocation of bytes by damage saved
 *   qq_replace_better  whether a tier's pick replaces the incumbent setting
 *   qq_pick_best       which of several validated settings (the global tier's) is kept
 *
 * None runs a model: search.c measures, fills the tables below and applies the verdicts, so
 * these rules are unit-tested on hand-made numbers (tests/quant/test_quant_allocate.c). */
#ifndef QQ_ALLOCATE_H
#define QQ_ALLOCATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "setting.h"

/* One unit of a tier (a block or a matrix) and what it costs and risks at each allowed rung.
 * Rungs index the type ladder (setting.h): a lower rung has more bits. */
typedef struct {
    size_t lo, hi;              /* allowed rungs [lo, hi]; hi is the cheapest */
    size_t cur;                 /* out: the rung allocated */
    double damage[QQ_RUNGS];    /* predicted damage at each allowed rung (nats of KL) */
    uint64_t cost[QQ_RUNGS];    /* bytes of the unit's matrices at each allowed rung */
} qq_alloc_unit;

typedef struct {
    uint64_t base;              /* the served footprint with every unit at its cheapest rung */
    uint64_t budget;            /* served bytes */
    uint64_t f32_footprint;     /* M₀ of the trade-off */
    double lambda;              /* the trade-off's memory weight */
    double loss_per_damage;     /* percent of performance one nat of damage costs, / 100 */
} qq_alloc_limits;

/* Starts every unit at its cheapest rung and buys, one at a time, the upgrade (to any allowed
 * rung) with the most damage saved per byte added that still fits the budget and is worth its
 * memory: 100 × loss_per_damage × damage saved > λ × 100 × bytes added / M₀. A free upgrade
 * that saves damage comes first. Stops when no upgrade is left. Sets each unit's cur; returns
 * false (every cur at its cheapest) when even the cheapest setting is over the budget.
 * *footprint (may be NULL) gets the allocated setting's footprint. */
bool qq_allocate(qq_alloc_unit *units, size_t n, const qq_alloc_limits *lim, uint64_t *footprint);

/* A validated setting's scores as the replace rule sees them. */
typedef struct {
    double j_valid;             /* the objective on validation */
    bool within;                /* within the floors on validation */
} qq_scores;

/* Both validated: whether the candidate beats the incumbent. Within the floors beats outside
 * them; on the same side, the lower validation objective wins (a tie keeps the incumbent). The
 * calibration score plays no part: every tier's pick is validated (search.c says why). */
bool qq_replace_better(const qq_scores *incumbent, const qq_scores *cand);

/* The best of n validated settings by the rule above: the lowest validation objective among
 * those within the floors, or, when none is, the lowest of all (the first of equals). Every
 * candidate is looked at: the first within the floors is not taken for the best, since on the
 * 200 sentences one within by a hair may lose more than a later one. n must be at least 1. */
size_t qq_pick_best(const qq_scores *s, size_t n);

#endif
