/* test_daemon_fair.c: fair scheduling in the real qslmd (daemon/engine.h), over its socket.
 *
 * Each test starts qslmd with few slots (--max-active 4, --max-active-per-conn 2) so that a
 * small flood fills them, and asserts orders of answers, not times: the replies of one
 * connection that have arrived when another connection's answer arrives are all written (the
 * daemon writes each event's line as it handles it), so a non-blocking drain counts them
 * exactly. Under first-in first-out admission every assertion here fails:
 *   - a connection pipelining long classifies cannot starve a short generate of another;
 *   - beyond its in-flight limit a connection gets `busy` with retry_after_ms, and the
 *     server-wide queue depth does not turn away a connection with nothing in flight (but
 *     does, with a hint, its next request);
 *   - under a mixed load (two classify floods, a connection of streamed generates) the later
 *     flood shares the slots with the earlier one and the generates end before the floods;
 *   - with --share-by-uid, two connections of one uid share one share of the slots. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_checks.h"
#include "daemon_harness.h"

/* A plain ASCII text of about kb kilobytes (words of the model's corpus, no JSON escaping): about
 * 200 tokens a kilobyte. The daemon reads a text in chunks, as much of it a round as fits in
 * round_ms beside the round's generation steps, so the texts here are long enough that the
 * orders asserted hold with chunks read several times faster than today's (about 12,000 tokens
 * a second here). */
static char *long_text(double kb)
{
    static const char *const words[] = {"the", "people", "of", "our", "nation", "will", "build",
                                        "a", "stronger", "future", "and", "Congress", "must", "act"};
    size_t want = (size_t)(kb * 1000), n = 0, w = 0;
    char *t = malloc(want + 16);
    assert_non_null(t);
    while (n + 12 < want) {
        const char *s = words[(w * 7 + w / 3) % (sizeof words / sizeof *words)];
        n += (size_t)sprintf(t + n, "%s%s", n ? " " : "", s);
        w++;
    }
    t[n] = '\0';
    return t;
}

static void send_classifies(qi_client *c, const char *text, unsigned from, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        sendf(c, "{\"id\":%u,\"op\":\"classify\",\"text\":\"%s\"}", from + i, text);
}

/* Reads every reply already arrived on c (none waited for); returns how many were classify
 * results, and fails the test on any other kind. */
static unsigned drain_results(qi_client *c)
{
    unsigned n = 0;
    for (;;) {
        qi_reply r;
        qi_error e;
        qi_code rc = qi_client_read_reply(c, 0, &r, &e);
        if (rc == QI_ERR_TIMEOUT)
            return n;
        assert_int_equal(rc, QI_OK);
        if (r.kind != QI_REPLY_RESULT)
            fail_msg("expected a classify result, got %s", json_object_to_json_string(r.body));
        n++;
        qi_reply_free(&r);
    }
}

/* Reads until a done message (token events skipped): id's, or any generate's when id is NULL
 * (concurrent generations may end in any order). */
static void read_done(qi_client *c, const char *id)
{
    for (;;) {
        qi_reply r;
        read_reply(c, &r);
        if (r.kind == QI_REPLY_TOKEN) {
            qi_reply_free(&r);
            continue;
        }
        if (r.kind != QI_REPLY_DONE || (id && !id_is_str(&r.id, id)))
            fail_msg("expected the done message of %s, got %s", id ? id : "a generate",
                     json_object_to_json_string(r.body));
        assert_true(r.stats.tokens >= 1);
        qi_reply_free(&r);
        return;
    }
}

static int setup_fair(void **state)
{
    const char *extra[] = {"--max-active", "4", "--max-active-per-conn", "2", NULL};
    return dc_setup_started(state, extra);
}

static int setup_limits(void **state)
{
    const char *extra[] = {"--max-active", "1",    "--max-active-per-conn", "1", "--queue-depth", "1",
                           "--max-in-flight", "2", NULL};
    return dc_setup_started(state, extra);
}

