/* test_faults.c: qslmd (QSLMD) under faults, each while background clients keep it loaded.
 *
 * Every test serves a COPY of the bundle ($QSLM_SOURCE_DIR/models/bundle, copied into the
 * harness's temporary directory: the real one is never touched), and runs BG_CLIENTS client
 * threads that send generate (streamed and not), classify and status one at a time and check
 * each reply (its id, the token events' order, exactly one final message). The faults: variant
 * files truncated, corrupted or replaced under the daemon; the bundle directory gone and the
 * manifest invalid; a budget below the smallest variant; telemetry files vanishing or holding
 * garbage; budget changes back to back while requests with long inputs run; clients that send
 * nothing, half a line, 10 MB without a newline, or never read; and
 * SIGTERM, SIGHUP and kill -9 in the middle of it. Variant names and footprints come from the
 * `variants` op, and which variant a budget gets from the bundle's manifest (bundle_facts.h),
 * never from this file.
 *
 * QSLM_FAULTS_SET=valgrind runs the subset the valgrind test uses (tests/daemon/meson.build:
 * qslmd under QSLMD_WRAPPER); there the teardown's exit-0 check is what catches memcheck's
 * errors (--error-exitcode), and the log is searched for its reports too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bg_load.h"
#include "bundle_facts.h"
#include "client.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "reply_parse.h"

#define READ_TIMEOUT_MS BG_READ_TIMEOUT_MS
#define WAIT_MS BG_WAIT_MS
#define RSS_BOUND_KB (512 * 1024) /* generous: the daemon serves a few MiB of weights */

static bool under_valgrind;
static bf_bundle bundle; /* the default bundle (the copies' source) as qslmd serves it; main reads it */

/* ---------------------------------------------------------------- small helpers */

/* The active variant's name from status (malloc'ed), or NULL when none. */
static char *active_variant(qi_client *c)
{
    qi_reply r;
    status(c, &r);
    const char *v = jstr(r.body, "active.variant");
    char *out = v ? strdup(v) : NULL;
    qi_reply_free(&r);
    return out;
}

/* Polls status (up to WAIT_MS) until a variant is served that is want (NULL: any) and is not
 * not_this (NULL: no such condition); returns its name, malloc'ed. */
static char *wait_served(qi_client *c, const char *want, const char *not_this)
{
    double end = dh_now_ms() + WAIT_MS;
    for (;;) {
        char *v = active_variant(c);
        if (v && (!want || !strcmp(v, want)) && (!not_this || strcmp(v, not_this) != 0))
            return v;
        free(v);
        if (dh_now_ms() > end && not_this)
            fail_msg("%s is still served (or nothing) after %d ms", not_this, WAIT_MS);
        else if (dh_now_ms() > end)
            fail_msg("no variant %s served after %d ms", want ? want : "at all", WAIT_MS);
        dh_sleep_ms(20);
    }
}

typedef struct {
    char name[65];
    char file[800];
    uint64_t footprint;
} vinfo;

/* The bundle's variants from the `variants` op, with their files from the copy's manifest. */
static size_t read_variants(dh_daemon *h, qi_client *c, vinfo *out, size_t cap)
{
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"v\",\"op\":\"variants\"}");
    json_object *vs = jget(r.body, "variants");
    assert_non_null(vs);
    size_t n = json_object_array_length(vs);
    assert_true(n >= 2 && n <= cap);
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.json", h->bundle);
    json_object *man = json_object_from_file(path), *mv = jget(man, "variants");
    assert_non_null(mv);
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(vs, i);
        const char *name = jstr(v, "name");
        assert_non_null(name);
        snprintf(out[i].name, sizeof out[i].name, "%.64s", name ? name : "");
        out[i].footprint = (uint64_t)json_object_get_int64(jget(v, "footprint_bytes"));
        out[i].file[0] = '\0';
        for (size_t k = 0; k < json_object_array_length(mv); k++) {
            json_object *m = json_object_array_get_idx(mv, k);
            const char *mn = jstr(m, "name"), *file = jstr(m, "file");
            if (mn && file && !strcmp(mn, out[i].name))
                snprintf(out[i].file, sizeof out[i].file, "%.256s/%.500s", h->bundle, file);
        }
        assert_true(out[i].file[0] != '\0');
    }
    json_object_put(man);
    qi_reply_free(&r);
    return n;
}

static const vinfo *find_variant(const vinfo *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    fail_msg("no variant %s", name);
    return NULL;
}

/* A short generation must succeed; returns its (only) span's variant, malloc'ed. */
static char *generate_ok(qi_client *c)
{
    qi_reply d;
    rpc_final(c, &d, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The nation\",\"max_tokens\":4,\"seed\":3}");
    if (d.kind != QI_REPLY_DONE)
        fail_msg("generate: %s", json_object_to_json_string(d.body));
    assert_int_equal(d.stats.tokens, 4);
    assert_true(d.stats.n_spans >= 1);
    char *v = strdup(d.stats.spans[d.stats.n_spans - 1].variant);
    qi_reply_free(&d);
    return v;
}

