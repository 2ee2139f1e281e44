/* test_policy.c: the switching rules of policy.h, one by one: the best fit, each memory budget
 * source (memory.stat's unreclaimable part, not page cache), pins, nothing fitting, the power
 * soft limit, hysteresis both ways, PSI's step down and the kernel's memory.events, and when a
 * switch must unload first; during a switch, the images the engine holds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "policy.h"

#define MIB (1024ull * 1024ull)

enum { BIG, MID, SMALL, N_VARIANTS };

/* Three variants in manifest order, best quality first; footprints 6.1, 4.9 and 2.0 MiB. */
static const qd_policy_variant variants[N_VARIANTS] = {
    {"8M", 6396314, 87.78, 3e-3},  /* 6.1 MiB */
    {"5M", 5138022, 88.83, 2e-3},  /* 4.9 MiB */
    {"2M", 2 * MIB, 120.0, 1e-3},
};

typedef struct {
    qd_policy_config cfg;
    qd_policy_state st;
    qd_budget budget;
    qd_telemetry_snapshot tel;
    bool use_tel;
} world;

static void init(world *w)
{
    memset(w, 0, sizeof *w);
    w->cfg = qd_policy_config_default();
    qd_policy_state_init(&w->st);
}

static qd_decision decide(world *w, int active, int pinned, double rate, double now_s)
{
    return qd_policy_decide(&w->cfg, &w->st, variants, N_VARIANTS, &w->budget,
                            w->use_tel ? &w->tel : NULL, active, pinned, rate, now_s);
}

static void set_memory(world *w, uint64_t bytes)
{
    w->budget.has_memory = true;
    w->budget.memory_bytes = bytes;
}

static void assert_reason(const qd_decision *d, const char *part)
{
    if (!strstr(d->reason, part))
        fail_msg("reason \"%s\" lacks \"%s\"", d->reason, part);
}

static void test_defaults(void **state)
{
    (void)state;
    qd_policy_config c = qd_policy_config_default();
    assert_int_equal(c.reserve_bytes, 64 * MIB);
    assert_true(c.psi_threshold == 10 && c.up_delay_s == 10 && c.up_headroom == 0.05);
    assert_true(c.throttle_stall_ms == 10);
    assert_int_equal(c.cgroup_reserve_bytes, MIB);
    assert_false(c.has_default_power);
    qd_policy_state s = {5, 3};
    qd_policy_state_init(&s);
    assert_int_equal(s.up_candidate, -1);
}

static void test_best_fit(void **state)
{
    (void)state;
    world w;
    init(&w);
    qd_decision d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_true(d.switch_now);
    assert_false(d.has_memory_budget);
    assert_null(d.memory_source);
    assert_null(d.power_source);
    assert_string_equal(d.reason, "best quality (no memory limit known)");

    set_memory(&w, 32 * MIB);
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_string_equal(d.reason, "best quality that fits 32.0 MiB (set-budget)");
    assert_string_equal(d.memory_source, "set-budget");
    assert_int_equal(d.memory_budget, 32 * MIB);

    set_memory(&w, 5 * MIB);
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, MID);
    set_memory(&w, variants[MID].footprint_bytes); /* exactly fits */
    assert_int_equal(decide(&w, -1, -1, 0, 0).variant, MID);
    set_memory(&w, variants[MID].footprint_bytes - 1);
    assert_int_equal(decide(&w, -1, -1, 0, 0).variant, SMALL);
}

/* An unknown quality ranks below every known one. */
static void test_unknown_quality(void **state)
{
    (void)state;
    qd_policy_variant v[2] = {{"a", MIB, NAN, NAN}, {"b", 2 * MIB, 100, 1e-3}};
    qd_policy_config cfg = qd_policy_config_default();
    qd_policy_state st;
    qd_policy_state_init(&st);
    qd_budget b = {0};
    qd_decision d = qd_policy_decide(&cfg, &st, v, 2, &b, NULL, -1, -1, 0, 0);
    assert_int_equal(d.variant, 1);
    assert_int_equal(d.smallest_footprint, MIB);
}

