/* test_quant_allocate.c: the block and module tiers' two decisions on hand-made numbers — the
 * greedy allocation (best damage saved per byte first, the budget, λ, infeasible) and the rule
 * by which a tier's pick replaces the incumbent (allocate.h). No model is run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <string.h>

#include "allocate.h"

/* A unit allowed rungs [lo, hi]; damage and cost listed from lo to hi. */
static qq_alloc_unit unit_of(size_t lo, size_t hi, const double *damage, const uint64_t *cost)
{
    qq_alloc_unit u;
    memset(&u, 0, sizeof u);
    u.lo = lo;
    u.hi = hi;
    for (size_t r = lo; r <= hi; r++) {
        u.damage[r] = damage[r - lo];
        u.cost[r] = cost[r - lo];
    }
    return u;
}

/* λ = 0 and a large loss_per_damage: only the budget and the order of buying matter. */
static qq_alloc_limits limits(uint64_t base, uint64_t budget, double lambda)
{
    return (qq_alloc_limits){base, budget, 100000, lambda, 1.0};
}

/* Two one-step upgrades that save the same damage, one for 100 bytes and one for 1000. With
 * 1000 bytes to spend, the cheap one is bought first and the dear one no longer fits; a rule
 * that bought the largest upgrade, or the units in order, would buy the dear one. */
static void test_allocate_best_gain_per_byte_first(void **state)
{
    (void)state;
    qq_alloc_unit u[2] = {unit_of(4, 5, (double[]){0.0, 1.0}, (uint64_t[]){2000, 1000}),
                          unit_of(4, 5, (double[]){0.0, 1.0}, (uint64_t[]){200, 100})};
    qq_alloc_limits lim = limits(10000, 11000, 0.0);
    uint64_t fp = 0;
    assert_true(qq_allocate(u, 2, &lim, &fp));
    assert_int_equal(u[0].cur, 5);
    assert_int_equal(u[1].cur, 4);
    assert_int_equal(fp, 10100);
    /* With room for both, both are bought. */
    lim.budget = 11100;
    assert_true(qq_allocate(u, 2, &lim, &fp));
    assert_int_equal(u[0].cur, 4);
    assert_int_equal(u[1].cur, 4);
    assert_int_equal(fp, 11100);
}

/* Within one unit the allocation may jump rungs: from rung 6, rung 4 saves 3 nats for 200
 * bytes (0.015/byte), better than rung 5's 1 nat for 100 (0.01/byte). */
static void test_allocate_jumps_rungs(void **state)
{
    (void)state;
    qq_alloc_unit u = unit_of(4, 6, (double[]){0.0, 2.0, 3.0}, (uint64_t[]){300, 200, 100});
    qq_alloc_limits lim = limits(1000, 1200, 0.0);
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 4);
    /* 150 bytes to spend: rung 5 fits, rung 4 does not. */
    lim.budget = 1150;
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 5);
}

/* Over many units with uneven numbers, the setting always fits, the footprint is the base plus
 * the bytes bought, and when the allocation stops no single upgrade is left that fits and saves
 * damage (λ = 0): it spends the budget as far as upgrades go. */
static void test_allocate_respects_budget(void **state)
{
    (void)state;
    enum { N = 9 };
    uint64_t seed = 12345;
    for (int trial = 0; trial < 50; trial++) {
        qq_alloc_unit u[N];
        uint64_t base = 50000;
        for (size_t i = 0; i < N; i++) {
            double dmg[4];
            uint64_t cost[4];
            for (size_t k = 0; k < 4; k++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                dmg[k] = (double)(seed >> 40 & 0xff) / 64.0 * (double)k; /* more rungs down, more damage */
                cost[k] = 4000 - 900 * k + (seed >> 20 & 0x3f);
            }
            u[i] = unit_of(2, 5, dmg, cost);
        }
        uint64_t budget = base + (uint64_t)trial * 600;
        qq_alloc_limits lim = limits(base, budget, 0.0);
        uint64_t fp;
        assert_true(qq_allocate(u, N, &lim, &fp));
        uint64_t bought = 0;
        for (size_t i = 0; i < N; i++) {
            assert_true(u[i].cur >= u[i].lo && u[i].cur <= u[i].hi);
            bought += u[i].cost[u[i].cur] - u[i].cost[u[i].hi];
        }
        assert_int_equal(fp, base + bought);
        assert_true(fp <= budget);
        for (size_t i = 0; i < N; i++)
            for (size_t r = u[i].lo; r < u[i].cur; r++)
                if (u[i].damage[r] < u[i].damage[u[i].cur])
                    assert_true(fp + (u[i].cost[r] - u[i].cost[u[i].cur]) > budget);
    }
}

