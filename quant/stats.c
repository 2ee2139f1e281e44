/* stats.c: exact binomial tails at one half (stats.h). */
#include "stats.h"

#include <math.h>

/* Σ_{i=k..n} C(n,i) / 2^n for 2k > n, where the terms only fall: from the first term
 * C(n,k)/2^n (as a log, summed factor by factor so that no factorial overflows), each next one
 * is the last times (n−i)/(i+1). */
static double upper_tail_falling(uint64_t n, uint64_t k)
{
    double log_first = -(double)n * log(2.0);
    for (uint64_t j = 1; j <= n - k; j++) /* log C(n, n−k) = Σ log((k+j)/j) */
        log_first += log((double)(k + j) / (double)j);
    double sum = 0.0, term = 1.0;
    for (uint64_t i = k; i <= n; i++) {
        sum += term;
        term *= (double)(n - i) / (double)(i + 1);
        if (term < 1e-17 * sum)
            break;
    }
    return exp(log_first + log(sum));
}

double qq_binomial_half_upper(uint64_t n, uint64_t k)
{
    if (k == 0)
        return 1.0;
    if (k > n)
        return 0.0;
    if (2 * k > n)
        return upper_tail_falling(n, k);
    /* Below the middle, by symmetry: P(X ≥ k) = 1 − P(X ≤ k−1) = 1 − P(X ≥ n−k+1). */
    return 1.0 - upper_tail_falling(n, n - k + 1);
}

double qq_mcnemar_worse_p(uint64_t lost, uint64_t gained)
{
    return qq_binomial_half_upper(lost + gained, lost);
}