static void test_budget_cgroup_max(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    /* serving MID; the service holds 3 MiB besides it and keeps the 1 MiB reserve: memory.max
     * 10 MiB -> 6 MiB for a variant */
    w.tel.has_cgroup_max = true;
    w.tel.cgroup_max = 10 * MIB;
    w.tel.has_cgroup_current = true;
    w.tel.cgroup_current = variants[MID].footprint_bytes + 3 * MIB;
    qd_decision d = decide(&w, MID, -1, 0, 0);
    assert_string_equal(d.memory_source, "cgroup memory.max");
    assert_int_equal(d.memory_budget, 6 * MIB);
    assert_int_equal(d.variant, MID); /* BIG is 6.1 MiB */
    assert_false(d.switch_now);
    assert_reason(&d, "(cgroup memory.max)");
    /* without memory.current only the reserve is set aside */
    w.tel.has_cgroup_current = false;
    d = decide(&w, MID, -1, 0, 0);
    assert_int_equal(d.memory_budget, 9 * MIB);
    w.cfg.cgroup_reserve_bytes = 0;
    d = decide(&w, MID, -1, 0, 0);
    assert_int_equal(d.memory_budget, 10 * MIB);
}

static void test_budget_cgroup_high(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 6 * MIB;
    w.tel.has_cgroup_current = true;
    w.tel.cgroup_current = 1 * MIB; /* less than the active footprint: only the reserve counted */
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_string_equal(d.memory_source, "cgroup memory.high");
    assert_int_equal(d.memory_budget, 5 * MIB);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
}

static void test_budget_mem_available(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_mem_available = true;
    w.tel.mem_available = 66 * MIB; /* with the 64 MiB reserve: 2 MiB + the active footprint */
    qd_decision d = decide(&w, SMALL, -1, 0, 0);
    assert_string_equal(d.memory_source, "MemAvailable");
    assert_int_equal(d.memory_budget, 4 * MIB);
    assert_int_equal(d.variant, SMALL);
    assert_false(d.switch_now);
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.memory_budget, 2 * MIB);
    w.tel.mem_available = 10 * MIB; /* below the reserve: 0, not a wrapped number */
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.memory_budget, 0);
    assert_int_equal(d.variant, -1);
}

static void test_tightest_wins(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_max = true;
    w.tel.cgroup_max = 9 * MIB;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 8 * MIB; /* less the 1 MiB reserve */
    w.tel.has_mem_available = true;
    w.tel.mem_available = 1024 * MIB;
    set_memory(&w, 32 * MIB);
    qd_decision d = decide(&w, -1, -1, 0, 0);
    assert_string_equal(d.memory_source, "cgroup memory.high");
    assert_int_equal(d.memory_budget, 7 * MIB);
    assert_int_equal(d.variant, BIG);
    assert_string_equal(d.reason, "best quality that fits 7.0 MiB (cgroup memory.high)");

    set_memory(&w, 5 * MIB);
    d = decide(&w, -1, -1, 0, 0);
    assert_string_equal(d.memory_source, "set-budget");
    assert_int_equal(d.variant, MID);

    w.tel.mem_available = 67 * MIB;
    d = decide(&w, -1, -1, 0, 0);
    assert_string_equal(d.memory_source, "MemAvailable");
    assert_int_equal(d.memory_budget, 3 * MIB);
    assert_int_equal(d.variant, SMALL);
}

static void test_pin(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 32 * MIB);
    qd_decision d = decide(&w, BIG, SMALL, 0, 0);
    assert_int_equal(d.variant, SMALL);
    assert_true(d.switch_now); /* a pin is the user's word: no hysteresis either way */
    assert_false(d.pin_dropped);
    assert_string_equal(d.reason, "pinned");
    d = decide(&w, SMALL, BIG, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_true(d.switch_now);

    set_memory(&w, 5 * MIB);
    d = decide(&w, BIG, BIG, 0, 0);
    assert_true(d.pin_dropped);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    assert_reason(&d, "pin on 8M dropped: its footprint 6.1 MiB exceeds the budget 5.0 MiB "
                      "(set-budget)");
    assert_reason(&d, "best quality that fits 5.0 MiB (set-budget)");
}

