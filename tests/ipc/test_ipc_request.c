/* test_ipc_request.c: every op's valid and invalid forms, with the exact error code and the
 * field each refusal names; id echo; the order of checks; what the JSON scan refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

static qi_limits limits(void)
{
    qi_limits l = qi_limits_default();
    l.vocab = 100;
    return l;
}

/* Parses a line that must be valid. */
static qi_request ok(const char *line)
{
    qi_limits l = limits();
    qi_request r;
    qi_error e;
    qi_code c = qi_request_parse(line, strlen(line), &l, &r, &e);
    if (c != QI_OK)
        fail_msg("refused %s: %s (%s)", line, e.msg, qi_code_name(c));
    return r;
}

/* Parses a line that must be refused with `code`, naming `field` (NULL: no field) in both the
 * error's field and its message. Returns the id the parser read. */
static qi_id bad(const char *line, qi_code code, const char *field)
{
    qi_limits l = limits();
    qi_request r;
    qi_error e;
    qi_code c = qi_request_parse(line, strlen(line), &l, &r, &e);
    if (c != code)
        fail_msg("%s: got %s (%s), want %s", line, qi_code_name(c), c ? e.msg : "",
                 qi_code_name(code));
    assert_int_equal(e.code, code);
    if (field) {
        if (strcmp(e.field, field) != 0)
            fail_msg("%s: field \"%s\", want \"%s\" (%s)", line, e.field, field, e.msg);
        assert_true(strncmp(e.msg, field, strlen(field)) == 0);
    } else {
        assert_string_equal(e.field, "");
    }
    assert_true(strlen(e.msg) > 0);
    return r.id;
}

/* ---------------------------------------------------------------- id and op */

static void test_id_echo(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":\"abc\",\"op\":\"status\"}");
    assert_int_equal(r.id.kind, QI_ID_STRING);
    assert_string_equal(r.id.str, "abc");
    r = ok("{\"id\":42,\"op\":\"status\"}");
    assert_int_equal(r.id.kind, QI_ID_INT);
    assert_int_equal(r.id.num, 42);
    r = ok("{\"id\":\"42\",\"op\":\"status\"}");
    assert_int_equal(r.id.kind, QI_ID_STRING);
    assert_string_equal(r.id.str, "42");
    r = ok("{\"id\":0,\"op\":\"status\"}");
    assert_int_equal(r.id.num, 0);
    r = ok("{\"id\":9007199254740991,\"op\":\"status\"}");
    assert_int_equal(r.id.num, 9007199254740991ULL);
    r = ok("{\"id\":\" ~ 0123456789012345678901234567890123456789012345678901234567890\","
           "\"op\":\"status\"}");
    assert_int_equal(strlen(r.id.str), 64);
    /* Order of members does not matter; whitespace around the object is JSON's. */
    r = ok(" \t{\"op\":\"status\" , \"id\":\"x\"}\r");
    assert_string_equal(r.id.str, "x");
}

