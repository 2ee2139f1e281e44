/* test_prom.c: the Prometheus text writer (daemon/prom.h) read back by the strict reader of
 * prom_check.h: escaping of label values and HELP texts, numbers (integers, shortest decimals,
 * NaN, infinities), cumulative histograms; the request counters' buckets and totals
 * (daemon/request_stats.h); and that the reader refuses what the format forbids, so the other
 * tests' passes mean something. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"
#include "prom_check.h"
#include "request_stats.h"

static void parse_ok(const char *text, size_t len, pc_doc *d)
{
    if (pc_parse(text, len, d) != 0)
        fail_msg("%s\n--- text:\n%s", d->err, text);
}

static void parse_bad(const char *text, const char *why)
{
    pc_doc d;
    if (pc_parse(text, strlen(text), &d) == 0)
        fail_msg("accepted (%s):\n%s", why, text);
    pc_free(&d);
}

/* ---------------------------------------------------------------- the writer */

static void test_labels_and_numbers(void **state)
{
    (void)state;
    qd_prom p = {0};
    const char *odd = "hwmon0 a\"b\\c\nd\x01" "e \xc3\xa9";
    qd_prom_family(&p, "t_reading", "gauge", "A help text with a \\ and a\nnewline.");
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", odd}}, 1, 2.5);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "nan"}}, 1, NAN);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "inf"}}, 1, INFINITY);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "-inf"}}, 1, -INFINITY);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "tenth"}}, 1, 0.1);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "pico"}}, 1, 5.158541592e-4);
    qd_prom_sample(&p, "t_reading", (const qd_prom_label[]){{"source", "big"}}, 1, 9007199254740993.0);
    qd_prom_family(&p, "t_events_total", "counter", "Events.");
    qd_prom_sample(&p, "t_events_total", NULL, 0, 12345678901);
    qd_prom_sample(&p, "t_events_total", (const qd_prom_label[]){{"op", "generate"}, {"code", "busy"}}, 2, 3);
    size_t len;
    char *text = qd_prom_take(&p, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_null(p.text); /* handed over */
    pc_doc d;
    parse_ok(text, len, &d);
    assert_non_null(strstr(text, "# HELP t_reading A help text with a \\\\ and a\\nnewline.\n"));
    assert_non_null(strstr(text, "t_reading{source=\"hwmon0 a\\\"b\\\\c\\nd?e \xc3\xa9\"} 2.5\n"));
    assert_non_null(strstr(text, "t_reading{source=\"nan\"} NaN\n"));
    assert_non_null(strstr(text, "t_reading{source=\"inf\"} +Inf\n"));
    assert_non_null(strstr(text, "t_reading{source=\"-inf\"} -Inf\n"));
    assert_non_null(strstr(text, "t_reading{source=\"tenth\"} 0.1\n"));
    assert_non_null(strstr(text, "t_events_total 12345678901\n"));
    assert_non_null(strstr(text, "t_events_total{op=\"generate\",code=\"busy\"} 3\n"));
    /* the reader gives the value back unescaped (the control byte became '?') */
    char buf[64];
    assert_true(pc_label(&d.samples[0], "source", buf, sizeof buf));
    assert_string_equal(buf, "hwmon0 a\"b\\c\nd?e \xc3\xa9");
    double v;
    assert_true(pc_get(&d, "t_reading", "source=\"pico\"", &v));
    assert_true(v == 5.158541592e-4); /* the shortest text reads back the same double */
    assert_true(pc_get(&d, "t_reading", "source=\"big\"", &v));
    assert_true(v == 9007199254740993.0);
    assert_true(pc_get(&d, "t_reading", "source=\"nan\"", &v) && isnan(v));
    assert_int_equal(d.n_families, 2);
    pc_free(&d);
    free(text);

    char *empty = qd_prom_take(&p, &len); /* nothing written: an empty text */
    assert_non_null(empty);
    assert_int_equal(len, 0);
    free(empty);
}

static void test_histogram(void **state)
{
    (void)state;
    qd_histogram h = {0};
    qd_histogram_observe(&h, 0.001);  /* on a bound: that bucket */
    qd_histogram_observe(&h, 0.0011); /* just above: the next */
    qd_histogram_observe(&h, -1);     /* a clock that went back: the first, as 0 */
    qd_histogram_observe(&h, NAN);
    qd_histogram_observe(&h, 3600);   /* above every bound */
    assert_int_equal(h.count[0], 3);
    assert_int_equal(h.count[1], 1);
    assert_int_equal(h.count[QD_HIST_BOUNDS], 1);
    assert_int_equal(qd_histogram_count(&h), 5);
    assert_true(fabs(h.sum - 3600.0021) < 1e-9);

    qd_prom p = {0};
    qd_prom_family(&p, "t_seconds", "histogram", "Durations.");
    qd_prom_histogram(&p, "t_seconds", (const qd_prom_label[]){{"op", "a"}}, 1, qd_hist_bounds, h.count,
                      QD_HIST_BOUNDS, h.sum);
    qd_histogram none = {0};
    qd_prom_histogram(&p, "t_seconds", (const qd_prom_label[]){{"op", "b"}}, 1, qd_hist_bounds, none.count,
                      QD_HIST_BOUNDS, none.sum);
    size_t len;
    char *text = qd_prom_take(&p, &len);
    pc_doc d;
    parse_ok(text, len, &d);
    double v;
    assert_true(pc_get(&d, "t_seconds_bucket", "op=\"a\",le=\"0.001\"", &v) && v == 3);
    assert_true(pc_get(&d, "t_seconds_bucket", "op=\"a\",le=\"0.0025\"", &v) && v == 4);
    assert_true(pc_get(&d, "t_seconds_bucket", "op=\"a\",le=\"120\"", &v) && v == 4);
    assert_true(pc_get(&d, "t_seconds_bucket", "op=\"a\",le=\"+Inf\"", &v) && v == 5);
    assert_true(pc_get(&d, "t_seconds_count", "op=\"a\"", &v) && v == 5);
    assert_true(pc_get(&d, "t_seconds_sum", "op=\"a\"", &v) && fabs(v - 3600.0021) < 1e-9);
    assert_true(pc_get(&d, "t_seconds_count", "op=\"b\"", &v) && v == 0);
    size_t n;
    pc_sum(&d, "t_seconds_bucket", &n);
    assert_int_equal(n, 2 * (QD_HIST_BOUNDS + 1));
    pc_free(&d);
    free(text);
}

/* ---------------------------------------------------------------- request counters */

static void test_request_stats(void **state)
{
    (void)state;
    qd_request_stats st = {0};
    qd_stats_answered(&st, QI_OP_GENERATE, QI_OK, 0.2);
    qd_stats_answered(&st, QI_OP_GENERATE, QI_ERR_INVALID_ARGUMENT, 0.0001);
    qd_stats_answered(&st, QD_OP_NONE, QI_ERR_INVALID_JSON, 0);
    qd_stats_answered(&st, QD_OP_NONE + 5, QI_ERR_TOO_LARGE, 0); /* out of range: none */
    qd_stats_answered(&st, QI_OP_STATUS, QI_ERR_NOMEM, 0);     /* a local code: internal */
    assert_int_equal(st.answered[QI_OP_GENERATE], 2);
    assert_int_equal(st.answered[QD_OP_NONE], 2);
    assert_int_equal(st.errors[QI_OP_GENERATE][QI_ERR_INVALID_ARGUMENT], 1);
    assert_int_equal(st.errors[QD_OP_NONE][QI_ERR_TOO_LARGE], 1);
    assert_int_equal(st.errors[QI_OP_STATUS][QI_ERR_INTERNAL], 1);
    assert_int_equal(qd_stats_requests(&st), 5);
    assert_int_equal(qd_stats_errors(&st), 4);
    assert_int_equal(qd_histogram_count(&st.duration[QI_OP_GENERATE]), 2);
    qd_stats_switched(&st, QD_WHY_SET_BUDGET, 0.05);
    qd_stats_switched(&st, QD_WHY_BEST, 0.2);
    assert_int_equal(qd_stats_switches(&st), 2);
    assert_int_equal(st.switches[QD_WHY_SET_BUDGET], 1);
    assert_int_equal(qd_histogram_count(&st.switch_duration), 2);
    assert_string_equal(qd_stats_op_name(QI_OP_SET_BUDGET), "set-budget");
    assert_string_equal(qd_stats_op_name(QI_OP_METRICS), "metrics");
    assert_string_equal(qd_stats_op_name(QD_OP_NONE), "none");
    for (size_t b = 1; b < QD_HIST_BOUNDS; b++)
        assert_true(qd_hist_bounds[b] > qd_hist_bounds[b - 1]);
}

/* ---------------------------------------------------------------- the reader refuses */

static void test_reader_refuses(void **state)
{
    (void)state;
    pc_doc d;
    const char *good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n"
                       "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    parse_ok(good, strlen(good), &d);
    assert_int_equal(d.n, 5);
    pc_free(&d);
    parse_bad("a_total 1\n", "no TYPE");
    parse_bad("# TYPE a counter\na 1\n", "a counter without _total");
    parse_bad("# TYPE a_total counter\na_total -1\n", "a negative counter");
    parse_bad("# TYPE g gauge\ng 1", "no final newline");
    parse_bad("# TYPE g gauge\n\ng 1\n", "a blank line");
    parse_bad("# TYPE g gauge\ng 1 1700000000\n", "a timestamp");
    parse_bad("# TYPE g gauge\ng{a=\"x\\t\"} 1\n", "a \\t escape");
    parse_bad("# TYPE g gauge\ng{a=\"x\"} 1\ng{a=\"x\"} 2\n", "a sample twice");
    parse_bad("# TYPE g gauge\ng{a=\"x\",a=\"y\"} 1\n", "a label twice");
    parse_bad("# TYPE g gauge\ng{a=\"x\",} 1\n", "a trailing comma");
    parse_bad("# TYPE g gauge\ng{1a=\"x\"} 1\n", "a bad label name");
    parse_bad("# TYPE 9g gauge\n", "a bad metric name");
    parse_bad("# TYPE g gauge\ng 0x10\n", "a hex value");
    parse_bad("# TYPE g gauge\ng nan\n", "nan in lower case");
    parse_bad("# TYPE g gauge\n# TYPE g gauge\ng 1\n", "two TYPEs");
    parse_bad("# TYPE g gauge\ng 1\n# TYPE f gauge\nf 1\ng{a=\"b\"} 1\n", "a family in two groups");
    parse_bad("# TYPE g gauge\ng 1\n# HELP g late\n", "HELP after the samples");
    parse_bad("# some comment\n", "a free comment");
    parse_bad("# TYPE s summary\ns 1\n", "a summary");
    parse_bad("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n",
              "buckets not cumulative");
    parse_bad("# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
              "h_sum 3\nh_count 1\n", "le not increasing");
    parse_bad("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n",
              "_count not the +Inf bucket");
    parse_bad("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 3\nh_count 1\n", "no +Inf bucket");
    parse_bad("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", "no _sum");
    parse_bad("# TYPE h histogram\nh 1\n", "a bare histogram sample");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_and_numbers),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_request_stats),
        cmocka_unit_test(test_reader_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