static void test_none_fits(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 1 * MIB);
    qd_decision d = decide(&w, MID, -1, 0, 0);
    assert_int_equal(d.variant, -1);
    assert_true(d.switch_now); /* unload at once: memory is hard */
    assert_int_equal(d.smallest_footprint, 2 * MIB);
    assert_string_equal(d.reason, "no variant fits: budget 1.0 MiB (set-budget), smallest "
                                  "footprint 2.0 MiB");
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, -1);
    assert_false(d.switch_now);
    /* a pin cannot rescue it */
    d = decide(&w, -1, SMALL, 0, 0);
    assert_int_equal(d.variant, -1);
    assert_true(d.pin_dropped);
}

static void test_power(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    /* 1200 tokens/s on BIG (3 mJ/token = 3.6 W of the 4.0 W measured): 0.4 W is the rest */
    w.tel.has_power = true;
    w.tel.power_w = 4.0;
    w.budget.has_power = true;
    w.budget.power_w = 3.5;
    qd_decision d = decide(&w, BIG, -1, 1200, 0);
    assert_true(d.has_power_budget);
    assert_string_equal(d.power_source, "set-budget");
    assert_int_equal(d.variant, MID); /* 0.4 + 2.4 W */
    assert_true(d.switch_now);
    assert_string_equal(d.reason, "best quality (no memory limit known) and 3.50 W (set-budget)");

    /* none fits 1 W: the least energy per token among those that fit memory */
    w.budget.power_w = 1.0;
    d = decide(&w, BIG, -1, 1200, 0);
    assert_int_equal(d.variant, SMALL);
    assert_string_equal(d.reason,
                        "power 1.00 W (set-budget) exceeded at 1200 tokens/s: "
                        "least energy per token");
    /* ... but memory stays hard */
    set_memory(&w, 5 * MIB);
    w.budget.power_w = 1.0;
    {
        qd_policy_variant v[2] = {{"a", 4 * MIB, 10, 1e-3}, {"b", 6 * MIB, 20, 1e-4}};
        qd_policy_state st;
        qd_policy_state_init(&st);
        d = qd_policy_decide(&w.cfg, &st, v, 2, &w.budget, &w.tel, -1, -1, 1200, 0);
        assert_int_equal(d.variant, 0);
    }

    /* the configured default applies when set-budget gives none */
    w.budget.has_power = false;
    w.budget.has_memory = false;
    w.cfg.has_default_power = true;
    w.cfg.default_power_w = 3.5;
    d = decide(&w, BIG, -1, 1200, 0);
    assert_string_equal(d.power_source, "config");
    assert_int_equal(d.variant, MID);
    /* idle: power no object */
    w.tel.power_w = 0.4;
    d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
}

/* d.why names what ruled out every better variant, with the names the policy itself uses
 * (memory_source's, "pinned", "power"): the switch counters' reason label. */
static void test_why(void **state)
{
    (void)state;
    world w;
    init(&w);
    qd_decision d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.why, QD_WHY_BEST); /* the best fits: nothing bound it */
    assert_string_equal(qd_why_name(d.why), "best");
    set_memory(&w, 5 * MIB);
    d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.variant, MID);
    assert_string_equal(qd_why_name(d.why), "set-budget");
    assert_string_equal(qd_why_name(d.why), d.memory_source);
    set_memory(&w, 1 * MIB);
    assert_string_equal(qd_why_name(decide(&w, MID, -1, 0, 0).why), "no_variant_fits");
    w.budget.has_memory = false;
    d = decide(&w, BIG, SMALL, 0, 0);
    assert_int_equal(d.variant, SMALL);
    assert_string_equal(qd_why_name(d.why), "pinned");
    /* memory from telemetry: each source by its name */
    w.use_tel = true;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 6 * MIB;
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, MID);
    assert_string_equal(qd_why_name(d.why), "cgroup memory.high");
    w.tel.has_psi = true;
    w.tel.psi_avg10 = 25;
    d = decide(&w, MID, -1, 0, 100); /* past the hold the step down to MID above started */
    assert_int_equal(d.variant, SMALL);
    assert_string_equal(qd_why_name(d.why), "psi");
    /* power: a better variant fits memory but not power, or none does (least energy) */
    init(&w);
    w.use_tel = true;
    w.tel.has_power = true;
    w.tel.power_w = 4.0;
    w.budget.has_power = true;
    w.budget.power_w = 3.5;
    d = decide(&w, BIG, -1, 1200, 0);
    assert_int_equal(d.variant, MID);
    assert_string_equal(qd_why_name(d.why), "power");
    w.budget.power_w = 1.0;
    d = decide(&w, BIG, -1, 1200, 0);
    assert_int_equal(d.variant, SMALL);
    assert_string_equal(qd_why_name(d.why), "power");
    /* every name is distinct and the table is full */
    for (int i = 0; i < QD_WHY_COUNT; i++) {
        assert_non_null(qd_why_name((qd_why)i));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(qd_why_name((qd_why)i), qd_why_name((qd_why)j));
    }
    assert_null(qd_why_name(QD_WHY_COUNT));
}

