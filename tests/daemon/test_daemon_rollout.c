/* test_daemon_rollout.c: README's "Rolling out a bundle", run as written while clients keep the
 * real qslmd busy (tests/daemon/bg_load.h: generate, streamed and not, classify, status, every
 * reply checked).
 *
 * The daemon serves DIR/bundles/current, a symlink to a versioned directory, with trusted_keys
 * set. The rollout runs the README's commands through /bin/sh, with its paths in variables:
 * qslm-quant sign on the "build host", cp -a into a versioned directory, qslm-quant verify, the
 * atomic link move (ln -s + mv -T), qslmctl reload, qslmctl status, then the roll back. (The one
 * step not run is `qslm-quant build`, minutes long: the new version is the default bundle with
 * a `created` time, as build writes it; tests/quant checks build writes it.) Nothing may be lost:
 * no request without its complete answer, no error reply, no connection closed; afterwards
 * status shows the new version's path, created time and signer, then the old one's.
 *
 * A bad new version — every variant file damaged (bad hashes), the manifest edited after
 * signing (bad signature), a signed manifest the reader refuses — is refused under the same load
 * with the old version still served. And the link is resolved once per load: with the link
 * already moved but no reload, a switch loads its variant from the version being served, not
 * from the one the link now names (whose file of the same name holds other bytes).
 *
 * Arguments: qslmd, qslm-quant, qslmctl. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bg_load.h"
#include "bundle.h"
#include "bundle_facts.h"
#include "bundle_versions.h"
#include "client.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "reply_parse.h"

static const char *quant_exe, *ctl_exe;
static bf_bundle bundle; /* the default bundle as qslmd serves it (bundle_facts.h); main reads it */

typedef struct {
    dh_daemon h;
    bg_load bg;
    bool bg_running;
    char bundles[BV_PATH], keys[BV_PATH], key[BV_PATH], pub[BV_PATH], conf[BV_PATH];
    char v1[BV_PATH], current[BV_PATH];
    char v1_created[QR_BUNDLE_CREATED_LEN + 1]; /* v1's manifest's `created` ("" when it has none) */
    char id[QR_KEY_ID_LEN + 1];
    const char *extra[3];
} fixture;

static void path(char out[BV_PATH], const fixture *f, const char *name)
{
    snprintf(out, BV_PATH, "%.400s/%s", f->h.dir, name);
}

/* Runs cmd (printf-style) with /bin/sh; its stdout and stderr into out. Returns the exit code. */
__attribute__((format(printf, 3, 4)))
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "{ %s ; } 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    print_message("[   SH     ] %s -> %d\n", cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* sh that must exit with want, its output holding each of the NULL-terminated needles. */
static void sh_expect(int want, const char *cmd, ...)
{
    char out[8192];
    int rc = sh(out, sizeof out, "%s", cmd);
    if (rc != want)
        fail_msg("`%s` exited %d (want %d):\n%s", cmd, rc, want, out);
    va_list ap;
    va_start(ap, cmd);
    for (const char *n; (n = va_arg(ap, const char *)) != NULL;)
        if (!strstr(out, n))
            fail_msg("`%s`: no '%s' in:\n%s", cmd, n, out);
    va_end(ap);
}

/* DIR/bundles/v1 (the default bundle signed by DIR/build.key, whose public half is in
 * DIR/keys), current -> v1, qslmd.conf trusting DIR/keys; the shell variables README's commands
 * use: Q (qslm-quant), CTL (qslmctl), B (the bundles), KEYS, KEY, QSLM_SOCKET. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (dc_init(&f->h) != 0)
        return -1;
    path(f->bundles, f, "bundles");
    path(f->keys, f, "keys");
    path(f->key, f, "build.key");
    path(f->pub, f, "keys/build.pem");
    assert_int_equal(mkdir(f->bundles, 0755), 0);
    assert_int_equal(mkdir(f->keys, 0755), 0);
    bv_keygen(f->key, f->pub, f->id);
    path(f->v1, f, "bundles/v1");
    bv_copy_default(f->v1);
    bv_sign(f->v1, f->key);
    qr_bundle *b = NULL;
    qr_error err;
    if (qr_bundle_load(f->v1, &b, &err) != QR_OK)
        fail_msg("%s", err.msg);
    snprintf(f->v1_created, sizeof f->v1_created, "%s", b->created ? b->created : "");
    qr_bundle_free(b);
    path(f->current, f, "bundles/current");
    bv_point(f->current, f->v1);
    snprintf(f->h.bundle, sizeof f->h.bundle, "%.250s", f->current);
    path(f->conf, f, "qslmd.conf");
    char text[BV_PATH + 64];
    snprintf(text, sizeof text, "[daemon]\ntrusted_keys = %s\n", f->keys);
    bv_write(f->conf, text);
    f->extra[0] = "--config";
    f->extra[1] = f->conf;
    setenv("Q", quant_exe, 1);
    setenv("CTL", ctl_exe, 1);
    setenv("B", f->bundles, 1);
    setenv("KEYS", f->keys, 1);
    setenv("KEY", f->key, 1);
    setenv("QSLM_SOCKET", f->h.sock, 1);
    return dc_start(&f->h, f->extra);
}

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
    free(f);
    return rc;
}

static void start_load(fixture *f)
{
    bg_start(&f->bg, &f->h);
    f->bg_running = true;
    bg_wait_ok(&f->bg, 8);
}

/* The load must have lost nothing: no bad or missing reply, no error at all, no connection
 * closed or refused. */
