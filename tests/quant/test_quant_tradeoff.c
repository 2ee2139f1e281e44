/* test_quant_tradeoff.c: the trade-off's terms and floors on hand-made metrics, and the exact
 * binomial / McNemar tail they use, against tails computed by hand (and, for large n, exactly
 * with Python's fractions: sum(comb(n, i) for i in range(k, n + 1)) / 2**n). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "stats.h"
#include "tradeoff.h"

static void assert_close(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want)))
        fail_msg("got %.17g, want %.17g (relative tolerance %g)", got, want, rel);
}

/* Tails small enough to sum by hand, the edges, and large n where a factorial would overflow. */
static void test_binomial_half_upper(void **state)
{
    (void)state;
    assert_true(qq_binomial_half_upper(0, 0) == 1.0);
    assert_true(qq_binomial_half_upper(7, 0) == 1.0);
    assert_true(qq_binomial_half_upper(7, 8) == 0.0);
    assert_close(qq_binomial_half_upper(1, 1), 0.5, 1e-15);
    assert_close(qq_binomial_half_upper(5, 5), 1.0 / 32, 1e-14);
    assert_close(qq_binomial_half_upper(5, 3), 16.0 / 32, 1e-14);   /* (10 + 5 + 1) / 32 */
    assert_close(qq_binomial_half_upper(5, 2), 26.0 / 32, 1e-14);   /* below the middle */
    assert_close(qq_binomial_half_upper(10, 8), 56.0 / 1024, 1e-14); /* (45 + 10 + 1) / 1024 */
    assert_close(qq_binomial_half_upper(10, 9), 11.0 / 1024, 1e-14);
    assert_close(qq_binomial_half_upper(10, 2), 1013.0 / 1024, 1e-14);
    assert_close(qq_binomial_half_upper(60, 45), 6.7257040464247658e-05, 1e-12);
    assert_close(qq_binomial_half_upper(200, 115), 0.020018595806699738, 1e-12);
    assert_close(qq_binomial_half_upper(200, 100), 0.52817423950462816, 1e-12);
    assert_close(qq_binomial_half_upper(1000, 600), 1.3642320780330092e-10, 1e-11);
    assert_close(qq_binomial_half_upper(10000, 5200), 3.2967577993362208e-05, 1e-10);
    assert_close(qq_binomial_half_upper(10000, 4900), 0.97778710047695971, 1e-12);
    /* Symmetry: P(X ≥ k) + P(X ≥ n − k + 1) = 1. */
    for (uint64_t n = 1; n < 40; n += 3)
        for (uint64_t k = 1; k <= n; k++)
            assert_close(qq_binomial_half_upper(n, k) + qq_binomial_half_upper(n, n - k + 1), 1.0, 1e-13);
}

/* McNemar on the discordant pairs: only the sentences the two disagree on count. */
static void test_mcnemar(void **state)
{
    (void)state;
    assert_true(qq_mcnemar_worse_p(0, 0) == 1.0);      /* never disagree: no evidence */
    assert_close(qq_mcnemar_worse_p(5, 0), 1.0 / 32, 1e-14);
    assert_close(qq_mcnemar_worse_p(4, 0), 1.0 / 16, 1e-14);
    assert_close(qq_mcnemar_worse_p(7, 1), 9.0 / 256, 1e-14);
    assert_true(qq_mcnemar_worse_p(0, 5) == 1.0);      /* only gains: not worse */
    assert_close(qq_mcnemar_worse_p(3, 3), 42.0 / 64, 1e-14);
}

static qq_metrics lm_cls(double ppl, double nll, double acc)
{
    qq_metrics m;
    memset(&m, 0, sizeof m);
    m.lm = m.cls = true;
    m.ppl = ppl;
    m.nll = nll;
    m.accuracy = m.head_accuracy[0] = acc;
    m.head_measured[0] = true;
    m.head_items[0] = 200;
    return m;
}

/* J = loss + λ·100·M/M₀; loss = percent of perplexity + points of accuracy lost (a gain counts
 * nothing), plus every further head's points lost. */
