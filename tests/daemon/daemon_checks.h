/* daemon_checks.h: the cmocka side of the daemon integration tests (test_daemon, test_faults).
 *
 * daemon_harness.h runs qslmd and never calls cmocka; these helpers wrap it and the ipc client
 * library in assertions: a fixture's start and its checked end (the daemon must exit 0 after
 * SIGTERM, its stderr must hold no sanitizer or memcheck report), requests and replies that fail
 * the test when the wire does, and accessors of reply bodies. They call cmocka, so they are for
 * the test's main thread only (background threads use the ipc library and the harness).
 *
 * Include it after <cmocka.h> (which needs <stdarg.h>, <stddef.h> and <setjmp.h> first). */
#ifndef DAEMON_CHECKS_H
#define DAEMON_CHECKS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <json.h>

#include "client.h"
#include "daemon_harness.h"
#include "reply_parse.h"

/* How long read_reply (so rpc, rpc_final, status...) waits for a reply: 30 s unless the test
 * program sets another value in main. */
extern int dc_read_timeout_ms;

/* ---------------------------------------------------------------- fixture */

/* dh_init with the failure printed (for a cmocka setup: 0, or -1 after print_error). */
int dc_init(dh_daemon *h);

/* dh_start with the failure printed (for a cmocka setup: 0, or -1 after print_error). */
int dc_start(dh_daemon *h, const char *const *extra);

/* A cmocka setup in one call: a new fixture, initialised and started with extra flags, into
 * *state (0), or -1 with the failure printed. */
int dc_setup_started(void **state, const char *const *extra);

/* True when qslmd's stderr holds a report of ASan/UBSan ("Sanitizer", "runtime error:") or of
 * valgrind memcheck (an invalid read or write; a summary with bytes definitely lost, or with
 * any other "Invalid ..." error beside it). */
bool dc_log_has_report(const char *log);

/* The end of a test's daemon, for a cmocka teardown: a daemon still running is stopped with
 * SIGTERM and must exit 0 (a crash, or a sanitizer's leak report at exit, fails it), and the
 * stderr of the whole test must hold no report (dc_log_has_report); on failure the stderr is
 * printed. Kills and cleans up (dh_teardown) in every case; returns 0 or -1. */
int dc_finish(dh_daemon *h);

/* ---------------------------------------------------------------- wire */

/* A new connection; fails the test with the harness's message otherwise. */
qi_client *connect_or_fail(dh_daemon *h);

/* Sends one request line (printf-style, without the newline); fails the test if it cannot. */
void send_vf(qi_client *c, const char *fmt, va_list ap);
void sendf(qi_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads the next reply (within dc_read_timeout_ms); fails the test on a timeout, a closed
 * connection or a malformed line. */
void read_reply(qi_client *c, qi_reply *r);

/* Sends one request and reads its one reply, which must be final. */
void rpc(qi_client *c, qi_reply *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sends one request and reads up to its final reply: token events of a stream are skipped. */
void rpc_final(qi_client *c, qi_reply *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

bool id_is_str(const qi_id *id, const char *s);
bool id_is_int(const qi_id *id, uint64_t n);

/* r is the error code, with a non-empty message; with field, r names it and the message starts
 * with it; without, r names no field. */
void expect_error(const qi_reply *r, qi_code code, const char *field);

/* ---------------------------------------------------------------- JSON */

/* o at a dotted path ("active.variant"; a path without a dot is one key), or NULL (also when o
 * is NULL or a step is not an object). */
json_object *jget(json_object *o, const char *path);

/* The string at path, or NULL when there is none. */
const char *jstr(json_object *o, const char *path);

/* The string at path is want; fails showing o otherwise. */
void assert_jstr(json_object *o, const char *path, const char *want);

/* The integer (or boolean) at path; fails showing o when it is missing or of another type. */
int64_t jint(json_object *o, const char *path);
bool jbool(json_object *o, const char *path);

/* True when the key at path is present with the value null (a missing key is not null). */
bool jnull(json_object *o, const char *path);

/* ---------------------------------------------------------------- status */

/* A status result (the caller frees it): request id "st", protocol 2. */
void status(qi_client *c, qi_reply *r);

/* counters.NAME of a status body. */
int64_t counter(json_object *st, const char *name);

/* Polls status until active.variant is want (NULL: null) and, if pinned >= 0, active.pinned is
 * that; fails with the last status after timeout_ms. Returns the time it took. */
double wait_active(qi_client *c, const char *want, int pinned, int timeout_ms);

/* A size field of /proc/PID/status ("VmRSS", "VmHWM") in KiB, or -1. */
long rss_kb(pid_t pid, const char *field);

/* ---------------------------------------------------------------- control */

/* set-budget memory to exactly bytes (0: "auto"); the reply must be ok and echo the budget
 * (memory_bytes, null for auto). */
void set_memory_budget(qi_client *c, uint64_t bytes);

#endif
