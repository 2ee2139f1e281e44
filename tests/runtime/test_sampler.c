/* test_sampler.c: the sampling chain and stop strings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "sampler.h"
#include "stop.h"

static qr_sampler *make(size_t vocab, qr_sampler_params p)
{
    qr_sampler *s = NULL;
    qr_error err;
    assert_int_equal(qr_sampler_new(vocab, &p, &s, &err), QR_OK);
    return s;
}

static void test_greedy(void **state)
{
    (void)state;
    qr_sampler_params p = qr_sampler_defaults();
    p.temperature = 0;
    qr_sampler *s = make(5, p);
    float l1[] = {0.1f, 2.0f, -1.0f, 2.0f, 0.0f};
    assert_int_equal(qr_sampler_sample(s, l1, NULL, 0), 1); /* tie: lowest id */
    float l2[] = {-5.0f, -4.0f, -3.0f, -2.0f, -1.0f};
    assert_int_equal(qr_sampler_sample(s, l2, NULL, 0), 4);
    qr_sampler_free(s);
}

static void draw(qr_sampler_params p, const float *logits, size_t vocab, size_t n, int32_t *out)
{
    qr_sampler *s = make(vocab, p);
    float buf[16];
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, logits, vocab * sizeof(float));
        out[i] = qr_sampler_sample(s, buf, NULL, 0);
    }
    qr_sampler_free(s);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    float logits[] = {0.0f, 0.5f, 1.0f, 0.2f, 0.7f, 0.1f};
    qr_sampler_params p = qr_sampler_defaults();
    p.seed = 42;
    int32_t a[200], b[200], c[200];
    draw(p, logits, 6, 200, a);
    draw(p, logits, 6, 200, b);
    assert_memory_equal(a, b, sizeof a);
    p.seed = 43;
    draw(p, logits, 6, 200, c);
    assert_memory_not_equal(a, c, sizeof a);
}

/* Frequencies follow softmax(logits / T). */
static void test_temperature_distribution(void **state)
{
    (void)state;
    float logits[] = {0.0f, logf(2.0f)};
    qr_sampler_params p = qr_sampler_defaults();
    p.seed = 7;
    static int32_t out[40000];
    draw(p, logits, 2, 40000, out);
    int ones = 0;
    for (int i = 0; i < 40000; i++)
        ones += out[i] == 1;
    assert_true(fabs(ones / 40000.0 - 2.0 / 3.0) < 0.01);
    p.temperature = 0.5f; /* p1 = 4/5 */
    draw(p, logits, 2, 40000, out);
    ones = 0;
    for (int i = 0; i < 40000; i++)
        ones += out[i] == 1;
    assert_true(fabs(ones / 40000.0 - 0.8) < 0.01);
}

static void test_top_k(void **state)
{
    (void)state;
    float logits[] = {1.0f, 3.0f, 0.5f, 2.9f, 2.0f, -1.0f};
    qr_sampler_params p = qr_sampler_defaults();
    p.top_k = 2;
    p.temperature = 5.0f; /* flat enough that anything outside the top 2 would show up */
    int32_t out[3000];
    draw(p, logits, 6, 3000, out);
    int seen[6] = {0};
    for (int i = 0; i < 3000; i++)
        seen[out[i]]++;
    assert_true(seen[1] > 0 && seen[3] > 0);
    assert_int_equal(seen[0] + seen[2] + seen[4] + seen[5], 0);
    p.top_k = 1;
    draw(p, logits, 6, 100, out);
    for (int i = 0; i < 100; i++)
        assert_int_equal(out[i], 1);
}