static void test_objective_and_losses(void **state)
{
    (void)state;
    assert_close(qq_objective(2.0, 50, 100, 0.1), 7.0, 1e-15);
    assert_close(qq_objective(2.0, 50, 100, 0.0), 2.0, 1e-15);
    qq_metrics ref = lm_cls(100.0, log(100.0), 0.78), m = lm_cls(110.0, log(110.0), 0.75);
    assert_close(qq_performance_loss(&m, &ref), 10.0 + 3.0, 1e-12);
    m.accuracy = m.head_accuracy[0] = 0.80; /* a gain: nothing */
    assert_close(qq_performance_loss(&m, &ref), 10.0, 1e-12);
    /* Head 2 loses 5 points, head 1 gains 2 (nothing), head 3 is measured here but not on f32. */
    ref.head_measured[1] = ref.head_measured[2] = true;
    ref.head_accuracy[1] = 0.60;
    ref.head_accuracy[2] = 0.90;
    m.head_measured[1] = m.head_measured[2] = m.head_measured[3] = true;
    m.head_accuracy[1] = 0.62;
    m.head_accuracy[2] = 0.85;
    m.head_accuracy[3] = 0.10;
    assert_close(qq_performance_loss(&m, &ref), 10.0 + 5.0, 1e-12);
    /* Calibration: 100·(e^(nll − nll₀) − 1), negative when better than f32. */
    qq_metrics c0 = lm_cls(0, 3.0, 0.5), c = lm_cls(0, 3.0 + log(1.02), 0.5);
    assert_close(qq_calib_loss(&c, &c0), 2.0, 1e-9);
    c.nll = 3.0 - log(1.02);
    assert_true(qq_calib_loss(&c, &c0) < 0.0);
    /* The classifier on calibration: its class KL, 100·(e^cls_kl − 1); its accuracy (here 5
     * points under f32's, and another head's 50) counts nothing. */
    c.nll = 3.0;
    c.accuracy = c.head_accuracy[0] = 0.45;
    c.head_measured[1] = c0.head_measured[1] = true;
    c.head_accuracy[1] = 0.0;
    c0.head_accuracy[1] = 0.5;
    assert_true(qq_calib_loss(&c, &c0) == 0.0);
    c.cls_kl = log(1.03);
    assert_close(qq_calib_loss(&c, &c0), 3.0, 1e-9);
    c.nll = 3.0 + log(1.02);
    assert_close(qq_calib_loss(&c, &c0), 5.0, 1e-9);
    c.cls = false; /* no classifier measured: the perplexity term alone */
    assert_close(qq_calib_loss(&c, &c0), 2.0, 1e-9);
    /* A model without LM head: only accuracy. */
    ref.lm = m.lm = false;
    assert_close(qq_performance_loss(&m, &ref), 5.0, 1e-12);
}

/* The perplexity floor: over it is out, with the numbers; exactly on it is in. */
static void test_floor_perplexity(void **state)
{
    (void)state;
    qq_floors f = {5.0, 1.0, 0, {NULL}};
    qq_metrics ref = lm_cls(100.0, 0, 0.78), m = lm_cls(105.0, 0, 0.78);
    char why[512];
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_string_equal(why, "");
    m.ppl = 105.2;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "validation perplexity 105.200 is +5.20% over f32's 100.000 (floor: +5.00%)"));
}

/* The accuracy floor, paired: a drop over the floor breaks it only when McNemar says the setting
 * is worse than f32 at the level; a drop within chance is noted, not refused; without pairs the
 * drop alone decides; at level 1 any drop over the floor breaks it. */
