/* metrics.c: what qslmd exports to Prometheus and under which names (metrics.h); prom.c writes
 * the syntax. Units are in the names (_bytes, _seconds, _watts, _joules_per_token, _ratio for
 * percentages / 100), counters end in _total. A family whose source is absent (no cgroup, no
 * power reading) is left out rather than written as 0: 0 would read as a measurement. */
#include "server_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "prom.h"
#include "reply.h"
#include "task_impl.h"

#define L(...) (const qd_prom_label[]){__VA_ARGS__}, sizeof((const qd_prom_label[]){__VA_ARGS__}) / sizeof(qd_prom_label)
#define NO_LABELS NULL, 0

/* A family with one unlabelled sample. */
static void single(qd_prom *p, const char *name, const char *type, const char *help, double v)
{
    qd_prom_family(p, name, type, help);
    qd_prom_sample(p, name, NO_LABELS, v);
}

static void histogram(qd_prom *p, const char *name, const qd_prom_label *labels, size_t n, const qd_histogram *h)
{
    qd_prom_histogram(p, name, labels, n, qd_hist_bounds, h->count, QD_HIST_BOUNDS, h->sum);
}

/* ---------------------------------------------------------------- the daemon */

static void render_process(qd_prom *p, const qd_server *s)
{
    char protocol[16];
    snprintf(protocol, sizeof protocol, "%d", QI_PROTOCOL_VERSION);
    qd_prom_family(p, "qslm_build_info", "gauge", "qslmd's version, the protocol it speaks and its libuv; always 1.");
    qd_prom_sample(p, "qslm_build_info",
                   L({"version", QSLM_VERSION}, {"protocol", protocol}, {"libuv", uv_version_string()}), 1);
    single(p, "qslm_start_time_seconds", "gauge", "When qslmd started, in seconds since the Unix epoch.",
           s->started_unix);
    single(p, "qslm_uptime_seconds", "gauge", "Seconds since qslmd started.", qd_now() - s->started);
}

/* ---------------------------------------------------------------- variants and switches */

static void render_variants(qd_prom *p, const qd_server *s)
{
    const qr_bundle *m = s->bundle->manifest;
    static const struct {
        const char *name, *help;
    } flags[] = {
        {"qslm_variant_active", "1 for the variant serving now, 0 for the others."},
        {"qslm_variant_pinned", "1 for the variant a pin holds, 0 for the others."},
        {"qslm_variant_servable", "1 for a variant whose file passed its hash check and has not failed to load."},
    };
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        qd_prom_family(p, flags[f].name, "gauge", flags[f].help);
        for (size_t i = 0; i < m->n_variants; i++) {
            bool on = f == 0 ? (int)i == s->active : f == 1 ? (int)i == s->pinned : qd_variant_servable(s, i);
            qd_prom_sample(p, flags[f].name, L({"variant", m->variants[i].name}), on);
        }
    }
    qd_prom_family(p, "qslm_variant_footprint_bytes", "gauge",
                   "Memory a variant takes when served with this daemon's batch and chunk.");
    for (size_t i = 0; i < m->n_variants; i++)
        qd_prom_sample(p, "qslm_variant_footprint_bytes", L({"variant", m->variants[i].name}),
                       (double)qd_bundle_footprint(s->bundle, i));
    bool declared = false;
    for (size_t i = 0; i < m->n_variants; i++) {
        const qr_bundle_metric *e = &m->variants[i].metrics.energy_pj_per_token;
        if (!e->known)
            continue;
        if (!declared)
            qd_prom_family(p, "qslm_variant_energy_joules_per_token", "gauge",
                           "The manifest's estimate of a variant's energy per generated token.");
        declared = true;
        qd_prom_sample(p, "qslm_variant_energy_joules_per_token", L({"variant", m->variants[i].name}),
                       e->value * 1e-12);
    }
    qd_prom_family(p, "qslm_variant_switches_total", "counter",
                   "Variant switches (the first load too), by what decided the new variant: best, pinned, "
                   "power, no_variant_fits, or the memory budget's source.");
    for (int w = 0; w < QD_WHY_COUNT; w++)
        qd_prom_sample(p, "qslm_variant_switches_total", L({"reason", qd_why_name((qd_why)w)}),
                       (double)s->stats.switches[w]);
    qd_prom_family(p, "qslm_variant_switch_duration_seconds", "histogram",
                   "From the policy's decision to the first round on the new variant (loading and hashing it).");
    histogram(p, "qslm_variant_switch_duration_seconds", NO_LABELS, &s->stats.switch_duration);
    single(p, "qslm_variant_load_failures_total", "counter",
           "Variants that failed to load since start (they are no longer servable).", (double)s->refusals);
}