/* ---------------------------------------------------------------- files */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* Copies the regular files of src into a new directory dst. */
static void copy_dir(const char *src, const char *dst)
{
    assert_int_equal(mkdir(dst, 0755), 0);
    DIR *d = opendir(src);
    if (!d)
        fail_msg("opendir %s: %s", src, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        char a[1024], b[1024];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        if (stat(a, &st) == 0 && S_ISREG(st.st_mode))
            copy_file(a, b);
    }
    closedir(d);
}

static void write_file(const char *path, const char *content, size_t len)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* ---------------------------------------------------------------- fixture */

typedef struct {
    dh_daemon h;
    bg_load bg;
    bool bg_running;
    double t0;
} fixture;

static int setup_dir(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    f->t0 = dh_now_ms();
    if (dc_init(&f->h) != 0)
        return -1;
    const char *src = getenv("QSLM_SOURCE_DIR");
    if (!src)
        return -1;
    char from[512];
    snprintf(from, sizeof from, "%s/models/bundle", src);
    snprintf(f->h.bundle, sizeof f->h.bundle, "%s/bundle", f->h.dir);
    copy_dir(from, f->h.bundle);
    return 0;
}

static const char *const std_args[] = {"--max-output", "64K", "--max-line", "64K", NULL};

static int setup_daemon(void **state)
{
    if (setup_dir(state) != 0)
        return -1;
    fixture *f = *state;
    return dc_start(&f->h, std_args);
}

/* Stops the load, then the daemon must exit 0 and its log hold no sanitizer or valgrind report
 * (dc_finish). */
static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    if (f->bg_running) {
        atomic_store(&f->bg.stop, true);
        for (int i = 0; i < f->bg.n; i++)
            pthread_join(f->bg.th[i], NULL);
    }
    int rc = dc_finish(&f->h);
    print_message("[   TIME   ] %.0f ms\n", dh_now_ms() - f->t0);
    free(f);
    return rc;
}

static void start_load(fixture *f)
{
    bg_start(&f->bg, &f->h);
    f->bg_running = true;
    bg_wait_ok(&f->bg, 4);
}

static void stop_load(fixture *f, const qi_code *allowed)
{
    f->bg_running = false;
    bg_stop(&f->bg, allowed);
}

/* ---------------------------------------------------------------- variant files */

/* The reload's reply: ok (`when` says after what, in the failure), with the active variant not
 * `refused` (NULL: whichever). */
static void reload_ok(qi_client *c, const char *when, const char *refused)
{
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    if (r.kind != QI_REPLY_RESULT)
        fail_msg("reload%s: %s", when, json_object_to_json_string(r.body));
    const char *active = jstr(r.body, "active");
    if (refused && (!active || !strcmp(active, refused)))
        fail_msg("reload: the refused variant %s is active: %s", refused, json_object_to_json_string(r.body));
    qi_reply_free(&r);
}

/* status's `refused` lists name with a reason containing why. */
static void expect_refused(qi_client *c, const char *name, const char *why)
{
    qi_reply r;
    status(c, &r);
    json_object *ref = jget(r.body, "refused");
    assert_non_null(ref);
    bool found = false;
    for (size_t i = 0; i < json_object_array_length(ref); i++) {
        json_object *e = json_object_array_get_idx(ref, i);
        const char *reason = jstr(e, "reason");
        if (!strcmp(jstr(e, "variant"), name) && reason && strstr(reason, why) && strstr(reason, name))
            found = true;
    }
    if (!found)
        fail_msg("status does not list %s as refused (%s): %s", name, why, json_object_to_json_string(r.body));
    qi_reply_free(&r);
}

/* The variant serving now is damaged by `damage`, then reload: refused, another one serves. */
static void variant_fault(void **state, void (*damage)(const vinfo *victim, const vinfo *other), const char *why)
{
    fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    vinfo v[16];
    size_t n = read_variants(&f->h, c, v, 16);
    char *active = wait_served(c, NULL, NULL);
    const vinfo *victim = find_variant(v, n, active);
    const vinfo *other = victim == &v[0] ? &v[1] : &v[0];
    start_load(f);
    damage(victim, other);
    bg_wait_ok(&f->bg, 4); /* what it serves was verified when loaded: nothing changes yet */
    reload_ok(c, "", victim->name);
    expect_refused(c, victim->name, why);
    char logline[128];
    snprintf(logline, sizeof logline, "variant '%.64s'", victim->name);
    assert_true(dh_log_wait(&f->h, logline, 5000));
    assert_true(dh_log_wait(&f->h, "reload: serving", 5000));
    char *now = wait_served(c, NULL, victim->name);
    char *used = generate_ok(c);
    assert_string_not_equal(used, victim->name);
    /* a pin of the refused variant is refused, saying why */
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"p\",\"op\":\"pin\",\"variant\":\"%s\"}", victim->name);
    assert_int_equal(r.kind, QI_REPLY_ERROR);
    assert_int_equal(r.code, QI_ERR_NOT_FOUND);
    assert_non_null(strstr(r.message, why));
    qi_reply_free(&r);
    bg_wait_ok(&f->bg, 4);
    stop_load(f, NULL);
    free(now);
    free(used);
    free(active);
    qi_client_close(c);
}