static void test_up_delay(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 32 * MIB);
    qd_decision d = decide(&w, SMALL, -1, 0, 100);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now);
    assert_reason(&d, "staying on 2M");
    d = decide(&w, SMALL, -1, 0, 109.9);
    assert_false(d.switch_now);
    d = decide(&w, SMALL, -1, 0, 110);
    assert_true(d.switch_now);
    assert_int_equal(d.variant, BIG);
    assert_int_equal(w.st.up_candidate, -1);
}

static void test_up_delay_reset(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 32 * MIB);
    assert_false(decide(&w, SMALL, -1, 0, 0).switch_now);
    assert_false(decide(&w, SMALL, -1, 0, 5).switch_now);
    /* a break: the budget drops below BIG and MID for a moment */
    set_memory(&w, 3 * MIB);
    qd_decision d = decide(&w, SMALL, -1, 0, 6);
    assert_int_equal(d.variant, SMALL);
    assert_false(d.switch_now);
    set_memory(&w, 32 * MIB);
    assert_false(decide(&w, SMALL, -1, 0, 7).switch_now);
    assert_false(decide(&w, SMALL, -1, 0, 16).switch_now); /* 9 s since the break */
    assert_true(decide(&w, SMALL, -1, 0, 17).switch_now);

    /* a change of candidate restarts the wait */
    init(&w);
    set_memory(&w, 6 * MIB);
    assert_int_equal(decide(&w, SMALL, -1, 0, 0).variant, MID);
    assert_int_equal(w.st.up_candidate, MID);
    set_memory(&w, 32 * MIB);
    d = decide(&w, SMALL, -1, 0, 8);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now);
    assert_false(decide(&w, SMALL, -1, 0, 10).switch_now); /* 10 s since MID, 2 since BIG */
    assert_false(decide(&w, SMALL, -1, 0, 17).switch_now);
    assert_true(decide(&w, SMALL, -1, 0, 18).switch_now);
}

static void test_up_headroom(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.cfg.up_delay_s = 0;
    /* BIG fits 6.2 MiB, but not with 5% to spare */
    set_memory(&w, (uint64_t)(6.2 * MIB));
    qd_decision d = decide(&w, MID, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now);
    assert_reason(&d, "headroom");
    d = decide(&w, MID, -1, 0, 100);
    assert_false(d.switch_now);
    set_memory(&w, (uint64_t)(6.5 * MIB));
    d = decide(&w, MID, -1, 0, 101);
    assert_true(d.switch_now);
    /* nothing loaded: at once, headroom or not */
    init(&w);
    set_memory(&w, (uint64_t)(6.2 * MIB));
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_true(d.switch_now);
}

static void test_down_at_once(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 5 * MIB);
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    /* no switch when the choice is the active one */
    d = decide(&w, MID, -1, 0, 1);
    assert_int_equal(d.variant, MID);
    assert_false(d.switch_now);
    /* a candidate waiting to go up is forgotten on a step down */
    set_memory(&w, 32 * MIB);
    assert_false(decide(&w, MID, -1, 0, 2).switch_now);
    assert_int_equal(w.st.up_candidate, BIG);
    set_memory(&w, 3 * MIB);
    assert_true(decide(&w, MID, -1, 0, 3).switch_now);
    assert_int_equal(w.st.up_candidate, -1);
}

