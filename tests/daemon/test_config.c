/* test_config.c: qslmd.conf (daemon/config_file.h): every key, every kind of error and its
 * message, the file left untouched on failure, defaults equal to etc/qslmd.conf(.in) both
 * commented and uncommented, the command line over the file (qd_config_load, as at start and
 * at reload), and `qslmd --check-config` run for real.
 *
 * Arguments: the configured etc/qslmd.conf (build tree), then the qslmd binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bundle_sign.h"
#include "config_file.h"
#include "log.h"

static const char *etc_conf;
static const char *qslmd_exe;
static char tmpdir[] = "/tmp/qslm-test-config-XXXXXX";

/* ---------------------------------------------------------------- helpers */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF) {
        if (len + 2 > cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        buf[len++] = (char)ch;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    buf[len] = '\0';
    return buf;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return p;
}

static qr_status load_text(const char *text, qd_config *cfg, qr_error *err)
{
    return qd_config_load_buffer("test.conf", text, strlen(text), cfg, err);
}

/* A config that differs from the defaults in places, to see that a failed load leaves it. */
static void marked(qd_config *c)
{
    qd_config_init(c);
    strcpy(c->socket_path, "/tmp/marked.sock");
    c->threads = 3;
    c->policy.up_delay_s = 7;
}

/* text must fail with msg containing each of the NULL-terminated needles, cfg untouched. */
static void expect_error(const char *text, ...)
{
    qd_config c, before;
    marked(&c);
    before = c;
    qr_error err = {0};
    qr_status st = load_text(text, &c, &err);
    if (st != QR_ERR_FORMAT)
        fail_msg("accepted (status %d): %s", st, text);
    assert_true(qd_config_equal(&c, &before));
    assert_string_equal(c.socket_path, "/tmp/marked.sock");
    va_list ap;
    va_start(ap, text);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        if (!strstr(err.msg, needle))
            fail_msg("'%s' not in '%s' (input: %s)", needle, err.msg, text);
    va_end(ap);
}

/* ---------------------------------------------------------------- every key */

static void test_every_key(void **state)
{
    (void)state;
    const char *text =
        "[daemon]\n"
        "socket = /tmp/q.sock\n"
        "bundle = /srv/qslm/bundle\n"
        "trusted_keys = /etc/qslm/keys, /etc/qslm/old.pem\n"
        "threads = 3\n"
        "batch = 2\n"
        "max_active = 8\n"
        "max_active_per_conn = 3\n"
        "round_tokens = 40\n"
        "prefill_chunk = 32\n"
        "round_ms = 7\n"
        "share_by_uid = yes\n"
        "mlock = true\n"
        "log_level = debug\n"
        "admin_group = wheel\n"
        "socket_mode = 0660\n"
        "socket_group = qslm\n"
        "metrics_file = /var/lib/qslm/qslmd.prom\n"
        "metrics_interval = 2.5\n"
        "[limits]\n"
        "max_line = 4K\n"
        "max_tokens = 99\n"
        "queue_depth = 5\n"
        "max_in_flight = 6\n"
        "max_output = 1M\n"
        "max_connections = 40\n"
        "idle_timeout = 2.5\n"
        "[policy]\n"
        "interval = 0.25\n"
        "up_delay = 2.5\n"
        "up_headroom = 12.5\n"
        "reserve = 0\n"
        "cgroup_reserve = 3M\n"
        "psi_threshold = 20\n"
        "psi_hold = 4\n"
        "power_budget = 3500mW\n"
        "memory_budget = 48M\n"
        "[telemetry]\n"
        "root = /tmp/fake-root\n";
    qd_config def, c;
    qd_config_init(&def);
    qd_config_init(&c);
    qr_error err;
    assert_int_equal(load_text(text, &c, &err), QR_OK);
    assert_string_equal(c.socket_path, "/tmp/q.sock");
    assert_string_equal(c.bundle_dir, "/srv/qslm/bundle");
    assert_string_equal(c.trusted_keys, "/etc/qslm/keys, /etc/qslm/old.pem");
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.batch, 2);
    assert_int_equal(c.max_active, 8);
    assert_int_equal(c.max_active_per_conn, 3);
    assert_int_equal(c.round_tokens, 40);
    assert_int_equal(c.prefill_chunk, 32);
    assert_int_equal(c.round_ms, 7);
    assert_true(c.share_by_uid);
    assert_true(c.lock_memory);
    assert_int_equal(c.log_level, QD_LOG_DEBUG);
    assert_string_equal(c.admin_group, "wheel");
    assert_int_equal(c.socket_mode, 0660);
    assert_string_equal(c.socket_group, "qslm");
    assert_string_equal(c.metrics_file, "/var/lib/qslm/qslmd.prom");
    assert_true(c.metrics_interval_s == 2.5);
    assert_int_equal(c.limits.max_line, 4096);
    assert_int_equal(c.limits.max_tokens, 99);
    assert_int_equal(c.limits.queue_depth, 5);
    assert_int_equal(c.limits.max_in_flight, 6);
    assert_int_equal(c.max_output, 1 << 20);
    assert_int_equal(c.max_connections, 40);
    assert_true(c.idle_timeout_s == 2.5);
    assert_true(c.policy_interval_s == 0.25);
    assert_true(c.policy.up_delay_s == 2.5);
    assert_true(c.policy.up_headroom == 0.125);
    assert_int_equal(c.policy.reserve_bytes, 0);
    assert_int_equal(c.policy.cgroup_reserve_bytes, 3 << 20);
    assert_true(c.policy.psi_threshold == 20);
    assert_true(c.policy.psi_hold_s == 4);
    assert_true(c.policy.has_default_power);
    assert_true(c.policy.default_power_w == 3.5);
    assert_true(c.initial_budget.has_memory);
    assert_int_equal(c.initial_budget.memory_bytes, 48u << 20);
    assert_false(c.initial_budget.has_power);
    assert_string_equal(c.telemetry_root, "/tmp/fake-root");
    /* every key of the table was set, and to something else than its default */
    for (int k = 0; k < QD_KEY_COUNT; k++)
        if (qd_config_key_equal(&c, &def, (qd_config_key)k))
            fail_msg("key %s kept its default", qd_config_key_name((qd_config_key)k));
    assert_int_equal(qd_config_check(&c, &err), QR_OK);
}

