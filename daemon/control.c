/* control.c: the loop's control plane: telemetry and the policy (which variant the engine
 * should serve), `reload` prepared off the loop, and the `status` and `variants` replies. */
#include "server_impl.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sd_glue.h"
#include "reply.h"
#include "task_impl.h"

#define QD_BUNDLE_NAME_PREFIX (QR_BUNDLE_NAME_MAX + 32)

/* ---------------------------------------------------------------- policy */

void qd_control_decide(qd_server *s, bool log_always)
{
    const qr_bundle *m = s->bundle->manifest;
    qd_policy_variant vars[QR_BUNDLE_MAX_VARIANTS > 256 ? 256 : QR_BUNDLE_MAX_VARIANTS];
    int map[256];
    size_t n = 0;
    int active = -1, pinned = -1;
    int current = s->target >= 0 ? s->target : s->active;
    for (size_t i = 0; i < m->n_variants && n < 256; i++) {
        if (!qd_variant_servable(s, i))
            continue;
        const qr_bundle_variant *v = &m->variants[i];
        vars[n] = (qd_policy_variant){
            .name = v->name,
            .footprint_bytes = qd_bundle_footprint(s->bundle, i),
            .quality = v->metrics.ppl_test.known ? v->metrics.ppl_test.value : NAN,
            .energy_j_per_token = v->metrics.energy_pj_per_token.known ? v->metrics.energy_pj_per_token.value * 1e-12
                                                                      : NAN,
        };
        if ((int)i == current)
            active = (int)n;
        if ((int)i == s->pinned)
            pinned = (int)n;
        map[n++] = (int)i;
    }
    if (n == 0) {
        memset(&s->decision, 0, sizeof s->decision);
        s->decision.variant = -1;
        snprintf(s->decision.reason, sizeof s->decision.reason, "no variant of the bundle can be served (every one was refused)");
    } else {
        s->decision = qd_policy_decide(&s->cfg.policy, &s->policy_state, vars, n, &s->budget, &s->snap, active,
                                       pinned, s->rate_tokens_per_s, qd_now());
        if (s->decision.variant >= 0)
            s->decision.variant = map[s->decision.variant];
    }
    if (s->decision.pin_dropped && s->pinned >= 0) {
        snprintf(s->pin_note, sizeof s->pin_note, "%s", s->decision.reason);
        qd_log(QD_LOG_WARNING, "%s", s->decision.reason);
        s->pinned = -1;
    }
    int want = s->decision.variant;
    /* no target yet (a reload, a refused load: the engine must be told again) while the policy
     * holds the variant served (a step up waiting for up_delay): that one, on the current
     * bundle, not the better one hysteresis is still timing */
    if (s->target < 0 && !s->decision.switch_now && want >= 0 && current >= 0)
        want = current;
    bool change = want != s->target && (s->decision.switch_now || want < 0 || s->target < 0);
    if (change) {
        qd_log(QD_LOG_NOTICE, "policy: %s -> %s: %s",
               s->target >= 0 ? m->variants[s->target].name : "none", want >= 0 ? m->variants[want].name : "none",
               s->decision.reason);
        s->target = want;
        s->target_why = s->decision.why;
        bool unload_first = want >= 0 && s->loaded_footprint > 0 &&
                            qd_policy_unload_first(&s->decision, s->loaded_footprint, qd_bundle_footprint(s->bundle, (size_t)want));
        qd_engine_set_target(s->engine, s->bundle, want, unload_first);
    } else if (log_always) {
        qd_log(QD_LOG_INFO, "policy: keeping %s: %s", s->target >= 0 ? m->variants[s->target].name : "none",
               s->decision.reason);
    }
}

/* The only place telemetry is read: RAPL rates are energy deltas between two reads, so a reader
 * outside the tick (a client polling status) would shrink the window the policy measures power
 * over, and every status costing a full sysfs walk would let a status storm stall the loop. */
void qd_control_tick(qd_server *s)
{
    double now = qd_now();
    /* the engine may load or unload during the read: the larger count covers the images that
     * memory.stat can have seen */
    uint64_t held_before = s->engine ? qd_engine_held_bytes(s->engine) : 0;
    qd_telemetry_read(s->telemetry, now, &s->snap);
    if (s->engine) {
        uint64_t held_after = qd_engine_held_bytes(s->engine);
        s->snap.has_held = true;
        s->snap.held_bytes = held_after > held_before ? held_after : held_before;
    }
    s->snap_at = now;
    double dt = now - s->last_tick;
    if (dt > 0.05) {
        double rate = (double)(s->tokens - s->tokens_at_tick) / dt;
        s->rate_tokens_per_s = s->last_tick == s->started ? rate : 0.5 * s->rate_tokens_per_s + 0.5 * rate;
        s->tokens_at_tick = s->tokens;
        s->last_tick = now;
    }
    if (!s->shutting_down)
        qd_control_decide(s, false);
}