static void test_id_invalid(void **state)
{
    (void)state;
    qi_id id;
    id = bad("{\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    assert_int_equal(id.kind, QI_ID_NONE);
    bad("{\"id\":null,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":\"\",\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":\"01234567890123456789012345678901234567890123456789012345678901234\","
        "\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":\"a\\tb\",\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":\"\xc3\xa9\",\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":-1,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":9007199254740992,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":1.0,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":true,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    bad("{\"id\":[1],\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    id = bad("{\"id\":18446744073709551615,\"op\":\"status\"}", QI_ERR_INVALID_ARGUMENT, "id");
    assert_int_equal(id.kind, QI_ID_NONE);
}

static void test_op(void **state)
{
    (void)state;
    qi_id id = bad("{\"id\":7}", QI_ERR_INVALID_ARGUMENT, "op");
    assert_int_equal(id.kind, QI_ID_INT); /* the id is read, so the error reply can echo it */
    assert_int_equal(id.num, 7);
    bad("{\"id\":7,\"op\":5}", QI_ERR_INVALID_ARGUMENT, "op");
    bad("{\"id\":7,\"op\":null}", QI_ERR_INVALID_ARGUMENT, "op");
    id = bad("{\"id\":\"q\",\"op\":\"Generate\"}", QI_ERR_UNKNOWN_OP, "op");
    assert_string_equal(id.str, "q");
    bad("{\"id\":7,\"op\":\"set_budget\"}", QI_ERR_UNKNOWN_OP, "op");
    bad("{\"id\":7,\"op\":\"\"}", QI_ERR_UNKNOWN_OP, "op");
    for (int op = 0; op < QI_OP_COUNT; op++) {
        qi_op back;
        assert_true(qi_op_from_name(qi_op_name((qi_op)op), &back));
        assert_int_equal(back, op);
    }
    assert_null(qi_op_name(QI_OP_COUNT));
    assert_true(qi_op_is_control(QI_OP_SET_BUDGET) && qi_op_is_control(QI_OP_PIN) &&
                qi_op_is_control(QI_OP_UNPIN) && qi_op_is_control(QI_OP_RELOAD));
    assert_false(qi_op_is_control(QI_OP_GENERATE) || qi_op_is_control(QI_OP_CLASSIFY) ||
                 qi_op_is_control(QI_OP_CANCEL) || qi_op_is_control(QI_OP_STATUS) ||
                 qi_op_is_control(QI_OP_VARIANTS) || qi_op_is_control(QI_OP_METRICS));
}

/* ---------------------------------------------------------------- JSON */

static void test_invalid_json(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "", "   ", "\r", "not json", "[1]", "1", "\"x\"", "null", "{", "{\"id\":1",
        "{\"id\":1,\"op\":\"status\"} x", "{\"id\":1,\"op\":\"status\"}{}",
        "{'id':1,'op':'status'}",                           /* single quotes */
        "{\"id\":1,\"op\":\"status\",}",                    /* trailing comma */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"a\tb\"}", /* raw tab in a string */
        "{\"id\":1,\"op\":\"generate\",\"temperature\":NaN,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"temperature\":Infinity,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"temperature\":2.,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"max_tokens\":00,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"max_tokens\":+1,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"seed\":18446744073709551616,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"generate\",\"seed\":-9223372036854775809,\"prompt\":\"a\"}",
        "{\"id\":1,\"op\":\"status\",\"op\\u0000x\":\"generate\"}", /* key smuggling */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"a\\u0000b\"}",
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\xff\"}",        /* not UTF-8 */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\xc0\xaf\"}",    /* overlong */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\xed\xa0\x80\"}", /* a surrogate */
        "{\"id\":1,\"op\":\"generate\",\"prompt\":\"\\x41\"}",       /* bad escape */
        "{\"id\":1,\"op\":\"status\",\"x\":True}",
        "{\"id\":1,\"op\":\"status\",\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
        "\xef\xbb\xbf{\"id\":1,\"op\":\"status\"}",                   /* a BOM */
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        qi_id id = bad(lines[i], QI_ERR_INVALID_JSON, NULL);
        assert_int_equal(id.kind, QI_ID_NONE);
    }
    /* A NUL byte in the line itself. */
    qi_request r;
    qi_error e;
    static const char nul[] = "{\"id\":1,\"op\":\"status\"}\0";
    assert_int_equal(qi_request_parse(nul, sizeof nul - 1, NULL, &r, &e), QI_ERR_INVALID_JSON);
}

static void test_json_accepted_forms(void **state)
{
    (void)state;
    /* Escapes, non-ASCII text, exponents, a lone surrogate (json-c writes U+FFFD). */
    qi_request r = ok("{\"id\":1,\"op\":\"generate\","
                      "\"prompt\":\"\\u00e9\\n\\\"\xe2\x82\xac\\ud800\","
                      "\"temperature\":5E-1,\"top_p\":1e0}");
    assert_string_equal(r.u.generate.prompt, "\xc3\xa9\n\"\xe2\x82\xac\xef\xbf\xbd");
    assert_true(r.u.generate.temperature == 0.5 && r.u.generate.top_p == 1.0);
    qi_request_free(&r);
    /* A duplicate key: the last one wins (json-c's rule; PROTOCOL.md says so). */
    r = ok("{\"id\":1,\"op\":\"generate\",\"op\":\"status\"}");
    assert_int_equal(r.op, QI_OP_STATUS);
}

static void test_too_large(void **state)
{
    (void)state;
    qi_limits l = qi_limits_default();
    l.max_line = 28;
    qi_request r;
    qi_error e;
    const char *line = "{\"id\":1,\"op\":\"status\"}      ";
    assert_int_equal(strlen(line), 28);
    assert_int_equal(qi_request_parse(line, 28, &l, &r, &e), QI_OK);
    const char *longer = "{\"id\":1,\"op\":\"status\"}       ";
    assert_int_equal(qi_request_parse(longer, 29, &l, &r, &e), QI_ERR_TOO_LARGE);
    assert_int_equal(r.id.kind, QI_ID_NONE);
}

/* ---------------------------------------------------------------- generate */

static void test_generate_defaults(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":1,\"op\":\"generate\",\"prompt\":\"Hello\"}");
    assert_int_equal(r.op, QI_OP_GENERATE);
    qi_generate *g = &r.u.generate;
    assert_string_equal(g->prompt, "Hello");
    assert_int_equal(g->max_tokens, 64);
    assert_true(g->temperature == 0.8 && g->top_p == 0.95 && g->repetition_penalty == 1.1);
    assert_int_equal(g->top_k, 40);
    assert_false(g->has_seed);
    assert_int_equal(g->n_stop, 0);
    assert_null(g->stop);
    assert_false(g->stream);
    qi_request_free(&r);
    assert_null(r.u.generate.prompt);

    /* Defaults follow smaller limits. */
    qi_limits l = qi_limits_default();
    l.max_tokens = 10;
    l.vocab = 20;
    const char *line = "{\"id\":1,\"op\":\"generate\",\"prompt\":\"x\"}";
    qi_error e;
    assert_int_equal(qi_request_parse(line, strlen(line), &l, &r, &e), QI_OK);
    assert_int_equal(r.u.generate.max_tokens, 10);
    assert_int_equal(r.u.generate.top_k, 20);
    qi_request_free(&r);
}

static void test_generate_all_fields(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"Once\",\"max_tokens\":1024,"
                      "\"temperature\":0,\"top_k\":100,\"top_p\":1,\"repetition_penalty\":10,"
                      "\"seed\":18446744073709551615,\"stop\":[\"\\n\\n\",\"END\"],"
                      "\"stream\":true}");
    qi_generate *g = &r.u.generate;
    assert_int_equal(g->max_tokens, 1024);
    assert_true(g->temperature == 0 && g->top_p == 1 && g->repetition_penalty == 10);
    assert_int_equal(g->top_k, 100);
    assert_true(g->has_seed);
    assert_true(g->seed == UINT64_MAX);
    assert_int_equal(g->n_stop, 2);
    assert_string_equal(g->stop[0], "\n\n");
    assert_string_equal(g->stop[1], "END");
    assert_true(g->stream);
    qi_request_free(&r);

    r = ok("{\"id\":1,\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":1,\"temperature\":5,"
           "\"top_k\":0,\"top_p\":0.001,\"repetition_penalty\":1,\"seed\":0,\"stop\":\"."
           "\",\"stream\":false}");
    g = &r.u.generate;
    assert_int_equal(g->max_tokens, 1);
    assert_true(g->temperature == 5 && g->top_p == 0.001);
    assert_true(g->has_seed && g->seed == 0);
    assert_int_equal(g->n_stop, 1);
    assert_string_equal(g->stop[0], ".");
    qi_request_free(&r);

    /* the smallest nonzero values a 32-bit float holds as a normal number pass */
    r = ok("{\"id\":1,\"op\":\"generate\",\"prompt\":\"x\",\"top_p\":1.2e-38,\"temperature\":1.2e-38}");
    assert_true(r.u.generate.top_p == 1.2e-38 && (float)r.u.generate.top_p > 0);
    assert_true((float)r.u.generate.temperature > 0);
    qi_request_free(&r);

    r = ok("{\"id\":1,\"op\":\"generate\",\"prompt\":\"x\",\"stop\":[],\"temperature\":-0.0}");
    assert_int_equal(r.u.generate.n_stop, 0);
    assert_true(r.u.generate.temperature == 0);
    qi_request_free(&r);

    /* Eight stop strings of 64 bytes each: the limits, inclusive. */
    char line[1024], s64[65];
    memset(s64, 'a', 64);
    s64[64] = '\0';
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"generate\",\"prompt\":\"x\",\"stop\":"
             "[\"%s\",\"%s\",\"%s\",\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"]}",
             s64, s64, s64, s64, s64, s64, s64, s64);
    r = ok(line);
    assert_int_equal(r.u.generate.n_stop, 8);
    qi_request_free(&r);
}