static void stop_load_clean(fixture *f)
{
    f->bg_running = false;
    bg_stop(&f->bg, NULL);
    assert_int_equal(atomic_load(&f->bg.closed), 0);
    assert_int_equal(atomic_load(&f->bg.connect_fail), 0);
    assert_int_equal(atomic_load(&f->bg.lost), 0);
}

/* status's bundle object, over the socket: path (resolved), created (NULL: null), signer. */
static void expect_bundle(qi_client *c, const char *dir, const char *created, const char *signer)
{
    char real[BV_PATH];
    bv_real(dir, real);
    qi_reply r;
    status(c, &r);
    const char *p = jstr(r.body, "bundle.path"), *s = jstr(r.body, "bundle.signer");
    bool created_ok = created ? jstr(r.body, "bundle.created") && !strcmp(jstr(r.body, "bundle.created"), created)
                              : jnull(r.body, "bundle.created");
    if (!p || strcmp(p, real) != 0 || !s || strcmp(s, signer) != 0 || !created_ok)
        fail_msg("status: want bundle %s, created %s, signer %s: %s", real, created ? created : "null", signer,
                 json_object_to_json_string(r.body));
    qi_reply_free(&r);
}

/* status names v1, as its manifest is (the default bundle's, which may or may not say when it was
 * built), signed by the fixture's key. */
static void expect_v1(const fixture *f, qi_client *c)
{
    expect_bundle(c, f->v1, f->v1_created[0] ? f->v1_created : NULL, f->id);
}

/* A new version, built (the default bundle with its `created`) on the "build host" DIR/build. */
static void build_version(fixture *f, const char *created, char out[BV_PATH])
{
    path(out, f, "build");
    bv_copy_default(out);
    bv_set_created(out, created);
}

static void test_rollout_under_load(void **state)
{
    fixture *f = *state;
    char build[BV_PATH], v2[BV_PATH], line[BV_PATH * 3];
    build_version(f, "2026-12-05T09:30:00Z", build);
    path(v2, f, "bundles/2026-12-05");
    qi_client *c = connect_or_fail(&f->h);
    expect_v1(f, c);
    start_load(f);

    /* The build host signs; the bundle goes to a versioned directory and is checked there. */
    snprintf(line, sizeof line, "\"$Q\" sign %s --key \"$KEY\"", build);
    sh_expect(0, line, f->id, NULL);
    snprintf(line, sizeof line, "cp -a %s \"$B/2026-12-05\"", build);
    sh_expect(0, line, NULL);
    sh_expect(0, "\"$Q\" verify \"$B/2026-12-05\" --pubkey \"$KEYS/build.pem\"", "signature good", "ok", NULL);
    bg_wait_ok(&f->bg, 4);
    /* A long generation in flight across the reload must end complete, tokens in order. */
    qi_client *longc = connect_or_fail(&f->h);
    double sent = dh_now_ms();
    sendf(longc, "{\"id\":\"long\",\"op\":\"generate\",\"prompt\":\"The Congress\",\"max_tokens\":400,"
                 "\"seed\":5,\"stream\":true}");
    qi_reply t;
    read_reply(longc, &t); /* its first token: it is running */
    assert_int_equal(t.kind, QI_REPLY_TOKEN);
    qi_reply_free(&t);
    /* The link moves at once, then the daemon reloads; status says what it serves. */
    sh_expect(0, "ln -s \"$B/2026-12-05\" \"$B/current.tmp\" && mv -T \"$B/current.tmp\" \"$B/current\"", NULL);
    char reloaded_n[64];
    snprintf(reloaded_n, sizeof reloaded_n, "reloaded: %zu variants", bundle.n);
    sh_expect(0, "\"$CTL\" reload", reloaded_n, NULL);
    double reloaded = dh_now_ms() - sent;
    char want[BV_PATH * 3];
    char real[BV_PATH];
    bv_real(v2, real);
    snprintf(want, sizeof want, "bundle:    %s (configured as %s)", real, f->current);
    char signer[64];
    snprintf(signer, sizeof signer, "signer:    %s", f->id);
    sh_expect(0, "\"$CTL\" status", want, "created:   2026-12-05T09:30:00Z", signer, NULL);
    expect_bundle(c, v2, "2026-12-05T09:30:00Z", f->id);
    uint32_t tokens = 1;
    for (;;) {
        read_reply(longc, &t);
        if (t.kind != QI_REPLY_TOKEN)
            break;
        assert_int_equal(t.index, tokens);
        tokens++;
        qi_reply_free(&t);
    }
    if (t.kind != QI_REPLY_DONE || t.stats.tokens != tokens)
        fail_msg("the generation across the reload: %u token events, then %s", tokens,
                 json_object_to_json_string(t.body));
    print_message("[   LONG   ] %u tokens in %.0f ms; the reload was answered %.0f ms after it was sent\n", tokens,
                  t.stats.ms, reloaded);
    /* it was received after `sent`, so it ended after the reload's answer when it took longer */
    if (!(t.stats.ms > reloaded))
        fail_msg("the generation ended before the reload (%.0f ms, reload at %.0f ms): it did not span it", t.stats.ms,
                 reloaded);
    qi_reply_free(&t);
    qi_client_close(longc);
    bg_wait_ok(&f->bg, 8);

    /* Roll back: the link to the old version, reload. */
    sh_expect(0, "ln -s \"$B/v1\" \"$B/current.tmp\" && mv -T \"$B/current.tmp\" \"$B/current\" && \"$CTL\" reload",
              "reloaded", NULL);
    expect_v1(f, c);
    bg_wait_ok(&f->bg, 8);
    stop_load_clean(f);
    qi_client_close(c);
}