/* A better variant that asks no more memory and no more energy than the active one: at once. */
static void test_better_and_lighter_at_once(void **state)
{
    (void)state;
    qd_policy_variant v[2] = {{"old", 4 * MIB, 50, 2e-3}, {"new", 3 * MIB, 40, 1e-3}};
    qd_policy_config cfg = qd_policy_config_default();
    qd_policy_state st;
    qd_policy_state_init(&st);
    qd_budget b = {0};
    qd_decision d = qd_policy_decide(&cfg, &st, v, 2, &b, NULL, 0, -1, 0, 0);
    assert_int_equal(d.variant, 1);
    assert_true(d.switch_now);
}

static void test_psi_step_down(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_psi = true;
    w.tel.psi_avg10 = 25;
    set_memory(&w, 32 * MIB);
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_string_equal(d.memory_source, "psi");
    assert_int_equal(d.memory_budget, variants[BIG].footprint_bytes - 1);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    assert_reason(&d, "memory pressure 25.0%");
    /* the next step waits psi_hold_s (avg10 still counts the same burst), holding MID */
    d = decide(&w, MID, -1, 0, 5);
    assert_int_equal(d.variant, MID);
    assert_false(d.switch_now);
    assert_int_equal(d.memory_budget, variants[MID].footprint_bytes);
    d = decide(&w, MID, -1, 0, 10);
    assert_int_equal(d.variant, SMALL);
    assert_true(d.switch_now);

    /* nothing loaded: PSI does not bound the first pick */
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    /* already the smallest: stays, neither unloading nor stepping up */
    for (double now = 0; now <= 60; now += 10) {
        d = decide(&w, SMALL, -1, 0, now);
        assert_int_equal(d.variant, SMALL);
        assert_false(d.switch_now);
    }
    assert_string_equal(d.memory_source, "psi");
    assert_int_equal(d.memory_budget, variants[SMALL].footprint_bytes);
    assert_reason(&d, "no step up");
    /* below the threshold, or the rule off */
    w.tel.psi_avg10 = 9.9;
    assert_int_equal(decide(&w, BIG, -1, 0, 100).variant, BIG);
    w.tel.psi_avg10 = 10;
    assert_int_equal(decide(&w, BIG, -1, 0, 100).variant, MID);
    w.cfg.psi_threshold = 0;
    assert_int_equal(decide(&w, BIG, -1, 0, 200).variant, BIG);
}

/* avg10 counts only while a stall total still grows (by psi_threshold percent of the time
 * between two reads): a stall that ended lingers in avg10 for tens of seconds and must not step
 * down again once the hold is over. The same snapshot read twice keeps its answer. avg10 stays
 * at 25% throughout; each row is one decision. */