static void truncate_it(const vinfo *victim, const vinfo *other)
{
    (void)other;
    struct stat st;
    assert_int_equal(stat(victim->file, &st), 0);
    assert_int_equal(truncate(victim->file, st.st_size / 2), 0);
}

static void flip_a_byte(const vinfo *victim, const vinfo *other)
{
    (void)other;
    int fd = open(victim->file, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    off_t at = st.st_size / 3;
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* Another variant's file (a valid model, different content) renamed over it. */
static void replace_it(const vinfo *victim, const vinfo *other)
{
    char tmp[900];
    snprintf(tmp, sizeof tmp, "%s.new", victim->file);
    copy_file(other->file, tmp);
    assert_int_equal(rename(tmp, victim->file), 0);
}

static void test_variant_truncated(void **state)
{
    variant_fault(state, truncate_it, "the manifest says");
}

static void test_variant_corrupted(void **state)
{
    variant_fault(state, flip_a_byte, "SHA-256 mismatch");
}

static void test_variant_replaced(void **state)
{
    variant_fault(state, replace_it, "the manifest says");
}

/* A variant corrupted while it is not served, then the budget makes the daemon load it: the
 * load's own hash check refuses it and the best variant that fits without it serves, without a
 * reload. The victim is what a budget under the best variant's footprint gets, and the budget is
 * the victim's footprint, so the served variant and the victim do not fit together: the served
 * one is unloaded first, the next best loaded when the victim is refused, and the requests in
 * flight (the background load) carry on through all of it. */
static void test_variant_corrupted_then_switched_to(void **state)
{
    fixture *f = *state;
    const bf_variant *top = bf_top(&bundle), *want = bf_step_down(&bundle, top);
    const bf_variant *fallback = bf_best(&bundle, want->footprint, want->name);
    qi_client *c = connect_or_fail(&f->h);
    if (!fallback) {
        print_message("no variant fits under %s's footprint but %s: skipped\n", top->name, want->name);
        qi_client_close(c);
        skip();
    }
    vinfo v[16];
    size_t n = read_variants(&f->h, c, v, 16);
    const vinfo *victim = find_variant(v, n, want->name);
    assert_int_equal(victim->footprint, want->footprint);
    free(wait_served(c, top->name, NULL));
    start_load(f);
    flip_a_byte(victim, NULL);
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":%llu}", (unsigned long long)victim->footprint);
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    char logline[160];
    snprintf(logline, sizeof logline, "refused variant %.64s", victim->name);
    if (!dh_log_wait(&f->h, logline, WAIT_MS))
        fail_msg("no refusal of %s in the log", victim->name);
    expect_refused(c, victim->name, "SHA-256");
    free(wait_served(c, fallback->name, NULL));
    assert_true(dh_log_wait(&f->h, "unloaded the old variant first", WAIT_MS));
    char *used = generate_ok(c);
    assert_string_equal(used, fallback->name);
    free(used);
    rpc_final(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":\"auto\"}");
    qi_reply_free(&r);
    free(wait_served(c, top->name, NULL));
    bg_wait_ok(&f->bg, 4);
    stop_load(f, NULL);
    qi_client_close(c);
}

static int count_in_log(const dh_daemon *h, const char *needle)
{
    char *log = dh_read_log(h);
    int k = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p++)
        k++;
    free(log);
    return k;
}

/* A reload that must be refused (the reply, SIGHUP's log), the old bundle still serving. */
static void reload_refused(fixture *f, qi_client *c, const char *why, const char *active)
{
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    if (r.kind != QI_REPLY_ERROR || r.code != QI_ERR_RELOAD_REFUSED || !strstr(r.message, "reload refused") ||
        !strstr(r.message, why))
        fail_msg("reload: expected reload_refused naming '%s', got %s", why, json_object_to_json_string(r.body));
    qi_reply_free(&r);
    int before = count_in_log(&f->h, "reload refused");
    assert_true(before >= 1); /* the request's */
    assert_int_equal(dh_signal(&f->h, SIGHUP), 0);
    double end = dh_now_ms() + WAIT_MS;
    for (;;) { /* and SIGHUP's */
        if (count_in_log(&f->h, "reload refused") > before)
            break;
        if (dh_now_ms() > end)
            fail_msg("SIGHUP's reload was not refused in the log");
        dh_sleep_ms(10);
    }
    char *now = active_variant(c);
    assert_non_null(now);
    assert_string_equal(now, active);
    free(now);
    char *used = generate_ok(c);
    assert_string_equal(used, active);
    free(used);
}