/* ---------------------------------------------------------------- systemd */

#define SERVED_LINE_MAX (QD_POLICY_REASON_MAX + 96)

/* "serving 8M: best quality that fits ...": systemd's STATUS= and the ready log line. */
static void served_line(const qd_server *s, char status[SERVED_LINE_MAX])
{
    snprintf(status, SERVED_LINE_MAX, "serving %s: %s",
             s->active >= 0 ? s->bundle->manifest->variants[s->active].name : "no variant", s->decision.reason);
}

void qd_control_sd_status(qd_server *s)
{
    char status[SERVED_LINE_MAX];
    served_line(s, status);
    qd_sd_status(status);
}

void qd_control_ready(qd_server *s)
{
    if (s->ready)
        return;
    s->ready = true;
    char status[SERVED_LINE_MAX];
    served_line(s, status);
    qd_sd_ready(status);
    qd_log(QD_LOG_INFO, "ready: %s", status);
}

/* ---------------------------------------------------------------- reload */

qr_status qd_control_open_bundle(const qd_config *cfg, size_t batch, size_t chunk, qd_bundle **out,
                                 char *trust_desc, size_t cap, qr_error *err)
{
    qd_trust trust;
    *out = NULL;
    qr_status st = qd_trust_load(cfg->trusted_keys, &trust, err);
    if (st != QR_OK)
        return st;
    qd_trust_describe(&trust, trust_desc, cap);
    st = qd_bundle_open(cfg->bundle_dir, &trust, batch, chunk, out, err);
    qd_trust_free(&trust);
    return st;
}

void qd_control_log_bundle(const qd_bundle *b, const char *trust_desc, const char *when)
{
    char where[QD_BUNDLE_WHERE_MAX];
    qd_bundle_where(b, where, sizeof where);
    if (b->signature == QR_SIG_GOOD)
        qd_log(QD_LOG_INFO, "%s: bundle %s signed by trusted key %s (manifest sha256 %.16s...); trusted_keys: %s",
               when, where, b->signer, b->manifest_sha256, trust_desc);
    else if (b->signature == QR_SIG_UNSIGNED)
        qd_log(QD_LOG_WARNING, "%s: bundle %s is unsigned and trusted_keys is not set: whatever manifest is in that "
               "directory is served; sign bundles (qslm-quant sign) and set trusted_keys (qslmd.conf(5))", when, where);
    else
        qd_log(QD_LOG_NOTICE, "%s: bundle %s is signed, not checked: trusted_keys is not set (qslmd.conf(5))", when,
               where);
}

/* On the thread pool: the configuration (when the server knows where it came from), then the
 * trusted keys and the bundle it names, every hash checked. r->cfg holds a copy of the running
 * configuration, made on the loop, for a server without a source. */
static void reload_work(uv_work_t *w)
{
    qd_reload *r = w->data;
    if (r->srv->has_source) {
        qr_error e;
        r->status = qd_config_load(&r->srv->source, &r->cfg, &e);
        if (r->status) {
            qr_fail(&r->err, r->status, "configuration: %s", e.msg);
            return;
        }
        r->has_cfg = true;
    }
    r->status = qd_control_open_bundle(&r->cfg, r->batch, r->chunk, &r->bundle, r->trust, sizeof r->trust, &r->err);
}

/* Applies a re-read configuration. What only a restart can change (the socket, the threads, the
 * batch, the active limits, the round's shape, mlock, the telemetry root) keeps its running
 * value, and says so. */