#define GEN "{\"id\":3,\"op\":\"generate\",\"prompt\":\"p\","

static void test_generate_invalid(void **state)
{
    (void)state;
    qi_id id = bad("{\"id\":3,\"op\":\"generate\"}", QI_ERR_INVALID_ARGUMENT, "prompt");
    assert_int_equal(id.num, 3);
    bad("{\"id\":3,\"op\":\"generate\",\"prompt\":\"\"}", QI_ERR_INVALID_ARGUMENT, "prompt");
    bad("{\"id\":3,\"op\":\"generate\",\"prompt\":7}", QI_ERR_INVALID_ARGUMENT, "prompt");
    bad("{\"id\":3,\"op\":\"generate\",\"prompt\":[\"a\"]}", QI_ERR_INVALID_ARGUMENT, "prompt");
    bad(GEN "\"max_tokens\":0}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"max_tokens\":1025}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"max_tokens\":1.5}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"max_tokens\":10.0}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"max_tokens\":\"10\"}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"max_tokens\":-5}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    bad(GEN "\"temperature\":-0.1}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"temperature\":5.0001}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"temperature\":1e999}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"temperature\":\"hot\"}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"temperature\":null}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"top_k\":-1}", QI_ERR_INVALID_ARGUMENT, "top_k");
    bad(GEN "\"top_k\":101}", QI_ERR_INVALID_ARGUMENT, "top_k"); /* vocab is 100 here */
    bad(GEN "\"top_k\":4.0}", QI_ERR_INVALID_ARGUMENT, "top_k");
    bad(GEN "\"top_p\":0}", QI_ERR_INVALID_ARGUMENT, "top_p");
    bad(GEN "\"top_p\":1.0000001}", QI_ERR_INVALID_ARGUMENT, "top_p");
    bad(GEN "\"top_p\":false}", QI_ERR_INVALID_ARGUMENT, "top_p");
    /* positive doubles that a 32-bit float cannot hold: they would reach the sampler as 0 */
    bad(GEN "\"top_p\":1e-46}", QI_ERR_INVALID_ARGUMENT, "top_p");
    bad(GEN "\"top_p\":1e-39}", QI_ERR_INVALID_ARGUMENT, "top_p");
    bad(GEN "\"top_p\":1e-300}", QI_ERR_INVALID_ARGUMENT, "top_p");
    bad(GEN "\"temperature\":1e-46}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"temperature\":4.9e-324}", QI_ERR_INVALID_ARGUMENT, "temperature");
    bad(GEN "\"repetition_penalty\":0.99}", QI_ERR_INVALID_ARGUMENT, "repetition_penalty");
    bad(GEN "\"repetition_penalty\":11}", QI_ERR_INVALID_ARGUMENT, "repetition_penalty");
    bad(GEN "\"seed\":-1}", QI_ERR_INVALID_ARGUMENT, "seed");
    bad(GEN "\"seed\":1.5}", QI_ERR_INVALID_ARGUMENT, "seed");
    bad(GEN "\"seed\":\"42\"}", QI_ERR_INVALID_ARGUMENT, "seed");
    bad(GEN "\"stop\":5}", QI_ERR_INVALID_ARGUMENT, "stop");
    bad(GEN "\"stop\":{\"a\":1}}", QI_ERR_INVALID_ARGUMENT, "stop");
    bad(GEN "\"stop\":\"\"}", QI_ERR_INVALID_ARGUMENT, "stop");
    bad(GEN "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
        QI_ERR_INVALID_ARGUMENT, "stop");
    bad(GEN "\"stop\":[\"a\",\"b\",\"\"]}", QI_ERR_INVALID_ARGUMENT, "stop[2]");
    bad(GEN "\"stop\":[\"a\",1]}", QI_ERR_INVALID_ARGUMENT, "stop[1]");
    bad(GEN "\"stop\":[\"0123456789012345678901234567890123456789012345678901234567890123x\"]}",
        QI_ERR_INVALID_ARGUMENT, "stop[0]");
    bad(GEN "\"stream\":1}", QI_ERR_INVALID_ARGUMENT, "stream");
    bad(GEN "\"stream\":\"true\"}", QI_ERR_INVALID_ARGUMENT, "stream");
    /* Strict: a typo is an unknown field, named. */
    bad(GEN "\"maxtokens\":10}", QI_ERR_INVALID_ARGUMENT, "maxtokens");
    bad(GEN "\"Prompt\":\"x\"}", QI_ERR_INVALID_ARGUMENT, "Prompt");
    bad(GEN "\"\":1}", QI_ERR_INVALID_ARGUMENT, "\"\""); /* an empty key is named "" */
    /* Unknown fields come before field values; then fields in PROTOCOL.md's order. */
    bad(GEN "\"max_tokens\":0,\"nope\":1}", QI_ERR_INVALID_ARGUMENT, "nope");
    bad(GEN "\"stream\":1,\"max_tokens\":0}", QI_ERR_INVALID_ARGUMENT, "max_tokens");
    /* A key with control characters is named with '?' in their place. */
    bad(GEN "\"a\\nb\":1}", QI_ERR_INVALID_ARGUMENT, "a?b");
}