static void test_bundle_dir_gone(void **state)
{
    fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    char *active = wait_served(c, NULL, NULL);
    start_load(f);
    char away[600];
    snprintf(away, sizeof away, "%s.away", f->h.bundle);
    /* renamed away (root ignores modes, so chmod 000 would not do): no such directory */
    assert_int_equal(rename(f->h.bundle, away), 0);
    reload_refused(f, c, "cannot resolve: No such file or directory", active);
    /* a file where the directory was */
    write_file(f->h.bundle, "not a directory\n", 16);
    reload_refused(f, c, "manifest.json", active);
    bg_wait_ok(&f->bg, 4);
    /* back: reload accepted */
    assert_int_equal(unlink(f->h.bundle), 0);
    assert_int_equal(rename(away, f->h.bundle), 0);
    reload_ok(c, " after the bundle came back", NULL);
    stop_load(f, NULL);
    free(active);
    qi_client_close(c);
}

static void test_manifest_invalid(void **state)
{
    fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    char *active = wait_served(c, NULL, NULL);
    start_load(f);
    char path[600], saved[620];
    snprintf(path, sizeof path, "%s/manifest.json", f->h.bundle);
    snprintf(saved, sizeof saved, "%s.saved", path);
    copy_file(path, saved);
    const char *bad = "{\"format\": \"qslm-bundle\", \"version\": 1, \"variants\": [\n";
    write_file(path, bad, strlen(bad));
    reload_refused(f, c, "manifest.json", active);
    bg_wait_ok(&f->bg, 4);
    assert_int_equal(rename(saved, path), 0);
    reload_ok(c, " after the manifest came back", NULL);
    stop_load(f, NULL);
    free(active);
    qi_client_close(c);
}

/* ---------------------------------------------------------------- budget */

static void test_budget_below_smallest_recovers(void **state)
{
    fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    vinfo v[16];
    size_t n = read_variants(&f->h, c, v, 16);
    uint64_t smallest = v[0].footprint;
    for (size_t i = 1; i < n; i++)
        if (v[i].footprint < smallest)
            smallest = v[i].footprint;
    char *before = wait_served(c, NULL, NULL);
    start_load(f);
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":%llu}", (unsigned long long)(smallest - 1));
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    rpc_final(c, &r, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The nation\",\"max_tokens\":4,\"seed\":3}");
    if (r.kind != QI_REPLY_ERROR || r.code != QI_ERR_NO_VARIANT_FITS)
        fail_msg("expected no_variant_fits: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    /* the load sees it too */
    double end = dh_now_ms() + WAIT_MS;
    while (atomic_load(&f->bg.errs[QI_ERR_NO_VARIANT_FITS]) < 4) {
        if (dh_now_ms() > end)
            fail_msg("the background load got no no_variant_fits");
        dh_sleep_ms(10);
    }
    char *none = active_variant(c);
    double end2 = dh_now_ms() + WAIT_MS;
    while (none) { /* the engine unloads it */
        free(none);
        if (dh_now_ms() > end2)
            fail_msg("a variant is still active under a budget no variant fits");
        dh_sleep_ms(20);
        none = active_variant(c);
    }
    /* restored: served again, without a restart */
    rpc_final(c, &r, "{\"id\":\"b\",\"op\":\"set-budget\",\"memory\":\"auto\"}");
    assert_int_equal(r.kind, QI_REPLY_RESULT);
    qi_reply_free(&r);
    char *after = wait_served(c, before, NULL);
    char *used = generate_ok(c);
    assert_string_equal(used, before);
    bg_wait_ok(&f->bg, 8);
    static const qi_code allowed[] = {QI_ERR_NO_VARIANT_FITS, QI_OK};
    stop_load(f, allowed);
    free(before);
    free(after);
    free(used);
    qi_client_close(c);
}

/* Budget changes back to back: a switch every few hundred ms. A variant switch restarts the
 * input a request is still reading (so its output comes from one variant): requests with long
 * inputs must still complete (they restart once at most), and short ones keep their exactness
 * (the load tool checks that). */
typedef struct {
    dh_daemon *h;
    uint64_t low, high;
    atomic_bool stop;
    atomic_int changes;
} storm;