static int setup_by_uid(void **state)
{
    const char *extra[] = {"--max-active", "4", "--max-active-per-conn", "2", "--share-by-uid", NULL};
    return dc_setup_started(state, extra);
}

static int teardown(void **state)
{
    dh_daemon *h = *state;
    int rc = dc_finish(h);
    free(h);
    return rc;
}

/* Connection A pipelines 8 classifies of a 40 KB text (about 8,000 tokens each); B's 8-token
 * generate is answered while all of A's are still in flight. First-in first-out, B would wait
 * behind A's first four at least. */
static void test_flood_cannot_starve(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(40);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h);
    send_classifies(a, text, 1, 8);
    qi_reply r;
    status(b, &r); /* A's requests have reached the daemon: B's generate comes after them */
    qi_reply_free(&r);
    sendf(b, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The economy\",\"max_tokens\":8,\"seed\":3}");
    read_done(b, "g");
    unsigned a_done = drain_results(a);
    if (a_done > 1)
        fail_msg("the generate waited for %u of the flood's classifies", a_done);
    status(b, &r);
    assert_true(jint(r.body, "queue.active") <= 4);
    qi_reply_free(&r);
    qi_client_close(a); /* the rest of the flood is dropped with its connection */
    qi_client_close(b);
    free(text);
}

/* Polls status on c until queue.active is at least n (fails after 30 s). */
static void wait_computing(qi_client *c, int64_t n)
{
    for (int i = 0; i < 3000; i++) {
        qi_reply r;
        status(c, &r);
        int64_t active = jint(r.body, "queue.active");
        qi_reply_free(&r);
        if (active >= n)
            return;
        dh_sleep_ms(10);
    }
    fail_msg("no request was being computed after 30 s");
}

/* One slot, a queue of one, two requests in flight per connection, one active per connection.
 * A's third request is refused with `busy` and a retry hint (its in-flight limit); C, with
 * nothing in flight, is not turned away by A's backlog filling the queue, but C's second
 * request, which would wait behind it, is refused (the queue depth), with a hint too; C's
 * first gets its answer. */