static void test_generate_leak_on_late_error(void **state)
{
    (void)state;
    /* Strings already copied when a later field fails are freed (ASan's leak check). */
    bad(GEN "\"stop\":[\"a\",\"b\"],\"stream\":0}", QI_ERR_INVALID_ARGUMENT, "stream");
    bad(GEN "\"stop\":[\"a\",\"\"]}", QI_ERR_INVALID_ARGUMENT, "stop[1]");
    bad("{\"id\":1,\"op\":\"classify\",\"texts\":[\"a\",\"b\",2]}", QI_ERR_INVALID_ARGUMENT,
        "texts[2]");
}

/* ---------------------------------------------------------------- classify */

static void test_classify(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":1,\"op\":\"classify\",\"text\":\"great film\"}");
    assert_int_equal(r.op, QI_OP_CLASSIFY);
    assert_true(r.u.classify.single);
    assert_int_equal(r.u.classify.n_texts, 1);
    assert_string_equal(r.u.classify.texts[0], "great film");
    qi_request_free(&r);
    r = ok("{\"id\":1,\"op\":\"classify\",\"texts\":[\"a\",\"b\",\"c\"]}");
    assert_false(r.u.classify.single);
    assert_int_equal(r.u.classify.n_texts, 3);
    assert_string_equal(r.u.classify.texts[2], "c");
    qi_request_free(&r);

    char line[1024] = "{\"id\":1,\"op\":\"classify\",\"texts\":[";
    for (int i = 0; i < 64; i++)
        strcat(line, i ? ",\"t\"" : "\"t\"");
    strcat(line, "]}");
    r = ok(line);
    assert_int_equal(r.u.classify.n_texts, 64);
    qi_request_free(&r);
    line[strlen(line) - 2] = '\0';
    strcat(line, ",\"t\"]}");
    bad(line, QI_ERR_INVALID_ARGUMENT, "texts");

    bad("{\"id\":1,\"op\":\"classify\"}", QI_ERR_INVALID_ARGUMENT, "text");
    bad("{\"id\":1,\"op\":\"classify\",\"text\":\"a\",\"texts\":[\"b\"]}", QI_ERR_INVALID_ARGUMENT,
        "texts");
    bad("{\"id\":1,\"op\":\"classify\",\"text\":\"\"}", QI_ERR_INVALID_ARGUMENT, "text");
    bad("{\"id\":1,\"op\":\"classify\",\"text\":[\"a\"]}", QI_ERR_INVALID_ARGUMENT, "text");
    bad("{\"id\":1,\"op\":\"classify\",\"texts\":[]}", QI_ERR_INVALID_ARGUMENT, "texts");
    bad("{\"id\":1,\"op\":\"classify\",\"texts\":\"a\"}", QI_ERR_INVALID_ARGUMENT, "texts");
    bad("{\"id\":1,\"op\":\"classify\",\"texts\":[\"a\",null]}", QI_ERR_INVALID_ARGUMENT,
        "texts[1]");
    bad("{\"id\":1,\"op\":\"classify\",\"texts\":[\"a\",\"\"]}", QI_ERR_INVALID_ARGUMENT,
        "texts[1]");
    bad("{\"id\":1,\"op\":\"classify\",\"text\":\"a\",\"prompt\":\"b\"}", QI_ERR_INVALID_ARGUMENT,
        "prompt");
}

