/* bundle_footprint.h: what qslmd reports as a variant's footprint, computed in the test from the
 * default bundle's file with the runtime (footprint.h), for tests that hold `variants` to it.
 * Include it after daemon_checks.h. */
#ifndef BUNDLE_FOOTPRINT_H
#define BUNDLE_FOOTPRINT_H

#include <stddef.h>
#include <stdint.h>

/* footprint.h's footprint of variant name of $QSLM_SOURCE_DIR/models/bundle served with batches
 * of batch sequences and chunks of chunk tokens (qr_footprint_serving); fails the test when the
 * bundle or the variant's file cannot be read. */
uint64_t bf_served_footprint(const char *name, size_t batch, size_t chunk);

#endif
