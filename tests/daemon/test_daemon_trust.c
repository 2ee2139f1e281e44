/* test_daemon_trust.c: the real qslmd with trusted_keys (daemon/trust.h), on real bundles signed
 * with real keys made here by the project's keygen (tests/daemon/bundle_versions.h).
 *
 * Keys A and B are trusted (the directory DIR/keys, or a list of files), C is not. Versions of
 * the default bundle: signed by A, by B, by C, unsigned, and signed by A then edited. Each
 * refusal (unsigned, unknown key, bad signature) fails the start with exit 1 and a log line
 * naming the bundle's path, the key id and the verdict; at a reload (request and SIGHUP) it is
 * refused with the same words and the old bundle keeps serving. A key rotation: B's bundle served
 * under A and B; trusted A only and reload: refused, B's kept; A's new version: served; a restart
 * under B alone: refused at start. Without keys an unsigned bundle is served with a warning and
 * status says "unsigned"; a signed one "not checked". Argument: the qslmd binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bundle_versions.h"
#include "client.h"
#include "daemon_checks.h"
#include "daemon_harness.h"
#include "reply_parse.h"

typedef struct {
    dh_daemon h;
    char keys[BV_PATH], conf[BV_PATH], link[BV_PATH];
    char a_key[BV_PATH], b_key[BV_PATH], c_key[BV_PATH];
    char a_pub[BV_PATH], b_pub[BV_PATH], c_pub[BV_PATH];
    char a[QR_KEY_ID_LEN + 1], b[QR_KEY_ID_LEN + 1], c[QR_KEY_ID_LEN + 1];
    char by_a[BV_PATH], by_b[BV_PATH], by_c[BV_PATH], unsigned_[BV_PATH], edited[BV_PATH];
    const char *extra[3]; /* --config CONF */
} fixture;

static void path(char out[BV_PATH], const fixture *f, const char *name)
{
    snprintf(out, BV_PATH, "%.400s/%s", f->h.dir, name);
}

/* Keys A, B (trusted: DIR/keys/{a,b}.pem) and C (not: DIR/c.pem); the versions; current -> by_a;
 * qslmd.conf trusting DIR/keys. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (dc_init(&f->h) != 0)
        return -1;
    path(f->keys, f, "keys");
    assert_int_equal(mkdir(f->keys, 0755), 0);
    path(f->a_key, f, "a.key");
    path(f->b_key, f, "b.key");
    path(f->c_key, f, "c.key");
    path(f->a_pub, f, "keys/a.pem");
    path(f->b_pub, f, "keys/b.pem");
    path(f->c_pub, f, "c.pem");
    bv_keygen(f->a_key, f->a_pub, f->a);
    bv_keygen(f->b_key, f->b_pub, f->b);
    bv_keygen(f->c_key, f->c_pub, f->c);
    path(f->by_a, f, "by-a");
    path(f->by_b, f, "by-b");
    path(f->by_c, f, "by-c");
    path(f->unsigned_, f, "unsigned");
    path(f->edited, f, "edited");
    bv_copy_default(f->by_a);
    bv_sign(f->by_a, f->a_key);
    bv_clone(f->by_a, f->by_b);
    bv_sign(f->by_b, f->b_key);
    bv_clone(f->by_a, f->by_c);
    bv_sign(f->by_c, f->c_key);
    bv_clone(f->by_a, f->unsigned_);
    bv_unsign(f->unsigned_);
    bv_clone(f->by_a, f->edited);
    bv_edit_manifest(f->edited); /* after A signed it */
    path(f->link, f, "current");
    bv_point(f->link, f->by_a);
    snprintf(f->h.bundle, sizeof f->h.bundle, "%.250s", f->link);
    path(f->conf, f, "qslmd.conf");
    char text[BV_PATH + 64];
    snprintf(text, sizeof text, "[daemon]\ntrusted_keys = %s\n", f->keys);
    bv_write(f->conf, text);
    f->extra[0] = "--config";
    f->extra[1] = f->conf;
    f->extra[2] = NULL;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    int rc = dc_finish(&f->h);
    free(f);
    return rc;
}

/* status's bundle: path (resolved) and signer. */
static void expect_bundle(qi_client *c, const char *dir, const char *signer)
{
    char real[BV_PATH];
    bv_real(dir, real);
    qi_reply r;
    status(c, &r);
    const char *p = jstr(r.body, "bundle.path"), *s = jstr(r.body, "bundle.signer");
    if (!p || strcmp(p, real) != 0 || !s || strcmp(s, signer) != 0)
        fail_msg("status: want bundle %s signed by %s: %s", real, signer, json_object_to_json_string(r.body));
    qi_reply_free(&r);
}

