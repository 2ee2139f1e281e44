/* test_daemon_metrics.c: the real qslmd's metrics (issue 21, part 3), through `qslmctl metrics`
 * and through its metrics_file, both read by the strict reader of prom_check.h.
 *
 * One daemon, configured by a file (metrics_file in a directory that does not exist yet, written
 * every 0.1 s), on a fake telemetry tree with a cgroup, MemAvailable, PSI and two hwmon power
 * channels (one labelled with a quote and a backslash). The test:
 *   - sees the write fail and be logged once, then succeed once the directory exists;
 *   - sends generate and classify requests, a bad request and a broken line, and a set-budget
 *     one byte under the best variant's footprint, which makes the daemon switch from it to the
 *     next (the variants and what each budget gets: bundle_facts.h);
 *   - (a) parses `qslmctl metrics` strictly and holds its values to `qslmctl --json status`
 *     (the active variant, the budget, the switch count, requests, errors, tokens, readings) and
 *     to what it sent (requests and errors per op, time-to-first-token count, footprints);
 *   - (b) reads the metrics file as it is rewritten (every read parses: never half a file), sees
 *     it count further requests, moves it with a reload, and finds its directory empty after the
 *     SIGTERM (removed at a clean stop, no temporary file left).
 * Arguments: qslmd, then qslmctl. A few seconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bundle_facts.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "prom_check.h"

#define WAIT_MS 10000

static const char *qslmctl;
static bf_bundle bundle; /* the default bundle as qslmd serves it; main reads it */

typedef struct {
    dh_daemon h;
    char conf[DH_PATH_MAX + 16];
    char prom_dir[DH_PATH_MAX];
    char prom[DH_PATH_MAX + 16];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    return dc_init(&f->h);
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = f ? dc_finish(&f->h) : 0;
    free(f);
    return rc;
}

/* ---------------------------------------------------------------- helpers */

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0)
            break;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void write_conf(fixture *f, const char *prom_name)
{
    snprintf(f->prom, sizeof f->prom, "%s/%s", f->prom_dir, prom_name);
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fprintf(fp, "[daemon]\nmetrics_file = %s\nmetrics_interval = 0.1\n", f->prom);
    assert_int_equal(fclose(fp), 0);
}

