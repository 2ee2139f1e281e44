/* test_ipc_reply.c: every reply builder, read back through the client's reply parser; the
 * guarantees on the line (id type echoed, UTF-8, no newline, JSON numbers); the parser's
 * refusals; the UTF-8 helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "reply_parse.h"
#include "request.h"
#include "utf8.h"

static qi_id sid(const char *s)
{
    qi_id id;
    assert_true(qi_id_set_string(&id, s));
    return id;
}

static qi_id nid(uint64_t n)
{
    qi_id id;
    assert_true(qi_id_set_int(&id, n));
    return id;
}

/* The promises of every built line: one '\n' at the end and none inside, valid UTF-8. */
static void check_line(const char *line, size_t len)
{
    assert_true(len >= 2);
    assert_int_equal(line[len - 1], '\n');
    assert_int_equal(line[len], '\0');
    assert_null(memchr(line, '\n', len - 1));
    assert_true(qi_utf8_valid(line, len));
}

/* Parses a built line (freeing it), which must succeed. */
static qi_reply parse(char *line, size_t len)
{
    check_line(line, len);
    qi_reply r;
    qi_error e;
    if (qi_reply_parse(line, len - 1, &r, &e) != QI_OK)
        fail_msg("reply parser refused %s: %s", line, e.msg);
    free(line);
    return r;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("no member %s", key);
    return v;
}

/* ---------------------------------------------------------------- events */

/* busy with a retry hint: the field on the wire and parsed; any other error parses as no hint,
 * and a hint that is not a non-negative integer is refused. */
static void test_busy_retry_hint(void **state)
{
    (void)state;
    qi_id id;
    assert_true(qi_id_set_int(&id, 5));
    size_t len = 0;
    char *line = qi_reply_busyf(&id, 1250, &len, "%u requests in flight", 16u);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"retry_after_ms\":1250"));
    qi_reply r;
    qi_error e;
    assert_int_equal(qi_reply_parse(line, len - 1, &r, &e), QI_OK);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.code, QI_ERR_BUSY);
    assert_int_equal(r.retry_after_ms, 1250);
    assert_string_equal(r.message, "16 requests in flight");
    qi_reply_free(&r);
    free(line);
    const char *plain = "{\"id\":1,\"error\":{\"code\":\"busy\",\"message\":\"m\"}}";
    assert_int_equal(qi_reply_parse(plain, strlen(plain), &r, &e), QI_OK);
    assert_int_equal(r.retry_after_ms, -1);
    qi_reply_free(&r);
    const char *bad = "{\"id\":1,\"error\":{\"code\":\"busy\",\"message\":\"m\",\"retry_after_ms\":-3}}";
    assert_int_equal(qi_reply_parse(bad, strlen(bad), &r, &e), QI_ERR_PROTOCOL);
}

/* The printf-style error builder: the message formatted, the field kept, the id echoed, and
 * a non-wire code sent as internal. */
static void test_errorf(void **state)
{
    (void)state;
    qi_id id;
    assert_true(qi_id_set_int(&id, 42));
    size_t len = 0;
    char *line = qi_reply_errorf(&id, QI_ERR_BUSY, "queue", &len, "%u waiting (limit %s)", 7u, "64");
    assert_non_null(line);
    assert_int_equal(line[len - 1], '\n');
    qi_reply r;
    qi_error e;
    assert_int_equal(qi_reply_parse(line, len - 1, &r, &e), QI_OK);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.code, QI_ERR_BUSY);
    assert_string_equal(r.message, "7 waiting (limit 64)");
    assert_string_equal(r.field, "queue");
    assert_int_equal(r.id.kind, QI_ID_INT);
    assert_int_equal(r.id.num, 42);
    qi_reply_free(&r);
    free(line);
    line = qi_reply_errorf(&id, QI_ERR_NOMEM, NULL, &len, "no memory");
    assert_non_null(line);
    assert_non_null(strstr(line, "\"code\":\"internal\""));
    free(line);
}