/* Nucleus of probabilities {.4 .3 .2 .1} at top_p .5 is {0, 1}, drawn 4:3. */
static void test_top_p(void **state)
{
    (void)state;
    float logits[] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    qr_sampler_params p = qr_sampler_defaults();
    p.top_p = 0.5f;
    p.seed = 3;
    static int32_t out[30000];
    draw(p, logits, 4, 30000, out);
    int seen[4] = {0};
    for (int i = 0; i < 30000; i++)
        seen[out[i]]++;
    assert_int_equal(seen[2] + seen[3], 0);
    assert_true(fabs((double)seen[0] / (seen[0] + seen[1]) - 4.0 / 7.0) < 0.015);
    p.top_p = 0.01f;
    draw(p, logits, 4, 100, out);
    for (int i = 0; i < 100; i++)
        assert_int_equal(out[i], 0);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    qr_sampler_params p = qr_sampler_defaults();
    p.temperature = 0;
    p.repetition_penalty = 1.5f;
    qr_sampler *s = make(3, p);
    int32_t hist[] = {0, 0, 0};
    float l1[] = {2.0f, 1.9f, 0.0f}; /* 2.0 / 1.5 = 1.33 < 1.9 */
    assert_int_equal(qr_sampler_sample(s, l1, hist, 3), 1);
    assert_true(fabsf(l1[0] - 2.0f / 1.5f) < 1e-6f); /* penalised once, not three times */
    float l2[] = {-1.0f, -1.2f, -5.0f}; /* -1 * 1.5 = -1.5 < -1.2 */
    assert_int_equal(qr_sampler_sample(s, l2, hist, 3), 1);
    qr_sampler_free(s);
    p.repetition_window = 1;
    s = make(3, p);
    int32_t hist2[] = {0, 2};
    float l3[] = {2.0f, 1.9f, 0.0f}; /* token 0 is outside the window of 1 */
    assert_int_equal(qr_sampler_sample(s, l3, hist2, 2), 0);
    qr_sampler_free(s);
}

static void test_bad_params(void **state)
{
    (void)state;
    qr_sampler *s;
    qr_error err;
    qr_sampler_params p = qr_sampler_defaults();
    p.temperature = NAN;
    assert_int_equal(qr_sampler_new(10, &p, &s, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "temperature"));
    p = qr_sampler_defaults();
    p.top_p = 0.0f;
    assert_int_equal(qr_sampler_new(10, &p, &s, &err), QR_ERR_INVALID);
    p = qr_sampler_defaults();
    p.repetition_penalty = 0.5f;
    assert_int_equal(qr_sampler_new(10, &p, &s, &err), QR_ERR_INVALID);
    p = qr_sampler_defaults();
    assert_int_equal(qr_sampler_new(0, &p, &s, &err), QR_ERR_INVALID);
}

/* Collects everything a stop matcher emits. */
static size_t feed_all(qr_stop *s, const char *const *pieces, size_t n, char *out, bool *stopped)
{
    size_t len = 0;
    *stopped = false;
    for (size_t i = 0; i < n && !*stopped; i++) {
        const char *e;
        size_t el;
        *stopped = qr_stop_feed(s, pieces[i], strlen(pieces[i]), &e, &el);
        memcpy(out + len, e, el);
        len += el;
    }
    if (!*stopped) {
        const char *e;
        size_t el;
        qr_stop_flush(s, &e, &el);
        memcpy(out + len, e, el);
        len += el;
    }
    out[len] = '\0';
    return len;
}

static void test_stop_strings(void **state)
{
    (void)state;
    const char *stops[] = {"END", "\n\n"};
    qr_stop *s;
    qr_error err;
    assert_int_equal(qr_stop_new(stops, 2, &s, &err), QR_OK);
    const char *pieces[] = {"Hel", "lo E", "N", "D wo", "rld"};
    char out[256];
    bool stopped;
    feed_all(s, pieces, 5, out, &stopped);
    assert_true(stopped);
    assert_string_equal(out, "Hello ");
    qr_stop_free(s);

    /* A partial match is held back, then released when it turns out not to be one. */
    assert_int_equal(qr_stop_new(stops, 2, &s, &err), QR_OK);
    const char *e;
    size_t el;
    assert_false(qr_stop_feed(s, "abc E", 5, &e, &el));
    assert_int_equal(el, 4);
    assert_memory_equal(e, "abc ", 4);
    assert_false(qr_stop_feed(s, "Nx", 2, &e, &el));
    assert_int_equal(el, 3);
    assert_memory_equal(e, "ENx", 3);
    assert_false(qr_stop_feed(s, "\n", 1, &e, &el));
    assert_int_equal(el, 0);
    assert_true(qr_stop_feed(s, "\nmore", 5, &e, &el));
    assert_int_equal(el, 0);
    assert_true(qr_stop_feed(s, "after", 5, &e, &el)); /* stays stopped */
    assert_int_equal(el, 0);
    qr_stop_free(s);

    /* No stop: everything comes out, in order, nothing duplicated. */
    assert_int_equal(qr_stop_new(stops, 2, &s, &err), QR_OK);
    const char *p2[] = {"E", "N", "x EN-D-ish? no: EN", "D"};
    feed_all(s, p2, 3, out, &stopped);
    assert_false(stopped);
    assert_string_equal(out, "ENx EN-D-ish? no: EN");
    qr_stop_free(s);

    const char *bad[] = {""};
    assert_int_equal(qr_stop_new(bad, 1, &s, &err), QR_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_stop_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
