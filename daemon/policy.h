/* policy.h: which variant to serve, given the budgets in force and what telemetry says.
 *
 * Pure decision logic (no I/O, no clock of its own), so every rule is unit-testable:
 *   memory budget (bytes a variant may take when served) = the tightest of
 *     - the explicit budget (`set-budget`),
 *     - cgroup memory.max and memory.high, each minus `others` and minus `cgroup_reserve`, where
 *       others = the service's unreclaimable memory - the images it holds (>= 0),
 *       the images it holds = the telemetry's held_bytes when the caller gives it (the engine's
 *                       count: during a switch the old image until its memory is back with the
 *                       kernel, plus the new one from the start of its load), else the active
 *                       variant's footprint. Why: between the decision to switch and the
 *                       switch's end, subtracting only the new variant's footprint would take
 *                       the old image for others' memory, and the next decision would step down
 *                       again for memory that is about to be freed (to none, from a limit
 *                       that the new variant fits),
 *       unreclaimable = memory.stat's anon + shmem + file_mapped + file_dirty + file_writeback
 *                       + kernel_stack + pagetables + percpu + sock + vmalloc
 *                       + slab_unreclaimable.
 *       Why: the kernel charges the service's page cache to its cgroup, so memory.current sits
 *       at memory.high whenever files were read (the kernel trims the cache there rather than
 *       failing anything): counting it would make every limit look full. What the kernel cannot
 *       simply drop is counted: anonymous memory (the variant's image is anonymous, with the
 *       heap and the stacks), shared memory (no swap to put it in), mapped files (qslmd's code
 *       and libraries: dropping them means refaulting them at once, which is the throttling the
 *       limit is meant to avoid), dirty and writeback pages, and kernel memory other than
 *       reclaimable slab. cgroup_reserve (default 1 MiB) is left under the limit for what
 *       changes between two decisions: requests' states, replies, the cache the kernel refills.
 *       Without memory.stat, memory.current stands in for unreclaimable (and without that,
 *       nothing is set aside);
 *     - MemAvailable + the images it holds - the configured reserve,
 *     - under memory pressure, with an active variant: the active variant's footprint - 1, i.e.
 *       one step down; when no variant is smaller, the active footprint itself (under pressure
 *       the smallest stays: no unload, no step up). Pressure is either
 *         . PSI: "some" avg10 >= psi_threshold, the larger of the cgroup's memory.pressure and
 *           /proc/pressure/memory (another service thrashing counts: it is the same RAM), while
 *           the stall is still going on: when the snapshots give "some" totals, one of them
 *           (the cgroup's or the machine's) grew since the previous snapshot by psi_threshold
 *           percent of the time between the two reads. Why: avg10 is a decaying average that
 *           keeps a stall that has ended above the threshold for tens of seconds (a throttling
 *           at a limit that shrank, over once the service stepped down under it), and reading
 *           that as pressure would step down again for nothing. Without totals (or on the
 *           first snapshot) avg10 alone decides, or
 *         . the kernel acting on the service's own limits since the last decision: its
 *           memory.events "max" or "oom"/"oom_kill" grew (reclaim at memory.max, an OOM), or
 *           "high" grew while the cgroup's memory.pressure stall total grew by at least
 *           throttle_stall_ms (the kernel throttled it at memory.high: waiting for that to
 *           show in avg10 would leave the service throttled for seconds).
 *       Each decision steps down at most once; after a step down for pressure, or because the
 *       active variant stopped fitting (a limit shrank: the kernel throttles the service until
 *       it is under the new limit, and that stall lingers in PSI and memory.events), the next
 *       step for pressure waits psi_hold_s; the caller's decision interval sets the pace;
 *   peak: a switch between two variants loads the new one before unloading the old only when
 *     both fit in the memory budget together (old + new <= budget: with the cgroup sources that
 *     is others + old + new + reserve <= the limit); otherwise the decision says unload_first,
 *     and requests in flight wait between two tokens while nothing is loaded;
 *   power budget (watts) = the explicit budget, else the configured default (if any); a variant's
 *     power is estimated as base + energy_per_token × token_rate, where base is the measured draw
 *     minus the active variant's share (0 when no power is measured).
 *   Choice: a pinned variant if it fits memory (else the pin is dropped, and said so); otherwise
 *   the best-quality variant that fits memory and power (lowest quality number; unknown quality
 *   ranks last; a tie goes to manifest order). If some fit memory but none fits
 *   power, the one with the least energy per token among them (power is a soft limit; memory is
 *   hard). If none fits memory: no variant (-1), and the reason gives the budget and the
 *   smallest footprint.
 *   Hysteresis: a switch to a smaller/cheaper variant happens at once; a switch to a better one
 *   only once it has fitted, with `up_headroom` to spare, for `up_delay_s` without a break.
 *   "Better" here means better quality and asking more (a bigger footprint or more energy per
 *   token); headroom is kept on memory and, when a power budget is in force, on power. The wait
 *   restarts when the candidate changes or stops fitting. At once, without waiting: the first
 *   pick (active -1), unloading when none fits, a pinned variant, and any switch away from an
 *   active variant that no longer fits memory. */
#ifndef QD_POLICY_H
#define QD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "telemetry.h"

#define QD_POLICY_REASON_MAX 256