static void apply_config(qd_server *s, const qd_config *fresh)
{
    qd_config next = *fresh;
    const qd_config *old = &s->cfg;
    for (int k = 0; k < QD_KEY_COUNT; k++)
        if (qd_config_key_needs_restart((qd_config_key)k) && !qd_config_key_equal(old, &next, (qd_config_key)k))
            qd_log(QD_LOG_WARNING, "reload: [%s] %s changed; it takes effect at the next start",
                   qd_config_key_section((qd_config_key)k), qd_config_key_name((qd_config_key)k));
    memcpy(next.socket_path, old->socket_path, sizeof next.socket_path);
    memcpy(next.telemetry_root, old->telemetry_root, sizeof next.telemetry_root);
    next.threads = old->threads;
    next.batch = old->batch;
    next.max_active = old->max_active;
    next.max_active_per_conn = old->max_active_per_conn;
    next.round_tokens = old->round_tokens;
    next.prefill_chunk = old->prefill_chunk;
    next.round_ms = old->round_ms;
    next.lock_memory = old->lock_memory;
    next.limits.vocab = old->limits.vocab;
    bool budget_changed = memcmp(&next.initial_budget, &old->initial_budget, sizeof next.initial_budget) != 0;
    bool interval_changed = next.policy_interval_s != old->policy_interval_s;
    qd_metrics_file_apply(s, &next);
    s->cfg = next;
    if (budget_changed) { /* the file's budget changed: it replaces the one in force */
        s->budget = next.initial_budget;
        qd_log(QD_LOG_NOTICE, "reload: the configured memory budget changed; it is now the one in force");
    }
    if (interval_changed)
        qd_server_restart_policy_timer(s);
    qd_log_set_level(next.log_level);
    const char *why;
    qd_admin_resolve(&s->admin, next.admin_group, &why);
    if (why)
        qd_log(QD_LOG_NOTICE, "admin group '%s': %s", next.admin_group, why);
}

bool qd_control_replace_bundle(qd_server *s, qd_bundle *b)
{
    char (*refused)[QD_REFUSAL_MAX] = calloc(b->manifest->n_variants, sizeof *refused);
    if (!refused)
        return false;
    const qr_bundle *old = s->bundle->manifest;
    const char *active_name = s->active >= 0 ? old->variants[s->active].name : NULL;
    const char *pinned_name = s->pinned >= 0 ? old->variants[s->pinned].name : NULL;
    size_t i;
    s->active = active_name && qr_bundle_find_variant(b->manifest, active_name, &i) ? (int)i : -1;
    s->pinned = pinned_name && qr_bundle_find_variant(b->manifest, pinned_name, &i) && b->usable[i] ? (int)i : -1;
    if (pinned_name && s->pinned < 0)
        snprintf(s->pin_note, sizeof s->pin_note, "pin on %s dropped: the reloaded bundle cannot serve it", pinned_name);
    free(s->refused);
    s->refused = refused;
    qd_bundle_unref(s->bundle);
    s->bundle = b;
    s->cfg.limits.vocab = (uint32_t)qr_tokenizer_vocab_size(b->tokenizer);
    /* the engine must move to the new bundle's file even when the variant keeps its name */
    s->target = -2;
    qd_control_decide(s, true);
    return true;
}

static void reload_done(uv_work_t *w, int status)
{
    qd_reload *r = w->data;
    qd_server *s = r->srv;
    s->reload = NULL;
    char *line = NULL;
    size_t len = 0;
    qi_code code = QI_OK;
    if (status == 0 && r->status == QR_OK && !s->shutting_down && r->has_cfg)
        apply_config(s, &r->cfg);
    if (status == 0 && r->status == QR_OK && !s->shutting_down && qd_control_replace_bundle(s, r->bundle)) {
        char why[2048], where[QD_BUNDLE_WHERE_MAX];
        qd_bundle_refusals(s->bundle, why, sizeof why);
        qd_bundle_where(s->bundle, where, sizeof where);
        qd_log(QD_LOG_NOTICE, "reload: serving %s (%zu variant%s; signer %s%s%s)", where,
               s->bundle->manifest->n_variants, s->bundle->manifest->n_variants == 1 ? "" : "s", s->bundle->signer,
               why[0] ? "; refused: " : "", why);
        qd_control_log_bundle(s->bundle, r->trust, "reload");
        if (r->conn)
            qi_reply_reload(&r->id, (uint32_t)s->bundle->manifest->n_variants,
                            s->target >= 0 ? s->bundle->manifest->variants[s->target].name : NULL, &line, &len, NULL);
    } else {
        const char *why = s->shutting_down ? "the daemon is stopping" : status ? uv_strerror(status) : r->err.msg;
        if (r->status == QR_OK)
            qd_bundle_unref(r->bundle);
        qd_log(QD_LOG_ERR, "reload refused, still serving the old configuration and bundle: %s", why);
        if (r->conn) {
            char msg[QR_ERROR_MSG_MAX + 64];
            snprintf(msg, sizeof msg, "reload refused, still serving the old configuration and bundle: %s", why);
            code = status == 0 && r->status != QR_OK ? QI_ERR_RELOAD_REFUSED : QI_ERR_INTERNAL;
            qi_reply_error(&r->id, code, NULL, msg, &line, &len, NULL);
        }
    }
    if (r->conn) {
        r->conn->in_flight--;
        qd_stats_answered(&s->stats, QI_OP_RELOAD, code, qd_now() - r->t_received);
        qd_conn_send(r->conn, line, len);
    } else {
        free(line);
    }
    free(r);
    if (!s->shutting_down) { /* the reload is over, whichever way it went */
        char served[SERVED_LINE_MAX];
        served_line(s, served);
        qd_sd_ready(served);
    }
}

