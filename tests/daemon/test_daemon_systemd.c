/* test_daemon_systemd: qslmd's systemd protocol, with the test in systemd's place.
 *
 * The machine running the tests has no systemd as PID 1 (a CI container, a chroot), so the
 * test is the service manager: it binds the notify socket ($NOTIFY_SOCKET, a Unix datagram
 * socket) and reads the exact messages the real qslmd sends (EXTEND_TIMEOUT_USEC while the
 * bundle is hashed, READY=1 with a STATUS= line once the first variant serves, STATUS= on a
 * switch, RELOADING=1 then READY=1 around a reload, STOPPING=1 at SIGTERM) and the watchdog's
 * cadence ($WATCHDOG_USEC, $WATCHDOG_PID); it passes a listening socket the way socket
 * activation does ($LISTEN_FDS, $LISTEN_PID, fd 3); and it points $JOURNAL_STREAM at the
 * daemon's stderr to get priority prefixes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bundle_facts.h"
#include "daemon_harness.h"

static const char *qslmd_path;
static bf_bundle bundle; /* the default bundle as qslmd serves it (bundle_facts.h); main reads it */

typedef struct {
    dh_daemon h;
    int notify_fd;           /* the test's end of $NOTIFY_SOCKET */
    char notify_path[DH_PATH_MAX];
    int listen_fd;           /* socket activation: the socket passed as fd 3, or -1 */
    long watchdog_usec;      /* 0: no watchdog */
    bool journal;
} fixture;

