/* pool.c: the worker pool. Workers spin on a generation counter for up to SPIN_NS before
 * sleeping on a condition variable, and the caller spins the same way for the workers to finish:
 * decode issues a region every few microseconds (about 130 per token of an 18-layer model), and
 * a futex wake-up — tens of microseconds on a virtual machine — per region would cost more than
 * the work of a small matrix. The spin is bounded in time, not iterations, so an idle pool
 * stops burning its cores after SPIN_NS whatever the CPU's speed.
 *
 * The caller waits for the tasks, not for the workers: tasks are claimed one at a time, and a
 * worker that the kernel has not scheduled (the machine is busy with other processes) simply
 * claims none, while the caller and the other workers run them all. Waiting for every worker to
 * check in, as this pool first did, made each region wait for a descheduled worker's next time
 * slice: decode fell from 3742 to 424 tokens/s with a second busy process on a 2-core machine. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_NS 1000000         /* 1 ms: longer than any gap between the regions of a token */
#define PAUSE_NS 50000          /* then yield while spinning */
#define SPINS_PER_CLOCK_READ 256

/* One parallel region, on the caller's stack for as long as qr_pool_run runs. */
typedef struct {
    qr_pool_task task;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next; /* next task index to claim */
    atomic_size_t done; /* tasks finished */
} region;

struct qr_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    atomic_uint generation;  /* bumped for each region */
    _Atomic(region *) current; /* the region running, or NULL */
    atomic_int inside;       /* workers that may be reading `current` */
    atomic_bool stopping;
};

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A waiter's spin allowance: true while it may keep spinning. For PAUSE_NS it only pauses the
 * core; after that it also yields the core at every clock read, so that on a machine shared with
 * other busy processes the spinning does not take time from the thread doing the work; after
 * SPIN_NS (from its first clock read) it gives up and the caller sleeps. */
typedef struct {
    unsigned spins;
    uint64_t start;
} spin_budget;

static bool spin_budget_left(spin_budget *b)
{
    CPU_RELAX();
    if (++b->spins % SPINS_PER_CLOCK_READ)
        return true;
    uint64_t t = monotonic_ns();
    if (!b->start)
        b->start = t;
    if (t - b->start >= SPIN_NS)
        return false;
    if (t - b->start >= PAUSE_NS)
        sched_yield();
    return true;
}

/* Claims and runs tasks of r until none is left; whoever finishes the last one wakes the caller
 * in case it went to sleep. */
static void run_tasks(qr_pool *p, region *r)
{
    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n_tasks)
            break;
        r->task(r->ctx, i);
        if (atomic_fetch_add(&r->done, 1) + 1 == r->n_tasks) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
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
        spin_budget budget = {0, 0};
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               spin_budget_left(&budget))
            ;
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->stopping))
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stopping))
            return NULL;
        seen = gen;
        /* Announce, then look: the caller clears `current`, then waits for `inside` to drop to
         * 0 (both sequentially consistent), so either it sees this worker or this worker sees
         * NULL; a region is never read after its caller returned. */
        atomic_fetch_add(&p->inside, 1);
        region *r = atomic_load(&p->current);
        if (r)
            run_tasks(p, r);
        atomic_fetch_sub(&p->inside, 1);
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
    atomic_init(&p->current, NULL);
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
        atomic_store(&p->stopping, true);
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
    region r = {.task = task, .ctx = ctx, .n_tasks = n_tasks};
    atomic_init(&r.next, 0);
    atomic_init(&r.done, 0);
    atomic_store(&p->current, &r);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, &r);
    /* Wait for the tasks other threads claimed: spin first, then sleep. */
    spin_budget budget = {0, 0};
    while (atomic_load(&r.done) < n_tasks && spin_budget_left(&budget))
        ;
    if (atomic_load(&r.done) < n_tasks) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&r.done) < n_tasks)
            pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
    /* Then for any worker still holding a pointer to r (one that looked just before it was
     * cleared: it finds nothing left to claim and leaves at once). */
    atomic_store(&p->current, NULL);
    while (atomic_load(&p->inside) > 0)
        sched_yield();
}
