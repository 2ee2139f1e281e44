/* test_ipc_line_reader.c: framing with every split of the input, over-long lines reported once
 * and skipped, and memory bounded by the limit whatever arrives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "line_reader.h"

#define MAX_EVENTS 64

/* What a reader reported over one input: lines (as "L:<text>") and too_large ("T"). */
typedef struct {
    char *ev[MAX_EVENTS];
    size_t n;
} events;

static void add(events *e, const char *s, size_t len, char kind)
{
    assert_true(e->n < MAX_EVENTS);
    char *x = malloc(len + 3);
    assert_non_null(x);
    x[0] = kind;
    x[1] = ':';
    memcpy(x + 2, s, len);
    x[len + 2] = '\0';
    e->ev[e->n++] = x;
}

static void clear(events *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->ev[i]);
    e->n = 0;
}

/* Feeds data in pieces of `step` bytes (0: all at once), checking the bounds as it goes. */
static void run(qi_line_reader *r, const char *data, size_t len, size_t step, events *out)
{
    size_t max = qi_line_reader_max_line(r);
    for (size_t pos = 0; pos < len;) {
        size_t piece = step && len - pos > step ? step : len - pos;
        for (size_t off = 0, used; off < piece; off += used) {
            const char *line;
            size_t line_len;
            qi_line_event ev = qi_line_reader_feed(r, data + pos + off, piece - off, &used, &line,
                                                   &line_len);
            assert_true(used <= piece - off);
            assert_true(qi_line_reader_capacity(r) <= max + 1);
            assert_true(qi_line_reader_pending(r) <= max);
            if (ev == QI_LINE_READY) {
                assert_true(line_len <= max);
                assert_null(memchr(line, '\n', line_len));
                assert_int_equal(line[line_len], '\0');
                add(out, line, line_len, 'L');
            } else if (ev == QI_LINE_TOO_LARGE) {
                add(out, "", 0, 'T');
            } else {
                assert_int_equal(ev, QI_LINE_NONE);
                assert_int_equal(used, piece - off);
            }
            if (ev != QI_LINE_NONE)
                assert_true(used > 0);
        }
        pos += piece;
    }
}

static qi_line_reader *reader(size_t max)
{
    qi_line_reader *r;
    qi_error e;
    assert_int_equal(qi_line_reader_new(max, &r, &e), QI_OK);
    return r;
}

/* The same events for every chunk size, 1 byte at a time included. */
static void expect(size_t max, const char *data, const char *const *want, size_t n_want)
{
    for (size_t step = 0; step <= strlen(data) + 1; step++) {
        qi_line_reader *r = reader(max);
        events got = {0};
        run(r, data, strlen(data), step, &got);
        if (got.n != n_want)
            fail_msg("step %zu: %zu events, want %zu", step, got.n, n_want);
        for (size_t i = 0; i < n_want; i++)
            assert_string_equal(got.ev[i], want[i]);
        clear(&got);
        qi_line_reader_free(r);
    }
}

static void test_lines(void **state)
{
    (void)state;
    static const char *const w1[] = {"L:{\"id\":1}", "L:", "L:two\r", "L:x"};
    expect(16, "{\"id\":1}\n\ntwo\r\nx\ny", w1, 4); /* "y" stays pending */
    static const char *const w2[] = {"L:0123456789"};
    expect(10, "0123456789\n", w2, 1); /* exactly max_line bytes: accepted */
}

static void test_nul_in_line(void **state)
{
    (void)state;
    qi_line_reader *r = reader(8);
    const char data[] = {'a', '\0', 'b', '\n'};
    size_t used, len;
    const char *line;
    assert_int_equal(qi_line_reader_feed(r, data, 4, &used, &line, &len), QI_LINE_READY);
    assert_int_equal(len, 3);
    assert_memory_equal(line, data, 3);
    qi_line_reader_free(r);
}

static void test_too_large(void **state)
{
    (void)state;
    /* Over by one: reported once, skipped through its newline, next line fine. */
    static const char *const w1[] = {"T:", "L:ok"};
    expect(10, "0123456789X\nok\n", w1, 2);
    /* Several long lines in a row, and short ones between. */
    static const char *const w2[] = {"L:a", "T:", "T:", "L:b", "T:", "L:"};
    expect(4, "a\naaaaaaaaaaaaaa\nbbbbbb\nb\nccccc\n\n", w2, 6);
    /* A long line without a newline yet: reported before its end. */
    static const char *const w3[] = {"T:"};
    expect(4, "abcdefgh", w3, 1);
}

static void test_pending_and_skipping(void **state)
{
    (void)state;
    qi_line_reader *r = reader(4);
    size_t used, len;
    const char *line;
    assert_int_equal(qi_line_reader_feed(r, "ab", 2, &used, &line, &len), QI_LINE_NONE);
    assert_int_equal(qi_line_reader_pending(r), 2);
    assert_false(qi_line_reader_skipping(r));
    assert_int_equal(qi_line_reader_feed(r, "cde", 3, &used, &line, &len), QI_LINE_TOO_LARGE);
    assert_int_equal(used, 3);
    assert_true(qi_line_reader_skipping(r));
    assert_int_equal(qi_line_reader_pending(r), 0);
    assert_int_equal(qi_line_reader_feed(r, "zzz\nab\n", 7, &used, &line, &len), QI_LINE_READY);
    assert_int_equal(used, 7);
    assert_string_equal(line, "ab");
    assert_false(qi_line_reader_skipping(r));
    qi_line_reader_free(r);

    qi_error e;
    assert_int_equal(qi_line_reader_new(0, &r, &e), QI_ERR_INVALID_ARGUMENT);
    assert_string_equal(e.field, "max_line");
}

/* 10 MB without a newline, in socket-sized chunks: one too_large, a buffer that never passes
 * the limit, then a normal line after the newline. */
static void test_ten_megabytes(void **state)
{
    (void)state;
    const size_t max = 65536, total = 10u << 20, chunk = 4096;
    char *junk = malloc(chunk);
    assert_non_null(junk);
    memset(junk, 'x', chunk);
    qi_line_reader *r = reader(max);
    size_t too_large = 0, lines = 0, peak = 0;
    for (size_t sent = 0; sent < total; sent += chunk) {
        for (size_t off = 0, used; off < chunk; off += used) {
            const char *line;
            size_t len;
            qi_line_event ev = qi_line_reader_feed(r, junk + off, chunk - off, &used, &line, &len);
            too_large += ev == QI_LINE_TOO_LARGE;
            lines += ev == QI_LINE_READY;
            if (qi_line_reader_capacity(r) > peak)
                peak = qi_line_reader_capacity(r);
        }
    }
    assert_int_equal(too_large, 1);
    assert_int_equal(lines, 0);
    assert_true(peak <= max + 1);
    events got = {0};
    run(r, "\n{\"id\":1}\n", 10, 0, &got);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.ev[0], "L:{\"id\":1}");
    clear(&got);
    qi_line_reader_free(r);
    free(junk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_nul_in_line),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_pending_and_skipping),
        cmocka_unit_test(test_ten_megabytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