/* Runs qslmctl --socket SOCK args... and returns its stdout (exit status 0 required). */
static char *ctl(fixture *f, const char *a1, const char *a2, size_t *len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(qslmctl, qslmctl, "--socket", f->h.sock, a1, a2, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char *out = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        ssize_t got = read(p[0], out + n, cap - n - 1);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(p[0]);
    out[n] = '\0';
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("qslmctl %s %s: wait status %#x, output: %s", a1, a2 ? a2 : "", (unsigned)st, out);
    *len = n;
    return out;
}

static void parse_strict(const char *what, const char *text, size_t len, pc_doc *d)
{
    if (pc_parse(text, len, d) != 0)
        fail_msg("%s: %s", what, d->err);
}

static double get(const pc_doc *d, const char *name, const char *labels)
{
    double v;
    if (!pc_get(d, name, labels, &v))
        fail_msg("no sample %s{%s}", name, labels);
    return v;
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Reads the metrics file until its requests_total{op="generate"} is want; every read must parse
 * strictly. Returns how many reads it took. */
static int wait_file_generates(fixture *f, double want)
{
    double end = dh_now_ms() + WAIT_MS, v = -1;
    int reads = 0;
    while (dh_now_ms() < end) {
        size_t len;
        char *text = read_file(f->prom, &len);
        if (text) {
            pc_doc d;
            parse_strict("the metrics file", text, len, &d);
            reads++;
            v = get(&d, "qslm_requests_total", "op=\"generate\"");
            pc_free(&d);
            free(text);
            if (v == want)
                return reads;
        }
        dh_sleep_ms(20);
    }
    fail_msg("%s: requests_total{op=\"generate\"} is %g, not %g, after %d s", f->prom, v, want, WAIT_MS / 1000);
    return reads;
}

/* ---------------------------------------------------------------- the fake machine */

static void fake_machine(dh_daemon *h)
{
    static const struct {
        const char *rel, *text;
    } files[] = {
        {"proc/meminfo", "MemTotal:       8000000 kB\nMemAvailable:    4000000 kB\n"},
        {"proc/self/cgroup", "0::/qslm.service\n"},
        {"proc/pressure/memory", "some avg10=1.25 avg60=0.00 avg300=0.00 total=100\n"
                                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"},
        {"sys/fs/cgroup/qslm.service/memory.max", "max\n"},
        {"sys/fs/cgroup/qslm.service/memory.high", "1073741824\n"},
        {"sys/fs/cgroup/qslm.service/memory.current", "20000000\n"},
        {"sys/fs/cgroup/qslm.service/memory.stat", "anon 3000000\nfile 1000000\nfile_mapped 500000\n"},
        {"sys/fs/cgroup/qslm.service/memory.events", "low 0\nhigh 2\nmax 0\noom 0\noom_kill 0\n"},
        {"sys/fs/cgroup/qslm.service/memory.pressure", "some avg10=0.50 avg60=0.00 avg300=0.00 total=250000\n"
                                                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"},
        {"sys/class/hwmon/hwmon0/name", "ina3221\n"},
        {"sys/class/hwmon/hwmon0/power1_input", "2500000\n"},
        {"sys/class/hwmon/hwmon0/power1_label", "VDD_IN\n"},
        {"sys/class/hwmon/hwmon0/power2_input", "500000\n"},
        {"sys/class/hwmon/hwmon0/power2_label", "a\"b\\c\n"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (dh_write_root_file(h, files[i].rel, files[i].text) != 0)
            fail_msg("%s", h->err);
}

/* ---------------------------------------------------------------- (a) qslmctl metrics vs status */

typedef struct {
    uint64_t tokens, prompt_tokens;
} sent_totals;

/* The requests the metrics must count: 3 generates, 2 classifies, a bad generate, a broken line,
 * a variants, a set-budget under the best variant and the switch it causes. */
static sent_totals send_requests(qi_client *c, json_object **variants)
{
    sent_totals t = {0};
    qi_reply r;
    for (int i = 0; i < 3; i++) {
        rpc_final(c, &r, "{\"id\":\"g%d\",\"op\":\"generate\",\"prompt\":\"The state of the Union\","
                         "\"max_tokens\":4,\"seed\":%d}", i, i);
        assert_int_equal(r.kind, QI_REPLY_DONE);
        t.tokens += r.stats.tokens;
        t.prompt_tokens += r.stats.prompt_tokens;
        qi_reply_free(&r);
    }
    rpc(c, &r, "{\"id\":\"c1\",\"op\":\"classify\",\"text\":\"A wonderful film.\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    rpc(c, &r, "{\"id\":\"c2\",\"op\":\"classify\",\"texts\":[\"Dull.\",\"Too long by half.\"]}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    rpc(c, &r, "{\"id\":\"bad\",\"op\":\"generate\",\"prompt\":\"x\",\"max_tokens\":0}");
    expect_error(&r, QI_ERR_INVALID_ARGUMENT, "max_tokens");
    qi_reply_free(&r);
    rpc(c, &r, "hello");
    expect_error(&r, QI_ERR_INVALID_JSON, NULL);
    qi_reply_free(&r);
    rpc(c, &r, "{\"id\":\"v\",\"op\":\"variants\"}");
    *variants = json_object_get(jget(r.body, "variants"));
    qi_reply_free(&r);
    set_memory_budget(c, bf_top(&bundle)->footprint - 1);
    wait_active(c, bf_step_down(&bundle, bf_top(&bundle))->name, -1, WAIT_MS);
    return t;
}

/* Per op, the duration histogram counts what requests_total counts. */
static void check_per_op(const pc_doc *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const pc_sample *s = &m->samples[i];
        if (strcmp(s->name, "qslm_request_duration_seconds_count") != 0)
            continue;
        assert_true(s->value == get(m, "qslm_requests_total", s->labels));
    }
}

/* Every power reading of status is a qslm_power_source_watts sample with its source, unescaped. */
static void check_readings(const pc_doc *m, json_object *st)
{
    json_object *readings = jget(st, "readings");
    size_t n_power = 0;
    for (size_t i = 0; i < json_object_array_length(readings); i++) {
        json_object *rd = json_object_array_get_idx(readings, i);
        const char *unit = jstr(rd, "unit"), *src = jstr(rd, "source");
        json_object *v = jget(rd, "value");
        if (strcmp(unit, "W") != 0 || !v)
            continue;
        n_power++;
        bool found = false;
        for (size_t k = 0; k < m->n && !found; k++) {
            char label[256];
            found = strcmp(m->samples[k].name, "qslm_power_source_watts") == 0 &&
                    pc_label(&m->samples[k], "source", label, sizeof label) && strcmp(label, src) == 0 &&
                    m->samples[k].value == json_object_get_double(v);
        }
        if (!found)
            fail_msg("status reading %s = %g W is not in the metrics", src, json_object_get_double(v));
    }
    assert_int_equal(n_power, 2);
    assert_int_equal(n_power, (size_t)(pc_sum(m, "qslm_power_source_watts", &n_power), n_power));
}

static void check_against_status(const pc_doc *m, json_object *st, const sent_totals *t, json_object *variants)
{
    /* the variant serving, as status says */
    const bf_variant *top = bf_top(&bundle), *down = bf_step_down(&bundle, top);
    char active[QR_BUNDLE_NAME_MAX + 16];
    snprintf(active, sizeof active, "variant=\"%s\"", down->name);
    assert_jstr(st, "active.variant", down->name);
    assert_true(get(m, "qslm_variant_active", active) == 1);
    size_t n;
    assert_true(pc_sum(m, "qslm_variant_active", &n) == 1);
    assert_int_equal(n, bundle.n);
    /* the budget in force */
    assert_jstr(st, "budget.memory.source", "set-budget");
    assert_int_equal(jint(st, "budget.memory.bytes"), top->footprint - 1);
    assert_true(get(m, "qslm_memory_budget_bytes", "source=\"set-budget\"") == (double)(top->footprint - 1));
    /* switches: the first load (nothing bound it) and top -> down (the set-budget) */
    assert_int_equal(counter(st, "switches"), 2);
    assert_true(pc_sum(m, "qslm_variant_switches_total", NULL) == 2);
    assert_true(get(m, "qslm_variant_switches_total", "reason=\"best\"") == 1);
    assert_true(get(m, "qslm_variant_switches_total", "reason=\"set-budget\"") == 1);
    assert_true(get(m, "qslm_variant_switch_duration_seconds_count", "") == 2);
    /* requests: what status counted, plus that status request itself (counted once answered) */
    assert_true(pc_sum(m, "qslm_requests_total", NULL) == (double)counter(st, "requests") + 1);
    assert_true(get(m, "qslm_requests_total", "op=\"generate\"") == 4);
    assert_true(get(m, "qslm_requests_total", "op=\"classify\"") == 2);
    assert_true(get(m, "qslm_requests_total", "op=\"none\"") == 1);
    assert_true(get(m, "qslm_requests_total", "op=\"set-budget\"") == 1);
    assert_true(get(m, "qslm_requests_total", "op=\"variants\"") == 1);
    assert_true(get(m, "qslm_requests_total", "op=\"metrics\"") == 0); /* this one: after its reply */
    assert_true(get(m, "qslm_requests_total", "op=\"status\"") >= 2);
    /* errors */
    assert_true(pc_sum(m, "qslm_request_errors_total", &n) == (double)counter(st, "errors"));
    assert_int_equal(n, 2);
    assert_true(get(m, "qslm_request_errors_total", "op=\"generate\",code=\"invalid_argument\"") == 1);
    assert_true(get(m, "qslm_request_errors_total", "op=\"none\",code=\"invalid_json\"") == 1);
    check_per_op(m);
    /* the time to first token of each generation, within its request's duration */
    assert_true(get(m, "qslm_time_to_first_token_seconds_count", "") == 3);
    assert_true(get(m, "qslm_time_to_first_token_seconds_sum", "") <=
                get(m, "qslm_request_duration_seconds_sum", "op=\"generate\""));
    /* tokens: generated as the done messages and status say; read: the prompts and the texts */
    assert_true(get(m, "qslm_tokens_generated_total", "") == (double)t->tokens);
    assert_int_equal(counter(st, "tokens"), t->tokens);
    assert_true(get(m, "qslm_tokens_read_total", "") >= (double)t->prompt_tokens + 3);
    /* connections: status's, and this qslmctl's */
    assert_true(get(m, "qslm_connections_total", "") == (double)counter(st, "connections") + 1);
    /* footprints as variants gives them; energy per token from the manifest (pJ -> J) */
    for (size_t i = 0; i < json_object_array_length(variants); i++) {
        json_object *v = json_object_array_get_idx(variants, i);
        char labels[128];
        snprintf(labels, sizeof labels, "variant=\"%s\"", jstr(v, "name"));
        assert_true(get(m, "qslm_variant_footprint_bytes", labels) == (double)jint(v, "footprint_bytes"));
        double pj = json_object_get_double(jget(v, "metrics.energy_pj_per_token"));
        double j = get(m, "qslm_variant_energy_joules_per_token", labels);
        assert_true(fabs(j - pj * 1e-12) <= 1e-9 * j);
        assert_true(get(m, "qslm_variant_servable", labels) == 1);
    }
    /* telemetry as the fake machine has it, and as status read it */
    assert_true(get(m, "qslm_memory_available_bytes", "") == 4000000.0 * 1024);
    assert_true(get(m, "qslm_cgroup_memory_high_bytes", "") == 1073741824);
    double unused;
    assert_false(pc_get(m, "qslm_cgroup_memory_max_bytes", "", &unused)); /* "max": no limit */
    assert_true(get(m, "qslm_cgroup_memory_current_bytes", "") == 20000000);
    assert_true(get(m, "qslm_cgroup_memory_unreclaimable_bytes", "") == 3500000);
    assert_true(get(m, "qslm_cgroup_memory_page_cache_bytes", "") == 1000000);
    assert_true(get(m, "qslm_cgroup_memory_events_total", "event=\"high\"") == 2);
    assert_true(get(m, "qslm_cgroup_memory_stall_seconds_total", "") == 0.25);
    assert_true(get(m, "qslm_memory_pressure_ratio", "") == 0.0125);
    assert_true(get(m, "qslm_power_watts", "source=\"hwmon0 VDD_IN\"") == 2.5);
    assert_true(get(m, "qslm_power_source_watts", "source=\"hwmon0 a\\\"b\\\\c\"") == 0.5);
    check_readings(m, st);
    /* the process */
    double up = get(m, "qslm_uptime_seconds", "");
    assert_true(up > 0 && up < json_object_get_double(jget(st, "uptime_s")) + 60);
    double start = get(m, "qslm_start_time_seconds", "");
    assert_true(fabs(start + up - (double)time(NULL)) < 5);
    assert_true(pc_sum(m, "qslm_build_info", &n) == 1);
    assert_int_equal(n, 1);
}

/* ---------------------------------------------------------------- the test */

static void test_metrics(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    fake_machine(h);
    snprintf(f->conf, sizeof f->conf, "%s/qslmd.conf", h->dir);
    snprintf(f->prom_dir, sizeof f->prom_dir, "%s/prom", h->dir);
    write_conf(f, "qslmd.prom");
    const char *const extra[] = {"--config", f->conf, NULL};
    assert_int_equal(dc_start(h, extra), 0);

    /* the directory is missing: one log line, not one per 0.1 s tick */
    char fail_line[sizeof f->prom + 64];
    snprintf(fail_line, sizeof fail_line, "metrics file %s: open failed: No such file or directory", f->prom);
    assert_true(dh_log_wait(h, fail_line, WAIT_MS));
    dh_sleep_ms(600);
    char *log = dh_read_log(h);
    assert_int_equal(count_in(log, fail_line), 1);
    free(log);
    assert_int_equal(mkdir(f->prom_dir, 0755), 0);
    char again[sizeof f->prom + 64];
    snprintf(again, sizeof again, "metrics file %s: written again", f->prom);
    assert_true(dh_log_wait(h, again, WAIT_MS));

    qi_client *c = connect_or_fail(h);
    json_object *variants = NULL;
    sent_totals t = send_requests(c, &variants);

    /* (a) status, then metrics, each from qslmctl */
    size_t len;
    char *st_text = ctl(f, "--json", "status", &len);
    json_object *st = json_tokener_parse(st_text);
    assert_non_null(st);
    char *text = ctl(f, "metrics", NULL, &len);
    pc_doc m;
    parse_strict("qslmctl metrics", text, len, &m);
    check_against_status(&m, st, &t, variants);
    pc_free(&m);
    free(text);
    json_object_put(st);
    free(st_text);
    json_object_put(variants);

    /* (b) the file: the same text, mode 0644, rewritten as requests come */
    wait_file_generates(f, 4);
    struct stat sb;
    assert_int_equal(stat(f->prom, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    for (int i = 0; i < 2; i++) {
        qi_reply r;
        rpc_final(c, &r, "{\"id\":\"more%d\",\"op\":\"generate\",\"prompt\":\"My fellow\",\"max_tokens\":2}", i);
        assert_int_equal(r.kind, QI_REPLY_DONE);
        qi_reply_free(&r);
    }
    int reads = wait_file_generates(f, 6);
    assert_true(reads >= 1);

    /* a reload moves it: the new path is written, the old one removed */
    char old[sizeof f->prom];
    snprintf(old, sizeof old, "%s", f->prom);
    write_conf(f, "moved.prom");
    qi_reply r;
    rpc(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    wait_file_generates(f, 6);
    double end = dh_now_ms() + WAIT_MS;
    while (access(old, F_OK) == 0 && dh_now_ms() < end)
        dh_sleep_ms(20);
    assert_int_equal(access(old, F_OK), -1);
    qi_client_close(c);

    /* a clean stop removes it and leaves no temporary file */
    int ws = dh_stop(h);
    assert_true(ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    DIR *dir = opendir(f->prom_dir);
    assert_non_null(dir);
    for (struct dirent *e; (e = readdir(dir));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            fail_msg("%s holds %s after the stop", f->prom_dir, e->d_name);
    closedir(dir);
    log = dh_read_log(h);
    assert_int_equal(count_in(log, "open failed"), 1);
    assert_int_equal(count_in(log, "written again"), 1);
    free(log);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_daemon_metrics QSLMD QSLMCTL\n");
        return 2;
    }
    setenv("QSLMD", argv[1], 1);
    qslmctl = argv[2];
    signal(SIGPIPE, SIG_IGN);
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_daemon_metrics: %s\n", bundle.err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
