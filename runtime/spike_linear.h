/* spike_linear.h: products whose input is a spike vector ({0,1}), computed without multiplying.
 *
 * With spike.ffn_hidden the channel-mix value projection reads the hidden LIF's spikes. Then
 * W·s is the sum of the columns of W whose input fired: the matrix is stored transposed
 * (FORMAT.md), so each of those columns is one contiguous row, and the rows of silent inputs are
 * never read. At a firing rate p this reads p of the matrix's bytes instead of all of them. */
#ifndef QR_SPIKE_LINEAR_H
#define QR_SPIKE_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "linear.h"
#include "pool.h"

/* y (wt->cols floats) = Σ row j of wt, for j in active (ascending, each < wt->rows): the
 * product of Wᵀ's transpose with the spike vector whose ones are at `active`. Works for every
 * storage type (rows are decoded a block-aligned slice at a time); the summation order is the
 * order of `active` for every thread count, so the result does not depend on the pool. */
void qr_spike_matvec(qr_pool *pool, const qr_matrix *wt, const uint32_t *active, size_t n_active,
                     float *y);

/* The positions of the ones of a {0,1} vector s of n floats, ascending; returns their count. */
size_t qr_spike_positions(const float *s, size_t n, uint32_t *active);

#endif
