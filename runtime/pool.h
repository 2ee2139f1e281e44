/* pool.h: a persistent worker pool for the decode kernels.
 *
 * Threads are created once; each parallel region costs a wake-up, not a thread creation. The
 * calling thread works too, so a pool of n threads runs n-1 workers. Regions do not nest, and
 * one pool serves one caller at a time (each inference thread owns its pool). */
#ifndef QR_POOL_H
#define QR_POOL_H

#include <stddef.h>

#include "error.h"

typedef struct qr_pool qr_pool;

/* Runs task(ctx, i) for i in [0, n_tasks), spread over the pool. */
typedef void (*qr_pool_task)(void *ctx, size_t index);

/* n_threads <= 0 means one per online CPU. */
qr_status qr_pool_new(int n_threads, qr_pool **out, qr_error *err);
void qr_pool_free(qr_pool *pool);
int qr_pool_threads(const qr_pool *pool);

/* Returns when every task has run. A NULL pool runs the tasks on the caller. */
void qr_pool_run(qr_pool *pool, size_t n_tasks, qr_pool_task task, void *ctx);

#endif
