/* daemon_harness.h: runs the real qslmd as a child process for integration tests.
 *
 * A harness owns one temporary directory (mkdtemp) holding the socket (DIR/s.sock), an empty
 * fake telemetry root (DIR/root, which tests fill with sysfs/proc-shaped files) and the
 * daemon's stderr (DIR/stderr.log, for asserting log lines). dh_start forks and execs qslmd
 * (found through the environment variable QSLMD) on the bundle
 * $QSLM_SOURCE_DIR/models/bundle with the harness's standard options plus the caller's, then
 * polls until the socket accepts a connection (up to 20 s); if the daemon exits first, the
 * failure message carries its stderr. The child gets PR_SET_PDEATHSIG(SIGKILL), so it dies with
 * the test process even when that one is killed; dh_teardown kills it (SIGKILL) if it is still
 * running and removes the directory, so a cmocka teardown cleans up after a failed assertion.
 *
 * Functions return 0 on success and -1 on failure with a message in h->err; they never call
 * cmocka themselves, so they may run on any thread (except dh_start/dh_stop/dh_teardown, which
 * are for the test's main thread).
 *
 * QSLMD_WRAPPER, when set, is a command (words split at spaces) that runs qslmd, e.g. "valgrind
 * --error-exitcode=99 ..."; the start timeout is then 180 s instead of 20 s. */
#ifndef DAEMON_HARNESS_H
#define DAEMON_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "client.h"

#define DH_PATH_MAX 256

typedef struct {
    char dir[DH_PATH_MAX / 2]; /* the temporary directory */
    char sock[DH_PATH_MAX];   /* DIR/s.sock */
    char root[DH_PATH_MAX];   /* DIR/root: the fake telemetry root */
    char log[DH_PATH_MAX];    /* DIR/stderr.log: the daemon's stderr, appended across starts */
    char bundle[DH_PATH_MAX]; /* when set (before dh_start): the bundle to serve instead of
                                 $QSLM_SOURCE_DIR/models/bundle */
    pid_t pid;                /* > 0 while a child runs (or has not been reaped) */
    void (*child_setup)(void *ctx); /* when set: runs in the child just before exec, after its
                                       stdio is set up (environment, inherited fds) */
    void *child_ctx;
    char err[4096];           /* the last failure, with the daemon's stderr when it died */
} dh_daemon;

/* Creates the temporary directory and the empty fake root. */
int dh_init(dh_daemon *h);

/* Starts qslmd: --socket SOCK --bundle BUNDLE --threads 1 --telemetry-root ROOT
 * --policy-interval 0.05 --up-delay 0.2, then extra (NULL-terminated, may be NULL), and waits
 * until the socket accepts. */
int dh_start(dh_daemon *h, const char *const *extra);

/* Only forks and execs qslmd as dh_start does, without waiting for anything (for a daemon
 * expected to fail: dh_wait_exit then). */
int dh_spawn(dh_daemon *h, const char *const *extra);

/* Sends sig to the running daemon. */
int dh_signal(dh_daemon *h, int sig);

/* Waits up to timeout_ms for the daemon to exit; *status is waitpid's status. Returns -1 on
 * timeout (the daemon keeps running). */
int dh_wait_exit(dh_daemon *h, int timeout_ms, int *status);

/* SIGTERM, then waits up to 20 s; returns the wait status, or -1 (after SIGKILL) if it did not
 * exit in time. */
int dh_stop(dh_daemon *h);

/* Kills the daemon if it still runs (SIGKILL), reaps it, removes the directory. Idempotent. */
void dh_teardown(dh_daemon *h);

/* A new client connection (NULL on failure, message in h->err). */
qi_client *dh_connect(dh_daemon *h);

/* The daemon's stderr so far (malloc'ed, NUL-terminated; NULL on failure). */
char *dh_read_log(const dh_daemon *h);

/* Polls the log until it contains needle; true if it did within timeout_ms. */
bool dh_log_wait(const dh_daemon *h, const char *needle, int timeout_ms);

/* Writes content to ROOT/rel atomically (a temporary file, then rename), creating the
 * directories on the way. */
int dh_write_root_file(dh_daemon *h, const char *rel, const char *content);

/* Monotonic milliseconds. */
double dh_now_ms(void);

/* Sleeps ms milliseconds (for poll loops only). */
void dh_sleep_ms(int ms);

#endif
