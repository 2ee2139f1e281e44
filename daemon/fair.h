/* fair.h: splitting one round's token budget fairly, the arithmetic of the engine's scheduler.
 *
 * Pure functions over arrays, no state: the engine (engine.c) keeps the flows and the rotation
 * counter. It does not decide who is a flow (the loop does: one connection) nor admission. */
#ifndef QD_FAIR_H
#define QD_FAIR_H

#include <stddef.h>

/* Max-min fair split of budget among n claimants wanting demand[i] each: give[i] <= demand[i],
 * no claimant gets less than another unless it wanted less (water filling), and the units left
 * over by the integer division go one each to the unsatisfied claimants from index start % n
 * on, so over successive calls with a moving start the remainder rotates. Returns the sum of
 * give (== min(budget, sum of demand)). */
size_t qd_fair_split(const size_t *demand, size_t n, size_t budget, size_t start, size_t *give);

#endif