static void test_psi_needs_ongoing_stall(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        double read_s, now_s;        /* the snapshot's read time; the decision's clock */
        long long machine_us, cgroup_us; /* added to the totals before the decision (-1: reset) */
        int active;
        bool pressure;               /* the decision names pressure */
        int variant;                 /* -2: not checked */
    } rows[] = {
        {"the first snapshot cannot tell: avg10 decides", 100, 100, 0, 0, BIG, true, MID},
        {"a second on, no growth: an echo (the step up waits its delay)", 101, 101, 0, 0, MID, false, -2},
        {"past the hold, still no growth: no second step", 112, 112, 0, 0, MID, false, BIG},
        {"the same snapshot again (a set-budget between ticks): the same answer", 112, 112.5, 0, 0, MID, false, -2},
        {"the machine's total grows by 9% of 2 s: under the threshold", 114, 114, 180000, 0, MID, false, -2},
        {"by 10%: pressure, a step down (the hold is long over)", 116, 116, 200000, 0, MID, true, SMALL},
        {"the same snapshot again keeps the answer: pressure", 116, 116.2, 0, 0, SMALL, true, -2},
        {"the cgroup's total alone counts too", 117, 117, 0, 150000, SMALL, true, -2},
        {"a counter that went down (a new cgroup) is no growth", 118, 118, 0, -1, SMALL, false, -2},
    };
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_psi = true;
    w.tel.psi_avg10 = 25;
    w.tel.has_cgroup_stall = true;
    w.tel.cgroup_stall_us = 5000000;
    w.tel.has_machine_stall = true;
    w.tel.machine_stall_us = 9000000;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        w.tel.read_s = rows[i].read_s;
        w.tel.machine_stall_us += (uint64_t)rows[i].machine_us;
        w.tel.cgroup_stall_us = rows[i].cgroup_us < 0 ? 0 : w.tel.cgroup_stall_us + (uint64_t)rows[i].cgroup_us;
        qd_decision d = decide(&w, rows[i].active, -1, 0, rows[i].now_s);
        if (rows[i].pressure != (d.pressure[0] != '\0'))
            fail_msg("%s: pressure \"%s\"", rows[i].what, d.pressure);
        if (rows[i].pressure && strcmp(d.memory_source, "psi") != 0)
            fail_msg("%s: the budget's source is %s, not psi", rows[i].what, d.memory_source);
        if (rows[i].variant != -2 && d.variant != rows[i].variant)
            fail_msg("%s: variant %d, not %d", rows[i].what, d.variant, rows[i].variant);
        if (rows[i].variant != -2 && rows[i].variant != rows[i].active && rows[i].pressure && !d.switch_now)
            fail_msg("%s: no switch now", rows[i].what);
    }
}

/* A limit that shrinks below the active variant steps down to what fits; the stall the kernel
 * caused while the service was above the new limit (PSI, memory.events high) does not step it
 * further within psi_hold_s (the system test's MemoryHigh steps saw 8M -> 4.5M -> 3.47M). */
static void test_limit_shrink_then_pressure(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 6 * MIB;
    w.tel.has_cgroup_current = true;
    w.tel.cgroup_current = 1 * MIB;
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    /* the throttling shows next: PSI over the threshold and a high event with a stall */
    w.tel.has_psi = true;
    w.tel.psi_avg10 = 11;
    w.tel.has_cgroup_events = true;
    w.tel.has_cgroup_stall = true;
    d = decide(&w, MID, -1, 0, 1);
    w.tel.events_high = 40;
    w.tel.cgroup_stall_us = 500000;
    d = decide(&w, MID, -1, 0, 2);
    assert_int_equal(d.variant, MID);
    assert_false(d.switch_now);
    d = decide(&w, MID, -1, 0, 9.9);
    assert_int_equal(d.variant, MID);
    /* pressure that lasts past the hold is real: one step */
    d = decide(&w, MID, -1, 0, 10);
    assert_int_equal(d.variant, SMALL);
    assert_true(d.switch_now);
    assert_string_equal(d.memory_source, "psi");
}

/* memory.stat's unreclaimable part is what counts, not memory.current: page cache the kernel
 * would drop leaves the budget alone (the real kernel keeps memory.current at memory.high). */
static void test_budget_memory_stat(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 12 * MIB;
    w.tel.has_cgroup_current = true;
    w.tel.cgroup_current = 12 * MIB; /* at the limit: 5 MiB of it page cache */
    w.tel.has_cgroup_stat = true;
    w.tel.cgroup_unreclaimable = variants[MID].footprint_bytes + 2 * MIB;
    w.tel.cgroup_file = 5 * MIB;
    qd_decision d = decide(&w, MID, -1, 0, 0);
    assert_string_equal(d.memory_source, "cgroup memory.high");
    assert_int_equal(d.memory_budget, 12 * MIB - 3 * MIB); /* 2 MiB others + the 1 MiB reserve */
    assert_int_equal(d.variant, BIG);
    /* the same with memory.current alone: 7.1 MiB of others, nothing fits but SMALL */
    w.tel.has_cgroup_stat = false;
    d = decide(&w, MID, -1, 0, 0);
    assert_int_equal(d.variant, SMALL);
    /* nothing loaded: every unreclaimable byte is the service's own */
    w.tel.has_cgroup_stat = true;
    w.tel.cgroup_unreclaimable = 4 * MIB;
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.memory_budget, 7 * MIB);
    assert_int_equal(d.variant, BIG);
    /* unreclaimable above the limit: 0, not a wrapped number; nothing fits */
    w.tel.cgroup_unreclaimable = 20 * MIB;
    d = decide(&w, -1, -1, 0, 0);
    assert_int_equal(d.memory_budget, 0);
    assert_int_equal(d.variant, -1);
    assert_reason(&d, "no variant fits: budget 0.0 MiB (cgroup memory.high)");
}

