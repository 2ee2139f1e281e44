/* test_daemon_access: control ops by peer credentials, with real processes of other uids.
 *
 * As root, the test starts the real qslmd with --admin-group users (a group every Debian system
 * has: base-passwd's gid 100), opens its socket to everyone, and forks clients that drop to uid
 * 4242 before they connect: one in no admin group (set-budget, pin, unpin and reload get
 * permission_denied; generate and status work), one with `users` as a supplementary group
 * (SO_PEERGROUPS) and one with it as the primary group (SO_PEERCRED): both may. Needs root to
 * change uid: without it the test reports itself skipped (exit 77), never passed. */
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bundle_facts.h"
#include "daemon_harness.h"

#define TEST_UID 4242

static gid_t users_gid;

static int setup(void **state)
{
    dh_daemon *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_int_equal(dh_init(h), 0);
    const char *extra[] = {"--admin-group", "users", NULL};
    if (dh_start(h, extra) != 0)
        fail_msg("%s", h->err);
    /* the socket's directory and the socket itself open to uid 4242 */
    assert_int_equal(chmod(h->dir, 0755), 0);
    assert_int_equal(chmod(h->sock, 0666), 0);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    dh_daemon *h = *state;
    dh_teardown(h);
    free(h);
    return 0;
}

/* In a child with uid 4242, primary group gid and the given supplementary groups: sends line
 * and exits 0 when the reply contains want, 1 when not (printing it), 2 on any other failure. */
static int as_other_user(dh_daemon *h, gid_t gid, const gid_t *groups, size_t n_groups, const char *line,
                         const char *want)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(n_groups, groups) != 0 || setgid(gid) != 0 || setuid(TEST_UID) != 0)
            _exit(2);
        if (getuid() != TEST_UID)
            _exit(2);
        qi_client *c = dh_connect(h);
        if (!c) {
            fprintf(stderr, "connect as uid %d: %s\n", TEST_UID, h->err);
            _exit(2);
        }
        qi_error e;
        if (qi_client_send_line(c, line, strlen(line), &e) != QI_OK)
            _exit(2);
        for (;;) {
            const char *reply;
            size_t len;
            if (qi_client_read_line(c, 20000, &reply, &len, &e) != QI_OK)
                _exit(2);
            if (strstr(reply, "\"event\":\"token\""))
                continue;
            if (strstr(reply, want))
                _exit(0);
            fprintf(stderr, "reply to %s: %s (wanted %s)\n", line, reply, want);
            _exit(1);
        }
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

/* set-budget, pin, unpin, reload: the budget and the pin both on the default bundle's smallest
 * variant (bundle_facts.h), so that both succeed for an admin; main writes them. */
static char budget_op[128], pin_op[128];
static const char *const control_ops[] = {budget_op, pin_op, "{\"id\":1,\"op\":\"unpin\"}",
                                          "{\"id\":1,\"op\":\"reload\"}"};

/* Writes the set-budget and pin lines of control_ops; 0, or -1 when the bundle cannot be read. */
static int make_control_ops(void)
{
    bf_bundle b;
    if (bf_load_served(&b) != 0) {
        fprintf(stderr, "test_daemon_access: %s\n", b.err);
        return -1;
    }
    const bf_variant *v = bf_smallest(&b);
    snprintf(budget_op, sizeof budget_op, "{\"id\":1,\"op\":\"set-budget\",\"memory\":%llu}",
             (unsigned long long)v->footprint);
    snprintf(pin_op, sizeof pin_op, "{\"id\":1,\"op\":\"pin\",\"variant\":\"%s\"}", v->name);
    return 0;
}

static void test_not_in_group(void **state)
{
    dh_daemon *h = *state;
    for (size_t i = 0; i < sizeof control_ops / sizeof *control_ops; i++)
        assert_int_equal(as_other_user(h, TEST_UID, NULL, 0, control_ops[i], "\"code\":\"permission_denied\""), 0);
    /* inference and reading are for anyone who can connect */
    assert_int_equal(as_other_user(h, TEST_UID, NULL, 0,
                                   "{\"id\":1,\"op\":\"generate\",\"prompt\":\"The\",\"max_tokens\":3}",
                                   "\"event\":\"done\""),
                     0);
    assert_int_equal(as_other_user(h, TEST_UID, NULL, 0, "{\"id\":1,\"op\":\"status\"}", "\"protocol\":2"), 0);
    assert_true(dh_log_wait(h, "refused set-budget from uid 4242", 5000));
    /* nothing changed: no explicit budget */
    assert_int_equal(as_other_user(h, TEST_UID, NULL, 0, "{\"id\":1,\"op\":\"status\"}", "\"source\":\"MemAvailable\""),
                     0);
}

static void test_supplementary_group(void **state)
{
    dh_daemon *h = *state;
    gid_t groups[] = {users_gid};
    for (size_t i = 0; i < sizeof control_ops / sizeof *control_ops; i++)
        assert_int_equal(as_other_user(h, TEST_UID, groups, 1, control_ops[i], "\"ok\":true"), 0);
}

static void test_primary_group(void **state)
{
    dh_daemon *h = *state;
    assert_int_equal(as_other_user(h, users_gid, NULL, 0, control_ops[0], "\"ok\":true"), 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_daemon_access QSLMD\n");
        return 2;
    }
    if (geteuid() != 0) {
        printf("SKIP: changing uid needs root (the test command runs as root)\n");
        return 77;
    }
    struct group *g = getgrnam("users");
    if (!g) {
        fprintf(stderr, "test_daemon_access: the group 'users' does not exist\n");
        return 1;
    }
    users_gid = g->gr_gid;
    setenv("QSLMD", argv[1], 1);
    if (make_control_ops() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_in_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_supplementary_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_primary_group, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