/* Keys not in the file keep what cfg held: the file applies over it. */
static void test_applies_over(void **state)
{
    (void)state;
    qd_config c, before;
    marked(&c);
    before = c;
    qr_error err;
    assert_int_equal(load_text("[policy]\nup_delay = 1\n", &c, &err), QR_OK);
    assert_true(c.policy.up_delay_s == 1);
    before.policy.up_delay_s = 1;
    assert_true(qd_config_equal(&c, &before));
    assert_int_equal(c.threads, 3);
    /* an empty file and one of comments change nothing */
    assert_int_equal(load_text("", &c, &err), QR_OK);
    assert_int_equal(load_text("# a comment\n; another\n\n[daemon]\n", &c, &err), QR_OK);
    assert_true(qd_config_equal(&c, &before));
}

static void test_value_grammars(void **state)
{
    (void)state;
    qd_config c;
    qd_config_init(&c);
    qr_error err;
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    char text[128];
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[daemon]\nmlock = %s\n", yes[i]);
        assert_int_equal(load_text(text, &c, &err), QR_OK);
        assert_true(c.lock_memory);
        snprintf(text, sizeof text, "[daemon]\nmlock = %s\n", no[i]);
        assert_int_equal(load_text(text, &c, &err), QR_OK);
        assert_false(c.lock_memory);
    }
    static const char *const levels[] = {"error", "warning", "notice", "info", "debug"};
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "[daemon]\nlog_level = %s\n", levels[i]);
        assert_int_equal(load_text(text, &c, &err), QR_OK);
        assert_int_equal(c.log_level, QD_LOG_ERR + i);
    }
    /* socket_mode: octal or umask; socket_group: a name, a number, none */
    assert_int_equal(load_text("[daemon]\nsocket_mode = 660\nsocket_group = 0\n", &c, &err), QR_OK);
    assert_true(c.socket_mode == 0660 && strcmp(c.socket_group, "0") == 0);
    assert_int_equal(load_text("[daemon]\nsocket_mode = 0600\n", &c, &err), QR_OK);
    assert_int_equal(c.socket_mode, 0600);
    assert_int_equal(load_text("[daemon]\nsocket_mode = umask\nsocket_group = none\n", &c, &err), QR_OK);
    assert_true(c.socket_mode == -1 && c.socket_group[0] == '\0');
    assert_int_equal(load_text("[daemon]\nsocket_mode =\nsocket_group =\n", &c, &err), QR_OK);
    assert_true(c.socket_mode == -1 && c.socket_group[0] == '\0');
    /* metrics_file: an absolute .prom path, none or empty; metrics_interval: seconds */
    assert_int_equal(load_text("[daemon]\nmetrics_file = /run/q/a.prom\nmetrics_interval = 0.1\n", &c, &err), QR_OK);
    assert_true(strcmp(c.metrics_file, "/run/q/a.prom") == 0 && c.metrics_interval_s == 0.1);
    assert_int_equal(load_text("[daemon]\nmetrics_file = none\n", &c, &err), QR_OK);
    assert_true(c.metrics_file[0] == '\0');
    assert_int_equal(load_text("[daemon]\nmetrics_file =\n", &c, &err), QR_OK);
    assert_true(c.metrics_file[0] == '\0');
    /* power: watts, mW, none, empty */
    assert_int_equal(load_text("[policy]\npower_budget = 2W\n", &c, &err), QR_OK);
    assert_true(c.policy.has_default_power && c.policy.default_power_w == 2);
    assert_int_equal(load_text("[policy]\npower_budget = none\n", &c, &err), QR_OK);
    assert_false(c.policy.has_default_power);
    assert_int_equal(load_text("[policy]\npower_budget = 1.25\n", &c, &err), QR_OK);
    assert_true(c.policy.has_default_power && c.policy.default_power_w == 1.25);
    assert_int_equal(load_text("[policy]\npower_budget =\n", &c, &err), QR_OK);
    assert_false(c.policy.has_default_power);
    /* memory: a size, auto */
    assert_int_equal(load_text("[policy]\nmemory_budget = 1G\n", &c, &err), QR_OK);
    assert_true(c.initial_budget.has_memory && c.initial_budget.memory_bytes == 1u << 30);
    assert_int_equal(load_text("[policy]\nmemory_budget = auto\n", &c, &err), QR_OK);
    assert_false(c.initial_budget.has_memory);
    /* the one size grammar (ipc/budget.h): a fraction with a unit, rounded down to whole bytes */
    assert_int_equal(load_text("[policy]\nmemory_budget = 5.5M\nreserve = 0.5K\n", &c, &err), QR_OK);
    assert_true(c.initial_budget.has_memory && c.initial_budget.memory_bytes == 5767168);
    /* sizes in bytes, KiB; percent 0; threads 0 (auto); an empty admin group (root only) */
    assert_int_equal(load_text("[limits]\nmax_line = 100000\nmax_output = 64KiB\n", &c, &err), QR_OK);
    assert_int_equal(c.limits.max_line, 100000);
    assert_int_equal(c.max_output, 65536);
    assert_int_equal(load_text("[policy]\nup_headroom = 0\npsi_threshold = 0\n", &c, &err), QR_OK);
    assert_true(c.policy.up_headroom == 0 && c.policy.psi_threshold == 0);
    /* trusted_keys: one path, a list, none, empty */
    assert_int_equal(load_text("[daemon]\ntrusted_keys = /etc/qslm/keys\n", &c, &err), QR_OK);
    assert_string_equal(c.trusted_keys, "/etc/qslm/keys");
    assert_int_equal(load_text("[daemon]\ntrusted_keys = /k/a.pem,/k/b.pem , /k/c dir\n", &c, &err), QR_OK);
    assert_string_equal(c.trusted_keys, "/k/a.pem,/k/b.pem , /k/c dir");
    assert_int_equal(load_text("[daemon]\ntrusted_keys = none\n", &c, &err), QR_OK);
    assert_string_equal(c.trusted_keys, "");
    assert_int_equal(load_text("[daemon]\ntrusted_keys =\n", &c, &err), QR_OK);
    assert_string_equal(c.trusted_keys, "");
    assert_int_equal(load_text("[daemon]\nthreads = 0\nadmin_group =\n", &c, &err), QR_OK);
    assert_int_equal(c.threads, 0);
    assert_string_equal(c.admin_group, "");
}