/* During a switch the old image is still charged to the service: with the engine's count of the
 * images it holds (held_bytes), the decisions made before the old image is freed keep the budget
 * the switch was made for. Subtracting only the new variant's footprint would take the old image
 * for others' memory and step down again, to nothing. */
static void test_budget_during_switch(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_high = true;
    w.tel.cgroup_high = 9 * MIB; /* MID fits: 9 - 2 MiB others - 1 MiB reserve = 6 MiB */
    w.tel.has_cgroup_stat = true;
    w.tel.cgroup_unreclaimable = 2 * MIB + variants[BIG].footprint_bytes; /* BIG still loaded */
    w.tel.has_held = true;
    w.tel.held_bytes = variants[BIG].footprint_bytes;
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.memory_budget, 6 * MIB);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    /* the loop now targets MID; the engine has not unloaded BIG yet */
    d = decide(&w, MID, -1, 0, 0.5);
    assert_int_equal(d.memory_budget, 6 * MIB);
    assert_int_equal(d.variant, MID);
    /* loading MID before BIG is freed: both count as held, an upper bound of what is charged
     * (1 MiB of MID so far), so the budget looks larger than it is; no step up is timed on it */
    w.tel.cgroup_unreclaimable = 2 * MIB + variants[BIG].footprint_bytes + MIB;
    w.tel.held_bytes = variants[BIG].footprint_bytes + variants[MID].footprint_bytes;
    d = decide(&w, MID, -1, 0, 1);
    assert_false(d.switch_now);
    assert_int_equal(w.st.up_candidate, -1);
    assert_reason(&d, "staying on 5M while a switch is in flight");
    /* settled: exact again */
    w.tel.cgroup_unreclaimable = 2 * MIB + variants[MID].footprint_bytes;
    w.tel.held_bytes = variants[MID].footprint_bytes;
    d = decide(&w, MID, -1, 0, 2);
    assert_int_equal(d.memory_budget, 6 * MIB);
    assert_int_equal(d.variant, MID);
    /* without the count, the reading before BIG is freed takes 1.2 MiB of BIG's image (its
     * footprint less MID's) for others': 4.8 MiB left, and a second step down, for nothing */
    w.tel.has_held = false;
    w.tel.cgroup_unreclaimable = 2 * MIB + variants[BIG].footprint_bytes;
    d = decide(&w, MID, -1, 0, 3);
    assert_int_equal(d.variant, SMALL);
    assert_true(d.switch_now);
}

/* The kernel acting on the service's limits since the last decision steps down once: memory.max
 * and OOM events at once, memory.high events only with a stall of throttle_stall_ms. */