static void *storm_main(void *arg)
{
    storm *st = arg;
    qi_client *c = NULL;
    if (qi_client_connect(st->h->sock, &c, NULL) != QI_OK)
        return NULL;
    for (int k = 0; !atomic_load(&st->stop); k++) {
        char line[128];
        int n = k % 2 ? snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"set-budget\",\"memory\":\"auto\"}", k)
                      : snprintf(line, sizeof line, "{\"id\":%d,\"op\":\"set-budget\",\"memory\":%llu}", k,
                                 (unsigned long long)st->low);
        qi_reply r;
        if (qi_client_send_line(c, line, (size_t)n, NULL) != QI_OK || qi_client_read_reply(c, READ_TIMEOUT_MS, &r, NULL) != QI_OK)
            break;
        qi_reply_free(&r);
        atomic_fetch_add(&st->changes, 1);
        dh_sleep_ms(k % 2 ? 300 : 60); /* down at once; up after the harness's up-delay (0.2 s) */
    }
    qi_reply r;
    const char *last = "{\"id\":\"end\",\"op\":\"set-budget\",\"memory\":\"auto\"}";
    if (qi_client_send_line(c, last, strlen(last), NULL) == QI_OK && qi_client_read_reply(c, READ_TIMEOUT_MS, &r, NULL) == QI_OK)
        qi_reply_free(&r);
    qi_client_close(c);
    return NULL;
}

static void test_switch_storm_long_inputs(void **state)
{
    fixture *f = *state;
    qi_client *c = connect_or_fail(&f->h);
    vinfo v[16];
    size_t n = read_variants(&f->h, c, v, 16);
    storm st = {.h = &f->h, .low = v[0].footprint};
    for (size_t i = 1; i < n; i++)
        if (v[i].footprint < st.low)
            st.low = v[i].footprint;
    free(wait_served(c, NULL, NULL));
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"s0\",\"op\":\"status\"}");
    int64_t sw0 = json_object_get_int64(jget(jget(r.body, "counters"), "switches"));
    qi_reply_free(&r);
    start_load(f);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, storm_main, &st), 0);
    /* long inputs: over a thousand tokens, read a few hundred a round (in chunks) across many
     * switches */
    char text[8192];
    size_t used = 0;
    while (used + 40 < 6000)
        used += (size_t)snprintf(text + used, sizeof text - used, "The state of the Union is strong today. ");
    text[used] = '\0';
    double t0 = dh_now_ms();
    for (int i = 0; i < 3; i++) {
        rpc_final(c, &r, "{\"id\":\"c%d\",\"op\":\"classify\",\"texts\":[\"%s\",\"Hope.\"]}", i, text);
        if (r.kind != QI_REPLY_RESULT)
            fail_msg("classify under switches: %s", json_object_to_json_string(r.body));
        qi_reply_free(&r);
        rpc_final(c, &r, "{\"id\":\"g%d\",\"op\":\"generate\",\"prompt\":\"%s\",\"max_tokens\":4,\"seed\":1,\"stream\":true}",
            i, text);
        if (r.kind != QI_REPLY_DONE || r.stats.tokens != 4)
            fail_msg("generate under switches: %s", json_object_to_json_string(r.body));
        qi_reply_free(&r);
    }
    double took = dh_now_ms() - t0;
    atomic_store(&st.stop, true);
    pthread_join(th, NULL);
    rpc_final(c, &r, "{\"id\":\"s1\",\"op\":\"status\"}");
    int64_t switches = json_object_get_int64(jget(jget(r.body, "counters"), "switches")) - sw0;
    qi_reply_free(&r);
    print_message("[  STORM   ] %d budget changes, %lld switches; 6 long requests took %.0f ms\n",
                  atomic_load(&st.changes), (long long)switches, took);
    assert_true(switches >= 2); /* the requests really ran across switches */
    bg_wait_ok(&f->bg, 4);
    stop_load(f, NULL);
    qi_client_close(c);
}

/* ---------------------------------------------------------------- telemetry */

/* Every memory reading (MemAvailable, psi, cgroup) must be unavailable with a note; garbage: at
 * least one note says something else than that the file is absent. "cgroup version" is not a
 * memory reading: it says how the host mounts cgroups, which a valid 0:: line tells. */
static void expect_readings_unavailable(qi_client *c, bool garbage)
{
    bool said_why = false;
    qi_reply r;
    status(c, &r);
    json_object *rs = jget(r.body, "readings");
    assert_non_null(rs);
    size_t checked = 0;
    for (size_t i = 0; i < json_object_array_length(rs); i++) {
        json_object *e = json_object_array_get_idx(rs, i);
        const char *src = jstr(e, "source");
        if (!src || (!strstr(src, "MemAvailable") && !strstr(src, "psi") && !strstr(src, "cgroup")) ||
            strcmp(src, "cgroup version") == 0)
            continue;
        json_object *val = NULL;
        assert_true(json_object_object_get_ex(e, "value", &val));
        const char *note = jstr(e, "note");
        if (val != NULL || !note || !note[0])
            fail_msg("reading %s is not marked unavailable with a note: %s", src, json_object_to_json_string(e));
        said_why = said_why || !strstr(note, "absent");
        checked++;
    }
    if (checked < 2)
        fail_msg("expected MemAvailable and psi readings: %s", json_object_to_json_string(rs));
    if (garbage && !said_why)
        fail_msg("no reading says the file holds garbage: %s", json_object_to_json_string(rs));
    qi_reply_free(&r);
}

