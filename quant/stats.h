/* stats.h: the exact tests the accuracy floor is judged with (tradeoff.h).
 *
 * Two models answered the same sentences; only the sentences where they disagree say which is
 * better (McNemar): under "equally good", each such sentence is a fair coin. So the p-value that
 * a setting is worse than f32 is a binomial tail at one half, computed exactly, not by the
 * chi-squared approximation, which is poor at the handful of disagreements a few hundred
 * validation sentences give. */
#ifndef QQ_STATS_H
#define QQ_STATS_H

#include <stdint.h>

/* P(X ≥ k) for X ~ Binomial(n, 1/2): 1 when k = 0, 0 when k > n. Relative error about n·1e-16
 * (rounding in a sum of n logs); no factorial is formed, so no n overflows. */
double qq_binomial_half_upper(uint64_t n, uint64_t k);

/* The exact one-sided McNemar p-value that a setting is worse than the reference on the same
 * items: `lost` items the reference gets right and the setting wrong, `gained` the reverse;
 * P(X ≥ lost), X ~ Binomial(lost + gained, 1/2). 1 when they never disagree. */
double qq_mcnemar_worse_p(uint64_t lost, uint64_t gained);

#endif