/* ---------------------------------------------------------------- cancel */

static void test_cancel(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":2,\"op\":\"cancel\",\"target\":\"gen-1\"}");
    assert_int_equal(r.u.cancel.target.kind, QI_ID_STRING);
    assert_string_equal(r.u.cancel.target.str, "gen-1");
    r = ok("{\"id\":2,\"op\":\"cancel\",\"target\":1}");
    assert_int_equal(r.u.cancel.target.kind, QI_ID_INT);
    assert_int_equal(r.u.cancel.target.num, 1);
    qi_id id = bad("{\"id\":2,\"op\":\"cancel\"}", QI_ERR_INVALID_ARGUMENT, "target");
    assert_int_equal(id.num, 2);
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":null}", QI_ERR_INVALID_ARGUMENT, "target");
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":-1}", QI_ERR_INVALID_ARGUMENT, "target");
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":9007199254740992}", QI_ERR_INVALID_ARGUMENT,
        "target");
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":\"\"}", QI_ERR_INVALID_ARGUMENT, "target");
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":[1]}", QI_ERR_INVALID_ARGUMENT, "target");
    bad("{\"id\":2,\"op\":\"cancel\",\"target\":1,\"id2\":1}", QI_ERR_INVALID_ARGUMENT, "id2");
}

/* ---------------------------------------------------------------- no-field ops */

