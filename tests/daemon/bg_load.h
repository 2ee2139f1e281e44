/* bg_load.h: background clients that keep a qslmd under test busy and check every reply
 * (test_faults, test_daemon_rollout).
 *
 * BG_CLIENTS threads each send, one at a time on one connection, generate (streamed and not),
 * classify and status requests, and check each reply: its id, the token events in order, exactly
 * one final message, a done whose token count matches the events. A connection the daemon
 * closes is reopened (and counted). bg_stop then fails the test on any malformed or unexpected
 * reply, any request left without an answer, or an error of a code not allowed. The counters are
 * public: a test can also require, say, that no connection was closed.
 *
 * bg_start, bg_wait_ok and bg_stop call cmocka: the test's main thread only. Include it after
 * <cmocka.h>. */
#ifndef BG_LOAD_H
#define BG_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon_harness.h"
#include "ipc_error.h"

#define BG_CLIENTS 4
#define BG_READ_TIMEOUT_MS 60000 /* a reply later than this is lost */
#define BG_WAIT_MS 30000         /* bg_wait_ok's patience */

typedef struct {
    dh_daemon *h;
    pthread_t th[BG_CLIENTS];
    int n;
    atomic_bool stop;
    atomic_uint_fast64_t ok;           /* requests answered in full and as expected */
    atomic_uint_fast64_t closed;       /* connections the daemon closed under a client */
    atomic_uint_fast64_t bad;          /* malformed or unexpected replies */
    atomic_uint_fast64_t lost;         /* requests without a final reply in time */
    atomic_uint_fast64_t connect_fail; /* failed (re)connections */
    atomic_uint_fast64_t errs[QI_ERR_UNKNOWN_CODE + 1]; /* error replies, by code */
    pthread_mutex_t mu;
    char first_bad[600];
} bg_load;

/* Starts the BG_CLIENTS threads on h's socket. */
void bg_start(bg_load *bg, dh_daemon *h);

/* Waits until the load has had `more` successful replies beyond now (it is really running). */
void bg_wait_ok(bg_load *bg, uint64_t more);

/* Stops the load; its replies must all have been well formed, and errors only of the codes in
 * allowed (a list ended by QI_OK; NULL: none allowed). */
void bg_stop(bg_load *bg, const qi_code *allowed);

#endif