static void test_telemetry_garbage(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    qi_client *c = connect_or_fail(h);
    char *active = wait_served(c, NULL, NULL);
    start_load(f);
    /* garbage */
    assert_int_equal(dh_write_root_file(h, "proc/self/cgroup", "0::/qslm.service\n"), 0);
    assert_int_equal(dh_write_root_file(h, "proc/meminfo", "MemTotal: lots\nMemAvailable: -12x kB\n"), 0);
    assert_int_equal(dh_write_root_file(h, "proc/pressure/memory", "some avg10=NaN avg60=\nfull\n"), 0);
    assert_int_equal(dh_write_root_file(h, "sys/fs/cgroup/qslm.service/memory.max", "\x01\x02 12Q\n"), 0);
    assert_int_equal(dh_write_root_file(h, "sys/fs/cgroup/qslm.service/memory.high", "-5\n"), 0);
    assert_int_equal(dh_write_root_file(h, "sys/fs/cgroup/qslm.service/memory.pressure", "avg10=\n"), 0);
    dh_sleep_ms(200); /* a few policy ticks (every 50 ms) read them; status reads them again */
    expect_readings_unavailable(c, true);
    /* a file far larger than the 4 KiB read limit, binary */
    char *big = malloc(1 << 20);
    assert_non_null(big);
    for (size_t i = 0; i < (1u << 20); i++)
        big[i] = (char)(i * 131 + 7);
    char path[600];
    snprintf(path, sizeof path, "%s/proc/meminfo", h->root);
    write_file(path, big, 1u << 20);
    free(big);
    expect_readings_unavailable(c, true);
    /* vanishing and coming back while the policy ticks */
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof path, "%s/proc/meminfo", h->root);
        unlink(path);
        snprintf(path, sizeof path, "%s/proc/pressure/memory", h->root);
        unlink(path);
        dh_sleep_ms(5);
        if (i % 2)
            dh_write_root_file(h, "proc/meminfo", "MemAvailable: 99999999999999999999999 kB\n");
        else
            dh_write_root_file(h, "proc/pressure/memory", "some avg10=1e999 avg60=0 avg300=0 total=0\n");
        dh_sleep_ms(5);
    }
    snprintf(path, sizeof path, "%s/proc/meminfo", h->root);
    unlink(path);
    snprintf(path, sizeof path, "%s/proc/pressure/memory", h->root);
    unlink(path);
    char gone[620];
    snprintf(path, sizeof path, "%s/sys", h->root);
    snprintf(gone, sizeof gone, "%s/sys.gone", h->root);
    assert_int_equal(rename(path, gone), 0); /* the whole cgroup tree vanishes */
    expect_readings_unavailable(c, false);
    /* still the same variant: no reading was taken for a limit */
    char *now = active_variant(c);
    assert_non_null(now);
    assert_string_equal(now, active);
    free(now);
    char *used = generate_ok(c);
    free(used);
    bg_wait_ok(&f->bg, 4);
    stop_load(f, NULL);
    free(active);
    qi_client_close(c);
}

/* ---------------------------------------------------------------- misbehaving clients */

/* A raw connection (for clients that do not speak the protocol). */
static int raw_connect(dh_daemon *h)
{
    qi_client *c = connect_or_fail(h);
    int fd = dup(qi_client_fd(c));
    qi_client_close(c);
    assert_true(fd >= 0);
    return fd;
}

/* Writes until everything is written or the peer closed; returns bytes written. */
static size_t write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return done;
}