/* ---------------------------------------------------------------- budgets and telemetry */

static void render_budgets(qd_prom *p, const qd_server *s)
{
    const qd_decision *d = &s->decision;
    if (d->has_memory_budget) {
        qd_prom_family(p, "qslm_memory_budget_bytes", "gauge",
                       "The memory budget in force: the tightest limit known, and its source.");
        qd_prom_sample(p, "qslm_memory_budget_bytes", L({"source", d->memory_source}), (double)d->memory_budget);
    }
    if (d->has_power_budget) {
        qd_prom_family(p, "qslm_power_budget_watts", "gauge", "The power budget in force, and its source.");
        qd_prom_sample(p, "qslm_power_budget_watts", L({"source", d->power_source}), d->power_budget_w);
    }
}

/* One gauge of the snapshot, when its source was read. */
static void reading(qd_prom *p, bool has, const char *name, const char *help, double v)
{
    if (has)
        single(p, name, "gauge", help, v);
}

/* Every available reading of unit whose source starts with prefix, as name{source}. */
static void readings(qd_prom *p, const qd_telemetry_snapshot *t, const char *unit, const char *prefix,
                     double scale, const char *name, const char *help)
{
    bool declared = false;
    for (size_t i = 0; i < t->n_readings; i++) {
        const qd_reading *r = &t->readings[i];
        if (!r->available || strcmp(r->unit, unit) != 0 || strncmp(r->source, prefix, strlen(prefix)) != 0)
            continue;
        if (!declared)
            qd_prom_family(p, name, "gauge", help);
        declared = true;
        qd_prom_sample(p, name, L({"source", r->source}), r->value * scale);
    }
}

static void render_telemetry(qd_prom *p, const qd_server *s)
{
    const qd_telemetry_snapshot *t = &s->snap;
    single(p, "qslm_telemetry_age_seconds", "gauge",
           "Seconds since the readings below were taken (the policy's last tick).", qd_now() - s->snap_at);
    reading(p, t->has_mem_available, "qslm_memory_available_bytes", "MemAvailable from /proc/meminfo.",
            (double)t->mem_available);
    reading(p, t->has_cgroup_max, "qslm_cgroup_memory_max_bytes", "The service cgroup's memory.max.",
            (double)t->cgroup_max);
    reading(p, t->has_cgroup_high, "qslm_cgroup_memory_high_bytes", "The service cgroup's memory.high.",
            (double)t->cgroup_high);
    reading(p, t->has_cgroup_current, "qslm_cgroup_memory_current_bytes", "The service cgroup's memory.current.",
            (double)t->cgroup_current);
    reading(p, t->has_cgroup_stat, "qslm_cgroup_memory_unreclaimable_bytes",
            "What the service holds that the kernel cannot reclaim (memory.stat: anon, shmem, mapped, dirty, "
            "kernel).", (double)t->cgroup_unreclaimable);
    reading(p, t->has_cgroup_stat, "qslm_cgroup_memory_page_cache_bytes",
            "Page cache charged to the service (memory.stat file).", (double)t->cgroup_file);
    if (t->has_cgroup_events) {
        qd_prom_family(p, "qslm_cgroup_memory_events_total", "counter",
                       "The service cgroup's memory.events since it was made: high, max, oom (oom + oom_kill).");
        qd_prom_sample(p, "qslm_cgroup_memory_events_total", L({"event", "high"}), (double)t->events_high);
        qd_prom_sample(p, "qslm_cgroup_memory_events_total", L({"event", "max"}), (double)t->events_max);
        qd_prom_sample(p, "qslm_cgroup_memory_events_total", L({"event", "oom"}), (double)t->events_oom);
    }
    if (t->has_cgroup_stall)
        single(p, "qslm_cgroup_memory_stall_seconds_total", "counter",
               "Time the service's tasks stalled on memory (memory.pressure some total).",
               (double)t->cgroup_stall_us / 1e6);
    reading(p, t->has_psi, "qslm_memory_pressure_ratio",
            "Memory pressure, PSI some avg10 / 100: the larger of the cgroup's and the machine's.",
            t->psi_avg10 / 100);
    if (t->has_power) {
        qd_prom_family(p, "qslm_power_watts", "gauge", "The power drawn now, as the policy reads it, and its source.");
        qd_prom_sample(p, "qslm_power_watts", L({"source", t->power_source}), t->power_w);
    }
    readings(p, t, "W", "", 1, "qslm_power_source_watts", "Each power reading (hwmon, power_supply, RAPL).");
    readings(p, t, "%", "power_supply ", 0.01, "qslm_power_supply_capacity_ratio",
             "A battery's charge (power_supply capacity / 100).");
}

