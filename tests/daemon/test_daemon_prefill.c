/* test_daemon_prefill.c: the real qslmd reading prompts and classify texts in chunks
 * (daemon/engine.h), over its socket, on the default bundle.
 *
 * A 64 KiB text is thousands of tokens: the daemon reads it a chunk of rows of one sequence at a
 * time, as many chunks a round as fit in round_ms. The tests assert orders and equalities, not
 * times:
 *   - an 8-token generate of another connection gets every token, and its done message, while
 *     a 64 KiB classify is still being read;
 *   - a text classified alone and the same text classified beside a long classify and a long
 *     generation (so read in other rounds, beside other work) give the same probabilities, bit
 *     for bit: chunks start at fixed places and a forward call holds one chunk, so the rows
 *     meet the same products; and one token at a time (--prefill-chunk 1) gives them within
 *     1e-4 (chunked rows and single rows may round their products differently; today the
 *     integer products of the quantized types give the same bits);
 *   - a variant switch while a long text or prompt is read restarts it on the new variant: the
 *     answer is the one the new variant gives alone, bit for bit, and a generation's spans name
 *     only the new variant;
 *   - the footprints `variants` reports are runtime/footprint.h's for the daemon's batch and
 *     chunk: the runner is made for the larger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_facts.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "footprint.h"

#define SWITCH_TIMEOUT_MS 20000
#define PROB_TOL 1e-4 /* chunks of rows against single rows (see the top) */

/* The default bundle as qslmd serves it (bundle_facts.h; main reads it): with no budget it serves
 * `from`; one byte under from's footprint, `to`. */
static bf_bundle bundle;
static const bf_variant *from, *to;

/* A plain ASCII text of about kb kilobytes (words of the model's corpus, no JSON escaping),
 * varied by seed. */
static char *long_text(double kb, unsigned seed)
{
    static const char *const words[] = {"the",    "people", "of",       "our",    "nation", "will",     "build",
                                        "a",      "stronger", "future", "and",    "Congress", "must",   "act",
                                        "war",    "peace",  "economy",  "taxes",  "freedom", "workers", "families"};
    size_t nw = sizeof words / sizeof *words, want = (size_t)(kb * 1024), n = 0, w = seed;
    char *t = malloc(want + 16);
    assert_non_null(t);
    while (n + 12 < want) {
        const char *s = words[(w * 7 + w / 3 + seed) % nw];
        n += (size_t)sprintf(t + n, "%s%s", n ? " " : "", s);
        w++;
    }
    t[n] = '\0';
    return t;
}

/* The defaults (prefill_chunk 20, round_ms 5), with lines long enough for a 64 KiB text. */
static int setup(void **state)
{
    const char *extra[] = {"--max-line", "256K", NULL};
    return dc_setup_started(state, extra);
}