void qd_control_start_reload(qd_server *s, qd_conn *c, const qi_id *id)
{
    if (s->reload) {
        qd_log(QD_LOG_NOTICE, "reload: one is already running");
        return;
    }
    qd_reload *r = calloc(1, sizeof *r);
    if (!r) {
        qd_log(QD_LOG_ERR, "reload: out of memory");
        return;
    }
    r->srv = s;
    r->cfg = s->cfg; /* the bundle and keys to read when there is no file to re-read */
    r->batch = s->cfg.batch; /* both need a restart: the loaded variant's runner is made for them */
    r->chunk = s->cfg.prefill_chunk;
    r->conn = c;
    r->id = id ? *id : qi_id_none();
    r->t_received = qd_now();
    r->work.data = r;
    s->reload = r;
    qd_sd_reloading();
    if (uv_queue_work(&s->loop, &r->work, reload_work, reload_done) != 0) {
        s->reload = NULL;
        free(r);
        qd_log(QD_LOG_ERR, "reload: cannot start the work");
        qd_sd_ready(NULL);
    }
}

/* ---------------------------------------------------------------- status and variants */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median and 99th percentile of the switch latencies kept. */
static void latency_quantiles(const qd_server *s, double *p50, double *p99, size_t *n)
{
    *n = s->n_latency < QD_LATENCY_RING ? (size_t)s->n_latency : QD_LATENCY_RING;
    if (*n == 0)
        return;
    double v[QD_LATENCY_RING];
    memcpy(v, s->latency_ms, *n * sizeof *v);
    qsort(v, *n, sizeof *v, cmp_double);
    *p50 = v[(*n - 1) / 2];
    *p99 = v[(size_t)ceil(0.99 * (double)*n) - 1];
}

/* Fields the protocol lets a server add (PROTOCOL.md section 6): switch latencies, refusals,
 * the token rate the power rule uses, the age of the readings. */
static char *add_status_extras(const qd_server *s, char *line, size_t *len)
{
    json_object *o = json_tokener_parse(line);
    if (!o)
        return line;
    double p50 = 0, p99 = 0;
    size_t n;
    latency_quantiles(s, &p50, &p99, &n);
    json_object *lat = json_object_new_object();
    json_object_object_add(lat, "n", json_object_new_int64((int64_t)n));
    json_object_object_add(lat, "p50", n ? json_object_new_double(p50) : NULL);
    json_object_object_add(lat, "p99", n ? json_object_new_double(p99) : NULL);
    json_object_object_add(o, "switch_latency_ms", lat);
    json_object_object_add(o, "token_rate", json_object_new_double(s->rate_tokens_per_s));
    double age_ms = (qd_now() - s->snap_at) * 1000.0;
    json_object_object_add(o, "readings_age_ms", json_object_new_int64(age_ms > 0 ? (int64_t)(age_ms + 0.5) : 0));
    json_object *ref = json_object_new_array();
    const qr_bundle *m = s->bundle->manifest;
    for (size_t i = 0; i < m->n_variants; i++) {
        const char *why = s->bundle->refusal[i][0] ? s->bundle->refusal[i] : s->refused[i];
        if (!why[0])
            continue;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "variant", json_object_new_string(m->variants[i].name));
        json_object_object_add(e, "reason", json_object_new_string(why));
        json_object_array_add(ref, e);
    }
    json_object_object_add(o, "refused", ref);
    size_t n_out;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n_out);
    char *out = malloc(n_out + 2);
    if (out) {
        memcpy(out, text, n_out);
        out[n_out] = '\n';
        out[n_out + 1] = '\0';
        free(line);
        line = out;
        *len = n_out + 1;
    }
    json_object_put(o);
    return line;
}

/* Answers from the last tick's snapshot (see qd_control_tick): cheap, and it leaves the
 * policy's measurement alone. */