/* ---------------------------------------------------------------- load and requests */

static void render_load(qd_prom *p, qd_server *s)
{
    single(p, "qslm_connections_total", "counter", "Connections accepted since start.", (double)s->connections);
    single(p, "qslm_connections_open", "gauge", "Connections open now.", s->lim.n_conns);
    single(p, "qslm_connections_refused_total", "counter",
           "Connections refused with too_many_connections (the limit, or no descriptor or memory).",
           (double)s->lim.refused);
    single(p, "qslm_connections_idle_closed_total", "counter", "Connections closed with idle_timeout.",
           (double)s->lim.idle_closed);
    uint32_t waiting, active;
    qd_engine_load(s->engine, &waiting, &active);
    qd_prom_family(p, "qslm_queue_requests", "gauge", "Requests waiting for the model, and being computed.");
    qd_prom_sample(p, "qslm_queue_requests", L({"state", "waiting"}), waiting);
    qd_prom_sample(p, "qslm_queue_requests", L({"state", "active"}), active);
    single(p, "qslm_queue_depth_limit", "gauge", "Requests that may wait before new ones get busy.",
           s->cfg.limits.queue_depth);
}

static void render_requests(qd_prom *p, const qd_server *s)
{
    const qd_request_stats *st = &s->stats;
    qd_prom_family(p, "qslm_requests_total", "counter",
                   "Requests answered (a final reply, or none because the client left), by op; none: a line "
                   "whose op could not be read.");
    for (size_t op = 0; op < QD_STATS_OPS; op++)
        qd_prom_sample(p, "qslm_requests_total", L({"op", qd_stats_op_name(op)}), (double)st->answered[op]);
    qd_prom_family(p, "qslm_request_errors_total", "counter", "Error replies, by op and error code.");
    for (size_t op = 0; op < QD_STATS_OPS; op++)
        for (size_t c = 0; c < QD_STATS_CODES; c++)
            if (st->errors[op][c])
                qd_prom_sample(p, "qslm_request_errors_total",
                               L({"op", qd_stats_op_name(op)}, {"code", qi_code_name((qi_code)c)}),
                               (double)st->errors[op][c]);
    single(p, "qslm_requests_cancelled_total", "counter", "Requests a cancel of their client ended.",
           (double)s->cancelled);
    single(p, "qslm_requests_disconnected_total", "counter",
           "Requests whose client left before their final reply (nothing was sent).", (double)s->disconnected);
    qd_prom_family(p, "qslm_request_duration_seconds", "histogram",
                   "From reading a request's line to queueing its final reply, by op.");
    for (size_t op = 0; op < QD_STATS_OPS; op++)
        if (st->answered[op] || op == QI_OP_GENERATE || op == QI_OP_CLASSIFY)
            histogram(p, "qslm_request_duration_seconds", L({"op", qd_stats_op_name(op)}), &st->duration[op]);
    qd_prom_family(p, "qslm_time_to_first_token_seconds", "histogram",
                   "generate: from reading the request's line to its first token (queueing and prompt included).");
    histogram(p, "qslm_time_to_first_token_seconds", NO_LABELS, &st->first_token);
    single(p, "qslm_tokens_generated_total", "counter", "Tokens generated.", (double)s->tokens);
    single(p, "qslm_tokens_read_total", "counter",
           "Input tokens the model read: prompts and classify texts (one read again after a switch counts "
           "again).", (double)s->tokens_read);
    single(p, "qslm_generation_tokens_per_second", "gauge",
           "Tokens generated per second, smoothed over the policy's recent ticks (what the power rule uses).",
           s->rate_tokens_per_s);
}

char *qd_metrics_render(qd_server *s, size_t *len)
{
    qd_prom p = {0};
    render_process(&p, s);
    render_variants(&p, s);
    render_budgets(&p, s);
    render_telemetry(&p, s);
    render_load(&p, s);
    render_requests(&p, s);
    return qd_prom_take(&p, len);
}
