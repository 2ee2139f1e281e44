/* test_cross_daemon.c: the daemon end to end on aarch64, under qemu user-mode emulation, at a
 * size emulation affords (scripts/cross-test.sh; registered in cross builds only). The
 * cross-built qslmd runs the real bundle on a temporary socket with a fake telemetry root
 * (tests/daemon/daemon_harness.h; QSLMD_WRAPPER=qemu-aarch64-static runs it), and the test
 * program itself is emulated too: a generation on the best variant, a classification, a memory
 * budget that switches to a smaller variant (one byte under the best one's footprint; which
 * variants these are comes from the bundle's manifest, bundle_facts.h), a generation there, the
 * budget back to auto, and
 * SIGTERM (exit 0); and the telemetry of a board: a Raspberry Pi booted without
 * cgroup_enable=memory and psi=1 (the service's cgroup has no memory.* files, /proc/pressure is
 * absent), where the budget falls back to MemAvailable, with a Jetson's INA3221 VDD_IN rail as
 * the power reading. Everything else the daemon does is covered natively by tests/daemon; the
 * full test_daemon also passes under emulation (scripts/cross-test.sh --full), in minutes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_facts.h"
#include "daemon_checks.h"

#define SWITCH_TIMEOUT_MS 60000 /* emulated: a variant is read and hashed several times slower */

static bf_bundle bundle; /* the default bundle as qslmd serves it; main reads it */

#define BOARD_MEM_AVAILABLE_KB 2961804 /* the Pi's MemAvailable */
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_RESERVE (64ull << 20)  /* qslmd's default reserve of MemAvailable (policy.h) */

static int setup_daemon(void **state)
{
    dh_daemon *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    *state = h;
    static const char *const args[] = {"--max-line", "4096", NULL};
    if (dc_init(h) != 0)
        return -1;
    return dc_start(h, args);
}

static int teardown_daemon(void **state)
{
    dh_daemon *h = *state;
    int rc = h ? dc_finish(h) : 0;
    free(h);
    return rc;
}

/* A non-streamed generation of max_tokens, all of it from one variant, which must be `variant`. */
static void generate_on(qi_client *c, const char *variant, unsigned max_tokens)
{
    qi_reply d;
    rpc(c, &d, "{\"id\":\"g\",\"op\":\"generate\",\"prompt\":\"The nation\",\"max_tokens\":%u,\"seed\":1}",
        max_tokens);
    if (d.kind != QI_REPLY_DONE)
        fail_msg("generate: %s", json_object_to_json_string(d.body));
    assert_true(id_is_str(&d.id, "g"));
    assert_true(d.stats.tokens >= 1 && d.stats.tokens <= max_tokens);
    assert_true(d.text_len > 0);
    assert_int_equal(d.stats.n_spans, 1);
    assert_string_equal(d.stats.spans[0].variant, variant);
    print_message("[ %-8s ] %u tokens in %.0f ms: \"%.*s\"\n", variant, d.stats.tokens, d.stats.ms,
                  (int)d.text_len, d.text);
    qi_reply_free(&d);
}

static void test_serve_switch_stop(void **state)
{
    dh_daemon *h = *state;
    const bf_variant *top = bf_top(&bundle), *down = bf_step_down(&bundle, top);
    qi_client *c = connect_or_fail(h);
    wait_active(c, top->name, 0, SWITCH_TIMEOUT_MS);
    generate_on(c, top->name, 8);

    qi_reply r;
    rpc(c, &r, "{\"id\":\"c\",\"op\":\"classify\",\"texts\":[\"A wonderful film.\"]}");
    if (r.kind != QI_REPLY_RESULT)
        fail_msg("classify: %s", json_object_to_json_string(r.body));
    qi_reply_free(&r);

    qi_reply st0;
    status(c, &st0);
    set_memory_budget(c, top->footprint - 1);
    wait_active(c, down->name, 0, SWITCH_TIMEOUT_MS);
    qi_reply st;
    status(c, &st);
    assert_true(counter(st.body, "switches") >= counter(st0.body, "switches") + 1);
    assert_jstr(st.body, "budget.memory.source", "set-budget");
    qi_reply_free(&st);
    qi_reply_free(&st0);
    generate_on(c, down->name, 4);

    set_memory_budget(c, 0);
    wait_active(c, top->name, 0, SWITCH_TIMEOUT_MS);
    qi_client_close(c);
}