static int teardown(void **state)
{
    dh_daemon *h = *state;
    int rc = dc_finish(h);
    free(h);
    return rc;
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

/* How many replies have already arrived on c (none waited for). */
static unsigned drain(qi_client *c)
{
    unsigned n = 0;
    for (;;) {
        qi_reply r;
        qi_error e;
        qi_code rc = qi_client_read_reply(c, 0, &r, &e);
        if (rc == QI_ERR_TIMEOUT)
            return n;
        assert_int_equal(rc, QI_OK);
        n++;
        qi_reply_free(&r);
    }
}

/* The probabilities of result i of a classify reply, into p (k of them); returns k. */
static size_t probs_of(const qi_reply *r, size_t i, double *p, size_t cap)
{
    if (r->kind != QI_REPLY_RESULT)
        fail_msg("expected a classify result, got %s", json_object_to_json_string(r->body));
    json_object *res = json_object_array_get_idx(jget(r->body, "results"), i), *probs = jget(res, "probs");
    assert_non_null(probs);
    size_t k = json_object_array_length(probs);
    assert_true(k >= 2 && k <= cap);
    for (size_t c = 0; c < k; c++)
        p[c] = json_object_get_double(json_object_array_get_idx(probs, c));
    return k;
}

/* A one-text classify's probabilities, read to its result. */
static size_t classify(qi_client *c, const char *text, double *p, size_t cap)
{
    qi_reply r;
    rpc(c, &r, "{\"id\":\"c\",\"op\":\"classify\",\"text\":\"%s\"}", text);
    size_t k = probs_of(&r, 0, p, cap);
    qi_reply_free(&r);
    return k;
}

static void assert_same_probs(const double *a, const double *b, size_t k, const char *what)
{
    for (size_t c = 0; c < k; c++)
        if (a[c] != b[c])
            fail_msg("%s: class %zu: %.9g against %.9g", what, c, a[c], b[c]);
}

static bool same_probs(const double *a, const double *b, size_t k)
{
    for (size_t c = 0; c < k; c++)
        if (a[c] != b[c])
            return false;
    return true;
}

/* The served variants' footprints by name, from `variants`. */
static uint64_t variant_footprint(qi_client *c, const char *name)
{
    qi_reply r;
    rpc(c, &r, "{\"id\":\"v\",\"op\":\"variants\"}");
    json_object *vs = jget(r.body, "variants");
    uint64_t fp = 0;
    for (size_t i = 0; vs && i < json_object_array_length(vs); i++) {
        json_object *v = json_object_array_get_idx(vs, i);
        if (strcmp(jstr(v, "name"), name) == 0)
            fp = (uint64_t)jint(v, "footprint_bytes");
    }
    qi_reply_free(&r);
    if (!fp)
        fail_msg("no variant %s", name);
    return fp;
}

/* ---------------------------------------------------------------- a generate beside a long text */

/* A reads a 64 KiB classify (about 12,000 tokens); once it is being computed, B's streamed
 * 8-token generate gets its 8 token events and its done message while A has no answer yet, and
 * A's answer comes after. One token a round, read beside rounds of chunks. */
static void test_generate_beside_long_classify(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(64, 1);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    sendf(a, "{\"id\":\"long\",\"op\":\"classify\",\"text\":\"%s\"}", text);
    wait_computing(b, 1);
    sendf(b, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The economy\",\"max_tokens\":8,\"seed\":3,"
             "\"stream\":true}");
    unsigned tokens = 0;
    for (;;) {
        qi_reply r;
        read_reply(b, &r);
        if (r.kind == QI_REPLY_TOKEN) {
            assert_int_equal(r.index, tokens);
            tokens++;
            if (drain(a) != 0)
                fail_msg("the 64 KiB classify was answered before the generate's token %u", tokens);
            qi_reply_free(&r);
            continue;
        }
        if (r.kind != QI_REPLY_DONE)
            fail_msg("expected the generate's done message, got %s", json_object_to_json_string(r.body));
        assert_int_equal(r.stats.tokens, 8);
        assert_int_equal(tokens, 8);
        qi_reply_free(&r);
        break;
    }
    if (drain(a) != 0)
        fail_msg("the 64 KiB classify was answered before the generate's done message");
    qi_reply r;
    qi_reply st;
    status(b, &st);
    assert_int_equal(jint(st.body, "queue.active"), 1); /* A's classify, still being read */
    qi_reply_free(&st);
    read_reply(a, &r);
    if (r.kind != QI_REPLY_RESULT || !id_is_str(&r.id, "long"))
        fail_msg("the 64 KiB classify: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    qi_client_close(a);
    qi_client_close(b);
    free(text);
}

/* ---------------------------------------------------------------- the same answer under load */

/* A 6 KiB text alone, then the same text (twice, beside a short one, in one request) while
 * another connection reads a 64 KiB text and a third generates: the same probabilities, bit for
 * bit. */
static void test_same_answer_alone_and_under_load(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(6, 2), *big = long_text(64, 3);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h), *c = connect_or_fail(h);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    double alone[8], loaded[8];
    size_t k = classify(b, text, alone, 8);

    sendf(a, "{\"id\":\"big\",\"op\":\"classify\",\"text\":\"%s\"}", big);
    sendf(c, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"We the people\",\"max_tokens\":400,\"seed\":5,"
             "\"stream\":true}");
    wait_computing(b, 2);
    qi_reply r;
    rpc(b, &r, "{\"id\":\"c\",\"op\":\"classify\",\"texts\":[\"%s\",\"Hope.\",\"%s\"]}", text, text);
    assert_int_equal(probs_of(&r, 0, loaded, 8), k);
    assert_same_probs(alone, loaded, k, "texts[0] beside a long classify and a generation");
    assert_int_equal(probs_of(&r, 2, loaded, 8), k);
    assert_same_probs(alone, loaded, k, "texts[2] beside a long classify and a generation");
    qi_reply_free(&r);
    if (drain(a) != 0)
        fail_msg("the 64 KiB classify ended before the 6 KiB one: no load was beside it");
    qi_client_close(a); /* its requests are dropped with it */
    qi_client_close(c);
    qi_client_close(b);
    free(text);
    free(big);
}

/* The same text read one token at a time (a daemon with --prefill-chunk 1: every chunk a single
 * row, the decode path) gives the probabilities of the default chunks within PROB_TOL. */
static void test_chunks_against_single_tokens(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(6, 2);
    qi_client *c = connect_or_fail(h);
    wait_active(c, from->name, 0, SWITCH_TIMEOUT_MS);
    double chunked[8], single[8];
    size_t k = classify(c, text, chunked, 8);
    qi_client_close(c);

    dh_daemon *one = calloc(1, sizeof *one);
    assert_non_null(one);
    const char *extra[] = {"--max-line", "256K", "--prefill-chunk", "1", NULL};
    assert_int_equal(dc_init(one), 0);
    assert_int_equal(dc_start(one, extra), 0);
    c = connect_or_fail(one);
    wait_active(c, from->name, 0, SWITCH_TIMEOUT_MS);
    assert_int_equal(classify(c, text, single, 8), k);
    qi_client_close(c);
    assert_int_equal(dc_finish(one), 0);
    free(one);
    for (size_t i = 0; i < k; i++)
        if (chunked[i] - single[i] > PROB_TOL || single[i] - chunked[i] > PROB_TOL)
            fail_msg("class %zu: chunks of %d give %.9g, single tokens %.9g", i, QR_PREFILL_CHUNK, chunked[i],
                     single[i]);
    print_message("[  CHUNKS  ] chunks of %d and single tokens: %s\n", QR_PREFILL_CHUNK,
                  same_probs(chunked, single, k) ? "the same bits" : "within 1e-4");
    free(text);
}

/* ---------------------------------------------------------------- switches */

/* While a 64 KiB text is read on `from`, the budget drops under from's footprint: the switch
 * restarts the text on `to`, and its answer is to's alone, bit for bit (from's differs, so it
 * was not read on `from`, nor on both). */
static void test_switch_restarts_chunked_classify(void **state)
{
    dh_daemon *h = *state;
    char *text = long_text(64, 4);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    sendf(a, "{\"id\":\"long\",\"op\":\"classify\",\"text\":\"%s\"}", text);
    wait_computing(b, 1);
    set_memory_budget(b, from->footprint - 1);
    wait_active(b, to->name, 0, SWITCH_TIMEOUT_MS);
    if (drain(a) != 0)
        fail_msg("the 64 KiB classify ended before the switch");
    qi_reply r;
    read_reply(a, &r);
    double switched[8], alone_to[8], alone_from[8];
    size_t k = probs_of(&r, 0, switched, 8);
    qi_reply_free(&r);
    assert_int_equal(classify(b, text, alone_to, 8), k);
    assert_same_probs(switched, alone_to, k, "read across the switch, against the new variant alone");
    set_memory_budget(b, 0);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    assert_int_equal(classify(b, text, alone_from, 8), k);
    if (same_probs(alone_to, alone_from, k))
        fail_msg("%s and %s give the same probabilities: the test cannot tell them apart", to->name, from->name);
    qi_client_close(a);
    qi_client_close(b);
    free(text);
}

/* The same for a generate whose 40 KiB prompt is being read: its tokens all come from `to` (one
 * span) and are the ones it gives alone. */
static void test_switch_restarts_chunked_prompt(void **state)
{
    dh_daemon *h = *state;
    char *prompt = long_text(40, 5);
    qi_client *a = connect_or_fail(h), *b = connect_or_fail(h);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    sendf(a, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":6,\"seed\":9}", prompt);
    wait_computing(b, 1);
    set_memory_budget(b, from->footprint - 1);
    wait_active(b, to->name, 0, SWITCH_TIMEOUT_MS);
    if (drain(a) != 0)
        fail_msg("the generate's prompt was read before the switch");
    qi_reply d, alone;
    read_reply(a, &d);
    if (d.kind != QI_REPLY_DONE)
        fail_msg("generate across a switch: %s", json_object_to_json_string(d.body));
    assert_int_equal(d.stats.n_spans, 1);
    assert_string_equal(d.stats.spans[0].variant, to->name);
    assert_int_equal(d.stats.switches, 0);
    rpc(b, &alone, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":6,\"seed\":9}", prompt);
    assert_int_equal(alone.kind, QI_REPLY_DONE);
    assert_int_equal(alone.stats.prompt_tokens, d.stats.prompt_tokens);
    assert_int_equal(alone.text_len, d.text_len);
    assert_memory_equal(alone.text, d.text, d.text_len);
    qi_reply_free(&d);
    qi_reply_free(&alone);
    set_memory_budget(b, 0);
    wait_active(b, from->name, 0, SWITCH_TIMEOUT_MS);
    qi_client_close(a);
    qi_client_close(b);
    free(prompt);
}

/* ---------------------------------------------------------------- footprints */

/* The footprints `variants` reports are footprint.h's for the daemon's batch and chunk: with
 * the default chunk (20), the runner for 20 rows; with --prefill-chunk 24, for 24, and a
 * classify works there; a budget that fitted `to` exactly with chunks of 20 no longer does with
 * 24, and the policy takes the best of what fits it then. */
static void test_footprints_count_chunk_rows(void **state)
{
    dh_daemon *h = *state;
    bf_bundle wide_facts;
    if (bf_load(&wide_facts, BF_DAEMON_BATCH, 24) != 0)
        fail_msg("%s", wide_facts.err);
    qi_client *c = connect_or_fail(h);
    for (size_t i = 0; i < bundle.n; i++)
        assert_int_equal(variant_footprint(c, bundle.v[i].name), bundle.v[i].footprint);
    uint64_t fits = variant_footprint(c, to->name);
    qi_client_close(c);
    const bf_variant *wide_pick = bf_best(&wide_facts, fits, NULL);
    if (!wide_pick)
        fail_msg("no variant fits %s's footprint with chunks of 24", to->name);

    dh_daemon *wide = calloc(1, sizeof *wide);
    assert_non_null(wide);
    const char *extra[] = {"--prefill-chunk", "24", NULL};
    assert_int_equal(dc_init(wide), 0);
    assert_int_equal(dc_start(wide, extra), 0);
    c = connect_or_fail(wide);
    for (size_t i = 0; i < bundle.n; i++) {
        uint64_t want = wide_facts.v[i].footprint;
        assert_true(want > bundle.v[i].footprint);
        assert_int_equal(variant_footprint(c, bundle.v[i].name), want);
    }
    wait_active(c, from->name, 0, SWITCH_TIMEOUT_MS);
    double p[8];
    char *text = long_text(2, 6);
    classify(c, text, p, 8);
    free(text);
    assert_true(variant_footprint(c, to->name) > fits && variant_footprint(c, wide_pick->name) <= fits);
    set_memory_budget(c, fits);
    wait_active(c, wide_pick->name, 0, SWITCH_TIMEOUT_MS);
    qi_client_close(c);
    assert_int_equal(dc_finish(wide), 0);
    free(wide);
}

int main(int argc, char **argv)
{
    if (argc > 1) /* the qslmd to test, as meson passes it */
        setenv("QSLMD", argv[1], 1);
    dc_read_timeout_ms = 240000; /* a sanitizer build reads a 64 KiB text slowly */
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_daemon_prefill: %s\n", bundle.err);
        return 1;
    }
    from = bf_top(&bundle);
    to = bf_step_down(&bundle, from);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generate_beside_long_classify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_answer_alone_and_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunks_against_single_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_restarts_chunked_classify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_restarts_chunked_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_footprints_count_chunk_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
