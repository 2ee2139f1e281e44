/* counter_file.h: a telemetry file under the harness's root that follows the wall clock, as a
 * kernel counter does (RAPL's energy_uj, a PSI "some" total): a background thread rewrites it
 * every period_ms from a printf format whose one conversion is %llu, given
 * start + per_ms × the milliseconds since the writer started. Real counters move in steps too;
 * a writer that falls behind only lengthens one step. No cmocka here: the test checks failures
 * after the stop. */
#ifndef COUNTER_FILE_H
#define COUNTER_FILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "daemon_harness.h"

typedef struct {
    dh_daemon *h;
    const char *rel;         /* under the harness's root */
    const char *format;      /* one %llu: the counter */
    unsigned long long start;
    double per_ms;
    int period_ms;
    /* the writer's own */
    pthread_t thread;
    atomic_bool stop;
    bool running;
    atomic_int failures;     /* writes that failed */
} counter_file;

/* Starts the writer (its first write within period_ms). 0, or -1 if the thread could not start. */
int counter_file_start(counter_file *c);

/* Stops and joins it (nothing if it is not running); returns the failed writes. */
int counter_file_stop(counter_file *c);

#endif