char *qd_control_status_line(qd_server *s, const qi_id *id, size_t *len)
{
    qi_reading readings[QD_TELEMETRY_MAX_READINGS];
    for (size_t i = 0; i < s->snap.n_readings; i++) {
        const qd_reading *r = &s->snap.readings[i];
        readings[i] = (qi_reading){r->source, r->unit, r->available, r->value, r->note[0] ? r->note : NULL};
    }
    const qr_bundle *m = s->bundle->manifest;
    char reason[2 * QD_POLICY_REASON_MAX + QD_BUNDLE_NAME_PREFIX + 8];
    char moving[QD_BUNDLE_NAME_PREFIX];
    moving[0] = '\0';
    if (s->target >= 0 && s->target != s->active)
        snprintf(moving, sizeof moving, "switching to %s: ", m->variants[s->target].name);
    snprintf(reason, sizeof reason, "%s%s%s%s", moving, s->decision.reason, s->pin_note[0] ? "; " : "",
             s->pin_note);
    uint32_t waiting, active;
    qd_engine_load(s->engine, &waiting, &active);
    qi_server_status st = {
        .active = s->active >= 0 ? m->variants[s->active].name : NULL,
        .reason = reason,
        .pinned = s->pinned >= 0,
        .has_memory_budget = s->decision.has_memory_budget,
        .memory_budget_bytes = s->decision.memory_budget,
        .memory_budget_source = s->decision.memory_source,
        .has_power_budget = s->decision.has_power_budget,
        .power_budget_uw = (uint64_t)(s->decision.power_budget_w * 1e6 + 0.5),
        .power_budget_source = s->decision.power_source,
        .readings = readings,
        .n_readings = s->snap.n_readings,
        .queue_waiting = waiting,
        .queue_active = active,
        .queue_limit = s->cfg.limits.queue_depth,
        .connections = s->connections,
        .requests = qd_stats_requests(&s->stats),
        .tokens = s->tokens,
        .errors = qd_stats_errors(&s->stats),
        .cancelled = s->cancelled,
        .disconnected = s->disconnected,
        .switches = qd_stats_switches(&s->stats),
        .uptime_s = qd_now() - s->started,
        .bundle_path = s->bundle->dir,
        .bundle_configured = s->bundle->source,
        .bundle_created = m->created,
        .bundle_signer = s->bundle->signer,
        .bundle_manifest_sha256 = s->bundle->manifest_sha256,
    };
    char *line = NULL;
    if (qi_reply_status(id, &st, &line, len, NULL) != QI_OK)
        return NULL;
    return add_status_extras(s, line, len);
}

static double metric(qr_bundle_metric m)
{
    return m.known ? m.value : NAN;
}

char *qd_control_variants_line(qd_server *s, const qi_id *id, size_t *len)
{
    const qr_bundle *m = s->bundle->manifest;
    qi_variant_info *v = calloc(m->n_variants, sizeof *v);
    qi_class_head *heads = calloc(m->n_variants * QR_HEADS_MAX, sizeof *heads);
    if (!v || !heads) {
        free(v);
        free(heads);
        return NULL;
    }
    for (size_t i = 0; i < m->n_variants; i++) {
        const qr_bundle_variant *b = &m->variants[i];
        const qr_heads *h = &s->bundle->heads[i];
        for (size_t k = 0; k < h->n; k++)
            heads[i * QR_HEADS_MAX + k] = (qi_class_head){h->heads[k].name, h->heads[k].labels,
                                                          h->heads[k].n_classes};
        v[i] = (qi_variant_info){
            .name = b->name,
            .footprint_bytes = qd_bundle_footprint(s->bundle, i),
            .bits_per_weight = b->bits_per_weight,
            .ppl_test = metric(b->metrics.ppl_test),
            .ppl_valid = metric(b->metrics.ppl_valid),
            .accuracy = metric(b->metrics.accuracy),
            .tokens_per_s = metric(b->metrics.tokens_per_s),
            .energy_pj_per_token = metric(b->metrics.energy_pj_per_token),
            .verified = qd_variant_servable(s, i),
            .active = (int)i == s->active,
            .pinned = (int)i == s->pinned,
            .tasks = heads + i * QR_HEADS_MAX,
            .n_tasks = h->n,
        };
    }
    char *line = NULL;
    qi_code c = qi_reply_variants(id, v, m->n_variants, &line, len, NULL);
    free(v);
    free(heads);
    return c == QI_OK ? line : NULL;
}