static void test_plain_ops(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        qi_op op;
    } ops[] = {{"status", QI_OP_STATUS}, {"variants", QI_OP_VARIANTS}, {"unpin", QI_OP_UNPIN},
               {"reload", QI_OP_RELOAD}, {"metrics", QI_OP_METRICS}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"id\":\"s\",\"op\":\"%s\"}", ops[i].name);
        qi_request r = ok(line);
        assert_int_equal(r.op, ops[i].op);
        qi_request_free(&r);
        snprintf(line, sizeof line, "{\"id\":\"s\",\"op\":\"%s\",\"verbose\":true}", ops[i].name);
        qi_id id = bad(line, QI_ERR_INVALID_ARGUMENT, "verbose");
        assert_string_equal(id.str, "s");
    }
}

/* ---------------------------------------------------------------- set-budget */

static qi_set_budget budget(const char *fields)
{
    char line[256];
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"set-budget\",%s}", fields);
    qi_request r = ok(line);
    assert_int_equal(r.op, QI_OP_SET_BUDGET);
    return r.u.set_budget;
}

static void bad_budget(const char *fields, const char *field)
{
    char line[256];
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"set-budget\",%s}", fields);
    bad(line, QI_ERR_INVALID_ARGUMENT, field);
}

static void test_set_budget(void **state)
{
    (void)state;
    qi_set_budget b = budget("\"memory\":\"32M\"");
    assert_int_equal(b.memory, QI_BUDGET_SET);
    assert_int_equal(b.memory_bytes, 32u << 20);
    assert_int_equal(b.power, QI_BUDGET_UNCHANGED);
    b = budget("\"memory\":33554432");
    assert_int_equal(b.memory_bytes, 33554432);
    b = budget("\"memory\":18446744073709551615");
    assert_true(b.memory_bytes == UINT64_MAX);
    b = budget("\"memory\":\"auto\"");
    assert_int_equal(b.memory, QI_BUDGET_AUTO);
    b = budget("\"power\":\"3.5W\"");
    assert_int_equal(b.power, QI_BUDGET_SET);
    assert_int_equal(b.power_uw, 3500000);
    assert_int_equal(b.memory, QI_BUDGET_UNCHANGED);
    b = budget("\"power\":3.5");
    assert_int_equal(b.power_uw, 3500000);
    b = budget("\"power\":2");
    assert_int_equal(b.power_uw, 2000000);
    b = budget("\"power\":0.000001");
    assert_int_equal(b.power_uw, 1);
    b = budget("\"power\":1000000");
    assert_true(b.power_uw == QI_POWER_MAX_UW);
    b = budget("\"power\":\"500mW\"");
    assert_int_equal(b.power_uw, 500000);
    b = budget("\"memory\":\"auto\",\"power\":\"auto\"");
    assert_true(b.memory == QI_BUDGET_AUTO && b.power == QI_BUDGET_AUTO);
    b = budget("\"memory\":\"1G\",\"power\":\"auto\"");
    assert_true(b.memory_bytes == 1u << 30 && b.power == QI_BUDGET_AUTO);

    bad("{\"id\":1,\"op\":\"set-budget\"}", QI_ERR_INVALID_ARGUMENT, "memory");
    bad_budget("\"memory\":\"32X\"", "memory");
    bad_budget("\"memory\":\"\"", "memory");
    bad_budget("\"memory\":\"AUTO\"", "memory");
    bad_budget("\"memory\":\"auto \"", "memory");
    bad_budget("\"memory\":0", "memory");
    bad_budget("\"memory\":\"0\"", "memory");
    bad_budget("\"memory\":-1", "memory");
    bad_budget("\"memory\":1.5", "memory");
    bad_budget("\"memory\":true", "memory");
    bad_budget("\"memory\":null", "memory");
    bad_budget("\"power\":0", "power");
    bad_budget("\"power\":-1", "power");
    bad_budget("\"power\":\"-1W\"", "power");
    bad_budget("\"power\":1000000.5", "power");
    bad_budget("\"power\":1e999", "power");
    bad_budget("\"power\":0.0000001", "power"); /* below 1 uW */
    bad_budget("\"power\":\"3.5\\u0057x\"", "power");
    bad_budget("\"power\":[3]", "power");
    bad_budget("\"memory\":\"32M\",\"power\":\"0W\"", "power");
    bad_budget("\"memory\":\"32M\",\"cpu\":1", "cpu");
}

