/* pool.c: the worker pool. Workers spin briefly on a generation counter before sleeping on a
 * condition variable: decode issues a region every few microseconds, and a futex wake-up per
 * region would cost more than the work of a small matrix. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPIN_ITERATIONS 20000

struct qr_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    atomic_uint generation;   /* bumped for each region */
    atomic_size_t next_task;  /* next task index to claim */
    atomic_int busy_workers;  /* workers still inside the current region */
    size_t n_tasks;
    qr_pool_task task;
    void *ctx;
    bool stopping;
};

static void run_tasks(qr_pool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (i >= p->n_tasks)
            break;
        p->task(p->ctx, i);
    }
}

static void *worker_main(void *arg)
{
    qr_pool *p = arg;
    /* The pool starts at generation 0; a region may be issued before this thread runs, so it
     * must not read its starting point from the counter. */
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               spins < SPIN_ITERATIONS)
            spins++;
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            while ((gen = atomic_load(&p->generation)) == seen && !p->stopping)
                pthread_cond_wait(&p->wake, &p->lock);
            bool stop = p->stopping;
            pthread_mutex_unlock(&p->lock);
            if (stop)
                return NULL;
        }
        seen = gen;
        run_tasks(p);
        if (atomic_fetch_sub_explicit(&p->busy_workers, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

qr_status qr_pool_new(int n_threads, qr_pool **out, qr_error *err)
{
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256)
        return qr_fail(err, QR_ERR_INVALID, "thread count %d is above the limit of 256", n_threads);
    qr_pool *p = calloc(1, sizeof *p);
    if (!p)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the worker pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        qr_pool_free(p);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the worker pool");
    }
    for (int i = 0; i < n_threads - 1; i++) {
        int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc != 0) {
            p->n_threads = i + 1; /* free joins only the threads that exist */
            qr_pool_free(p);
            return qr_fail(err, QR_ERR_IO, "cannot start worker thread %d: %s", i, strerror(rc));
        }
    }
    *out = p;
    return QR_OK;
}

void qr_pool_free(qr_pool *p)
{
    if (!p)
        return;
    if (p->threads) {
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        atomic_fetch_add(&p->generation, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 0; i < p->n_threads - 1; i++)
            pthread_join(p->threads[i], NULL);
        free(p->threads);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int qr_pool_threads(const qr_pool *p)
{
    return p ? p->n_threads : 1;
}

void qr_pool_run(qr_pool *p, size_t n_tasks, qr_pool_task task, void *ctx)
{
    if (!p || p->n_threads == 1 || n_tasks <= 1) {
        for (size_t i = 0; i < n_tasks; i++)
            task(ctx, i);
        return;
    }
    p->task = task;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    atomic_store(&p->busy_workers, p->n_threads - 1);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p);
    /* Wait for the workers: spin first, then sleep. */
    int spins = 0;
    while (atomic_load_explicit(&p->busy_workers, memory_order_acquire) > 0 && spins < SPIN_ITERATIONS)
        spins++;
    if (atomic_load(&p->busy_workers) > 0) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->busy_workers) > 0)
            pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}