static void test_floor_accuracy_mcnemar(void **state)
{
    (void)state;
    qq_floors f = {5.0, 1.0, 0, {NULL}};
    qq_metrics ref = lm_cls(100.0, 0, 0.78), m = lm_cls(100.0, 0, 0.765);
    char why[512];
    /* 1.5 points under f32's, unpaired: out, as before. */
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "validation accuracy 76.50% is 1.50 points under f32's 78.00% (floor: 1.00 points)"));
    assert_null(strstr(why, "McNemar"));
    /* The same drop as 3 sentences lost and none gained: p = 1/8, within chance. */
    m.head_paired[0] = true;
    m.head_lost[0] = 3;
    m.head_gained[0] = 0;
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "but within chance"));
    assert_non_null(strstr(why, "of 200 texts it gets 3 wrong that f32 gets right and 0 right that f32 gets wrong"));
    assert_non_null(strstr(why, "p = 0.125, level 0.05"));
    /* At level 1 the drop alone decides (and the message does not call p = 0.125 beyond chance). */
    f.acc_alpha = 1.0;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "(floor: 1.00 points): of 200 texts"));
    assert_non_null(strstr(why, "p = 0.125, level 1)"));
    f.acc_alpha = 0.0;
    /* 3 points as 7 lost, 1 gained: p = 9/256 = 0.035, beyond chance: out, with the numbers. */
    m.accuracy = m.head_accuracy[0] = 0.75;
    m.head_lost[0] = 7;
    m.head_gained[0] = 1;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "3.00 points under f32's 78.00% (floor: 1.00 points), beyond chance"));
    assert_non_null(strstr(why, "p = 0.0352, level 0.05"));
    /* The same at level 0.01: within chance. */
    f.acc_alpha = 0.01;
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    f.acc_alpha = 0.0;
    /* Significant but not over the floor: in (the floor says how much matters). */
    m.accuracy = m.head_accuracy[0] = 0.775;
    m.head_lost[0] = 60; /* p ~ 1e-11 */
    m.head_gained[0] = 10;
    ref.head_items[0] = m.head_items[0] = 10000;
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_string_equal(why, "");
}

/* Several heads: the floor holds for each on its own (two heads each 0.8 points under f32 are
 * both within a 1-point floor), the message names the head that breaks it, a head measured on
 * the setting but not on f32 is not judged, and each head's own pairs decide for it. */
static void test_floor_several_heads(void **state)
{
    (void)state;
    qq_floors f = {5.0, 1.0, 0, {"sentiment", "topic", "spam"}};
    qq_metrics ref = lm_cls(100.0, 0, 0.78), m = lm_cls(100.0, 0, 0.772);
    char why[512];
    ref.head_measured[1] = m.head_measured[1] = true;
    ref.head_accuracy[1] = 0.50;
    m.head_accuracy[1] = 0.492;
    m.head_measured[2] = true; /* not measured on f32 */
    m.head_accuracy[2] = 0.0;
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    /* Topic 6 points under, unpaired: out, named. */
    m.head_accuracy[1] = 0.44;
    m.head_items[1] = 50;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "task topic: validation accuracy 44.00% is 6.00 points under f32's 50.00%"));
    /* Paired, 3 lost of 50 and none gained: p = 1/8, within chance... */
    m.head_paired[1] = true;
    m.head_lost[1] = 3;
    assert_true(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "task topic:"));
    /* ... while head 0's own drop, paired and significant, breaks it, named as the first task. */
    m.accuracy = m.head_accuracy[0] = 0.75;
    m.head_paired[0] = true;
    m.head_lost[0] = 6;
    m.head_gained[0] = 0;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "task sentiment: validation accuracy 75.00%"));
    assert_non_null(strstr(why, "beyond chance"));
    /* A head with no name is "head N". */
    f.head_names[1] = NULL;
    m.accuracy = m.head_accuracy[0] = 0.78;
    m.head_lost[1] = 6;
    assert_false(qq_within_floors(&m, &ref, &f, why, sizeof why));
    assert_non_null(strstr(why, "head 1: validation accuracy 44.00%"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binomial_half_upper),
        cmocka_unit_test(test_mcnemar),
        cmocka_unit_test(test_objective_and_losses),
        cmocka_unit_test(test_floor_perplexity),
        cmocka_unit_test(test_floor_accuracy_mcnemar),
        cmocka_unit_test(test_floor_several_heads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