/* ---------------------------------------------------------------- pin */

static void test_pin(void **state)
{
    (void)state;
    qi_request r = ok("{\"id\":1,\"op\":\"pin\",\"variant\":\"q4_block-1.0\"}");
    assert_int_equal(r.op, QI_OP_PIN);
    assert_string_equal(r.u.pin.variant, "q4_block-1.0");
    qi_request_free(&r);
    char line[256], name[66];
    memset(name, 'v', 64);
    name[64] = '\0';
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"pin\",\"variant\":\"%s\"}", name);
    r = ok(line);
    qi_request_free(&r);
    name[64] = 'v';
    name[65] = '\0';
    snprintf(line, sizeof line, "{\"id\":1,\"op\":\"pin\",\"variant\":\"%s\"}", name);
    bad(line, QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"pin\"}", QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"pin\",\"variant\":\"\"}", QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"pin\",\"variant\":\"a b\"}", QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"pin\",\"variant\":\"../x\"}", QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"pin\",\"variant\":4}", QI_ERR_INVALID_ARGUMENT, "variant");
    bad("{\"id\":1,\"op\":\"unpin\",\"variant\":\"a\"}", QI_ERR_INVALID_ARGUMENT, "variant");
}

/* ---------------------------------------------------------------- build -> parse */

/* A request built by the client parses back to the same request. */
static void test_build_round_trip(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{\"id\":\"a\",\"op\":\"generate\",\"prompt\":\"\\u00e9\\n/\",\"max_tokens\":7,"
        "\"temperature\":0.7,\"top_k\":3,\"top_p\":0.9,\"repetition_penalty\":1.3,"
        "\"seed\":18446744073709551615,\"stop\":[\"x\",\"\\n\"],\"stream\":true}",
        "{\"id\":5,\"op\":\"generate\",\"prompt\":\"p\",\"temperature\":0.1234567890123}",
        "{\"id\":5,\"op\":\"classify\",\"text\":\"t\"}",
        "{\"id\":5,\"op\":\"classify\",\"texts\":[\"t\",\"u\"]}",
        "{\"id\":5,\"op\":\"cancel\",\"target\":\"x y\"}",
        "{\"id\":5,\"op\":\"set-budget\",\"memory\":12345,\"power\":0.25}",
        "{\"id\":5,\"op\":\"set-budget\",\"memory\":\"auto\"}",
        "{\"id\":5,\"op\":\"set-budget\",\"power\":\"auto\",\"memory\":\"3K\"}",
        "{\"id\":5,\"op\":\"pin\",\"variant\":\"f16\"}",
        "{\"id\":5,\"op\":\"unpin\"}",
        "{\"id\":5,\"op\":\"status\"}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        qi_request a = ok(lines[i]), b;
        char *line;
        size_t len;
        qi_error e;
        assert_int_equal(qi_request_build(&a, &line, &len, &e), QI_OK);
        assert_int_equal(line[len - 1], '\n');
        assert_null(memchr(line, '\n', len - 1));
        assert_int_equal(qi_request_parse(line, len - 1, NULL, &b, &e), QI_OK);
        assert_true(qi_id_equal(&a.id, &b.id));
        assert_int_equal(a.op, b.op);
        if (a.op == QI_OP_GENERATE) {
            qi_generate *x = &a.u.generate, *y = &b.u.generate;
            assert_string_equal(x->prompt, y->prompt);
            assert_true(x->max_tokens == y->max_tokens && x->temperature == y->temperature &&
                        x->top_k == y->top_k && x->top_p == y->top_p &&
                        x->repetition_penalty == y->repetition_penalty &&
                        x->has_seed == y->has_seed && x->seed == y->seed &&
                        x->n_stop == y->n_stop && x->stream == y->stream);
            for (size_t k = 0; k < x->n_stop; k++)
                assert_string_equal(x->stop[k], y->stop[k]);
        } else if (a.op == QI_OP_CLASSIFY) {
            assert_int_equal(a.u.classify.single, b.u.classify.single);
            assert_int_equal(a.u.classify.n_texts, b.u.classify.n_texts);
            for (size_t k = 0; k < a.u.classify.n_texts; k++)
                assert_string_equal(a.u.classify.texts[k], b.u.classify.texts[k]);
        } else if (a.op == QI_OP_CANCEL) {
            assert_true(qi_id_equal(&a.u.cancel.target, &b.u.cancel.target));
        } else if (a.op == QI_OP_SET_BUDGET) {
            const qi_set_budget *x = &a.u.set_budget, *y = &b.u.set_budget;
            assert_true(x->memory == y->memory && x->memory_bytes == y->memory_bytes &&
                        x->power == y->power && x->power_uw == y->power_uw);
        } else if (a.op == QI_OP_PIN) {
            assert_string_equal(a.u.pin.variant, b.u.pin.variant);
        }
        free(line);
        qi_request_free(&a);
        qi_request_free(&b);
    }
}