/* Lines of the log holding every needle of the NULL-terminated list ap. */
static int count_lines(dh_daemon *h, va_list ap0)
{
    char *log = dh_read_log(h);
    if (!log) /* before the first start */
        return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        va_list ap;
        va_copy(ap, ap0);
        bool all = true;
        for (const char *w; all && (w = va_arg(ap, const char *)) != NULL;)
            all = strstr(line, w) != NULL;
        va_end(ap);
        n += all;
    }
    free(log);
    return n;
}

/* Waits (up to timeout_ms) until more than `before` lines of the log hold every needle. */
static void expect_log_lines(dh_daemon *h, int before, int timeout_ms, ...)
{
    double end = dh_now_ms() + timeout_ms;
    for (;;) {
        va_list ap;
        va_start(ap, timeout_ms);
        int n = count_lines(h, ap);
        va_end(ap);
        if (n > before)
            return;
        if (dh_now_ms() > end) {
            char *log = dh_read_log(h);
            fail_msg("no new log line with all of the expected words; the log:\n%s", log ? log : "");
        }
        dh_sleep_ms(20);
    }
}

static int log_lines(dh_daemon *h, ...)
{
    va_list ap;
    va_start(ap, h);
    int n = count_lines(h, ap);
    va_end(ap);
    return n;
}

#define expect_log_line(h, timeout_ms, ...) expect_log_lines(h, 0, timeout_ms, __VA_ARGS__)