/* Replaces every variant file of dir by its first half (new files: the other versions' hard
 * links keep their bytes), as an interrupted copy would leave them. */
static void truncate_variants(const char *dir)
{
    qr_bundle *b = NULL;
    qr_error err;
    if (qr_bundle_load(dir, &b, &err) != QR_OK)
        fail_msg("%s", err.msg);
    for (size_t i = 0; i < b->n_variants; i++) {
        char p[BV_PATH * 2], tmp[BV_PATH * 2 + 8];
        snprintf(p, sizeof p, "%s/%s", dir, b->variants[i].file);
        snprintf(tmp, sizeof tmp, "%s.half", p);
        int in = open(p, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(in >= 0 && out >= 0);
        char buf[65536];
        size_t left = (size_t)b->variants[i].file_bytes / 2;
        while (left) {
            ssize_t n = read(in, buf, left < sizeof buf ? left : sizeof buf);
            assert_true(n > 0);
            assert_int_equal(write(out, buf, (size_t)n), n);
            left -= (size_t)n;
        }
        close(in);
        assert_int_equal(close(out), 0);
        assert_int_equal(rename(tmp, p), 0);
    }
    qr_bundle_free(b);
}

/* Moves the link to dir and reloads: refused, naming why; the old version still served. */
static void bad_rollout(fixture *f, qi_client *c, const char *dir, const char *why)
{
    char line[BV_PATH * 3];
    snprintf(line, sizeof line, "ln -s %s \"$B/current.tmp\" && mv -T \"$B/current.tmp\" \"$B/current\"", dir);
    sh_expect(0, line, NULL);
    sh_expect(1, "\"$CTL\" reload", "reload refused, still serving the old configuration and bundle", why, NULL);
    expect_v1(f, c);
    bg_wait_ok(&f->bg, 6);
}

static void test_bad_rollout_under_load(void **state)
{
    fixture *f = *state;
    char hashes[BV_PATH], edited[BV_PATH], unparsable[BV_PATH], line[BV_PATH * 3];
    path(hashes, f, "bundles/bad-hashes");
    path(edited, f, "bundles/bad-signature");
    path(unparsable, f, "bundles/bad-manifest");
    bv_clone(f->v1, hashes);
    truncate_variants(hashes);
    bv_clone(f->v1, edited);
    bv_edit_manifest(edited);
    bv_clone(f->v1, unparsable);
    bv_sign_raw(unparsable, "{\"format\": \"qslm-bundle\", \"version\": 1}\n", f->key);
    qi_client *c = connect_or_fail(&f->h);
    start_load(f);
    /* `qslm-quant verify` would have stopped the operator; the daemon refuses anyway */
    snprintf(line, sizeof line, "\"$Q\" verify %s --pubkey \"$KEYS/build.pem\"", hashes);
    sh_expect(1, line, "BAD", NULL);
    bad_rollout(f, c, hashes, "no variant can be served");
    bad_rollout(f, c, edited, "signature refused (bad signature; key");
    bad_rollout(f, c, unparsable, "manifest.json: model: missing");
    /* and the roll back to the good version is a reload like any other */
    sh_expect(0, "ln -s \"$B/v1\" \"$B/current.tmp\" && mv -T \"$B/current.tmp\" \"$B/current\" && \"$CTL\" reload",
              "reloaded", NULL);
    expect_v1(f, c);
    stop_load_clean(f);
    qi_client_close(c);
}

/* The smallest variant that is neither a nor b: its bytes stand in for another one's. */
static const bf_variant *smallest_but(const bf_variant *a, const bf_variant *b)
{
    const bf_variant *s = NULL;
    for (size_t i = 0; i < bundle.n; i++)
        if (&bundle.v[i] != a && &bundle.v[i] != b && (!s || bundle.v[i].footprint < s->footprint))
            s = &bundle.v[i];
    if (!s)
        fail_msg("%s: this test needs three variants", bundle.dir);
    return s;
}

/* One load, one version: v2 names its variant MID's file like v1 but holds other bytes there
 * (v1's file of a smaller variant, hashed as such in v2's manifest). MID is what a budget one
 * byte under the best variant's footprint gets, in either version (in v2 it is smaller still).
 * With the link moved to v2 and no reload, a switch to MID must load v1's file (v2's would fail
 * v1's hash); after the reload, v2's. */
static void test_link_resolved_once(void **state)
{
    fixture *f = *state;
    const bf_variant *top = bf_top(&bundle), *want = bf_step_down(&bundle, top);
    const bf_variant *stand_in = smallest_but(top, want);
    char v2[BV_PATH], from[BV_PATH * 2], to[BV_PATH * 2];
    path(v2, f, "bundles/v2");
    bv_clone(f->v1, v2);
    qr_bundle *b = NULL;
    qr_error err;
    if (qr_bundle_load(v2, &b, &err) != QR_OK)
        fail_msg("%s", err.msg);
    size_t small, mid;
    assert_true(qr_bundle_find_variant(b, stand_in->name, &small) && qr_bundle_find_variant(b, want->name, &mid));
    snprintf(from, sizeof from, "%s/%s", f->v1, b->variants[small].file);
    snprintf(to, sizeof to, "%s/%s", v2, b->variants[mid].file);
    assert_int_equal(unlink(to), 0); /* a hard link to v1's: v1 keeps its bytes */
    assert_int_equal(link(from, to), 0);
    memcpy(b->variants[mid].sha256, b->variants[small].sha256, sizeof b->variants[mid].sha256);
    b->variants[mid].file_bytes = b->variants[small].file_bytes;
    free(b->created);
    b->created = strdup("2026-12-06T00:00:00Z");
    if (qr_bundle_write(b, v2, &err) != QR_OK)
        fail_msg("%s", err.msg);
    qr_bundle_free(b);
    bv_sign(v2, f->key);

    qi_client *c = connect_or_fail(&f->h);
    wait_active(c, top->name, -1, 20000);
    bv_point(f->current, v2); /* moved, not reloaded */
    set_memory_budget(c, top->footprint - 1);
    wait_active(c, want->name, -1, 20000);
    qi_reply r;
    status(c, &r);
    if (json_object_array_length(jget(r.body, "refused")) != 0)
        fail_msg("a variant was refused: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    expect_v1(f, c);
    /* the reload takes v2 whole: its MID is loaded from its own file */
    rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    if (r.kind != QI_REPLY_RESULT)
        fail_msg("reload: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    expect_bundle(c, v2, "2026-12-06T00:00:00Z", f->id);
    assert_true(dh_log_wait(&f->h, "reload: serving", 5000));
    wait_active(c, want->name, -1, 20000);
    status(c, &r);
    if (json_object_array_length(jget(r.body, "refused")) != 0)
        fail_msg("a variant was refused: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    rpc_final(c, &r, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The nation\",\"max_tokens\":3,\"seed\":1}");
    if (r.kind != QI_REPLY_DONE || r.stats.tokens != 3 || strcmp(r.stats.spans[r.stats.n_spans - 1].variant, want->name))
        fail_msg("generate on v2's %s: %s", want->name, json_object_to_json_string(r.body));
    qi_reply_free(&r);
    qi_client_close(c);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s QSLMD QSLM_QUANT QSLMCTL\n", argv[0]);
        return 2;
    }
    setenv("QSLMD", argv[1], 1);
    quant_exe = argv[2];
    ctl_exe = argv[3];
    dc_read_timeout_ms = BG_READ_TIMEOUT_MS;
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_daemon_rollout: %s\n", bundle.err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollout_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rollout_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_resolved_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