/* λ stops an upgrade not worth its memory: 0.5 nat saved at 50% of performance per nat is worth
 * 25 points; 1000 bytes of an M₀ of 100000 are 1% of the memory, so at λ = 25 the two are equal
 * (not bought: the upgrade must be strictly worth it), just under it is bought, and with λ = 0
 * everything that fits is. */
static void test_allocate_lambda_stops_upgrades(void **state)
{
    (void)state;
    qq_alloc_unit u = unit_of(3, 4, (double[]){0.5, 1.0}, (uint64_t[]){2000, 1000});
    qq_alloc_limits lim = {10000, 1000000, 100000, 0.0, 0.5};
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 3);
    lim.lambda = 25.0;
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 4);
    lim.lambda = 24.75;
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 3);
    lim.lambda = 1000.0;
    assert_true(qq_allocate(&u, 1, &lim, NULL));
    assert_int_equal(u.cur, 4);
}

/* An upgrade that saves nothing (or whose measured damage is higher at more bits, as noise can
 * have it) is never bought, even free; one that saves damage for no bytes is bought at any λ. */
static void test_allocate_needs_damage_saved(void **state)
{
    (void)state;
    qq_alloc_unit u[2] = {unit_of(3, 4, (double[]){1.2, 1.0}, (uint64_t[]){1100, 1000}),
                          unit_of(3, 4, (double[]){0.1, 1.0}, (uint64_t[]){500, 500})};
    qq_alloc_limits lim = {10000, 1000000, 100000, 100.0, 0.01};
    assert_true(qq_allocate(u, 2, &lim, NULL));
    assert_int_equal(u[0].cur, 4);
    assert_int_equal(u[1].cur, 3);
}

/* When even every unit at its cheapest rung is over the budget: false, every unit at its
 * cheapest, and the footprint says by how much. */
static void test_allocate_infeasible(void **state)
{
    (void)state;
    qq_alloc_unit u = unit_of(3, 4, (double[]){0.0, 1.0}, (uint64_t[]){200, 100});
    qq_alloc_limits lim = limits(5000, 4999, 0.0);
    uint64_t fp = 0;
    u.cur = 3;
    assert_false(qq_allocate(&u, 1, &lim, &fp));
    assert_int_equal(u.cur, 4);
    assert_int_equal(fp, 5000);
    lim.budget = 5000; /* exactly the budget fits */
    assert_true(qq_allocate(&u, 1, &lim, &fp));
    assert_int_equal(u.cur, 4);
}

/* Within the floors beats outside whatever the scores; on the same side the lower
 * validation objective wins and a tie keeps the incumbent. */
static void test_replace_better(void **state)
{
    (void)state;
    qq_scores in_lo = {5.0, true}, in_hi = {8.0, true}, out_lo = {1.0, false}, out_hi = {9.0, false};
    assert_true(qq_replace_better(&out_lo, &in_hi));  /* into the floors, though worse */
    assert_false(qq_replace_better(&in_hi, &out_lo)); /* out of them, though better */
    assert_true(qq_replace_better(&in_hi, &in_lo));
    assert_false(qq_replace_better(&in_lo, &in_hi));
    assert_false(qq_replace_better(&in_lo, &in_lo));  /* a tie keeps the incumbent */
    assert_true(qq_replace_better(&out_hi, &out_lo)); /* both outside: still the better one */
    assert_false(qq_replace_better(&out_lo, &out_hi));
}

/* The global tier's pick among its validated candidates (in calibration order): the best
 * validation objective within the floors, not the first within; the best outside them only when
 * none is within; the first of equals. */
static void test_pick_best(void **state)
{
    (void)state;
    /* The first within the floors (6.48) is beaten by a later one (2.77); one outside the floors
     * with a better objective (1.0) does not count. */
    qq_scores s[] = {{6.48, true}, {1.00, false}, {2.77, true}, {4.88, true}};
    assert_int_equal(qq_pick_best(s, 4), 2);
    assert_int_equal(qq_pick_best(s, 2), 0); /* only the first two validated */
    assert_int_equal(qq_pick_best(s + 1, 1), 0);
    /* None within: the lowest objective of all. */
    qq_scores out[] = {{20.8, false}, {7.7, false}, {25.8, false}};
    assert_int_equal(qq_pick_best(out, 3), 1);
    /* Equal objectives within the floors: the first (the better calibration score) is kept. */
    qq_scores eq[] = {{9.0, false}, {3.0, true}, {3.0, true}};
    assert_int_equal(qq_pick_best(eq, 3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocate_best_gain_per_byte_first),
        cmocka_unit_test(test_allocate_jumps_rungs),
        cmocka_unit_test(test_allocate_respects_budget),
        cmocka_unit_test(test_allocate_lambda_stops_upgrades),
        cmocka_unit_test(test_allocate_needs_damage_saved),
        cmocka_unit_test(test_allocate_infeasible),
        cmocka_unit_test(test_replace_better),
        cmocka_unit_test(test_pick_best),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