static void test_memory_events(void **state)
{
    (void)state;
    world w;
    init(&w);
    w.use_tel = true;
    w.tel.has_cgroup_events = true;
    w.tel.events_high = 100;
    w.tel.has_cgroup_stall = true;
    w.tel.cgroup_stall_us = 5000;
    /* the first read is a baseline: totals since the cgroup was made say nothing about now */
    qd_decision d = decide(&w, BIG, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now);
    /* high events with a 5 ms stall: page cache trimmed, not a throttling */
    w.tel.events_high = 140;
    w.tel.cgroup_stall_us = 10000;
    d = decide(&w, BIG, -1, 0, 1);
    assert_int_equal(d.variant, BIG);
    assert_string_equal(d.pressure, "");
    /* high events with a 30 ms stall: throttled; one step down */
    w.tel.events_high = 150;
    w.tel.cgroup_stall_us = 40000;
    d = decide(&w, BIG, -1, 0, 2);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    assert_string_equal(d.memory_source, "memory.events");
    assert_reason(&d, "throttled at memory.high (10 events, 30 ms stalled): one step down");
    /* nothing new: no pressure; BIG waits for its up delay */
    d = decide(&w, MID, -1, 0, 3);
    assert_false(d.switch_now);
    assert_string_equal(d.pressure, "");
    assert_reason(&d, "staying on 5M");
    /* a max event: at once, no stall needed; but the hold after the last step keeps MID */
    w.tel.events_max = 1;
    d = decide(&w, MID, -1, 0, 4);
    assert_int_equal(d.variant, MID);
    assert_reason(&d, "the kernel hit memory.max (1 max, 0 oom events): no step up");
    w.tel.events_oom = 1;
    d = decide(&w, MID, -1, 0, 20);
    assert_int_equal(d.variant, SMALL);
    assert_reason(&d, "the kernel hit memory.max (0 max, 1 oom events): one step down");
    /* counters that went down (a new cgroup): a fresh baseline, not a huge delta */
    w.tel.events_high = 0;
    w.tel.events_max = 0;
    w.tel.events_oom = 0;
    d = decide(&w, BIG, -1, 0, 40);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now);
}

/* A switch loads the new variant before unloading the old only when both fit the budget. */
static void test_unload_first(void **state)
{
    (void)state;
    world w;
    init(&w);
    set_memory(&w, 32 * MIB);
    qd_decision d = decide(&w, SMALL, -1, 0, 0);
    assert_int_equal(d.variant, BIG);
    assert_false(d.switch_now); /* up: waits */
    d = decide(&w, SMALL, -1, 0, 10);
    assert_true(d.switch_now);
    assert_false(d.unload_first); /* 2 + 6.1 MiB fit in 32 */
    /* 6 MiB: MID (4.9) and SMALL (2) do not fit together */
    set_memory(&w, 6 * MIB);
    d = decide(&w, SMALL, -1, 0, 20);
    d = decide(&w, SMALL, -1, 0, 30);
    assert_int_equal(d.variant, MID);
    assert_true(d.switch_now);
    assert_true(d.unload_first);
    /* stepping down from BIG to MID under 5 MiB: BIG alone is over */
    set_memory(&w, 5 * MIB);
    d = decide(&w, BIG, -1, 0, 40);
    assert_int_equal(d.variant, MID);
    assert_true(d.unload_first);
    /* 7 MiB: MID + SMALL = 6.9 MiB fit: load first */
    set_memory(&w, 7 * MIB);
    d = decide(&w, MID, SMALL, 0, 50);
    assert_int_equal(d.variant, SMALL);
    assert_true(d.switch_now);
    assert_false(d.unload_first);
    /* no budget: never; nothing loaded or nothing to load: never */
    w.budget.has_memory = false;
    d = decide(&w, MID, SMALL, 0, 60);
    assert_false(d.unload_first);
    set_memory(&w, 1 * MIB);
    d = decide(&w, SMALL, -1, 0, 70);
    assert_int_equal(d.variant, -1);
    assert_false(d.unload_first);
    d = decide(&w, -1, -1, 0, 80);
    assert_false(d.unload_first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_best_fit),
        cmocka_unit_test(test_unknown_quality),
        cmocka_unit_test(test_budget_cgroup_max),
        cmocka_unit_test(test_budget_cgroup_high),
        cmocka_unit_test(test_budget_mem_available),
        cmocka_unit_test(test_tightest_wins),
        cmocka_unit_test(test_budget_memory_stat),
        cmocka_unit_test(test_memory_events),
        cmocka_unit_test(test_unload_first),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_none_fits),
        cmocka_unit_test(test_power),
        cmocka_unit_test(test_why),
        cmocka_unit_test(test_up_delay),
        cmocka_unit_test(test_up_delay_reset),
        cmocka_unit_test(test_up_headroom),
        cmocka_unit_test(test_down_at_once),
        cmocka_unit_test(test_better_and_lighter_at_once),
        cmocka_unit_test(test_psi_step_down),
        cmocka_unit_test(test_psi_needs_ongoing_stall),
        cmocka_unit_test(test_budget_during_switch),
        cmocka_unit_test(test_limit_shrink_then_pressure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