/* The start on dir must fail with exit 1 and a line naming the bundle, the verdict and the key. */
static void start_refused(fixture *f, const char *dir, const char *verdict, const char *key)
{
    bv_point(f->link, dir);
    char real[BV_PATH], where[2 * BV_PATH + 16], what[128];
    bv_real(dir, real);
    snprintf(where, sizeof where, "bundle %s -> %s", f->link, real);
    snprintf(what, sizeof what, "signature refused (%s; key %s)", verdict, key);
    int before = log_lines(&f->h, "error: ", where, what, NULL);
    assert_int_equal(dh_spawn(&f->h, f->extra), 0);
    int status;
    if (dh_wait_exit(&f->h, 60000, &status) != 0)
        fail_msg("%s", f->h.err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
        fail_msg("qslmd on %s: want exit 1, got status %#x", dir, status);
    expect_log_lines(&f->h, before, 0, "error: ", where, what, NULL);
}

static void test_start_refused(void **state)
{
    fixture *f = *state;
    start_refused(f, f->unsigned_, "unsigned", "none");
    start_refused(f, f->by_c, "unknown key", f->c);
    start_refused(f, f->edited, "bad signature", f->a);
    /* the signed one starts, and says who signed it */
    bv_point(f->link, f->by_a);
    assert_int_equal(dc_start(&f->h, f->extra), 0);
    qi_client *c = connect_or_fail(&f->h);
    expect_bundle(c, f->by_a, f->a);
    expect_log_line(&f->h, 5000, "start: bundle", "signed by trusted key", f->a, NULL);
    qi_client_close(c);
}

/* A reload onto dir is refused naming the bundle, the verdict and the key; the old one serves. */
static void reload_refused(fixture *f, qi_client *c, const char *dir, const char *verdict, const char *key,
                           const char *old, const char *old_signer, bool by_signal)
{
    bv_point(f->link, dir);
    char real[BV_PATH], where[2 * BV_PATH + 16], what[128];
    bv_real(dir, real);
    snprintf(where, sizeof where, "bundle %s -> %s", f->link, real);
    snprintf(what, sizeof what, "signature refused (%s; key %s)", verdict, key);
    static const char refused[] = "reload refused, still serving the old configuration and bundle";
    int before = log_lines(&f->h, refused, where, what, NULL);
    if (by_signal) {
        assert_int_equal(dh_signal(&f->h, SIGHUP), 0);
    } else {
        qi_reply r;
        rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
        if (r.kind != QI_REPLY_ERROR || r.code != QI_ERR_RELOAD_REFUSED || !strstr(r.message, what) ||
            !strstr(r.message, where))
            fail_msg("reload onto %s: want reload_refused with '%s': %s", dir, what, json_object_to_json_string(r.body));
        qi_reply_free(&r);
    }
    expect_log_lines(&f->h, before, 10000, refused, where, what, NULL);
    expect_bundle(c, old, old_signer);
    qi_reply d;
    rpc_final(c, &d, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The nation\",\"max_tokens\":3,\"seed\":1}");
    if (d.kind != QI_REPLY_DONE || d.stats.tokens != 3)
        fail_msg("generate after a refused reload: %s", json_object_to_json_string(d.body));
    qi_reply_free(&d);
}

static void reload_ok(qi_client *c)
{
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    if (r.kind != QI_REPLY_RESULT)
        fail_msg("reload: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
}

static void test_reload_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(dc_start(&f->h, f->extra), 0);
    qi_client *c = connect_or_fail(&f->h);
    expect_bundle(c, f->by_a, f->a);
    reload_refused(f, c, f->unsigned_, "unsigned", "none", f->by_a, f->a, false);
    reload_refused(f, c, f->by_c, "unknown key", f->c, f->by_a, f->a, false);
    reload_refused(f, c, f->edited, "bad signature", f->a, f->by_a, f->a, false);
    /* SIGHUP (systemctl reload's other road) refuses the same way */
    reload_refused(f, c, f->by_c, "unknown key", f->c, f->by_a, f->a, true);
    /* back to a good one: served */
    bv_point(f->link, f->by_b);
    reload_ok(c);
    expect_bundle(c, f->by_b, f->b);
    qi_client_close(c);
}

/* A manifest edited after it was signed, with the daemon running on it: the running copy is
 * what was verified (status unchanged); the next reload refuses the edited bytes. */
static void test_edited_in_place(void **state)
{
    fixture *f = *state;
    char dir[BV_PATH];
    path(dir, f, "in-place");
    bv_clone(f->by_a, dir);
    bv_point(f->link, dir);
    assert_int_equal(dc_start(&f->h, f->extra), 0);
    qi_client *c = connect_or_fail(&f->h);
    qi_reply r;
    status(c, &r);
    char sha[QR_SHA256_HEX_SIZE];
    snprintf(sha, sizeof sha, "%s", jstr(r.body, "bundle.manifest_sha256"));
    qi_reply_free(&r);
    bv_edit_manifest(dir);
    reload_refused(f, c, dir, "bad signature", f->a, dir, f->a, false);
    status(c, &r);
    assert_jstr(r.body, "bundle.manifest_sha256", sha);
    qi_reply_free(&r);
    qi_client_close(c);
}

static void write_conf(fixture *f, const char *trusted)
{
    char text[3 * BV_PATH + 64];
    snprintf(text, sizeof text, "[daemon]\ntrusted_keys = %s\n", trusted);
    bv_write(f->conf, text);
}

static void test_key_rotation(void **state)
{
    fixture *f = *state;
    char both[3 * BV_PATH];
    snprintf(both, sizeof both, "%s, %s", f->a_pub, f->b_pub); /* the list form */
    write_conf(f, both);
    bv_point(f->link, f->by_b);
    assert_int_equal(dc_start(&f->h, f->extra), 0);
    qi_client *c = connect_or_fail(&f->h);
    expect_bundle(c, f->by_b, f->b);
    /* B retired: only A trusted; the reload refuses B's bundle, which keeps serving */
    write_conf(f, f->a_pub);
    reload_refused(f, c, f->by_b, "unknown key", f->b, f->by_b, f->b, false);
    /* the bundle re-signed by A, rolled out: served */
    char by_a2[BV_PATH];
    path(by_a2, f, "by-a-2");
    bv_clone(f->by_b, by_a2);
    bv_sign(by_a2, f->a_key);
    bv_point(f->link, by_a2);
    reload_ok(c);
    expect_bundle(c, by_a2, f->a);
    expect_log_line(&f->h, 5000, "reload: bundle", "signed by trusted key", f->a, NULL);
    /* a key file that is no public key: the reload is refused, the keys in force stay */
    write_conf(f, f->a_key);
    qi_reply r;
    rpc_final(c, &r, "{\"id\":\"rl\",\"op\":\"reload\"}");
    if (r.kind != QI_REPLY_ERROR || r.code != QI_ERR_RELOAD_REFUSED || !strstr(r.message, "not a public key file"))
        fail_msg("reload with a private key as trusted: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);
    expect_bundle(c, by_a2, f->a);
    qi_client_close(c);
    /* restart with only B trusted: A's bundle is refused at start */
    write_conf(f, f->b_pub);
    int st = dh_stop(&f->h);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    start_refused(f, by_a2, "unknown key", f->a);
}

/* No trusted keys: an unsigned bundle serves, with a warning at start; status says so. */
static void test_unsigned_warning(void **state)
{
    fixture *f = *state;
    bv_point(f->link, f->unsigned_);
    assert_int_equal(dc_start(&f->h, NULL), 0);
    qi_client *c = connect_or_fail(&f->h);
    expect_bundle(c, f->unsigned_, "unsigned");
    expect_log_line(&f->h, 5000, "warning: ", "start: bundle", "is unsigned and trusted_keys is not set", NULL);
    /* a signed one without keys: served, "not checked" */
    bv_point(f->link, f->by_c);
    reload_ok(c);
    expect_bundle(c, f->by_c, "not checked");
    expect_log_line(&f->h, 5000, "reload: bundle", "is signed, not checked", NULL);
    qi_client_close(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s QSLMD\n", argv[0]);
        return 2;
    }
    setenv("QSLMD", argv[1], 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsigned_warning, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