static void test_token_id_echo(void **state)
{
    (void)state;
    char *line;
    size_t len;
    qi_error e;
    qi_id s = sid("42"), n = nid(42);
    assert_int_equal(qi_reply_token(&s, "Hi", 2, 1234, 0, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":\"42\",\"event\":\"token\",\"text\":\"Hi\",\"token\":1234,"
                              "\"index\":0}\n");
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_TOKEN);
    assert_false(qi_reply_is_final(&r));
    assert_true(qi_id_equal(&r.id, &s));
    assert_string_equal(r.text, "Hi");
    assert_int_equal(r.text_len, 2);
    assert_int_equal(r.token, 1234);
    assert_int_equal(r.index, 0);
    qi_reply_free(&r);

    assert_int_equal(qi_reply_token(&n, " world", 6, 7, 4294967295u, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":42,\"event\":\"token\",\"text\":\" world\",\"token\":7,"
                              "\"index\":4294967295}\n");
    r = parse(line, len);
    assert_true(qi_id_equal(&r.id, &n));
    assert_int_equal(r.id.kind, QI_ID_INT);
    assert_int_equal(r.index, 4294967295u);
    qi_reply_free(&r);

    qi_id big = nid(9007199254740991ULL);
    assert_int_equal(qi_reply_token(&big, "", 0, -1, 1, &line, &len, &e), QI_OK);
    r = parse(line, len);
    assert_int_equal(r.id.num, 9007199254740991ULL);
    assert_int_equal(r.text_len, 0);
    assert_int_equal(r.token, -1);
    qi_reply_free(&r);
}

static void test_done(void **state)
{
    (void)state;
    const qi_span spans[] = {{"f32", 0, 10}, {"q4-block", 10, 16}};
    for (int reason = 0; reason < QI_STOP_COUNT; reason++) {
        qi_gen_stats st = {.prompt_tokens = 3, .tokens = 16, .ms = 12.5,
                           .tokens_per_s = 1280.123456789,
                           .stop_reason = (qi_stop_reason)reason, .spans = spans, .n_spans = 2,
                           .switches = 1, .switch_wait_ms = 42.25};
        char *line;
        size_t len;
        qi_error e;
        qi_id id = sid("gen 1");
        assert_int_equal(qi_reply_done(&id, "Once upon\na time", 16, &st, &line, &len, &e), QI_OK);
        assert_non_null(strstr(line, "\"text\":\"Once upon\\na time\""));
        assert_non_null(strstr(line, "\"ms\":12.5,"));
        qi_reply r = parse(line, len);
        assert_int_equal(r.kind, QI_REPLY_DONE);
        assert_true(qi_reply_is_final(&r));
        assert_string_equal(r.id.str, "gen 1");
        assert_string_equal(r.text, "Once upon\na time");
        assert_int_equal(r.stats.tokens, 16);
        assert_int_equal(r.stats.prompt_tokens, 3);
        assert_true(r.stats.ms == 12.5);
        assert_true(r.stats.tokens_per_s == 1280.123456789);
        assert_int_equal(r.stats.stop_reason, reason);
        assert_int_equal(r.stats.switches, 1);
        assert_true(r.stats.switch_wait_ms == 42.25);
        assert_int_equal(r.stats.n_spans, 2);
        assert_string_equal(r.stats.spans[1].variant, "q4-block");
        assert_int_equal(r.stats.spans[1].from, 10);
        assert_int_equal(r.stats.spans[1].to, 16);
        qi_reply_free(&r);
    }
    /* No spans (cancelled before the first token); a timer that failed: null, read as NAN. */
    qi_gen_stats st = {.stop_reason = QI_STOP_CANCELLED, .ms = NAN, .tokens_per_s = INFINITY};
    char *line;
    size_t len;
    qi_error e;
    qi_id id = nid(3);
    assert_int_equal(qi_reply_done(&id, "", 0, &st, &line, &len, &e), QI_OK);
    assert_non_null(strstr(line, "\"ms\":null,\"tokens_per_s\":null"));
    assert_non_null(strstr(line, "\"spans\":[]"));
    qi_reply r = parse(line, len);
    assert_true(isnan(r.stats.ms) && isnan(r.stats.tokens_per_s));
    assert_int_equal(r.stats.n_spans, 0);
    assert_int_equal(r.stats.stop_reason, QI_STOP_CANCELLED);
    qi_reply_free(&r);

    qi_stop_reason sr;
    assert_false(qi_stop_reason_from_name("timeout", &sr));
    assert_null(qi_stop_reason_name(QI_STOP_COUNT));
}

/* Generated bytes that are not UTF-8, NUL, control characters: the line stays valid. */
static void test_text_repair(void **state)
{
    (void)state;
    const char text[] = "a\xff" "b\xe2\x82" "c\0d\x01\n\"\\/\xf0\x9f\x98\x80\xed\xa0\x80";
    char *line;
    size_t len;
    qi_error e;
    qi_id id = nid(1);
    assert_int_equal(qi_reply_token(&id, text, sizeof text - 1, 5, 0, &line, &len, &e), QI_OK);
    qi_reply r = parse(line, len);
    assert_string_equal(r.text, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd" "d\x01\n\"\\/"
                                "\xf0\x9f\x98\x80\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    qi_reply_free(&r);
}

/* ---------------------------------------------------------------- results */

static void test_classify(void **state)
{
    (void)state;
    const float p0[] = {0.1f, 0.9f}, p1[] = {0.75f, 0.25f}, p2[] = {1.0f / 3, 2.0f / 3};
    const qi_class_result res[] = {{1, p0, 2}, {0, p1, 2}, {1, p2, 2}};
    char *line;
    size_t len;
    qi_error e;
    qi_id id = sid("c");
    static const char *const names[] = {"negative", "positive \xc3\xa9\"q\""};
    const qi_class_head hd = {"sentiment", names, 2};
    assert_int_equal(qi_reply_classify(&id, &hd, res, 3, &line, &len, &e), QI_OK);
    assert_non_null(strstr(line, "\"task\":\"sentiment\",\"labels\":[\"negative\",\"positive \xc3\xa9\\\"q\\\"\"]"));
    assert_non_null(strstr(line, "{\"label\":\"positive \xc3\xa9\\\"q\\\"\",\"label_index\":1,\"probs\":[0.1,0.9]}"));
    assert_non_null(strstr(line, "{\"label\":\"negative\",\"label_index\":0,\"probs\":[0.75,0.25]}"));
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_true(qi_reply_is_final(&r));
    json_object *results = member(r.body, "results");
    assert_int_equal(json_object_array_length(results), 3);
    for (size_t i = 0; i < 3; i++) {
        json_object *x = json_object_array_get_idx(results, i);
        assert_int_equal(json_object_get_int(member(x, "label_index")), res[i].label);
        assert_string_equal(json_object_get_string(member(x, "label")), names[res[i].label]);
        json_object *probs = member(x, "probs");
        for (size_t k = 0; k < 2; k++)
            assert_true((float)json_object_get_double(json_object_array_get_idx(probs, k)) ==
                        res[i].probs[k]);
    }
    qi_reply_free(&r);
    /* A label index outside the head's labels is refused, not sent. */
    const qi_class_result bad[] = {{2, p0, 2}};
    line = NULL;
    assert_int_equal(qi_reply_classify(&id, &hd, bad, 1, &line, &len, &e), QI_ERR_INTERNAL);
    assert_null(line);
}

static void test_control_replies(void **state)
{
    (void)state;
    char *line;
    size_t len;
    qi_error e;
    qi_id id = nid(9);
    assert_int_equal(qi_reply_cancel(&id, true, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":9,\"ok\":true,\"found\":true}\n");
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);

    assert_int_equal(qi_reply_set_budget(&id, true, 32u << 20, false, 0, &line, &len, &e), QI_OK);
    assert_string_equal(line,
                        "{\"id\":9,\"ok\":true,\"memory_bytes\":33554432,\"power_w\":null}\n");
    free(line);
    assert_int_equal(qi_reply_set_budget(&id, false, 0, true, 3500000, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":9,\"ok\":true,\"memory_bytes\":null,\"power_w\":3.5}\n");
    free(line);
    assert_int_equal(qi_reply_pin(&id, "q4", &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":9,\"ok\":true,\"variant\":\"q4\"}\n");
    free(line);
    assert_int_equal(qi_reply_pin(&id, NULL, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":9,\"ok\":true,\"variant\":null}\n");
    free(line);
    assert_int_equal(qi_reply_reload(&id, 4, "f16", &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":9,\"ok\":true,\"variants\":4,\"active\":\"f16\"}\n");
    r = parse(line, len);
    assert_int_equal(json_object_get_int(member(r.body, "variants")), 4);
    qi_reply_free(&r);
}

/* metrics: the text as one JSON string (its newlines escaped), with its content type. */
static void test_metrics(void **state)
{
    (void)state;
    char *line;
    size_t len;
    qi_error e;
    qi_id id = nid(3);
    const char text[] = "# TYPE a_total counter\na_total{l=\"x\\\"y\"} 1\n";
    assert_int_equal(qi_reply_metrics(&id, text, strlen(text), &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":3,\"content_type\":\"text/plain; version=0.0.4; charset=utf-8\","
                              "\"text\":\"# TYPE a_total counter\\na_total{l=\\\"x\\\\\\\"y\\\"} 1\\n\"}\n");
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    assert_string_equal(json_object_get_string(member(r.body, "text")), text);
    qi_reply_free(&r);
}

static void test_status(void **state)
{
    (void)state;
    const qi_reading readings[] = {
        {"cgroup memory.max", "bytes", true, 67108864, NULL},
        {"psi memory avg10", "%", true, 1.25, NULL},
        {"hwmon1 power1_input", "W", false, 0, "not readable: permission denied"},
    };
    qi_server_status s = {
        .active = "q4-block", .reason = "best that fits 32M (set-budget)", .pinned = false,
        .has_memory_budget = true, .memory_budget_bytes = 32u << 20,
        .memory_budget_source = "set-budget", .has_power_budget = false,
        .readings = readings, .n_readings = 3, .queue_waiting = 2, .queue_active = 3,
        .queue_limit = 64, .connections = 5, .requests = 100, .tokens = 5000, .errors = 1,
        .cancelled = 2, .disconnected = 4, .switches = 3, .uptime_s = 3600.5,
        .bundle_path = "/b/2026-12-05", .bundle_configured = "/b/current", .bundle_created = NULL,
        .bundle_signer = "3f2a9c0d11e2b4f7",
        .bundle_manifest_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    };
    char *line;
    size_t len;
    qi_error e;
    qi_id id = sid("st");
    assert_int_equal(qi_reply_status(&id, &s, &line, &len, &e), QI_OK);
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    json_object *b = r.body;
    assert_int_equal(json_object_get_int(member(b, "protocol")), QI_PROTOCOL_VERSION);
    json_object *active = member(b, "active");
    assert_string_equal(json_object_get_string(member(active, "variant")), "q4-block");
    assert_false(json_object_get_boolean(member(active, "pinned")));
    json_object *mem = member(member(b, "budget"), "memory");
    assert_int_equal(json_object_get_int64(member(mem, "bytes")), 32 << 20);
    assert_string_equal(json_object_get_string(member(mem, "source")), "set-budget");
    json_object *pw = member(member(b, "budget"), "power");
    assert_null(member(pw, "watts"));
    json_object *rd = member(b, "readings");
    assert_int_equal(json_object_array_length(rd), 3);
    assert_true(json_object_get_double(member(json_object_array_get_idx(rd, 1), "value")) == 1.25);
    assert_null(member(json_object_array_get_idx(rd, 2), "value"));
    assert_string_equal(json_object_get_string(member(json_object_array_get_idx(rd, 2), "note")),
                        "not readable: permission denied");
    assert_int_equal(json_object_get_int(member(member(b, "queue"), "limit")), 64);
    assert_int_equal(json_object_get_int(member(member(b, "counters"), "switches")), 3);
    assert_int_equal(json_object_get_int(member(member(b, "counters"), "cancelled")), 2);
    assert_int_equal(json_object_get_int(member(member(b, "counters"), "disconnected")), 4);
    assert_true(json_object_get_double(member(b, "uptime_s")) == 3600.5);
    json_object *bundle = member(b, "bundle");
    assert_string_equal(json_object_get_string(member(bundle, "path")), "/b/2026-12-05");
    assert_string_equal(json_object_get_string(member(bundle, "configured")), "/b/current");
    assert_string_equal(json_object_get_string(member(bundle, "signer")), "3f2a9c0d11e2b4f7");
    assert_int_equal(strlen(json_object_get_string(member(bundle, "manifest_sha256"))), 64);
    json_object *created;
    assert_true(json_object_object_get_ex(bundle, "created", &created) && created == NULL); /* null, not absent */
    qi_reply_free(&r);
    /* no bundle path: no "bundle" object (a server that does not say) */
    s.bundle_path = NULL;
    assert_int_equal(qi_reply_status(&id, &s, &line, &len, &e), QI_OK);
    assert_null(strstr(line, "\"bundle\""));
    free(line);
}

static void test_variants(void **state)
{
    (void)state;
    const qi_variant_info v[] = {
        {"f32", 37000000, 32, 87.56, 88.1, 0.705, 1601, 1.5e6, true, false, false},
        {"q4", 6000000, 4.5, NAN, NAN, NAN, NAN, NAN, false, true, true},
    };
    char *line;
    size_t len;
    qi_error e;
    qi_id id = nid(0);
    assert_int_equal(qi_reply_variants(&id, v, 2, &line, &len, &e), QI_OK);
    assert_non_null(strstr(line, "\"ppl_test\":87.56"));
    assert_non_null(strstr(line, "\"energy_pj_per_token\":1500000"));
    qi_reply r = parse(line, len);
    json_object *arr = member(r.body, "variants");
    assert_int_equal(json_object_array_length(arr), 2);
    json_object *q4 = json_object_array_get_idx(arr, 1);
    assert_string_equal(json_object_get_string(member(q4, "name")), "q4");
    assert_true(json_object_get_double(member(q4, "bits_per_weight")) == 4.5);
    assert_null(member(member(q4, "metrics"), "ppl_test"));
    assert_true(json_object_get_boolean(member(q4, "pinned")));
    assert_false(json_object_get_boolean(member(q4, "verified")));
    qi_reply_free(&r);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    for (int c = QI_ERR_INVALID_JSON; c <= QI_ERR_INTERNAL; c++) {
        assert_true(qi_code_is_wire((qi_code)c));
        assert_int_equal(qi_code_from_name(qi_code_name((qi_code)c)), c);
        char *line;
        size_t len;
        qi_error e;
        qi_id id = nid((uint64_t)c);
        assert_int_equal(qi_reply_error(&id, (qi_code)c, c % 2 ? "max_tokens" : NULL, "msg",
                                        &line, &len, &e), QI_OK);
        qi_reply r = parse(line, len);
        assert_int_equal(r.kind, QI_REPLY_ERROR);
        assert_true(qi_reply_is_final(&r));
        assert_int_equal(r.code, c);
        assert_string_equal(r.code_name, qi_code_name((qi_code)c));
        assert_string_equal(r.message, "msg");
        if (c % 2)
            assert_string_equal(r.field, "max_tokens");
        else
            assert_null(r.field);
        qi_reply_free(&r);
    }
    /* Local codes never go on the wire. */
    assert_false(qi_code_is_wire(QI_ERR_NO_SOCKET));
    assert_int_equal(qi_code_from_name("no_socket"), QI_ERR_UNKNOWN_CODE);
    char *line;
    size_t len;
    qi_error e;
    qi_id none = qi_id_none();
    assert_int_equal(qi_reply_error(&none, QI_ERR_NOMEM, NULL, "x", &line, &len, &e), QI_OK);
    assert_string_equal(line,
                        "{\"id\":null,\"error\":{\"code\":\"internal\",\"message\":\"x\"}}\n");
    qi_reply r = parse(line, len);
    assert_int_equal(r.id.kind, QI_ID_NONE);
    qi_reply_free(&r);
}

/* A request reusing an id in flight: the error's id is null (never the final message of the
 * request in flight), the reused id is in duplicate_id, in its own JSON type. */
static void test_duplicate_id(void **state)
{
    (void)state;
    char *line;
    size_t len;
    qi_error e;
    qi_id dup;
    assert_true(qi_id_set_string(&dup, "7"));
    assert_int_equal(qi_reply_duplicate_id(&dup, &line, &len, &e), QI_OK);
    static const char prefix[] = "{\"id\":null,\"duplicate_id\":\"7\",\"error\":{";
    assert_true(strncmp(line, prefix, sizeof prefix - 1) == 0);
    qi_reply r = parse(line, len);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.id.kind, QI_ID_NONE);
    assert_true(qi_id_equal(&r.duplicate_id, &dup));
    assert_int_equal(r.code, QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(r.field, "id");
    assert_non_null(strstr(r.message, "\"7\" is still in flight"));
    qi_reply_free(&r);

    dup = nid(7);
    assert_int_equal(qi_reply_duplicate_id(&dup, &line, &len, &e), QI_OK);
    r = parse(line, len);
    assert_true(r.duplicate_id.kind == QI_ID_INT && r.duplicate_id.num == 7);
    qi_reply_free(&r);

    /* any other reply: no duplicate id */
    qi_id none = qi_id_none();
    assert_int_equal(qi_reply_error(&none, QI_ERR_INVALID_JSON, NULL, "x", &line, &len, &e), QI_OK);
    r = parse(line, len);
    assert_int_equal(r.duplicate_id.kind, QI_ID_NONE);
    qi_reply_free(&r);
    /* a malformed duplicate_id breaks the protocol */
    static const char bad[] = "{\"id\":null,\"duplicate_id\":-1,\"error\":{\"code\":\"invalid_argument\",\"message\":\"m\"}}";
    assert_int_equal(qi_reply_parse(bad, sizeof bad - 1, &r, &e), QI_ERR_PROTOCOL);
}

/* A refused request becomes an error reply that carries its id in its own type, the code and
 * the field: the whole server path for a bad line. */
static void test_error_from_request(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *raw_id;
        qi_code code;
        const char *field;
    } cases[] = {
        {"{\"id\":\"7\",\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":0}", "\"id\":\"7\"",
         QI_ERR_INVALID_ARGUMENT, "max_tokens"},
        {"{\"id\":7,\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":0}", "\"id\":7,",
         QI_ERR_INVALID_ARGUMENT, "max_tokens"},
        {"{\"id\":7,\"op\":\"fly\"}", "\"id\":7,", QI_ERR_UNKNOWN_OP, "op"},
        {"{\"id\":7,\"op\":\"status\",\"x\":1}", "\"id\":7,", QI_ERR_INVALID_ARGUMENT, "x"},
        {"{\"id\":7,", "\"id\":null", QI_ERR_INVALID_JSON, NULL},
        {"{\"id\":-7,\"op\":\"status\"}", "\"id\":null", QI_ERR_INVALID_ARGUMENT, "id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qi_request req;
        qi_error perr, e;
        qi_code c = qi_request_parse(cases[i].line, strlen(cases[i].line), NULL, &req, &perr);
        assert_int_equal(c, cases[i].code);
        char *line;
        size_t len;
        assert_int_equal(qi_reply_error_from(&req.id, &perr, &line, &len, &e), QI_OK);
        assert_non_null(strstr(line, cases[i].raw_id));
        qi_reply r = parse(line, len);
        assert_int_equal(r.kind, QI_REPLY_ERROR);
        assert_int_equal(r.code, cases[i].code);
        assert_true(qi_id_equal(&r.id, &req.id));
        if (cases[i].field) {
            assert_string_equal(r.field, cases[i].field);
            assert_non_null(strstr(r.message, cases[i].field));
        } else {
            assert_null(r.field);
        }
        qi_reply_free(&r);
    }
}

/* ---------------------------------------------------------------- the parser's refusals */

static void test_reply_parser_refusals(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "", "not json", "[]", "{\"ok\":true}", "{\"id\":-1,\"ok\":true}", "{\"id\":1.5}",
        "{\"id\":1,\"event\":\"tok\"}", "{\"id\":1,\"event\":3}",
        "{\"id\":1,\"event\":\"token\",\"token\":1,\"index\":0}",
        "{\"id\":1,\"event\":\"token\",\"text\":\"a\",\"index\":0}",
        "{\"id\":1,\"event\":\"token\",\"text\":\"a\",\"token\":1,\"index\":-1}",
        "{\"id\":1,\"event\":\"token\",\"text\":\"a\",\"token\":4294967296,\"index\":0}",
        "{\"id\":1,\"event\":\"done\",\"text\":\"a\"}",
        "{\"id\":1,\"event\":\"done\",\"text\":\"a\",\"stats\":{}}",
        "{\"id\":1,\"event\":\"done\",\"text\":\"a\",\"stats\":{\"prompt_tokens\":1,"
        "\"tokens\":1,\"ms\":1,"
        "\"tokens_per_s\":1,\"stop_reason\":\"bored\",\"spans\":[],\"switches\":0}}",
        "{\"id\":1,\"event\":\"done\",\"text\":\"a\",\"stats\":{\"prompt_tokens\":1,"
        "\"tokens\":1,\"ms\":1,"
        "\"tokens_per_s\":1,\"stop_reason\":\"eos\",\"spans\":[{\"variant\":\"a\",\"from\":2,"
        "\"to\":1}],\"switches\":0}}",
        "{\"id\":1,\"event\":\"done\",\"text\":\"a\",\"stats\":{\"prompt_tokens\":1,"
        "\"tokens\":1,\"ms\":\"1\","
        "\"tokens_per_s\":1,\"stop_reason\":\"eos\",\"spans\":[],\"switches\":0}}",
        "{\"id\":1,\"error\":\"bad\"}", "{\"id\":1,\"error\":{\"message\":\"m\"}}",
        "{\"id\":1,\"error\":{\"code\":\"busy\"}}",
        "{\"id\":1,\"error\":{\"code\":\"busy\",\"message\":\"m\",\"field\":3}}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        qi_reply r;
        qi_error e;
        qi_code c = qi_reply_parse(lines[i], strlen(lines[i]), &r, &e);
        if (c != QI_ERR_PROTOCOL)
            fail_msg("%s: got %s", lines[i], qi_code_name(c));
        assert_null(r.body);
    }
}

/* Room to grow: unknown members are ignored, an unknown error code is kept by name. */
static void test_reply_parser_lenient(void **state)
{
    (void)state;
    const char *line = "{\"id\":\"a\",\"error\":{\"code\":\"overheated\",\"message\":\"m\","
                       "\"hint\":\"x\"},\"extra\":[1]}";
    qi_reply r;
    qi_error e;
    assert_int_equal(qi_reply_parse(line, strlen(line), &r, &e), QI_OK);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.code, QI_ERR_UNKNOWN_CODE);
    assert_string_equal(r.code_name, "overheated");
    qi_reply_free(&r);
    line = "{\"id\":null,\"event\":\"token\",\"text\":\"a\",\"token\":1,\"index\":0,"
           "\"logprob\":-1}";
    assert_int_equal(qi_reply_parse(line, strlen(line), &r, &e), QI_OK);
    assert_int_equal(r.id.kind, QI_ID_NONE);
    qi_reply_free(&r);
}

/* ---------------------------------------------------------------- UTF-8 helpers */

static void test_utf8(void **state)
{
    (void)state;
    assert_true(qi_utf8_valid("", 0));
    assert_true(qi_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 14));
    assert_false(qi_utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    assert_false(qi_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    assert_false(qi_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(qi_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(qi_utf8_valid("\xf5\x80\x80\x80", 4));
    assert_false(qi_utf8_valid("\x80", 1));
    assert_false(qi_utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(qi_utf8_valid("a\0b", 3));

    /* Holding back an unfinished character between tokens. */
    assert_int_equal(qi_utf8_complete_prefix("ab\xe2\x82", 4), 2);
    assert_int_equal(qi_utf8_complete_prefix("ab\xe2", 3), 2);
    assert_int_equal(qi_utf8_complete_prefix("ab\xf0\x9f\x98", 5), 2);
    assert_int_equal(qi_utf8_complete_prefix("ab\xe2\x82\xac", 5), 5);
    assert_int_equal(qi_utf8_complete_prefix("ab\xff", 3), 3);       /* invalid: not held */
    assert_int_equal(qi_utf8_complete_prefix("ab\xe2\x41", 4), 4);   /* broken: not held */
    assert_int_equal(qi_utf8_complete_prefix("\xed\xa0", 2), 2);     /* a surrogate start */
    assert_int_equal(qi_utf8_complete_prefix("", 0), 0);

    size_t n;
    char *s = qi_utf8_sanitize("a\xe2\x82" "b\xf0\x9f", 6, &n);
    assert_string_equal(s, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    assert_int_equal(n, 8);
    free(s);
    /* One U+FFFD per maximal invalid subpart: F0 9F 41 is one (F0 9F), then 'A'. */
    s = qi_utf8_sanitize("\xf0\x9f\x41\x80\x80", 5, &n);
    assert_string_equal(s, "\xef\xbf\xbd" "A\xef\xbf\xbd\xef\xbf\xbd");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errorf),
        cmocka_unit_test(test_busy_retry_hint),
        cmocka_unit_test(test_token_id_echo),
        cmocka_unit_test(test_done),
        cmocka_unit_test(test_text_repair),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_control_replies),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_duplicate_id),
        cmocka_unit_test(test_error_from_request),
        cmocka_unit_test(test_reply_parser_refusals),
        cmocka_unit_test(test_reply_parser_lenient),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