/* In the child, before exec: the environment systemd would give. */
static void child_setup(void *ctx)
{
    fixture *f = ctx;
    char buf[64];
    if (f->notify_fd >= 0)
        setenv("NOTIFY_SOCKET", f->notify_path, 1);
    if (f->watchdog_usec) {
        snprintf(buf, sizeof buf, "%ld", f->watchdog_usec);
        setenv("WATCHDOG_USEC", buf, 1);
        snprintf(buf, sizeof buf, "%ld", (long)getpid());
        setenv("WATCHDOG_PID", buf, 1);
    }
    if (f->listen_fd >= 0) {
        if (f->listen_fd != 3) {
            dup2(f->listen_fd, 3);
            close(f->listen_fd);
        }
        fcntl(3, F_SETFD, 0); /* inherited across exec */
        setenv("LISTEN_FDS", "1", 1);
        snprintf(buf, sizeof buf, "%ld", (long)getpid());
        setenv("LISTEN_PID", buf, 1);
    }
    if (f->journal) {
        struct stat st;
        if (fstat(2, &st) == 0) {
            snprintf(buf, sizeof buf, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
            setenv("JOURNAL_STREAM", buf, 1);
        }
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(dh_init(&f->h), 0);
    f->notify_fd = f->listen_fd = -1;
    f->h.child_setup = child_setup;
    f->h.child_ctx = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    dh_teardown(&f->h);
    if (f->notify_fd >= 0)
        close(f->notify_fd);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    free(f);
    return 0;
}

static void bind_notify(fixture *f)
{
    snprintf(f->notify_path, sizeof f->notify_path, "%s/notify.sock", f->h.dir);
    f->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(f->notify_fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(f->notify_path) < sizeof a.sun_path);
    memcpy(a.sun_path, f->notify_path, strlen(f->notify_path) + 1);
    assert_int_equal(bind(f->notify_fd, (struct sockaddr *)&a, sizeof a), 0);
}

/* The next datagram, NUL-terminated, within timeout_ms; false if none came. */
static bool next_message(fixture *f, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = f->notify_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    ssize_t n = recv(f->notify_fd, buf, cap - 1, 0);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Reads messages until one starting with prefix, skipping watchdog pings and, unless asked for,
 * bare STATUS= updates (a switch after a reload may send one at any point); any other message
 * first is a failure, and so is none within timeout_ms. */
static void expect_message(fixture *f, const char *prefix, char *out, size_t cap, int timeout_ms)
{
    double end = dh_now_ms() + timeout_ms;
    char buf[1024];
    while (dh_now_ms() < end) {
        if (!next_message(f, buf, sizeof buf, (int)(end - dh_now_ms()) + 1))
            break;
        if (strcmp(buf, "WATCHDOG=1") == 0)
            continue;
        if (strncmp(buf, "STATUS=", 7) == 0 && strncmp(prefix, "STATUS=", 7) != 0)
            continue;
        if (strncmp(buf, prefix, strlen(prefix)) == 0) {
            if (out)
                snprintf(out, cap, "%s", buf);
            return;
        }
        fail_msg("expected a message starting with '%s', got '%s'", prefix, buf);
    }
    fail_msg("no message starting with '%s' within %d ms", prefix, timeout_ms);
}

static void request(dh_daemon *h, const char *line, const char *expect_substring)
{
    qi_client *c = dh_connect(h);
    assert_non_null(c);
    qi_error e;
    assert_int_equal(qi_client_send_line(c, line, strlen(line), &e), QI_OK);
    const char *reply;
    size_t len;
    assert_int_equal(qi_client_read_line(c, 20000, &reply, &len, &e), QI_OK);
    if (!strstr(reply, expect_substring))
        fail_msg("reply to %s: %s (expected '%s' in it)", line, reply, expect_substring);
    qi_client_close(c);
}

/* msg holds "<before>STATUS=serving NAME: ". */
static void expect_serving(const char *msg, const char *before, const char *name)
{
    char want[QR_BUNDLE_NAME_MAX + 64];
    snprintf(want, sizeof want, "%sSTATUS=serving %s: ", before, name);
    if (!strstr(msg, want))
        fail_msg("expected '%s' in the message '%s'", want, msg);
}

/* The messages, in order, and their exact form. */
static void test_notify_sequence(void **state)
{
    fixture *f = *state;
    const bf_variant *top = bf_top(&bundle);
    bind_notify(f);
    assert_int_equal(dh_start(&f->h, NULL), 0);
    char msg[1024];
    expect_message(f, "EXTEND_TIMEOUT_USEC=", msg, sizeof msg, 10000);
    assert_string_equal(msg, "EXTEND_TIMEOUT_USEC=120000000");
    expect_message(f, "READY=1", msg, sizeof msg, 10000);
    expect_serving(msg, "READY=1\n", top->name);
    /* a switch updates STATUS= */
    char line[128];
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"set-budget\",\"memory\":%llu}",
             (unsigned long long)(top->footprint - 1));
    request(&f->h, line, "\"ok\":true");
    expect_message(f, "STATUS=", msg, sizeof msg, 10000);
    expect_serving(msg, "", bf_step_down(&bundle, top)->name);
    /* a reload is bracketed */
    request(&f->h, "{\"id\":2,\"op\":\"reload\"}", "\"ok\":true");
    expect_message(f, "RELOADING=1", NULL, 0, 10000);
    expect_message(f, "READY=1", msg, sizeof msg, 10000);
    /* so is one from SIGHUP */
    assert_int_equal(dh_signal(&f->h, SIGHUP), 0);
    expect_message(f, "RELOADING=1", NULL, 0, 10000);
    expect_message(f, "READY=1", NULL, 0, 10000);
    assert_int_equal(dh_signal(&f->h, SIGTERM), 0);
    expect_message(f, "STOPPING=1", NULL, 0, 10000);
    int status;
    assert_int_equal(dh_wait_exit(&f->h, 20000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* WATCHDOG=1 at about half the interval, from the event loop, also while a long generation
 * runs on the inference thread. */
static void test_watchdog_cadence(void **state)
{
    fixture *f = *state;
    bind_notify(f);
    f->watchdog_usec = 1000000; /* pings expected every 500 ms */
    assert_int_equal(dh_start(&f->h, NULL), 0);
    char msg[1024];
    expect_message(f, "EXTEND_TIMEOUT_USEC=", msg, sizeof msg, 10000);
    expect_message(f, "READY=1", msg, sizeof msg, 10000);
    qi_client *c = dh_connect(&f->h);
    assert_non_null(c);
    const char *gen = "{\"id\":1,\"op\":\"generate\",\"prompt\":\"The state\",\"max_tokens\":1024,\"stream\":true}";
    qi_error e;
    assert_int_equal(qi_client_send_line(c, gen, strlen(gen), &e), QI_OK);
    double first = -1, last = -1, widest = 0;
    int pings = 0;
    double end = dh_now_ms() + 3000;
    while (dh_now_ms() < end) {
        if (!next_message(f, msg, sizeof msg, (int)(end - dh_now_ms()) + 1))
            break;
        if (strcmp(msg, "WATCHDOG=1") != 0)
            continue;
        double t = dh_now_ms();
        if (last >= 0 && t - last > widest)
            widest = t - last;
        if (first < 0)
            first = t;
        last = t;
        pings++;
    }
    qi_client_close(c);
    /* 3 s at one ping per 500 ms: about 6, never a gap as long as the watchdog's 1 s (what
     * systemd would act on); the bounds leave room for a machine busy with other tests */
    if (pings < 4 || pings > 8 || widest >= 1000)
        fail_msg("%d pings in 3 s, widest gap %.0f ms (expected about 6, every 500 ms)", pings, widest);
}

/* Socket activation: the daemon serves the socket it was passed, and leaves it in place when it
 * stops (systemd owns it). */
static void test_socket_activation(void **state)
{
    fixture *f = *state;
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(f->h.sock) < sizeof a.sun_path);
    memcpy(a.sun_path, f->h.sock, strlen(f->h.sock) + 1);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    /* the daemon is told another path: the passed socket wins, and says so */
    const char *extra[] = {"--socket", "/nonexistent/qslmd.sock", NULL};
    assert_int_equal(dh_start(&f->h, extra), 0);
    close(f->listen_fd);
    f->listen_fd = -1;
    request(&f->h, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"The state\",\"max_tokens\":4}", "\"event\":\"done\"");
    assert_true(dh_log_wait(&f->h, "the socket systemd passed", 5000));
    assert_int_equal(dh_stop(&f->h), 0);
    struct stat st;
    assert_int_equal(stat(f->h.sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
}

/* Two passed sockets, or one that is not a listening stream socket, fail the start. */
static void test_socket_activation_refuses_wrong_socket(void **state)
{
    fixture *f = *state;
    f->listen_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(f->listen_fd >= 0);
    assert_int_equal(dh_spawn(&f->h, NULL), 0);
    int status;
    assert_int_equal(dh_wait_exit(&f->h, 20000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_true(dh_log_wait(&f->h, "not a listening Unix stream socket", 1000));
}

/* Under the journal: <N> prefixes, no "qslmd: info:" text. */
static void test_journal_prefixes(void **state)
{
    fixture *f = *state;
    f->journal = true;
    assert_int_equal(dh_start(&f->h, NULL), 0);
    assert_true(dh_log_wait(&f->h, "<6>listening on ", 5000));
    assert_int_equal(dh_stop(&f->h), 0);
    char *log = dh_read_log(&f->h);
    assert_non_null(log);
    assert_null(strstr(log, "qslmd: info:"));
    assert_non_null(strstr(log, "<5>SIGTERM: stopping"));
    free(log);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_daemon_systemd QSLMD\n");
        return 2;
    }
    qslmd_path = argv[1];
    setenv("QSLMD", qslmd_path, 1);
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_daemon_systemd: %s\n", bundle.err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notify_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watchdog_cadence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_activation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_activation_refuses_wrong_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_prefixes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