/* The reading named source in a status body, or NULL. */
static json_object *reading(json_object *st, const char *source)
{
    json_object *all = jget(st, "readings");
    for (size_t i = 0; all && i < json_object_array_length(all); i++) {
        json_object *r = json_object_array_get_idx(all, i);
        const char *s = jstr(r, "source");
        if (s && strcmp(s, source) == 0)
            return r;
    }
    return NULL;
}

/* A Pi's memory cgroup is off unless the kernel command line has cgroup_enable=memory: the
 * service still has a cgroup v2 directory, but no memory.max/high/current/pressure in it; PSI
 * is off unless psi=1 (no /proc/pressure). The daemon serves on MemAvailable alone. */
static int setup_board(void **state)
{
    dh_daemon *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    *state = h;
    if (dc_init(h) != 0)
        return -1;
    const char *hw = "sys/class/hwmon/hwmon1/";
    char rel[128];
    int rc = dh_write_root_file(h, "proc/self/cgroup", "0::/system.slice/qslmd.service\n");
    rc |= dh_write_root_file(h, "sys/fs/cgroup/system.slice/qslmd.service/cgroup.procs", "1\n");
    rc |= dh_write_root_file(h, "proc/meminfo", "MemTotal:        3884512 kB\n"
                                                "MemFree:         1911424 kB\n"
                                                "MemAvailable:    " STR(BOARD_MEM_AVAILABLE_KB) " kB\n");
    static const char *const rail[][2] = {{"name", "ina3221\n"}, {"in1_label", "VDD_IN\n"},
                                          {"in1_input", "5000\n"}, {"curr1_input", "1200\n"}};
    for (size_t i = 0; i < sizeof rail / sizeof *rail; i++) {
        snprintf(rel, sizeof rel, "%s%s", hw, rail[i][0]);
        rc |= dh_write_root_file(h, rel, rail[i][1]);
    }
    if (rc != 0) {
        print_error("%s\n", h->err);
        return -1;
    }
    static const char *const args[] = {"--max-line", "4096", NULL};
    return dc_start(h, args);
}

static void test_board_without_memory_cgroup_or_psi(void **state)
{
    dh_daemon *h = *state;
    /* the first pick's budget: MemAvailable less the reserve (nothing is served yet) */
    const bf_variant *pick = bf_best(&bundle, BOARD_MEM_AVAILABLE_KB * 1024ull - DEFAULT_RESERVE, NULL);
    assert_non_null(pick);
    qi_client *c = connect_or_fail(h);
    wait_active(c, pick->name, 0, SWITCH_TIMEOUT_MS);
    qi_reply st;
    status(c, &st);
    assert_jstr(st.body, "budget.memory.source", "MemAvailable");
    static const char *const absent[] = {"cgroup memory.max", "cgroup memory.high", "psi memory avg10"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        json_object *r = reading(st.body, absent[i]);
        if (!r || !jnull(r, "value") || !jstr(r, "note"))
            fail_msg("%s should be listed, unavailable, with a note: %s", absent[i],
                     json_object_to_json_string(st.body));
    }
    json_object *mem = reading(st.body, "MemAvailable"), *vdd = reading(st.body, "hwmon1 VDD_IN");
    assert_non_null(mem);
    assert_int_equal(jint(mem, "value"), BOARD_MEM_AVAILABLE_KB * 1024ll);
    assert_non_null(vdd);
    double w = json_object_get_double(jget(vdd, "value"));
    assert_true(w > 5.999 && w < 6.001);
    qi_reply_free(&st);
    generate_on(c, pick->name, 2);
    qi_client_close(c);
}

int main(int argc, char **argv)
{
    if (argc > 1) /* the qslmd to test, as meson passes it */
        setenv("QSLMD", argv[1], 1);
    dc_read_timeout_ms = 120000;
    if (bf_load_switchable(&bundle) != 0) {
        fprintf(stderr, "test_cross_daemon: %s\n", bundle.err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_serve_switch_stop, setup_daemon, teardown_daemon),
        cmocka_unit_test_setup_teardown(test_board_without_memory_cgroup_or_psi, setup_board,
                                        teardown_daemon),
    };
    return cmocka_run_group_tests_name("cross_daemon", tests, NULL, NULL);
}