/* Layout libinih and we accept: indentation, blanks around '=', CRLF, a BOM, inline ';'
 * comments, a section given twice, no newline at the end. */
static void test_layout(void **state)
{
    (void)state;
    qd_config c;
    qd_config_init(&c);
    qr_error err;
    const char *text = "\xef\xbb\xbf# qslmd\r\n"
                       "  [daemon]  ; the daemon\r\n"
                       "    threads=5\r\n"
                       "\tbatch   =   3   ; three\r\n"
                       "[policy]\n"
                       "up_delay = 1\n"
                       "[daemon]\n"
                       "max_active = 9";
    assert_int_equal(load_text(text, &c, &err), QR_OK);
    assert_int_equal(c.threads, 5);
    assert_int_equal(c.batch, 3);
    assert_int_equal(c.max_active, 9);
    assert_true(c.policy.up_delay_s == 1);
    /* a path with spaces and '#' inside is the rest of the line */
    assert_int_equal(load_text("[daemon]\nbundle = /srv/my bundle#2\n", &c, &err), QR_OK);
    assert_string_equal(c.bundle_dir, "/srv/my bundle#2");
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    /* unknown section, even with nothing in it */
    expect_error("[daemon]\nthreads = 1\n[deamon]\n", "test.conf:3:", "[deamon]", "unknown section",
                 "[daemon], [limits], [policy] or [telemetry]", NULL);
    expect_error("[Daemon]\nthreads = 1\n", "test.conf:1:", "unknown section", NULL);
    /* unknown key; a key of another section */
    expect_error("[daemon]\nthread = 4\n", "test.conf:2:", "[daemon] thread: unknown key",
                 "expected one of socket, bundle, trusted_keys, threads", NULL);
    expect_error("[limits]\nthreads = 4\n", "test.conf:2:", "[limits] threads: unknown key",
                 "under [daemon]", NULL);
    expect_error("threads = 4\n", "test.conf:1:", "threads: a key before any section", "under [daemon]", NULL);
    expect_error("[daemon]\n= 4\n", "test.conf:2:", "a value without a key", NULL);
    /* a list of trusted keys with a hole in it */
    expect_error("[daemon]\ntrusted_keys = /k/a.pem,,/k/b.pem\n", "test.conf:2:",
                 "[daemon] trusted_keys: '/k/a.pem,,/k/b.pem' has an empty path (expected public key files or "
                 "directories separated by commas, or none)", NULL);
    expect_error("[daemon]\ntrusted_keys = /k/a.pem,\n", "trusted_keys: '/k/a.pem,' has an empty path", NULL);
    expect_error("[daemon]\ntrusted_keys = , /k/a.pem\n", "has an empty path", NULL);
    /* bad numbers */
    expect_error("[daemon]\nthreads = four\n", "test.conf:2:", "[daemon] threads: 'four' is not a whole number",
                 "(expected 0..256", NULL);
    expect_error("[daemon]\nthreads = -1\n", "[daemon] threads: '-1' is not a whole number", NULL);
    expect_error("[daemon]\nthreads = 0x10\n", "'0x10' is not a whole number", NULL);
    expect_error("[daemon]\nbatch = 1.5\n", "[daemon] batch: '1.5' is not a whole number", NULL);
    expect_error("[daemon]\nthreads = 99999999999999999999999\n", "is not a whole number", NULL);
    expect_error("[policy]\ninterval = 1e3\n", "[policy] interval: '1e3' is not a number", NULL);
    expect_error("[policy]\ninterval = 1.2.3\n", "is not a number", NULL);
    expect_error("[policy]\nup_delay = .\n", "is not a number", NULL);
    expect_error("[policy]\nup_headroom = 5%\n", "[policy] up_headroom: '5%' is not a number",
                 "a percentage", NULL);
    expect_error("[policy]\npsi_hold = nan\n", "is not a number", NULL);
    /* out of range */
    expect_error("[daemon]\nthreads = 257\n", "test.conf:2:", "[daemon] threads: '257' is out of range",
                 "(expected 0..256", NULL);
    expect_error("[daemon]\nbatch = 0\n", "[daemon] batch: '0' is out of range (expected 1..1024)", NULL);
    /* the round's shape: a chunk of 1..63 tokens (64 rows would give the runner per-thread copies
     * that chunks cannot use), a round of 1..10000 ms */
    expect_error("[daemon]\nprefill_chunk = 0\n", "test.conf:2:", "[daemon] prefill_chunk: '0' is out of range (expected 1..63)",
                 NULL);
    expect_error("[daemon]\nprefill_chunk = 64\n", "[daemon] prefill_chunk: '64' is out of range (expected 1..63)", NULL);
    expect_error("[daemon]\nprefill_chunk = 8 tokens\n", "[daemon] prefill_chunk: '8 tokens' is not a whole number", NULL);
    expect_error("[daemon]\nround_ms = 0\n",
                 "[daemon] round_ms: '0' is out of range (expected milliseconds in 1..10000)", NULL);
    expect_error("[daemon]\nround_ms = 10001\n", "[daemon] round_ms: '10001' is out of range", NULL);
    expect_error("[daemon]\nround_ms = 2.5\n", "[daemon] round_ms: '2.5' is not a whole number", NULL);
    expect_error("[daemon]\nround_ms = 20ms\n", "[daemon] round_ms: '20ms' is not a whole number", NULL);
    expect_error("[limits]\nmax_tokens = 0\n", "[limits] max_tokens: '0' is out of range", NULL);
    expect_error("[limits]\nqueue_depth = 1048577\n", "[limits] queue_depth: '1048577' is out of range", NULL);
    expect_error("[limits]\nmax_in_flight = 0\n", "[limits] max_in_flight: '0' is out of range", NULL);
    expect_error("[limits]\nmax_line = 65M\n", "[limits] max_line: '65M' is out of range", NULL);
    expect_error("[limits]\nmax_output = 1000\n", "[limits] max_output: '1000' is out of range", NULL);
    expect_error("[limits]\nmax_connections = -1\n", "[limits] max_connections: '-1' is not a whole number", NULL);
    expect_error("[limits]\nidle_timeout = 90000\n", "[limits] idle_timeout: '90000' is out of range", NULL);
    expect_error("[policy]\ninterval = 0\n", "[policy] interval: '0' is out of range (expected seconds in 0.01..86400)",
                 NULL);
    expect_error("[policy]\nup_headroom = 95\n", "[policy] up_headroom: '95' is out of range", NULL);
    expect_error("[policy]\npsi_threshold = 101\n", "[policy] psi_threshold: '101' is out of range", NULL);
    expect_error("[policy]\nup_delay = 86401\n", "out of range", NULL);
    /* bad sizes, powers, words */
    expect_error("[policy]\nreserve = 64Q\n", "test.conf:2:", "[policy] reserve: '64Q' is not a size",
                 "(expected a size such as 64M, or 0)", NULL);
    expect_error("[policy]\nreserve = -1M\n", "is not a size", NULL);
    expect_error("[limits]\nmax_output = 8 M\n", "[limits] max_output: '8 M' is not a size", NULL);
    expect_error("[policy]\nmemory_budget = 0\n", "[policy] memory_budget: '0' is not a size", "or auto", NULL);
    expect_error("[policy]\nmemory_budget = none\n", "is not a size", NULL);
    expect_error("[daemon]\nsocket_mode = 0800\n", "[daemon] socket_mode: '0800' is not an octal mode",
                 "(expected an octal mode such as 0660, or umask)", NULL);
    expect_error("[daemon]\nsocket_mode = 1777\n", "is not an octal mode", NULL);
    expect_error("[daemon]\nsocket_mode = 66\n", "is not an octal mode", NULL);
    expect_error("[daemon]\nsocket_mode = 0o660\n", "is not an octal mode", NULL);
    expect_error("[daemon]\nsocket_group = a:b\n", "[daemon] socket_group: 'a:b' is not a group name", NULL);
    expect_error("[daemon]\nmetrics_file = qslmd.prom\n",
                 "[daemon] metrics_file: 'qslmd.prom' is not an absolute path to a .prom file",
                 "(expected an absolute path ending in .prom, or none)", NULL);
    expect_error("[daemon]\nmetrics_file = /var/lib/qslm/qslmd.txt\n", "is not an absolute path to a .prom file", NULL);
    expect_error("[daemon]\nmetrics_file = /var/lib/qslm/\n", "is not an absolute path to a .prom file", NULL);
    expect_error("[daemon]\nmetrics_file = /var/lib/qslm/.prom\n", "is not an absolute path to a .prom file", NULL);
    expect_error("[daemon]\nmetrics_interval = 0.05\n", "[daemon] metrics_interval: '0.05' is out of range",
                 "(expected seconds in 0.1..86400)", NULL);
    expect_error("[daemon]\nmetrics_interval = 15s\n", "'15s' is not a number", NULL);
    expect_error("[policy]\nmemory_budget = 32MB\n", "[policy] memory_budget: '32MB' is not a size", NULL);
    expect_error("[policy]\nreserve = 1.5\n", "[policy] reserve: '1.5' is not a size", NULL);
    expect_error("[policy]\npower_budget = 3.5 W\n", "[policy] power_budget: '3.5 W' is not a power", "or none",
                 NULL);
    expect_error("[policy]\npower_budget = auto\n", "is not a power", NULL);
    expect_error("[daemon]\nmlock = maybe\n", "[daemon] mlock: 'maybe' is not a boolean (expected true or false)",
                 NULL);
    expect_error("[daemon]\nlog_level = verbose\n", "[daemon] log_level: 'verbose' is not a log level",
                 "error, warning, notice, info or debug", NULL);
    expect_error("[daemon]\nadmin_group = a b\n", "[daemon] admin_group: 'a b' is not a group name", NULL);
    expect_error("[daemon]\nsocket =\n", "[daemon] socket: empty", NULL);
    expect_error("[telemetry]\nroot =\n", "[telemetry] root: empty", NULL);
    expect_error("[daemon]\nsocket = /run/"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaa.sock\n",
                 "[daemon] socket: 118 bytes is too long", "at most 107 bytes", NULL);
    /* a key twice, in one section or across two headers of it */
    expect_error("[daemon]\nthreads = 1\nbatch = 2\nthreads = 1\n", "test.conf:4:",
                 "[daemon] threads: set twice, first on line 2", NULL);
    expect_error("[daemon]\nthreads = 1\n[policy]\n[daemon]\nthreads = 2\n", "test.conf:5:", "set twice", NULL);
    /* lines that are not key = value */
    expect_error("[daemon]\nthreads 4\n", "test.conf:2:", "'threads 4' has no '='", "(expected key = value", NULL);
    expect_error("[daemon]\nmlock\n", "test.conf:2:", "has no '='", NULL);
    expect_error("[daemon]\nthreads: 4\n", "test.conf:2:", "':' between key and value", NULL);
    expect_error("[daemon\nthreads = 4\n", "test.conf:1:", "'[' without ']'", NULL);
    expect_error("[daemon] threads = 4\n", "test.conf:1:", "text after ']'", NULL);
    expect_error("[daemon]\nthreads ;= 4\n", "test.conf:2:", "cannot read this line", NULL);
    /* a line too long for libinih; a NUL byte */
    char longline[400];
    snprintf(longline, sizeof longline, "[daemon]\nbundle = /%0250d\n", 0);
    expect_error(longline, "test.conf:2:", "is too long (expected lines of at most 198)", NULL);
    qd_config c;
    qd_config_init(&c);
    qr_error err;
    assert_int_equal(qd_config_load_buffer("nul.conf", "[daemon]\nthr\0eads = 1\n", 22, &c, &err), QR_ERR_FORMAT);
    assert_string_equal(err.msg, "nul.conf:2: a NUL byte (expected text)");
    /* the first error is the one reported */
    expect_error("[daemon]\nthreads = x\nbatch = y\n", "test.conf:2:", "threads", NULL);
    expect_error("[daemon]\nthreads 1\nbatch = y\n", "test.conf:2:", "has no '='", NULL);
    expect_error("[daemon]\nbatch = y\nthreads 1\n", "test.conf:2:", "batch", NULL);
    /* control characters and long values are shown escaped and cut */
    expect_error("[daemon]\nlog_level = \x01\x7f" "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\n",
                 "'\\x01\\x7fabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrst...'", NULL);
}

