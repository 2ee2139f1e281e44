/* test_daemon_pressure.c: the real qslmd under clients that press on the loop (issue 16).
 *   - rapl_status_poll: a fake RAPL zone drawing 2 W, a 3 W power budget, and a client polling
 *     `status` every 3 ms for 4 s. Status answers from the policy tick's snapshot, so the RAPL
 *     rate stays measured over the tick's own window and nothing steps down (it used to: each
 *     status re-read the counter, the tick then saw a 3 ms window and a 20 mJ step of the fake
 *     counter in it, "8M -> 4.65M: power 3.00 W exceeded" with the bundle of then).
 *   - backpressure: a connection pipelines thousands of `variants` and does not read, with
 *     max_output 256K. The daemon stops reading it once its unwritten replies pass the
 *     high-water mark, so it never reaches max_output (it used to, and was dropped), another
 *     client is answered meanwhile, and once the pipeliner reads it gets every reply.
 * Timing bounds are generous (seconds); what is asserted is the outcome, not a speed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bundle_facts.h"
#include "client.h"
#include "counter_file.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "reply_parse.h"

#define SWITCH_TIMEOUT_MS 15000
#define RAPL_DIR "sys/class/powercap/intel-rapl:0/"

static int setup_dir(void **state)
{
    dh_daemon *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    *state = h;
    return dc_init(h);
}

/* A package zone drawing 2 W: energy_uj follows the wall clock, rewritten every 10 ms. Teardown
 * stops it, after a failed assertion too: it writes into the harness's tree. */
static counter_file rapl_writer;

static int teardown_daemon(void **state)
{
    counter_file_stop(&rapl_writer);
    dh_daemon *h = *state;
    if (!h)
        return 0;
    int rc = dc_finish(h);
    free(h);
    return rc;
}

/* ---------------------------------------------------------------- RAPL and status polling */

/* The package reading's value in a status reply, or NAN while it has none. */
static double rapl_watts(json_object *st)
{
    json_object *readings = jget(st, "readings");
    for (size_t i = 0; readings && i < json_object_array_length(readings); i++) {
        json_object *rd = json_object_array_get_idx(readings, i);
        const char *src = jstr(rd, "source");
        json_object *v = jget(rd, "value");
        if (src && strstr(src, "package-0") && v && !json_object_is_type(v, json_type_null))
            return json_object_get_double(v);
    }
    return NAN;
}

static void test_rapl_status_poll(void **state)
{
    dh_daemon *h = *state;
    assert_int_equal(dh_write_root_file(h, RAPL_DIR "name", "package-0\n"), 0);
    assert_int_equal(dh_write_root_file(h, RAPL_DIR "max_energy_range_uj", "262143328850\n"), 0);
    assert_int_equal(dh_write_root_file(h, RAPL_DIR "energy_uj", "1000000\n"), 0);
    rapl_writer = (counter_file){
        .h = h, .rel = RAPL_DIR "energy_uj", .format = "%llu\n", .start = 1000000, .per_ms = 2000, .period_ms = 10};
    assert_int_equal(counter_file_start(&rapl_writer), 0);
    /* ticks 0.5 s apart: the window a writer's hiccup would have to distort is wide */
    static const char *const args[] = {"--policy-interval", "0.5", NULL};
    if (dc_start(h, args) != 0)
        fail_msg("the daemon did not start");
    bf_bundle bundle;
    if (bf_load_served(&bundle) != 0)
        fail_msg("%s", bundle.err);
    const char *top = bf_top(&bundle)->name; /* what it serves with no budget */
    qi_client *c = connect_or_fail(h);
    wait_active(c, top, 0, SWITCH_TIMEOUT_MS);

    /* the tick has a rate (about 2 W) */
    double watts = NAN;
    for (double end = dh_now_ms() + SWITCH_TIMEOUT_MS; isnan(watts) && dh_now_ms() < end;) {
        qi_reply st;
        status(c, &st);
        watts = rapl_watts(st.body);
        qi_reply_free(&st);
        if (isnan(watts))
            dh_sleep_ms(50);
    }
    if (isnan(watts))
        fail_msg("no RAPL rate in status");
    print_message("[   RAPL   ] first rate %.2f W\n", watts);

    qi_reply r;
    rpc(c, &r, "{\"id\":\"p\",\"op\":\"set-budget\",\"power\":\"3W\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);

    /* an unprivileged-looking poller: status every 3 ms for 4 s (8 ticks) */
    double end = dh_now_ms() + 4000;
    int polls = 0;
    double lo = INFINITY, hi = 0;
    const char *active = top;
    while (dh_now_ms() < end && strcmp(active, top) == 0) {
        qi_reply st;
        status(c, &st);
        double v = rapl_watts(st.body);
        if (!isnan(v)) {
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        const char *now = jstr(st.body, "active.variant");
        active = now && strcmp(now, top) == 0 ? top : "another variant";
        qi_reply_free(&st);
        polls++;
        usleep(3000);
    }
    int failures = counter_file_stop(&rapl_writer);
    print_message("[   RAPL   ] %d status polls; rates seen %.2f..%.2f W; writer failures %d; serving %s\n", polls,
                  lo, hi, failures, active);
    char *log = dh_read_log(h);
    assert_non_null(log);
    char step[QR_BUNDLE_NAME_MAX + 16];
    snprintf(step, sizeof step, "policy: %s -> ", top);
    if (strstr(log, step))
        fail_msg("a power step-down while status was polled; log:\n%s", log);
    free(log);
    assert_true(hi < 3.0);

    rpc(c, &r, "{\"id\":\"p\",\"op\":\"set-budget\",\"power\":\"auto\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    qi_client_close(c);
}

/* ---------------------------------------------------------------- backpressure */

static int raw_connect(const dh_daemon *h)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(h->sock) >= sizeof a.sun_path) {
        close(fd);
        return -1;
    }
    memcpy(a.sun_path, h->sock, strlen(h->sock) + 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes `variants` requests without reading, in large writes (a small write costs the kernel's
 * socket buffer far more than its bytes), until the socket has taken nothing for 1 s (the daemon
 * stopped reading and the buffers are full) or `max` were sent; returns the number of whole
 * lines written (a cut last line is left unfinished). */
static int flood_variants(int fd, int max)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    char *buf = malloc((size_t)max * 40);
    assert_non_null(buf);
    size_t len = 0, off = 0;
    for (int i = 0; i < max; i++)
        len += (size_t)snprintf(buf + len, 40, "{\"id\":%d,\"op\":\"variants\"}\n", i);
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off > 65536 ? 65536 : len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 1000) <= 0)
            break;
    }
    int sent = 0;
    for (size_t i = 0; i < off; i++)
        sent += buf[i] == '\n';
    free(buf);
    return sent;
}