typedef struct {
    const char *name;
    uint64_t footprint_bytes;
    double quality;            /* lower is better (the manifest's test perplexity); NAN unknown */
    double energy_j_per_token; /* NAN: unknown (counts as 0 for power) */
} qd_policy_variant;

typedef struct {
    uint64_t reserve_bytes;   /* MemAvailable kept for others (default 64 MiB) */
    double psi_threshold;     /* memory PSI avg10 (%) at which memory counts as under pressure
                                 (default 10); <= 0 disables the PSI rule */
    double psi_hold_s;        /* after a step down for pressure, the next one waits this long
                                 (default 10: avg10's own window, so one burst of pressure is
                                 not read again as the next); meanwhile the active variant is
                                 held, neither stepped down nor up */
    double throttle_stall_ms; /* memory.high events count as pressure when the cgroup also
                                 stalled this long since the last decision (default 10) */
    uint64_t cgroup_reserve_bytes; /* kept free under memory.max/high (default 1 MiB) */
    double up_delay_s;        /* default 10 */
    double up_headroom;       /* fraction of the budget to spare before switching up (0.05) */
    bool has_default_power;   /* a power budget from configuration, when set-budget gives none */
    double default_power_w;
} qd_policy_config;

qd_policy_config qd_policy_config_default(void);

/* The explicit budgets from `set-budget` (absent = "auto"). */
typedef struct {
    bool has_memory;
    uint64_t memory_bytes;
    bool has_power;
    double power_w;
} qd_budget;

/* What decided the variant, in one word (metrics label qslm_variant_switches_total{reason}): the
 * constraint that ruled out every better variant. The memory ones are named as memory_source
 * names the budget (the tightest limit). */
typedef enum {
    QD_WHY_NONE_FITS,     /* "no_variant_fits": no variant fits the memory budget (or none is
                             servable); a zeroed decision says this */
    QD_WHY_BEST,          /* "best": the best-quality variant fits every budget */
    QD_WHY_PINNED,        /* "pinned" */
    QD_WHY_POWER,         /* "power": the power budget ruled out a better variant that fits
                             memory (or every one: least energy per token) */
    QD_WHY_SET_BUDGET,    /* "set-budget": a better variant does not fit the memory budget, */
    QD_WHY_CGROUP_MAX,    /* "cgroup memory.max"    whose source is this */
    QD_WHY_CGROUP_HIGH,   /* "cgroup memory.high" */
    QD_WHY_MEM_AVAILABLE, /* "MemAvailable" */
    QD_WHY_PSI,           /* "psi" */
    QD_WHY_MEMORY_EVENTS, /* "memory.events" */
    QD_WHY_COUNT
} qd_why;

/* The name above; NULL out of range. */
const char *qd_why_name(qd_why why);

typedef struct {
    int variant;       /* index into the variants, or -1: none fits the memory budget */
    qd_why why;        /* what decided it */
    bool switch_now;   /* variant differs from the active one and hysteresis allows it */
    bool unload_first; /* switching between two variants that do not fit the budget together */
    bool pin_dropped;  /* the pin no longer fits: the caller clears it */
    char reason[QD_POLICY_REASON_MAX]; /* "best quality that fits 32.0 MiB (set-budget)", ... */
    bool has_memory_budget;
    uint64_t memory_budget;
    const char *memory_source; /* "set-budget", "cgroup memory.max", "cgroup memory.high",
                                  "MemAvailable", "psi", "memory.events"; NULL when no limit
                                  is known */
    bool has_power_budget;
    double power_budget_w;
    const char *power_source;  /* "set-budget", "config"; NULL when none */
    uint64_t smallest_footprint; /* for no_variant_fits messages */
    char pressure[96];  /* what counted as memory pressure ("" when none) */
} qd_decision;

/* Hysteresis memory between decisions. */
typedef struct {
    int up_candidate;      /* the better variant waiting for its delay, or -1 */
    double up_since_s;
    bool psi_stepped;      /* a step down for pressure happened, at psi_step_s */
    double psi_step_s;
    bool has_events;       /* memory.events and the stall total at the last decision */
    uint64_t events_high, events_max, events_oom;
    bool has_stall;
    uint64_t stall_us;
    /* stall_going_on (policy.c): the machine's stall total and the read time of the last
     * snapshot seen (the cgroup's is stall_us above), and the answer given for it */
    bool has_stall_totals;
    bool had_machine_total;
    uint64_t machine_total_us;
    double totals_read_s;
    bool stall_ongoing;
} qd_policy_state;

void qd_policy_state_init(qd_policy_state *s);

/* Decides. variants: n >= 1, in manifest order. active: the index serving now, -1 if none.
 * pinned: the pinned index, -1 if none. token_rate: tokens per second generated recently.
 * now_s: a monotonic clock. t may be NULL (no telemetry). */
qd_decision qd_policy_decide(const qd_policy_config *cfg, qd_policy_state *state,
                             const qd_policy_variant *variants, size_t n, const qd_budget *budget,
                             const qd_telemetry_snapshot *t, int active, int pinned,
                             double token_rate, double now_s);

/* Must a switch from a variant of loaded_bytes to one of next_bytes unload first under d's
 * memory budget (policy.h: peak)? The loop asks this too when the policy sees no switch but
 * the engine will change files (a reload whose variant kept its name but not its file). */
bool qd_policy_unload_first(const qd_decision *d, uint64_t loaded_bytes, uint64_t next_bytes);

#endif