static void test_exact_message(void **state)
{
    (void)state;
    qd_config c;
    qd_config_init(&c);
    qr_error err;
    const char *path = write_file("bad.conf", "# comment\n[daemon]\nthreads = four\n");
    assert_int_equal(qd_config_load_file(path, &c, &err), QR_ERR_FORMAT);
    char want[600];
    snprintf(want, sizeof want,
             "%s:3: [daemon] threads: 'four' is not a whole number (expected 0..256; 0 = the CPUs qslmd may run on)",
             path);
    assert_string_equal(err.msg, want);
}

static void test_files(void **state)
{
    (void)state;
    qd_config c, def;
    qd_config_init(&c);
    qd_config_init(&def);
    qr_error err;
    char path[600];
    snprintf(path, sizeof path, "%s/absent.conf", tmpdir);
    assert_int_equal(qd_config_load_file(path, &c, &err), QR_ERR_NOT_FOUND);
    assert_non_null(strstr(err.msg, "absent.conf: cannot open"));
    assert_int_equal(qd_config_load_file(tmpdir, &c, &err), QR_ERR_IO); /* a directory */
    assert_true(qd_config_equal(&c, &def));
    assert_int_equal(qd_config_load_file(write_file("good.conf", "[daemon]\nbatch = 8\n"), &c, &err), QR_OK);
    assert_int_equal(c.batch, 8);
}

