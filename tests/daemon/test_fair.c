/* test_fair.c: the round's token split (daemon/fair.h): max-min fairness, the budget never
 * exceeded, the leftover rotating, nobody with work starved when the budget allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fair.h"

static void test_under_budget_everyone_gets_all(void **state)
{
    (void)state;
    size_t d[] = {3, 0, 5}, g[3];
    assert_int_equal(qd_fair_split(d, 3, 100, 0, g), 8);
    assert_int_equal(g[0], 3);
    assert_int_equal(g[1], 0);
    assert_int_equal(g[2], 5);
}

/* a generate (1 token) next to three floods (64 texts each): it gets its token, the floods
 * share the rest equally */
static void test_small_demand_is_met_first(void **state)
{
    (void)state;
    size_t d[] = {64, 64, 1, 64}, g[4];
    assert_int_equal(qd_fair_split(d, 4, 16, 0, g), 16);
    assert_int_equal(g[2], 1);
    assert_int_equal(g[0], 5);
    assert_int_equal(g[1], 5);
    assert_int_equal(g[3], 5);
}

/* 10 over 4 equal claimants: 2 each plus 2 leftovers that move with start */
static void test_leftover_rotates(void **state)
{
    (void)state;
    size_t d[] = {9, 9, 9, 9}, g[4], total[4] = {0};
    for (size_t r = 0; r < 4; r++) {
        assert_int_equal(qd_fair_split(d, 4, 10, r, g), 10);
        for (size_t i = 0; i < 4; i++) {
            assert_true(g[i] == 2 || g[i] == 3);
            total[i] += g[i];
        }
    }
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(total[i], 10); /* over 4 rounds: exactly even */
}

/* a budget smaller than the claimants: each gets 0 or 1, and the ones are spread by start */
static void test_tiny_budget(void **state)
{
    (void)state;
    size_t d[] = {4, 4, 4}, g[3];
    assert_int_equal(qd_fair_split(d, 3, 2, 2, g), 2);
    assert_int_equal(g[2], 1);
    assert_int_equal(g[0], 1);
    assert_int_equal(g[1], 0);
    assert_int_equal(qd_fair_split(d, 0, 5, 0, g), 0);
}

/* property: over many shapes the split never exceeds demand or budget, spends min(budget, sum),
 * and is max-min fair (nobody below another's share unless its demand is met) */
static void test_properties(void **state)
{
    (void)state;
    uint64_t s = 1;
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = 1 + (size_t)(iter % 9), d[9], g[9], sum = 0;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            d[i] = (size_t)((s >> 33) % 20);
            sum += d[i];
        }
        size_t budget = (size_t)(s >> 50) % 40;
        size_t got = qd_fair_split(d, n, budget, (size_t)iter, g), spent = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(g[i] <= d[i]);
            spent += g[i];
        }
        assert_int_equal(spent, got);
        assert_int_equal(got, sum < budget ? sum : budget);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                if (g[i] < d[i]) /* i unsatisfied: nobody has more than one unit over it */
                    assert_true(g[j] <= g[i] + 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_under_budget_everyone_gets_all),
        cmocka_unit_test(test_small_demand_is_met_first),
        cmocka_unit_test(test_leftover_rotates),
        cmocka_unit_test(test_tiny_budget),
        cmocka_unit_test(test_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