/* Reads until `want` lines have come (or 30 s pass without a byte); counts the bytes. */
static int read_lines(int fd, int want, size_t *bytes)
{
    int lines = 0;
    *bytes = 0;
    char buf[65536];
    while (lines < want) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 30000) <= 0)
            break;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0 && !(n < 0 && errno == EAGAIN))
            break;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
        *bytes += n > 0 ? (size_t)n : 0;
    }
    return lines;
}

static void test_backpressure(void **state)
{
    dh_daemon *h = *state;
    static const char *const args[] = {"--max-output", "256K", NULL};
    if (dc_start(h, args) != 0)
        fail_msg("the daemon did not start");
    long hwm0 = rss_kb(h->pid, "VmHWM");
    int fd = raw_connect(h);
    assert_true(fd >= 0);
    int sent = flood_variants(fd, 60000);
    print_message("[ PRESSURE ] %d variants requests written before the socket stopped taking them\n", sent);
    assert_true(sent > 1000);

    /* others are served while the pipeliner does not read */
    qi_client *c = connect_or_fail(h);
    double t0 = dh_now_ms();
    qi_reply st;
    status(c, &st);
    qi_reply_free(&st);
    qi_reply v;
    rpc(c, &v, "{\"id\":\"v\",\"op\":\"variants\"}");
    assert_int_equal(v.kind, QI_REPLY_RESULT);
    qi_reply_free(&v);
    double took = dh_now_ms() - t0;
    print_message("[ PRESSURE ] status and variants from another client: %.0f ms\n", took);
    assert_true(took < 10000);
    long hwm1 = rss_kb(h->pid, "VmHWM");

    /* the pipeliner was paused, not dropped: it gets every reply, far more than max_output */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t bytes;
    int got = read_lines(fd, sent, &bytes);
    print_message("[ PRESSURE ] read back %d replies, %zu bytes; VmHWM %ld KiB before, %ld KiB during\n", got,
                  bytes, hwm0, hwm1);
    char *log = dh_read_log(h);
    assert_non_null(log);
    if (strstr(log, "dropping a client"))
        fail_msg("the pipeliner was dropped; log:\n%s", log);
    free(log);
    assert_int_equal(got, sent);
    assert_true(bytes > 4 * (256u << 10)); /* never held whole: max_output would have dropped it */
    close(fd);
    qi_client_close(c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_daemon_pressure QSLMD\n");
        return 2;
    }
    setenv("QSLMD", argv[1], 1);
    signal(SIGPIPE, SIG_IGN); /* a daemon that drops the pipeliner is a failure, not a kill */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rapl_status_poll, setup_dir, teardown_daemon),
        cmocka_unit_test_setup_teardown(test_backpressure, setup_dir, teardown_daemon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
