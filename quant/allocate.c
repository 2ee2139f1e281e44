/* allocate.c: the greedy allocation of bytes, the replace rule and the global tier's pick
 * (allocate.h). No model, no measurement, no I/O: numbers in, decisions out. */
#include "allocate.h"

bool qq_allocate(qq_alloc_unit *units, size_t n, const qq_alloc_limits *lim, uint64_t *footprint)
{
    for (size_t u = 0; u < n; u++)
        units[u].cur = units[u].hi;
    uint64_t m = lim->base;
    if (footprint)
        *footprint = m;
    if (m > lim->budget)
        return false;
    double m0 = (double)lim->f32_footprint;
    for (;;) {
        size_t best_u = n, best_r = 0;
        double best_gain = 0.0;
        for (size_t u = 0; u < n; u++) {
            const qq_alloc_unit *un = &units[u];
            for (size_t r = un->lo; r < un->cur; r++) {
                double saved = un->damage[un->cur] - un->damage[r];
                /* A rung with more bits never costs fewer bytes on the ladder; a unit whose
                 * cost table says otherwise is bought as free (and so first), never wrapped. */
                uint64_t added = un->cost[r] > un->cost[un->cur] ? un->cost[r] - un->cost[un->cur] : 0;
                if (saved <= 0.0 || added > lim->budget - m ||
                    lim->loss_per_damage * saved * m0 <= lim->lambda * (double)added)
                    continue;
                double gain = added ? saved / (double)added : 1e300;
                if (gain > best_gain) {
                    best_gain = gain;
                    best_u = u;
                    best_r = r;
                }
            }
        }
        if (best_u == n)
            break;
        qq_alloc_unit *un = &units[best_u];
        m = m + un->cost[best_r] - un->cost[un->cur];
        un->cur = best_r;
    }
    if (footprint)
        *footprint = m;
    return true;
}

bool qq_replace_better(const qq_scores *incumbent, const qq_scores *cand)
{
    if (cand->within != incumbent->within)
        return cand->within;
    return cand->j_valid < incumbent->j_valid;
}

size_t qq_pick_best(const qq_scores *s, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (qq_replace_better(&s[best], &s[i]))
            best = i;
    return best;
}
