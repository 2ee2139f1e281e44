/* policy.c: which variant to serve. The rules are policy.h's top comment, in its order:
 * the memory budget, the power budget, the choice, then hysteresis. Pure: no I/O, no clock.
 *
 * Not here: acting on the decision (the variant manager switches, the daemon logs and counts),
 * and any smoothing of telemetry beyond the hysteresis below. */
#include "policy.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)

qd_policy_config qd_policy_config_default(void)
{
    qd_policy_config c = {
        .reserve_bytes = 64u << 20,
        .psi_threshold = 10,
        .psi_hold_s = 10,
        .throttle_stall_ms = 10,
        .cgroup_reserve_bytes = 1u << 20,
        .up_delay_s = 10,
        .up_headroom = 0.05,
        .has_default_power = false,
        .default_power_w = 0,
    };
    return c;
}

/* Memory sources (the budget's memory_source) first, in qd_why's order from QD_WHY_SET_BUDGET:
 * tighten() names the source with the same strings, and why_memory() maps one to the other. */
static const char *const why_names[QD_WHY_COUNT] = {
    [QD_WHY_NONE_FITS] = "no_variant_fits",
    [QD_WHY_BEST] = "best",
    [QD_WHY_PINNED] = "pinned",
    [QD_WHY_POWER] = "power",
    [QD_WHY_SET_BUDGET] = "set-budget",
    [QD_WHY_CGROUP_MAX] = "cgroup memory.max",
    [QD_WHY_CGROUP_HIGH] = "cgroup memory.high",
    [QD_WHY_MEM_AVAILABLE] = "MemAvailable",
    [QD_WHY_PSI] = "psi",
    [QD_WHY_MEMORY_EVENTS] = "memory.events",
};

const char *qd_why_name(qd_why why)
{
    return (unsigned)why < QD_WHY_COUNT ? why_names[why] : NULL;
}

/* The qd_why of the memory budget's source. */
static qd_why why_memory(const qd_decision *d)
{
    for (int w = QD_WHY_SET_BUDGET; w < QD_WHY_COUNT; w++)
        if (d->memory_source && strcmp(d->memory_source, why_names[w]) == 0)
            return (qd_why)w;
    return QD_WHY_BEST; /* not reached: every source is named above */
}

void qd_policy_state_init(qd_policy_state *s)
{
    s->up_candidate = -1;
    s->up_since_s = 0;
    s->psi_stepped = false;
    s->psi_step_s = 0;
    s->has_events = false;
    s->events_high = s->events_max = s->events_oom = 0;
    s->has_stall = false;
    s->stall_us = 0;
    s->has_stall_totals = false;
    s->had_machine_total = false;
    s->machine_total_us = 0;
    s->totals_read_s = 0;
    s->stall_ongoing = true;
}

/* Appends to the decision's reason (cut at its size, which is fine for a human line). */
__attribute__((format(printf, 2, 3)))
static void say(qd_decision *d, const char *f, ...)
{
    size_t len = strlen(d->reason);
    if (len + 1 >= sizeof d->reason)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(d->reason + len, sizeof d->reason - len, f, ap);
    va_end(ap);
}