/* ---------------------------------------------------------------- etc/qslmd.conf */

/* The shipped file, as shipped (every option commented out), is the defaults. */
static void test_etc_commented(void **state)
{
    (void)state;
    qd_config c, def;
    qd_config_init(&def);
    marked(&c);
    qd_config_init(&c);
    qr_error err;
    if (qd_config_load_file(etc_conf, &c, &err) != QR_OK)
        fail_msg("%s", err.msg);
    assert_true(qd_config_equal(&c, &def));
}

/* Every "#key = value" line uncommented: each key appears once, under its section, at the
 * default of the code. */
static void test_etc_uncommented(void **state)
{
    (void)state;
    char *text = read_all(etc_conf);
    size_t len = strlen(text), n_options = 0;
    char *out = malloc(len + 1), *o = out;
    assert_non_null(out);
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        size_t name = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_");
        if (line[0] == '#' && name > 0 && strncmp(line + 1 + name, " = ", 3) == 0) {
            memcpy(o, line + 1, n - 1); /* an option: drop the '#' */
            o += n - 1;
            n_options++;
        } else {
            memcpy(o, line, n);
            o += n;
        }
        line += n;
    }
    *o = '\0';
    assert_int_equal(n_options, QD_KEY_COUNT);
    assert_null(strstr(out, "@")); /* configured */
    qd_config c, def;
    qd_config_init(&def);
    marked(&c);
    qr_error err;
    if (qd_config_load_buffer("qslmd.conf (uncommented)", out, strlen(out), &c, &err) != QR_OK)
        fail_msg("%s", err.msg);
    for (int k = 0; k < QD_KEY_COUNT; k++)
        if (!qd_config_key_equal(&c, &def, (qd_config_key)k))
            fail_msg("etc/qslmd.conf.in's %s is not the default", qd_config_key_name((qd_config_key)k));
    assert_true(qd_config_equal(&c, &def));
    free(out);
    free(text);
}