static void test_bad_clients(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    qi_client *c = connect_or_fail(h);
    free(wait_served(c, NULL, NULL));
    start_load(f);
    long rss0 = rss_kb(h->pid, "VmRSS");
    assert_true(rss0 > 0);

    /* 200 connections that send nothing */
    enum { IDLE = 200 };
    int idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        idle[i] = raw_connect(h);
    /* 20 that send half a line and vanish */
    for (int i = 0; i < 20; i++) {
        int fd = raw_connect(h);
        const char *half = "{\"id\":1,\"op\":\"gener";
        assert_int_equal(write_all(fd, half, strlen(half)), strlen(half));
        close(fd);
    }
    /* 10 MB without a newline: too_large, then the daemon closes */
    {
        qi_client *big = connect_or_fail(h);
        size_t n = 10u << 20;
        char *junk = malloc(n);
        assert_non_null(junk);
        memset(junk, 'x', n);
        junk[0] = '{';
        size_t sent = write_all(qi_client_fd(big), junk, n);
        free(junk);
        assert_true(sent < n); /* the daemon closed before taking it all */
        qi_reply r;
        read_reply(big, &r);
        assert_int_equal(r.kind, QI_REPLY_ERROR);
        assert_int_equal(r.code, QI_ERR_TOO_LARGE);
        qi_reply_free(&r);
        qi_error e;
        assert_int_equal(qi_client_read_reply(big, READ_TIMEOUT_MS, &r, &e), QI_ERR_CLOSED);
        qi_client_close(big);
    }
    /* a slow reader: long streams and a flood of status requests, never read */
    int slow = raw_connect(h);
    for (int i = 0; i < 8; i++) {
        char line[256];
        int n = snprintf(line, sizeof line,
                         "{\"id\":\"s%d\",\"op\":\"generate\",\"prompt\":\"The state of the Union\",\"max_tokens\":1024,"
                         "\"stream\":true,\"seed\":%d}\n",
                         i, i);
        write_all(slow, line, (size_t)n);
    }
    const char *st = "{\"id\":\"x\",\"op\":\"status\"}\n";
    for (int i = 0; i < 4000; i++)
        if (write_all(slow, st, strlen(st)) != strlen(st))
            break; /* dropped already */
    if (!dh_log_wait(h, "dropping a client that reads too slowly", WAIT_MS))
        fail_msg("the slow reader was not dropped");
    long rss1 = rss_kb(h->pid, "VmRSS"), hwm = rss_kb(h->pid, "VmHWM");

    /* others unaffected: a new client, the idle ones still connected, the load going on */
    char *used = generate_ok(c);
    free(used);
    qi_client *fresh = connect_or_fail(h);
    free(generate_ok(fresh));
    qi_client_close(fresh);
    bg_wait_ok(&f->bg, 8);
    /* an idle client can still talk */
    const char *req = "{\"id\":7,\"op\":\"status\"}\n";
    assert_int_equal(write_all(idle[0], req, strlen(req)), strlen(req));
    char buf[256];
    ssize_t got = recv(idle[0], buf, sizeof buf - 1, 0);
    assert_true(got > 0);
    buf[got] = '\0';
    assert_non_null(strstr(buf, "\"id\":7"));
    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
    close(slow);
    long rss2 = rss_kb(h->pid, "VmRSS");
    print_message("[   RSS    ] qslmd VmRSS %ld KiB before, %ld KiB with 200 idle + 10 MB line + slow reader, "
                  "%ld KiB after; VmHWM %ld KiB\n",
                  rss0, rss1, rss2, hwm);
    assert_true(rss1 > 0 && rss1 < RSS_BOUND_KB);
    assert_true(hwm > 0 && hwm < RSS_BOUND_KB);
    if (!under_valgrind) /* the 10 MB line and the slow reader's output were never held whole */
        assert_true(hwm - rss0 < 32 * 1024);
    stop_load(f, NULL);
    qi_client_close(c);
}

/* ---------------------------------------------------------------- signals */

static void test_sigterm_under_load(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    qi_client *c = connect_or_fail(h);
    free(wait_served(c, NULL, NULL));
    start_load(f);
    int idle[20];
    for (int i = 0; i < 20; i++)
        idle[i] = raw_connect(h);
    int half = raw_connect(h);
    write_all(half, "{\"id\":1,", 8);
    /* a long stream in flight */
    sendf(c, "{\"id\":\"long\",\"op\":\"generate\",\"prompt\":\"The state of the Union\",\"max_tokens\":1024,"
             "\"stream\":true,\"seed\":2}");
    qi_reply r;
    read_reply(c, &r);
    assert_int_equal(r.kind, QI_REPLY_TOKEN);
    qi_reply_free(&r);
    assert_int_equal(dh_signal(h, SIGTERM), 0);
    /* the stream ends with shutting_down, then the connection closes */
    for (;;) {
        read_reply(c, &r);
        bool final = qi_reply_is_final(&r);
        if (final && (r.kind != QI_REPLY_ERROR || r.code != QI_ERR_SHUTTING_DOWN))
            fail_msg("expected shutting_down: %s", json_object_to_json_string(r.body));
        qi_reply_free(&r);
        if (final)
            break;
    }
    qi_error e;
    assert_int_equal(qi_client_read_reply(c, READ_TIMEOUT_MS, &r, &e), QI_ERR_CLOSED);
    int st;
    if (dh_wait_exit(h, 30000, &st) != 0)
        fail_msg("%s", h->err);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* every background request got its final reply or saw the connection close */
    static const qi_code allowed[] = {QI_ERR_SHUTTING_DOWN, QI_OK};
    stop_load(f, allowed);
    assert_int_equal(atomic_load(&f->bg.lost), 0);
    for (int i = 0; i < 20; i++) {
        char b;
        assert_int_equal(recv(idle[i], &b, 1, 0), 0); /* closed */
        close(idle[i]);
    }
    close(half);
    qi_client_close(c);
}

static void test_sighup_under_load(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    qi_client *c = connect_or_fail(h);
    char *active = wait_served(c, NULL, NULL);
    start_load(f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dh_signal(h, SIGHUP), 0);
        /* a reload request racing the signal's: one runs, the other is busy or also served */
        qi_reply r;
        rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
        assert_true(r.kind == QI_REPLY_RESULT || (r.kind == QI_REPLY_ERROR && r.code == QI_ERR_BUSY));
        qi_reply_free(&r);
        bg_wait_ok(&f->bg, 4);
    }
    assert_true(dh_log_wait(h, "SIGHUP: reloading", 5000));
    assert_true(dh_log_wait(h, "reload: serving", 5000));
    char *now = wait_served(c, active, NULL);
    free(now);
    free(generate_ok(c));
    stop_load(f, NULL);
    assert_int_equal(atomic_load(&f->bg.closed), 0); /* nobody was disconnected */
    free(active);
    qi_client_close(c);
}