static void test_busy_with_retry_hint(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(40);
    qi_client *a = connect_or_fail(h), *c = connect_or_fail(h);
    send_classifies(a, text, 1, 1);
    wait_computing(c, 1); /* A1 holds the one slot for thousands of tokens */
    send_classifies(a, text, 2, 2);
    qi_reply r;
    read_reply(a, &r); /* A2 waits (the queue is now full); A3 is refused at once */
    expect_error(&r, QI_ERR_BUSY, NULL);
    assert_true(id_is_int(&r.id, 3));
    assert_true(r.retry_after_ms >= 50 && r.retry_after_ms <= 60000);
    assert_non_null(strstr(r.message, "in flight"));
    qi_reply_free(&r);
    sendf(c, "{\"id\":\"c1\",\"op\":\"classify\",\"text\":\"Hope\"}");
    sendf(c, "{\"id\":\"c2\",\"op\":\"classify\",\"text\":\"Hope\"}");
    read_reply(c, &r);
    expect_error(&r, QI_ERR_BUSY, NULL);
    assert_true(id_is_str(&r.id, "c2"));
    assert_true(r.retry_after_ms >= 50 && r.retry_after_ms <= 60000);
    assert_non_null(strstr(r.message, "queue depth"));
    qi_reply_free(&r);
    qi_client_close(a); /* A's requests end: C's first gets the slot */
    read_reply(c, &r);
    if (r.kind != QI_REPLY_RESULT || !id_is_str(&r.id, "c1"))
        fail_msg("C's first request was not answered: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    qi_client_close(c);
    free(text);
}

/* A pipelines 6 classifies, then B 6 more of the same text, then C 3 streamed generates: B's
 * first answer comes before A's third (the slots are shared, not taken in arrival order), and
 * C's generates all end while both floods still have requests in flight; every request gets
 * its answer. */
static void test_fair_under_mixed_load(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(20);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h), *c = connect_or_fail(h);
    send_classifies(a, text, 1, 6);
    qi_reply r;
    status(b, &r);
    qi_reply_free(&r);
    send_classifies(b, text, 1, 6);
    status(c, &r);
    qi_reply_free(&r);
    for (int i = 0; i < 3; i++)
        sendf(c, "{\"id\":\"g%d\",\"op\":\"generate\",\"prompt\":\"We the people\",\"max_tokens\":16,\"seed\":%d,"
                 "\"stream\":true}", i, i);
    for (int i = 0; i < 3; i++)
        read_done(c, NULL);
    unsigned a_done = drain_results(a), b_done = drain_results(b);
    if (a_done >= 6 || b_done >= 6)
        fail_msg("the generates ended after a whole flood (A %u of 6, B %u of 6 answered)", a_done, b_done);
    /* B's first answer, and what A had by then */
    if (b_done == 0) {
        read_reply(b, &r);
        assert_int_equal(r.kind, QI_REPLY_RESULT);
        qi_reply_free(&r);
        b_done = 1;
        a_done += drain_results(a);
    }
    if (a_done > 3 + (b_done - 1) * 2)
        fail_msg("A had %u answers when B had %u: B waited behind A", a_done, b_done);
    /* everything is answered */
    while (a_done < 6) {
        read_reply(a, &r);
        assert_int_equal(r.kind, QI_REPLY_RESULT);
        qi_reply_free(&r);
        a_done++;
    }
    while (b_done < 6) {
        read_reply(b, &r);
        assert_int_equal(r.kind, QI_REPLY_RESULT);
        qi_reply_free(&r);
        b_done++;
    }
    qi_client_close(a);
    qi_client_close(b);
    qi_client_close(c);
    free(text);
}

/* With --share-by-uid, two connections of this process's uid share one share: of their 8
 * classifies, 2 at most are computed at once (each connection alone would get 2, and the
 * connections together 3 or 4 of the 4 slots). */
static void test_share_by_uid(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(40);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h), *c = connect_or_fail(h);
    send_classifies(a, text, 1, 4);
    send_classifies(b, text, 1, 4);
    int64_t most = 0, seen = 0;
    for (int i = 0; i < 3000 && seen < 8; i++) { /* until all 8 are in the daemon */
        qi_reply r;
        status(c, &r);
        int64_t active = jint(r.body, "queue.active");
        seen = active + jint(r.body, "queue.waiting");
        most = active > most ? active : most;
        qi_reply_free(&r);
        dh_sleep_ms(5);
    }
    assert_int_equal(seen, 8);
    for (int i = 0; i < 20; i++) { /* and a while after: admission has had its rounds */
        qi_reply r;
        status(c, &r);
        int64_t active = jint(r.body, "queue.active");
        most = active > most ? active : most;
        qi_reply_free(&r);
        dh_sleep_ms(10);
    }
    if (most != 2)
        fail_msg("%lld requests of one uid were computed at once (its share: 2)", (long long)most);
    assert_int_equal(drain_results(a) + drain_results(b), 0);
    qi_client_close(a);
    qi_client_close(b);
    qi_client_close(c);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc > 1) /* the qslmd to test, as meson passes it */
        setenv("QSLMD", argv[1], 1);
    dc_read_timeout_ms = 120000; /* a sanitizer build computes slowly */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flood_cannot_starve, setup_fair, teardown),
        cmocka_unit_test_setup_teardown(test_busy_with_retry_hint, setup_limits, teardown),
        cmocka_unit_test_setup_teardown(test_fair_under_mixed_load, setup_fair, teardown),
        cmocka_unit_test_setup_teardown(test_share_by_uid, setup_by_uid, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
