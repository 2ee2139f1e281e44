/* test_limits.c: qslmd's connection limits, run for real (daemon/conn_limits.h): the connection
 * cap and running out of file descriptors (RLIMIT_NOFILE lowered in the child before exec) each
 * answer the extra clients with one too_many_connections line, log one warning per burst, and
 * serve new clients once the others leave; the idle timeout closes an idle connection and one
 * that trickles half a line, never one with a request in flight, and never holds up the others;
 * after a flood of pipelined status requests the daemon's RSS comes back near where it was
 * (malloc_trim), figures printed. Bounds are generous and no assertion is on a tight time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "reply_parse.h"

#ifdef __has_feature
#if __has_feature(address_sanitizer)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif

static int teardown(void **state)
{
    dh_daemon *h = *state;
    int rc = dc_finish(h);
    free(h);
    return rc;
}

static dh_daemon *start(void **state, void (*setup)(void *), const char *const *extra)
{
    dh_daemon *h = calloc(1, sizeof *h);
    assert_non_null(h);
    *state = h;
    assert_int_equal(dc_init(h), 0);
    h->child_setup = setup;
    assert_int_equal(dc_start(h, extra), 0);
    return h;
}

/* How many times needle is in the daemon's log. */
static int log_count(dh_daemon *h, const char *needle)
{
    char *log = dh_read_log(h);
    assert_non_null(log);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* The first line a new client gets after sending status: 1 a status result (served), 0 the
 * error too_many_connections with id null and then the end of the connection (refused). Any
 * other outcome (no line: a reset or close without a word) fails. The client is kept in *out
 * when served, closed otherwise. */
static int try_client(dh_daemon *h, qi_client **out)
{
    qi_client *c = connect_or_fail(h);
    qi_error e;
    qi_code sc = qi_client_send_line(c, "{\"id\":\"p\",\"op\":\"status\"}", 24, &e);
    qi_reply r;
    qi_code code = qi_client_read_reply(c, 10000, &r, &e);
    if (code != QI_OK)
        fail_msg("no line from the server (send: %s; read: %s: %s)", qi_code_name(sc), qi_code_name(code), e.msg);
    if (r.kind == QI_REPLY_ERROR) {
        assert_int_equal(r.code, QI_ERR_TOO_MANY_CONNECTIONS);
        assert_int_equal(r.id.kind, QI_ID_NONE);
        assert_true(r.message && r.message[0]);
        qi_reply_free(&r);
        assert_int_not_equal(qi_client_read_reply(c, 10000, &r, &e), QI_OK); /* then closed */
        qi_client_close(c);
        *out = NULL;
        return 0;
    }
    assert_true(id_is_str(&r.id, "p"));
    qi_reply_free(&r);
    *out = c;
    return 1;
}

/* A probe: a new client is served within timeout_ms (retrying refusals). */
static void probe_served(dh_daemon *h, int timeout_ms)
{
    double end = dh_now_ms() + timeout_ms;
    for (;;) {
        qi_client *c;
        if (try_client(h, &c)) {
            qi_client_close(c);
            return;
        }
        if (dh_now_ms() > end)
            fail_msg("no new client served within %d ms", timeout_ms);
        dh_sleep_ms(100);
    }
}

/* ---------------------------------------------------------------- the cap */

static void test_connection_cap(void **state)
{
    static const char *const args[] = {"--max-connections", "4", "--idle-timeout", "0", NULL};
    dh_daemon *h = start(state, NULL, args);
    qi_client *served[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(try_client(h, &served[i]), 1);
    for (int i = 0; i < 5; i++) {
        qi_client *c;
        assert_int_equal(try_client(h, &c), 0);
    }
    assert_true(dh_log_wait(h, "refusing new connections", 5000));
    assert_int_equal(log_count(h, "refusing new connections"), 1); /* once per burst */
    qi_client_close(served[0]);
    probe_served(h, 10000);
    assert_true(dh_log_wait(h, "accepting connections again: ", 10000));
    for (int i = 1; i < 4; i++)
        qi_client_close(served[i]);
}

/* ---------------------------------------------------------------- out of file descriptors */

static void low_nofile(void *ctx)
{
    (void)ctx;
    struct rlimit rl = {64, 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(97);
}

static void test_fd_exhaustion(void **state)
{
    /* a cap above what 64 descriptors allow: the daemon runs out of them for real */
    static const char *const args[] = {"--max-connections", "1000", "--idle-timeout", "0", NULL};
    dh_daemon *h = start(state, low_nofile, args);
    assert_true(dh_log_wait(h, "once descriptors run out", 5000));
    enum { N = 100 };
    qi_client *c[N];
    int served = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        if (try_client(h, &c[i]))
            served++;
        else
            refused++;
    }
    print_message("[  FDS     ] RLIMIT_NOFILE 64: %d of %d clients served, %d got too_many_connections\n", served,
                  N, refused);
    assert_true(served >= 16 && refused >= 1 && served + refused == N);
    assert_true(dh_log_wait(h, "out of file descriptors", 5000));
    assert_int_equal(log_count(h, "refusing new connections"), 1);
    for (int i = 0; i < N; i++)
        if (c[i])
            qi_client_close(c[i]);
    probe_served(h, 10000);
    /* and every one of a second wave fits again */
    for (int i = 0; i < 10; i++) {
        qi_client *x;
        assert_int_equal(try_client(h, &x), 1);
        qi_client_close(x);
    }
}

/* ---------------------------------------------------------------- idle */

/* Reads lines until the error idle_timeout (true) or timeout_ms / the end (false). */
static bool got_idle_timeout(qi_client *c, int timeout_ms)
{
    qi_reply r;
    qi_error e;
    double end = dh_now_ms() + timeout_ms;
    while (dh_now_ms() < end) {
        if (qi_client_read_reply(c, 200, &r, &e) != QI_OK) {
            if (e.code == QI_ERR_TIMEOUT)
                continue;
            return false;
        }
        bool idle = r.kind == QI_REPLY_ERROR && r.code == QI_ERR_IDLE_TIMEOUT && r.id.kind == QI_ID_NONE;
        qi_reply_free(&r);
        if (idle)
            return true;
    }
    return false;
}

static void test_idle_and_slow_loris(void **state)
{
    static const char *const args[] = {"--idle-timeout", "1", NULL};
    dh_daemon *h = start(state, NULL, args);
    qi_client *idle = connect_or_fail(h), *loris = connect_or_fail(h), *busy = connect_or_fail(h);
    double t0 = dh_now_ms();
    /* the loris trickles half a line, a byte every 50 ms, for 4 s; meanwhile status is served
     * at once to another client, and the busy one asks something every 300 ms */
    const char *half = "{\"id\":\"slow\",\"op\":\"status\"    ";
    bool loris_closed = false;
    double worst_ms = 0;
    for (int i = 0; dh_now_ms() - t0 < 4000; i++) {
        if (!loris_closed && send(qi_client_fd(loris), half + (i % 30), 1, MSG_NOSIGNAL) != 1)
            loris_closed = true; /* a raw byte: qi_client_send_line would end the line */
        if (i % 6 == 0) {
            qi_reply r;
            double t = dh_now_ms();
            status(busy, &r);
            qi_reply_free(&r);
            if (dh_now_ms() - t > worst_ms)
                worst_ms = dh_now_ms() - t;
        }
        dh_sleep_ms(50);
    }
    print_message("[  IDLE    ] status while a half line trickled: slowest %.0f ms\n", worst_ms);
    assert_true(worst_ms < 5000);
    assert_true(got_idle_timeout(idle, 5000));
    assert_true(got_idle_timeout(loris, 5000));
    /* the busy client was never idle: it is still served */
    qi_reply r;
    status(busy, &r);
    qi_reply_free(&r);
    /* a generation in flight is not idle, however long it takes */
    sendf(busy, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The\",\"max_tokens\":64,\"stream\":false}");
    read_reply(busy, &r);
    assert_int_not_equal(r.kind, QI_REPLY_ERROR);
    qi_reply_free(&r);
    assert_true(dh_log_wait(h, "idle_timeout", 5000));
    qi_client_close(idle);
    qi_client_close(loris);
    qi_client_close(busy);
}

/* ---------------------------------------------------------------- memory after a flood */

typedef struct {
    dh_daemon *h;
    int n;
    int ok;
} flooder;

typedef struct {
    qi_client *c;
    int n, ok;
} flood_writer;

/* The writing half: every request as fast as the socket takes them. qslmd stops reading a
 * connection whose replies it cannot write (backpressure), so the writes run beside the reads,
 * not before them, or both ends would wait on each other. */
static void *flood_write_main(void *arg)
{
    flood_writer *w = arg;
    char line[64];
    qi_error e;
    for (int i = 0; i < w->n; i++) {
        int len = snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"status\"}", i);
        if (qi_client_send_line(w->c, line, (size_t)len, &e) != QI_OK)
            return NULL;
    }
    w->ok = 1;
    return NULL;
}

/* One connection: n status requests pipelined (the daemon queues their replies while we are
 * still writing), every reply read. */
static void *flood_main(void *arg)
{
    flooder *f = arg;
    qi_client *c = dh_connect(f->h);
    if (!c)
        return NULL;
    flood_writer w = {c, f->n, 0};
    pthread_t writer;
    if (pthread_create(&writer, NULL, flood_write_main, &w) != 0) {
        qi_client_close(c);
        return NULL;
    }
    qi_error e;
    int got = 0;
    for (; got < f->n; got++) {
        qi_reply r;
        if (qi_client_read_reply(c, 30000, &r, &e) != QI_OK)
            break;
        qi_reply_free(&r);
    }
    if (got < f->n)
        shutdown(qi_client_fd(c), SHUT_RDWR); /* unblocks the writer */
    pthread_join(writer, NULL);
    f->ok = w.ok && got == f->n;
    qi_client_close(c);
    return NULL;
}

static void test_memory_after_flood(void **state)
{
    dh_daemon *h = start(state, NULL, NULL);
    probe_served(h, 5000);
    dh_sleep_ms(1500);
    long before = rss_kb(h->pid, "VmRSS");
    enum { CLIENTS = 8, EACH = 3000 };
    pthread_t t[CLIENTS];
    flooder f[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        f[i] = (flooder){h, EACH, 0};
        assert_int_equal(pthread_create(&t[i], NULL, flood_main, &f[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        assert_true(f[i].ok);
    }
    long peak = rss_kb(h->pid, "VmHWM");
    long after = -1;
    double end = dh_now_ms() + 15000;
    do {
        dh_sleep_ms(500);
        after = rss_kb(h->pid, "VmRSS");
    } while (after > before + 4096 && dh_now_ms() < end);
    print_message("[  RSS     ] %d x %d pipelined status: VmRSS %ld KiB before, peak (VmHWM) %ld KiB, %ld KiB after\n",
                  CLIENTS, EACH, before, peak, after);
#ifndef __SANITIZE_ADDRESS__
    assert_true(after <= before + 8192); /* within 8 MiB of where it was */
#endif
    probe_served(h, 5000);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        setenv("QSLMD", argv[1], 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connection_cap, teardown),
        cmocka_unit_test_teardown(test_fd_exhaustion, teardown),
        cmocka_unit_test_teardown(test_idle_and_slow_loris, teardown),
        cmocka_unit_test_teardown(test_memory_after_flood, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