/* A reload warns about a setting only a restart applies only when that setting changed: threads
 * = 0 (one per CPU) stays 0 from one reading to the next, however many CPUs that means. */
static void test_reload_restart_only_keys(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    char conf[DH_PATH_MAX + 16];
    snprintf(conf, sizeof conf, "%s/qslmd.conf", h->dir);
    const char first[] = "[daemon]\nmax_active = 8\n";
    write_file(conf, first, sizeof first - 1);
    const char *const args[] = {"--config", conf, "--threads", "0", NULL};
    assert_int_equal(dh_start(h, args), 0);
    qi_client *c = connect_or_fail(h);
    free(wait_served(c, NULL, NULL));
    reload_ok(c, " with the file unchanged", NULL);
    assert_true(dh_log_wait(h, "reload: serving", 5000));
    assert_int_equal(count_in_log(h, "changed; it takes effect at the next start"), 0);
    const char second[] = "[daemon]\nmax_active = 9\n";
    write_file(conf, second, sizeof second - 1);
    reload_ok(c, " with max_active changed", NULL);
    assert_true(dh_log_wait(h, "[daemon] max_active changed; it takes effect at the next start", 5000));
    assert_int_equal(count_in_log(h, "[daemon] threads changed"), 0);
    qi_client_close(c);
}

static void test_kill9_restart_under_load(void **state)
{
    fixture *f = *state;
    dh_daemon *h = &f->h;
    assert_int_equal(dh_start(h, std_args), 0);
    start_load(f);
    assert_int_equal(dh_signal(h, SIGKILL), 0);
    int st;
    if (dh_wait_exit(h, 20000, &st) != 0)
        fail_msg("%s", h->err);
    assert_true(WIFSIGNALED(st));
    double end = dh_now_ms() + WAIT_MS;
    while (atomic_load(&f->bg.connect_fail) == 0) { /* the load notices */
        if (dh_now_ms() > end)
            fail_msg("the load did not notice the daemon's death");
        dh_sleep_ms(10);
    }
    if (dh_start(h, std_args) != 0)
        fail_msg("restart on the stale socket: %s", h->err);
    assert_true(dh_log_wait(h, "removed a stale socket", 5000));
    bg_wait_ok(&f->bg, 8); /* the load reconnected and is served */
    qi_client *c = connect_or_fail(h);
    free(generate_ok(c));
    qi_client_close(c);
    stop_load(f, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        setenv("QSLMD", argv[1], 1);
    const char *set = getenv("QSLM_FAULTS_SET");
    under_valgrind = set && !strcmp(set, "valgrind");
    dc_read_timeout_ms = READ_TIMEOUT_MS;
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_faults: %s\n", bundle.err);
        return 1;
    }
#define T(f) cmocka_unit_test_setup_teardown(f, setup_daemon, teardown)
    const struct CMUnitTest all[] = {
        T(test_variant_truncated),
        T(test_variant_corrupted),
        T(test_variant_replaced),
        T(test_variant_corrupted_then_switched_to),
        T(test_bundle_dir_gone),
        T(test_manifest_invalid),
        T(test_budget_below_smallest_recovers),
        T(test_switch_storm_long_inputs),
        T(test_telemetry_garbage),
        T(test_bad_clients),
        T(test_sigterm_under_load),
        T(test_sighup_under_load),
        cmocka_unit_test_setup_teardown(test_reload_restart_only_keys, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_restart_under_load, setup_dir, teardown),
    };
    /* under valgrind: a reduced set, about 2 minutes (every path once: a variant refused by its
     * hash, reload refused and accepted under load, switches to no variant and back, telemetry
     * garbage, the misbehaving clients, SIGTERM, kill -9 and a restart). Left out: the other
     * variant-file faults and SIGHUP (paths the set already takes) and the switch storm with
     * long inputs, whose prefills alone outlast the read timeout under memcheck. */
    const struct CMUnitTest reduced[] = {
        T(test_variant_corrupted),
        T(test_manifest_invalid),
        T(test_budget_below_smallest_recovers),
        T(test_telemetry_garbage),
        T(test_bad_clients),
        T(test_sigterm_under_load),
        cmocka_unit_test_setup_teardown(test_kill9_restart_under_load, setup_dir, teardown),
    };
#undef T
    if (under_valgrind)
        return cmocka_run_group_tests_name("faults under valgrind", reduced, NULL, NULL);
    return cmocka_run_group_tests_name("faults", all, NULL, NULL);
}