/* A request filled by hand (borrowed strings), as qslmctl builds one. */
static void test_build_by_hand(void **state)
{
    (void)state;
    qi_id id;
    assert_true(qi_id_set_string(&id, "cli-1"));
    qi_request r;
    qi_request_init(&r, QI_OP_GENERATE, &id, NULL);
    char *stops[] = {"\n"};
    r.u.generate.prompt = "The state of the Union";
    r.u.generate.stop = stops;
    r.u.generate.n_stop = 1;
    char *line;
    size_t len;
    qi_error e;
    assert_int_equal(qi_request_build(&r, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":\"cli-1\",\"op\":\"generate\",\"prompt\":\"The state of the "
                              "Union\",\"max_tokens\":64,\"temperature\":0.8,\"top_k\":40,"
                              "\"top_p\":0.95,\"repetition_penalty\":1.1,\"stop\":[\"\\n\"],"
                              "\"stream\":false}\n");
    free(line);

    qi_request_init(&r, QI_OP_GENERATE, &id, NULL);
    assert_int_equal(qi_request_build(&r, &line, &len, &e), QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(e.field, "prompt");
    qi_request_init(&r, QI_OP_STATUS, NULL, NULL);
    assert_int_equal(qi_request_build(&r, &line, &len, &e), QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(e.field, "id");
    qi_request_init(&r, QI_OP_PIN, &id, NULL);
    assert_int_equal(qi_request_build(&r, &line, &len, &e), QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(e.field, "variant");

    qi_request_init(&r, QI_OP_SET_BUDGET, &id, NULL);
    r.u.set_budget.memory = QI_BUDGET_SET;
    r.u.set_budget.memory_bytes = 32u << 20;
    r.u.set_budget.power = QI_BUDGET_SET;
    r.u.set_budget.power_uw = 3500000;
    assert_int_equal(qi_request_build(&r, &line, &len, &e), QI_OK);
    assert_string_equal(line, "{\"id\":\"cli-1\",\"op\":\"set-budget\",\"memory\":\"32M\","
                              "\"power\":\"3.5W\"}\n");
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_echo),
        cmocka_unit_test(test_id_invalid),
        cmocka_unit_test(test_op),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_json_accepted_forms),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_generate_defaults),
        cmocka_unit_test(test_generate_all_fields),
        cmocka_unit_test(test_generate_invalid),
        cmocka_unit_test(test_generate_leak_on_late_error),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_plain_ops),
        cmocka_unit_test(test_set_budget),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_build_round_trip),
        cmocka_unit_test(test_build_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