static uint64_t sub_sat(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* Lowers the memory budget to v if v is tighter (the first source wins a tie). */
static void tighten(qd_decision *d, uint64_t v, qd_why source)
{
    if (!d->has_memory_budget || v < d->memory_budget) {
        d->has_memory_budget = true;
        d->memory_budget = v;
        d->memory_source = why_names[source];
    }
}

/* Did the kernel act on the service's own limits since the last decision (policy.h: memory
 * .events max/oom, or high with a stall)? Remembers the totals for the next decision. A counter
 * that went down (a new cgroup after a restart in a test tree) is taken as a fresh start. */
static bool kernel_acted(const qd_policy_config *cfg, qd_policy_state *state, const qd_telemetry_snapshot *t,
                         qd_decision *d)
{
    bool acted = false;
    if (t->has_cgroup_events && state->has_events && t->events_high >= state->events_high &&
        t->events_max >= state->events_max && t->events_oom >= state->events_oom) {
        uint64_t high = t->events_high - state->events_high;
        uint64_t max = t->events_max - state->events_max;
        uint64_t oom = t->events_oom - state->events_oom;
        double stalled_ms = t->has_cgroup_stall && state->has_stall && t->cgroup_stall_us >= state->stall_us
                                ? (double)(t->cgroup_stall_us - state->stall_us) / 1e3
                                : 0;
        if (max || oom) {
            acted = true;
            snprintf(d->pressure, sizeof d->pressure, "the kernel hit memory.max (%llu max, %llu oom events)",
                     (unsigned long long)max, (unsigned long long)oom);
        } else if (high && stalled_ms >= cfg->throttle_stall_ms) {
            acted = true;
            snprintf(d->pressure, sizeof d->pressure, "throttled at memory.high (%llu events, %.0f ms stalled)",
                     (unsigned long long)high, stalled_ms);
        }
    }
    state->has_events = t->has_cgroup_events;
    state->events_high = t->events_high;
    state->events_max = t->events_max;
    state->events_oom = t->events_oom;
    state->has_stall = t->has_cgroup_stall;
    state->stall_us = t->cgroup_stall_us;
    return acted;
}

/* Did a stall total grow by at least min_us between the last snapshot's read (prev) and now?
 * A counter that went down (a new cgroup) says nothing: no. */
static bool grew(bool had, uint64_t prev, bool has, uint64_t now, double min_us)
{
    return had && has && now >= prev && (double)(now - prev) >= min_us;
}

/* Is the stall that PSI's avg10 averages still going on (policy.h: PSI)? Yes when a "some"
 * total grew since the previous snapshot by psi_threshold percent of the time between the two
 * reads, or when that cannot be told (no totals, the first snapshot, no time between reads
 * while the totals moved). The same snapshot again (a decision between two ticks: set-budget,
 * pin) gets the answer its first decision got. The cgroup's previous total is the one
 * kernel_acted keeps (has_stall, stall_us), so this runs before it updates them. */
static bool stall_going_on(const qd_policy_config *cfg, qd_policy_state *st, const qd_telemetry_snapshot *t)
{
    if (!t->has_cgroup_stall && !t->has_machine_stall) {
        st->has_stall_totals = false;
        st->stall_ongoing = true;
        return true;
    }
    bool same = st->has_stall_totals && t->read_s == st->totals_read_s &&
                t->has_cgroup_stall == st->has_stall && t->has_machine_stall == st->had_machine_total &&
                t->cgroup_stall_us == st->stall_us && t->machine_stall_us == st->machine_total_us;
    if (same)
        return st->stall_ongoing;
    double dt = t->read_s - st->totals_read_s;
    bool ongoing = true;
    if (st->has_stall_totals && dt > 0) {
        double min_us = dt * 1e6 * cfg->psi_threshold / 100;
        ongoing = grew(st->has_stall, st->stall_us, t->has_cgroup_stall, t->cgroup_stall_us, min_us) ||
                  grew(st->had_machine_total, st->machine_total_us, t->has_machine_stall, t->machine_stall_us, min_us);
    }
    st->has_stall_totals = true;
    st->had_machine_total = t->has_machine_stall;
    st->machine_total_us = t->machine_stall_us;
    st->totals_read_s = t->read_s;
    st->stall_ongoing = ongoing;
    return ongoing;
}

/* The memory budget: the tightest of the sources in policy.h's comment. Under pressure the
 * budget is one step below the active variant; when no variant is smaller it is the active
 * footprint itself: stepping down from the smallest would unload the model, which pressure
 * alone does not justify, and leaving pressure out would let the policy step up under it. */
static void memory_budget(const qd_policy_config *cfg, qd_policy_state *state, const qd_policy_variant *v,
                          size_t n, const qd_budget *budget, const qd_telemetry_snapshot *t, int active,
                          double now_s, qd_decision *d)
{
    uint64_t act = active >= 0 ? v[active].footprint_bytes : 0;
    if (budget && budget->has_memory)
        tighten(d, budget->memory_bytes, QD_WHY_SET_BUDGET);
    if (!t)
        return;
    /* the images qslmd holds are its own, and during a switch they are not the active one's */
    uint64_t images = t->has_held ? t->held_bytes : act;
    uint64_t used = t->has_cgroup_stat ? t->cgroup_unreclaimable : t->has_cgroup_current ? t->cgroup_current : 0;
    uint64_t set_aside = sub_sat(used, images);
    set_aside = set_aside > UINT64_MAX - cfg->cgroup_reserve_bytes ? UINT64_MAX : set_aside + cfg->cgroup_reserve_bytes;
    if (t->has_cgroup_max)
        tighten(d, sub_sat(t->cgroup_max, set_aside), QD_WHY_CGROUP_MAX);
    if (t->has_cgroup_high)
        tighten(d, sub_sat(t->cgroup_high, set_aside), QD_WHY_CGROUP_HIGH);
    if (t->has_mem_available) {
        uint64_t avail = t->mem_available > UINT64_MAX - images ? UINT64_MAX : t->mem_available + images;
        tighten(d, sub_sat(avail, cfg->reserve_bytes), QD_WHY_MEM_AVAILABLE);
    }
    bool ongoing = stall_going_on(cfg, state, t); /* before kernel_acted moves the cgroup's total on */
    bool acted = kernel_acted(cfg, state, t, d);
    bool psi = cfg->psi_threshold > 0 && t->has_psi && t->psi_avg10 >= cfg->psi_threshold && ongoing;
    if (active >= 0 && (acted || psi)) {
        if (!acted)
            snprintf(d->pressure, sizeof d->pressure, "memory pressure %.1f%% >= %.1f%%", t->psi_avg10,
                     cfg->psi_threshold);
        bool smaller = false;
        for (size_t i = 0; i < n; i++)
            smaller |= v[i].footprint_bytes < act;
        bool held = state->psi_stepped && now_s - state->psi_step_s < cfg->psi_hold_s;
        tighten(d, smaller && !held ? act - 1 : act, acted ? QD_WHY_MEMORY_EVENTS : QD_WHY_PSI);
    } else {
        d->pressure[0] = '\0';
    }
}

static double energy(const qd_policy_variant *v)
{
    return isfinite(v->energy_j_per_token) ? v->energy_j_per_token : 0;
}

/* Is a better than b? Lower quality numbers are better; an unknown quality is worse than any
 * known one; equal is not better. */
static bool better(const qd_policy_variant *a, const qd_policy_variant *b)
{
    if (isnan(a->quality))
        return false;
    return isnan(b->quality) || a->quality < b->quality;
}

static bool fits_memory(const qd_decision *d, const qd_policy_variant *v, double margin)
{
    return !d->has_memory_budget || (double)v->footprint_bytes <= (double)d->memory_budget * margin;
}

/* Watts the machine would draw serving v at rate: what it draws now without the active
 * variant's share, plus v's. */
static double power_of(const qd_policy_variant *v, double base_w, double rate)
{
    return base_w + energy(v) * rate;
}

static bool fits_power(const qd_decision *d, const qd_policy_variant *v, double base_w,
                       double rate, double margin)
{
    return !d->has_power_budget || power_of(v, base_w, rate) <= d->power_budget_w * margin;
}

/* "32.0 MiB (set-budget)", or for PSI the pressure that set it. */
static void describe_budget(const qd_decision *d, uint64_t active_bytes, char *out, size_t cap)
{
    if (!d->has_memory_budget)
        snprintf(out, cap, "no memory limit");
    else if (strcmp(d->memory_source, "psi") == 0 || strcmp(d->memory_source, "memory.events") == 0)
        snprintf(out, cap, "%.1f MiB (%s: %s)", (double)d->memory_budget / MIB, d->pressure,
                 d->memory_budget < active_bytes ? "one step down" : "no step up");
    else
        snprintf(out, cap, "%.1f MiB (%s)", (double)d->memory_budget / MIB, d->memory_source);
}

/* The variant the rules pick, before hysteresis; -1 if none fits memory. Writes the reason. */
static int choose(const qd_policy_variant *v, size_t n, int active, int pinned, double base_w,
                  double rate, qd_decision *d)
{
    char mem[96];
    describe_budget(d, active >= 0 ? v[active].footprint_bytes : 0, mem, sizeof mem);
    if (pinned >= 0 && (size_t)pinned < n) {
        if (fits_memory(d, &v[pinned], 1)) {
            say(d, "pinned");
            d->why = QD_WHY_PINNED;
            return pinned;
        }
        d->pin_dropped = true;
        say(d, "pin on %s dropped: its footprint %.1f MiB exceeds the budget %s; ", v[pinned].name,
            (double)v[pinned].footprint_bytes / MIB, mem);
    } else if (pinned >= 0) {
        d->pin_dropped = true;
        say(d, "pin on variant %d dropped: no such variant; ", pinned);
    }

    int best = -1, cheapest = -1, best_memory = -1; /* best_memory: the best that fits memory */
    for (size_t i = 0; i < n; i++) {
        if (!fits_memory(d, &v[i], 1))
            continue;
        if (cheapest < 0 || energy(&v[i]) < energy(&v[cheapest]) ||
            (energy(&v[i]) == energy(&v[cheapest]) && better(&v[i], &v[cheapest])))
            cheapest = (int)i;
        if (best_memory < 0 || better(&v[i], &v[best_memory]))
            best_memory = (int)i;
        if (fits_power(d, &v[i], base_w, rate, 1) && (best < 0 || better(&v[i], &v[best])))
            best = (int)i;
    }
    if (cheapest < 0) {
        d->why = QD_WHY_NONE_FITS;
        if (d->has_memory_budget)
            say(d, "no variant fits: budget %s, smallest footprint %.1f MiB", mem,
                (double)d->smallest_footprint / MIB);
        return -1;
    }
    if (best < 0) {
        d->why = QD_WHY_POWER;
        say(d, "power %.2f W (%s) exceeded at %.0f tokens/s: least energy per token",
            d->power_budget_w, d->power_source, rate);
        return cheapest;
    }
    /* what kept a better variant out: power, else memory, else nothing */
    d->why = better(&v[best_memory], &v[best]) ? QD_WHY_POWER : QD_WHY_BEST;
    for (size_t i = 0; i < n && d->why == QD_WHY_BEST; i++)
        if (better(&v[i], &v[best]))
            d->why = why_memory(d);
    if (d->has_memory_budget)
        say(d, "best quality that fits %s", mem);
    else
        say(d, "best quality (no memory limit known)");
    if (d->has_power_budget)
        say(d, " and %.2f W (%s)", d->power_budget_w, d->power_source);
    return best;
}

/* A switch from a to b (either may be NULL) must unload a first when the two do not fit the
 * memory budget together (policy.h: peak). */
static bool unload_first(const qd_decision *d, const qd_policy_variant *a, const qd_policy_variant *b)
{
    if (!a || !b || a == b || !d->switch_now)
        return false;
    return qd_policy_unload_first(d, a->footprint_bytes, b->footprint_bytes);
}

bool qd_policy_unload_first(const qd_decision *d, uint64_t loaded_bytes, uint64_t next_bytes)
{
    if (!d->has_memory_budget)
        return false;
    return loaded_bytes > d->memory_budget || next_bytes > d->memory_budget - loaded_bytes;
}

qd_decision qd_policy_decide(const qd_policy_config *cfg, qd_policy_state *state,
                             const qd_policy_variant *variants, size_t n, const qd_budget *budget,
                             const qd_telemetry_snapshot *t, int active, int pinned,
                             double token_rate, double now_s)
{
    qd_decision d;
    memset(&d, 0, sizeof d);
    d.variant = -1;
    if (!variants || n == 0) {
        state->up_candidate = -1;
        say(&d, "no variants");
        return d;
    }
    if (active >= (int)n)
        active = -1;
    d.smallest_footprint = variants[0].footprint_bytes;
    for (size_t i = 1; i < n; i++)
        if (variants[i].footprint_bytes < d.smallest_footprint)
            d.smallest_footprint = variants[i].footprint_bytes;

    memory_budget(cfg, state, variants, n, budget, t, active, now_s, &d);
    if (budget && budget->has_power) {
        d.has_power_budget = true;
        d.power_budget_w = budget->power_w;
        d.power_source = "set-budget";
    } else if (cfg->has_default_power) {
        d.has_power_budget = true;
        d.power_budget_w = cfg->default_power_w;
        d.power_source = "config";
    }
    double rate = isfinite(token_rate) && token_rate > 0 ? token_rate : 0;
    double base_w = 0;
    if (t && t->has_power) {
        double share = active >= 0 ? energy(&variants[active]) * rate : 0;
        base_w = t->power_w > share ? t->power_w - share : 0;
    }

    int c = choose(variants, n, active, pinned, base_w, rate, &d);
    d.variant = c;

    /* Hysteresis. A step up is to a better variant that asks for more (memory or energy per
     * token): that one waits. Everything else is at once: nothing loaded, nothing fits, a pin,
     * the active variant no longer fits memory (memory is hard), a step down, or a better
     * variant that is also no bigger and no costlier (nothing to flap over). */
    const qd_policy_variant *vc = c >= 0 ? &variants[c] : NULL;
    const qd_policy_variant *va = active >= 0 ? &variants[active] : NULL;
    bool up = vc && va && c != active && c != pinned && fits_memory(&d, va, 1) && better(vc, va) &&
              (vc->footprint_bytes > va->footprint_bytes || energy(vc) > energy(va));
    if (!up) {
        state->up_candidate = -1;
        d.switch_now = c != active;
        /* A step down for pressure, or because the active variant no longer fits (a limit
         * shrank), starts the hold: the stall the kernel caused while the service was above
         * its new limit shows in PSI and memory.events for seconds, and is not a reason for a
         * further step. */
        if (d.switch_now && active >= 0 && c >= 0 &&
            ((d.memory_source &&
              (strcmp(d.memory_source, "psi") == 0 || strcmp(d.memory_source, "memory.events") == 0)) ||
             !fits_memory(&d, va, 1))) {
            state->psi_stepped = true;
            state->psi_step_s = now_s;
        }
        d.unload_first = unload_first(&d, va, vc);
        return d;
    }
    double margin = 1 - cfg->up_headroom;
    if (!fits_memory(&d, vc, margin) || !fits_power(&d, vc, base_w, rate, margin)) {
        state->up_candidate = -1;
        say(&d, "; staying on %s: %s fits without %.0f%% headroom", variants[active].name,
            variants[c].name, cfg->up_headroom * 100);
        return d;
    }
    /* mid-switch the budget rests on an upper bound of the images held (memory_budget): no
     * step up is timed on it */
    if (t && t->has_held && t->held_bytes != va->footprint_bytes) {
        state->up_candidate = -1;
        say(&d, "; staying on %s while a switch is in flight", variants[active].name);
        return d;
    }
    if (state->up_candidate != c) {
        state->up_candidate = c;
        state->up_since_s = now_s;
    }
    double waited = now_s - state->up_since_s;
    if (waited >= cfg->up_delay_s) {
        state->up_candidate = -1;
        d.switch_now = true;
        d.unload_first = unload_first(&d, va, vc);
        return d;
    }
    say(&d, "; staying on %s until %s has fitted for %.0f s (%.1f s so far)",
        variants[active].name, variants[c].name, cfg->up_delay_s, waited);
    return d;
}