/* ---------------------------------------------------------------- check, command line, reload */

static void test_check(void **state)
{
    (void)state;
    qd_config c;
    qr_error err;
    qd_config_init(&c);
    assert_int_equal(qd_config_check(&c, &err), QR_OK);
    c.batch = 0;
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[daemon] batch"));
    qd_config_init(&c);
    c.prefill_chunk = 64;
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[daemon] prefill_chunk: out of range (expected 1..63)"));
    qd_config_init(&c);
    c.round_ms = 0;
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[daemon] round_ms"));
    qd_config_init(&c);
    c.policy.up_headroom = 0.95;
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[policy] up_headroom"));
    qd_config_init(&c);
    c.socket_path[0] = '\0';
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[daemon] socket"));
    qd_config_init(&c);
    c.policy.has_default_power = true;
    c.policy.default_power_w = -1;
    assert_int_equal(qd_config_check(&c, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[policy] power_budget"));
}

static void test_set_key(void **state)
{
    (void)state;
    qd_config c, before;
    qd_config_init(&c);
    before = c;
    qr_error err;
    assert_int_equal(qd_config_set_key(&c, QD_KEY_THREADS, "x", &err), QR_ERR_INVALID);
    assert_string_equal(err.msg, "'x' is not a whole number (expected 0..256; 0 = the CPUs qslmd may run on)");
    assert_int_equal(qd_config_set_key(&c, QD_KEY_COUNT, "1", &err), QR_ERR_INVALID);
    assert_true(qd_config_equal(&c, &before));
    assert_int_equal(qd_config_set_key(&c, QD_KEY_MLOCK, "true", &err), QR_OK);
    assert_true(c.lock_memory);
    assert_string_equal(qd_config_key_section(QD_KEY_TELEMETRY_ROOT), "telemetry");
    assert_string_equal(qd_config_key_name(QD_KEY_TELEMETRY_ROOT), "root");
    assert_null(qd_config_key_name(QD_KEY_COUNT));
    assert_true(qd_config_key_needs_restart(QD_KEY_SOCKET));
    assert_false(qd_config_key_needs_restart(QD_KEY_UP_DELAY));
}

/* qd_config_load: defaults, file, command line; again for a reload with the file changed. */
static void test_source(void **state)
{
    (void)state;
    qd_config_source src;
    qd_config_source_init(&src);
    qr_error err;
    qd_config out, def;
    qd_config_init(&def);
    /* nothing: the defaults */
    assert_int_equal(qd_config_load(&src, &out, &err), QR_OK);
    assert_true(qd_config_equal(&out, &def));
    /* a missing file: the defaults only where allowed */
    char absent[600];
    snprintf(absent, sizeof absent, "%s/absent.conf", tmpdir);
    src.path = absent;
    src.missing_ok = true;
    assert_int_equal(qd_config_load(&src, &out, &err), QR_OK);
    assert_true(qd_config_equal(&out, &def));
    src.missing_ok = false;
    marked(&out);
    qd_config kept = out;
    assert_int_equal(qd_config_load(&src, &out, &err), QR_ERR_NOT_FOUND);
    assert_true(qd_config_equal(&out, &kept));
    /* the command line over the file */
    src.path = write_file("start.conf", "[daemon]\nthreads = 4\nbatch = 2\n[policy]\nup_delay = 3\n");
    assert_int_equal(qd_config_source_set(&src, QD_KEY_THREADS, "2", &err), QR_OK);
    assert_int_equal(qd_config_source_set(&src, QD_KEY_THREADS, "bad", &err), QR_ERR_INVALID);
    assert_string_equal(src.override[QD_KEY_THREADS], "2"); /* the bad one was not recorded */
    assert_int_equal(qd_config_source_set(&src, QD_KEY_MEMORY_BUDGET, "32M", &err), QR_OK);
    assert_int_equal(qd_config_load(&src, &out, &err), QR_OK);
    assert_int_equal(out.threads, 2);
    assert_int_equal(out.batch, 2);
    assert_true(out.policy.up_delay_s == 3);
    assert_true(out.initial_budget.has_memory && out.initial_budget.memory_bytes == 32u << 20);
    /* reload: the file changed, the command line still wins; a key gone from the file is back
     * at its default */
    write_file("start.conf", "[daemon]\nthreads = 8\n[policy]\nup_delay = 5\n");
    assert_int_equal(qd_config_load(&src, &out, &err), QR_OK);
    assert_int_equal(out.threads, 2);
    assert_int_equal(out.batch, 4);
    assert_true(out.policy.up_delay_s == 5);
    /* reload of a broken file: an error, the old config untouched */
    qd_config old = out;
    write_file("start.conf", "[daemon]\nthreads = 8\nbogus = 1\n");
    assert_int_equal(qd_config_load(&src, &out, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "start.conf:3: [daemon] bogus: unknown key"));
    assert_true(qd_config_equal(&out, &old));
}

/* ---------------------------------------------------------------- qslmd --check-config */

/* Runs qslmd with args; returns its exit status, its stdout and stderr in out/errout. */
static int run_qslmd(const char *const *args, char *out, size_t out_cap, char *errout, size_t err_cap)
{
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        const char *argv[16] = {qslmd_exe};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(qslmd_exe, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char *o = read_all(out_path), *e = read_all(err_path);
    snprintf(out, out_cap, "%s", o);
    snprintf(errout, err_cap, "%s", e);
    free(o);
    free(e);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_check_config_cli(void **state)
{
    (void)state;
    char out[4096], errout[4096], want[1024];
    const char *good = write_file("cli-good.conf", "[daemon]\nthreads = 2\n[policy]\npower_budget = 4W\n");
    const char *bad = write_file("cli-bad.conf", "[daemon]\nthreads = 2\n[limits]\nmax_tokens = lots\n");
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--check-config", NULL}, out, sizeof out, errout,
                               sizeof errout),
                     0);
    snprintf(want, sizeof want, "%s: ok\n", good);
    assert_string_equal(out, want);
    assert_string_equal(errout, "");
    assert_int_equal(run_qslmd((const char *[]){"--check-config", "--config", bad, NULL}, out, sizeof out, errout,
                               sizeof errout),
                     1);
    snprintf(want, sizeof want, "qslmd: %s:4: [limits] max_tokens: 'lots' is not a whole number (expected 1..1048576)\n",
             bad);
    assert_string_equal(errout, want);
    assert_string_equal(out, "");
    /* the shipped file checks */
    assert_int_equal(run_qslmd((const char *[]){"--config", etc_conf, "--check-config", NULL}, out, sizeof out, errout,
                               sizeof errout),
                     0);
    /* a file given explicitly must exist */
    char absent[600];
    snprintf(absent, sizeof absent, "%s/absent.conf", tmpdir);
    assert_int_equal(run_qslmd((const char *[]){"--config", absent, "--check-config", NULL}, out, sizeof out, errout,
                               sizeof errout),
                     1);
    assert_non_null(strstr(errout, "absent.conf: cannot open"));
    /* a bad file fails the start too, before anything is opened */
    assert_int_equal(run_qslmd((const char *[]){"--config", bad, "--socket", absent, NULL}, out, sizeof out, errout,
                               sizeof errout),
                     1);
    assert_non_null(strstr(errout, "max_tokens: 'lots'"));
    /* a bad flag is a usage error naming the flag, checked like the file's key */
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--threads", "x", "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     2);
    assert_string_equal(errout, "qslmd: --threads: 'x' is not a whole number (expected 0..256; 0 = the CPUs qslmd may "
                                "run on)\n");
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--prefill-chunk", "64", "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     2);
    assert_string_equal(errout, "qslmd: --prefill-chunk: '64' is out of range (expected 1..63)\n");
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--round-ms", "0", "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     2);
    assert_string_equal(errout, "qslmd: --round-ms: '0' is out of range (expected milliseconds in 1..10000)\n");
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--prefill-chunk", "16", "--round-ms", "5",
                                                "--check-config", NULL},
                               out, sizeof out, errout, sizeof errout),
                     0);
    /* flags override the file: a bad file value is still an error (the file is checked whole) */
    assert_int_equal(run_qslmd((const char *[]){"--config", bad, "--max-tokens", "5", "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     1);
    /* the trusted keys are read: a directory of one key; none in it; a private key; a missing file */
    char keys[600], none[600], priv[700], pub[700], missing[700];
    snprintf(keys, sizeof keys, "%s/keys", tmpdir);
    snprintf(none, sizeof none, "%s/no-keys", tmpdir);
    snprintf(priv, sizeof priv, "%s/a.key", tmpdir);
    snprintf(pub, sizeof pub, "%s/a.pem", keys);
    snprintf(missing, sizeof missing, "%s/b.pem", keys);
    assert_int_equal(mkdir(keys, 0755), 0);
    assert_int_equal(mkdir(none, 0755), 0);
    qr_error kerr;
    assert_int_equal(qr_sign_keygen(priv, pub, &kerr), QR_OK);
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--trusted-keys", keys, "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     0);
    snprintf(want, sizeof want, "%s: ok; trusted_keys: 1 key\n", good);
    assert_string_equal(out, want);
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--trusted-keys", none, "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     1);
    assert_non_null(strstr(errout, "holds no *.pem key file"));
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--trusted-keys", priv, "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     1);
    assert_non_null(strstr(errout, "not a public key file"));
    char list[1500];
    snprintf(list, sizeof list, "%s, %s", pub, missing);
    assert_int_equal(run_qslmd((const char *[]){"--config", good, "--trusted-keys", list, "--check-config", NULL}, out,
                               sizeof out, errout, sizeof errout),
                     1);
    snprintf(want, sizeof want, "qslmd: trusted_keys: %s: No such file or directory\n", missing);
    assert_string_equal(errout, want);
    /* --help names the new options */
    assert_int_equal(run_qslmd((const char *[]){"--help", NULL}, out, sizeof out, errout, sizeof errout), 0);
    assert_non_null(strstr(out, "--config FILE"));
    assert_non_null(strstr(out, "--check-config"));
    assert_non_null(strstr(out, "--prefill-chunk N"));
    assert_non_null(strstr(out, "--round-ms MS"));
    assert_non_null(strstr(out, "--trusted-keys LIST"));
}

/* ---------------------------------------------------------------- main */

static void cleanup(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_config: could not remove %s\n", tmpdir);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ETC_QSLMD_CONF QSLMD\n", argv[0]);
        return 2;
    }
    etc_conf = argv[1];
    qslmd_exe = argv[2];
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_applies_over),
        cmocka_unit_test(test_value_grammars),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_exact_message),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_etc_commented),
        cmocka_unit_test(test_etc_uncommented),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_set_key),
        cmocka_unit_test(test_source),
        cmocka_unit_test(test_check_config_cli),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    cleanup();
    return failed;
}
