/* fair.c: max-min fair division of a round's tokens (fair.h). */
#include "fair.h"

size_t qd_fair_split(const size_t *demand, size_t n, size_t budget, size_t start, size_t *give)
{
    size_t left = budget, open = 0;
    for (size_t i = 0; i < n; i++) {
        give[i] = 0;
        if (demand[i])
            open++;
    }
    /* water filling: every unsatisfied claimant gets the same level until the budget runs out
     * or all are satisfied; each pass satisfies one at least or spends all but < open units */
    while (open && left >= open) {
        size_t level = left / open;
        for (size_t i = 0; i < n; i++) {
            size_t want = demand[i] - give[i];
            if (!want)
                continue;
            size_t g = want < level ? want : level;
            give[i] += g;
            left -= g;
            if (g == want)
                open--;
        }
    }
    /* the remainder, one unit each, rotating */
    for (size_t k = 0; k < n && left; k++) {
        size_t i = (start + k) % n;
        if (give[i] < demand[i]) {
            give[i]++;
            left--;
        }
    }
    return budget - left;
}
