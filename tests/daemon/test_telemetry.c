/* test_telemetry.c: telemetry against fake proc/sysfs trees built in a temporary directory:
 * each memory source alone and together, "max", garbage, absent files, memory.stat's
 * unreclaimable sum, memory.events' totals, PSI's two homes (the larger counts), every
 * power source and the board-power preference, RAPL rates across reads and a wrapped counter. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "telemetry.h"

#define MIB (1024ull * 1024ull)
#define CG "sys/fs/cgroup/system.slice/qslmd.service/"

typedef struct {
    char root[64];
    qd_telemetry *t;
    qd_telemetry_snapshot snap;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "/tmp/qslm-telemetry-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    qd_telemetry_free(f->t);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Writes ROOT/rel with content, making its directories. */
static void put(const fixture *f, const char *rel, const char *content)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->root, rel);
    for (char *p = path + strlen(f->root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            fail_msg("mkdir %s: %s", path, strerror(errno));
        *p = '/';
    }
    FILE *fp = fopen(path, "w");
    if (!fp)
        fail_msg("write %s: %s", path, strerror(errno));
    fputs(content, fp);
    fclose(fp);
}

static void rm(const fixture *f, const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->root, rel);
    assert_int_equal(unlink(path), 0);
}

static void put_cgroup(const fixture *f)
{
    put(f, "proc/self/cgroup", "0::/system.slice/qslmd.service\n");
}

static const qd_telemetry_snapshot *read_at(fixture *f, double now_s)
{
    if (!f->t) {
        qr_error err;
        if (qd_telemetry_new(f->root, &f->t, &err) != QR_OK)
            fail_msg("qd_telemetry_new: %s", err.msg);
    }
    qd_telemetry_read(f->t, now_s, &f->snap);
    return &f->snap;
}

static const qd_telemetry_snapshot *read_now(fixture *f) { return read_at(f, 100.0); }

static const qd_reading *find(const qd_telemetry_snapshot *s, const char *source)
{
    for (size_t i = 0; i < s->n_readings; i++)
        if (strcmp(s->readings[i].source, source) == 0)
            return &s->readings[i];
    fail_msg("no reading \"%s\"", source);
    return &s->readings[0]; /* not reached (fail_msg jumps out) */
}

static bool has_reading(const qd_telemetry_snapshot *s, const char *source)
{
    for (size_t i = 0; i < s->n_readings; i++)
        if (strcmp(s->readings[i].source, source) == 0)
            return true;
    return false;
}

static void assert_note(const qd_reading *r, const char *part)
{
    if (!strstr(r->note, part))
        fail_msg("%s: note \"%s\" lacks \"%s\"", r->source, r->note, part);
}

/* ---- construction ------------------------------------------------------------------------- */

static void test_root_missing(void **state)
{
    fixture *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/not-here", f->root);
    qd_telemetry *t = (qd_telemetry *)&t;
    qr_error err;
    assert_int_equal(qd_telemetry_new(path, &t, &err), QR_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(err.msg, "not-here"));

    put(f, "file", "x");
    snprintf(path, sizeof path, "%s/file", f->root);
    assert_int_equal(qd_telemetry_new(path, &t, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "not a directory"));
}

static void test_empty_tree(void **state)
{
    fixture *f = *state;
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(s->has_cgroup_max || s->has_cgroup_high || s->has_cgroup_current);
    assert_false(s->has_mem_available || s->has_psi || s->has_power);
    const qd_reading *r = find(s, "cgroup memory.max");
    assert_false(r->available);
    assert_note(r, "absent");
    assert_string_equal(r->unit, "bytes");
    assert_false(find(s, "MemAvailable")->available);
    assert_false(find(s, "psi memory avg10")->available);
    assert_note(find(s, "hwmon"), "absent");
    assert_false(find(s, "power_supply")->available);
    assert_false(find(s, "rapl")->available);
}

/* A root given with a trailing slash reads the same tree. */
static void test_root_trailing_slash(void **state)
{
    fixture *f = *state;
    put(f, "proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 2048 kB\n");
    char root[80];
    snprintf(root, sizeof root, "%s//", f->root);
    qr_error err;
    assert_int_equal(qd_telemetry_new(root, &f->t, &err), QR_OK);
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_mem_available);
    assert_int_equal(s->mem_available, 2048 * 1024);
}

/* ---- memory ------------------------------------------------------------------------------- */

static void test_cgroup_max_alone(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.max", "33554432\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_cgroup_max);
    assert_int_equal(s->cgroup_max, 32 * MIB);
    const qd_reading *r = find(s, "cgroup memory.max");
    assert_true(r->available);
    assert_true(r->value == 32.0 * MIB);
    assert_false(s->has_cgroup_high);
    assert_note(find(s, "cgroup memory.high"), "absent");
    assert_false(s->has_cgroup_current);
    assert_false(s->has_mem_available);
}

static void test_cgroup_high_and_current_alone(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.high", "20971520");
    put(f, CG "memory.current", " 1048576 \n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(s->has_cgroup_max);
    assert_true(s->has_cgroup_high);
    assert_int_equal(s->cgroup_high, 20 * MIB);
    assert_true(s->has_cgroup_current);
    assert_int_equal(s->cgroup_current, 1 * MIB);
}

static void test_meminfo_alone(void **state)
{
    fixture *f = *state;
    put(f, "proc/meminfo",
        "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_mem_available);
    assert_int_equal(s->mem_available, 4000000ull * 1024);
    assert_true(find(s, "MemAvailable")->available);
    assert_false(s->has_cgroup_max);
    assert_note(find(s, "cgroup memory.max"), "absent"); /* no proc/self/cgroup */
}

static void test_all_memory_sources(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.max", "67108864\n");
    put(f, CG "memory.high", "50331648\n");
    put(f, CG "memory.current", "10485760\n");
    put(f, "proc/meminfo", "MemAvailable: 1024 kB\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_cgroup_max && s->has_cgroup_high && s->has_cgroup_current);
    assert_true(s->has_mem_available);
    assert_int_equal(s->cgroup_max, 64 * MIB);
    assert_int_equal(s->cgroup_high, 48 * MIB);
    assert_int_equal(s->cgroup_current, 10 * MIB);
    assert_int_equal(s->mem_available, 1 * MIB);
}

static void test_memory_max_unlimited(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.max", "max\n");
    put(f, CG "memory.high", "max\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(s->has_cgroup_max);
    assert_false(s->has_cgroup_high);
    const qd_reading *r = find(s, "cgroup memory.max");
    assert_false(r->available);
    assert_string_equal(r->note, "max (no limit)");
    /* "max" is no number for memory.current */
    put(f, CG "memory.current", "max\n");
    s = read_now(f);
    assert_false(s->has_cgroup_current);
    assert_note(find(s, "cgroup memory.current"), "not a number");
}

static void test_memory_garbage(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    const char *bad[] = {"", "\n", "12abc\n", "-5\n", "+5\n", "0x10\n", "1.5\n", "1 2\n",
                         "99999999999999999999999\n", "maximum\n", "\x01\x02"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(f, CG "memory.max", bad[i]);
        const qd_telemetry_snapshot *s = read_now(f);
        if (s->has_cgroup_max)
            fail_msg("accepted memory.max \"%s\"", bad[i]);
        const qd_reading *r = find(s, "cgroup memory.max");
        assert_false(r->available);
        assert_note(r, "not a number");
    }
    put(f, "proc/meminfo", "MemAvailable: lots kB\n");
    assert_false(read_now(f)->has_mem_available);
    assert_note(find(&f->snap, "MemAvailable"), "not a number");
    put(f, "proc/meminfo", "MemAvailable: 100\n"); /* no unit */
    assert_false(read_now(f)->has_mem_available);
    put(f, "proc/meminfo", "MemAvailable: 99999999999999999999 kB\n"); /* ×1024 overflows */
    assert_false(read_now(f)->has_mem_available);
    put(f, "proc/meminfo", "MemTotal: 100 kB\nMemFree: 50 kB\n");
    assert_false(read_now(f)->has_mem_available);
    assert_note(find(&f->snap, "MemAvailable"), "no MemAvailable");
}

static void test_cgroup_file_quirks(void **state)
{
    fixture *f = *state;
    /* cgroup v1 only */
    put(f, "proc/self/cgroup", "12:memory:/user.slice\n1:name=systemd:/user.slice\n");
    put(f, CG "memory.max", "1048576\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(s->has_cgroup_max);
    assert_note(find(s, "cgroup memory.max"), "cgroup v1 host");
    /* a path that climbs out of the cgroup tree is refused */
    put(f, "proc/self/cgroup", "0::/../../../proc\n");
    s = read_now(f);
    assert_false(s->has_cgroup_max);
    assert_note(find(s, "cgroup memory.max"), "not usable");
    /* the v2 line among v1 lines; the root cgroup reads sys/fs/cgroup itself */
    put(f, "proc/self/cgroup", "3:cpu:/x\n0::/\n");
    put(f, "sys/fs/cgroup/memory.max", "2097152\n");
    s = read_now(f);
    assert_true(s->has_cgroup_max);
    assert_int_equal(s->cgroup_max, 2 * MIB);
}

/* The host's cgroup layout: v2 says 2; on a legacy (v1) or hybrid host, where the memory
 * controller is v1's, "cgroup version" says 1 and why, and every cgroup reading says the host
 * is v1 instead of a bare "absent" (the v2 files are not there, and v1's are not read). */
static void test_cgroup_layout(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.max", "1048576\n");
    const qd_telemetry_snapshot *s = read_now(f);
    const qd_reading *v = find(s, "cgroup version");
    assert_true(v->available && v->value == 2);
    assert_string_equal(v->unit, "");
    assert_true(s->has_cgroup_max);

    /* legacy: v1 hierarchies only, memory among them; a v1 memory limit is there but not read */
    put(f, "proc/self/cgroup", "11:memory:/system.slice/qslmd.service\n"
                               "4:cpu,cpuacct:/system.slice/qslmd.service\n"
                               "1:name=systemd:/system.slice/qslmd.service\n");
    put(f, "sys/fs/cgroup/memory/system.slice/qslmd.service/memory.limit_in_bytes", "1048576\n");
    s = read_now(f);
    v = find(s, "cgroup version");
    assert_true(v->available && v->value == 1);
    assert_note(v, "legacy cgroup v1: v1 memory limits (memory.limit_in_bytes) are not read");
    assert_false(s->has_cgroup_max || s->has_cgroup_high || s->has_cgroup_current || s->has_cgroup_stat);
    assert_note(find(s, "cgroup memory.max"), "cgroup v1 host: qslmd reads cgroup v2 memory limits only");
    assert_note(find(s, "cgroup memory.high"), "cgroup v1 host");
    assert_note(find(s, "cgroup memory unreclaimable"), "cgroup v1 host");
    assert_note(find(s, "psi memory avg10 cgroup"), "cgroup v1 host");

    /* legacy without a memory hierarchy mounted: still v1 */
    put(f, "proc/self/cgroup", "1:name=systemd:/user.slice\n");
    s = read_now(f);
    assert_true(find(s, "cgroup version")->value == 1);
    assert_note(find(s, "cgroup memory.max"), "cgroup v1 host");

    /* hybrid: the 0:: line of v2 (mounted at sys/fs/cgroup/unified) beside a v1 memory line;
     * sys/fs/cgroup/PATH/memory.max would be a v1 tmpfs path, not read */
    put(f, "proc/self/cgroup", "11:memory:/system.slice/qslmd.service\n"
                               "1:name=systemd:/system.slice/qslmd.service\n"
                               "0::/system.slice/qslmd.service\n");
    put(f, "sys/fs/cgroup/unified/cgroup.controllers", "\n");
    s = read_now(f);
    v = find(s, "cgroup version");
    assert_true(v->available && v->value == 1);
    assert_note(v, "hybrid");
    assert_false(s->has_cgroup_max);
    assert_note(find(s, "cgroup memory.max"), "hybrid host, memory controller on cgroup v1");

    /* v2 with a v1 hierarchy of another controller (no memory): v2 */
    put(f, "proc/self/cgroup", "3:cpu:/x\n0::/system.slice/qslmd.service\n");
    s = read_now(f);
    assert_true(find(s, "cgroup version")->value == 2);
    assert_true(s->has_cgroup_max);

    /* no proc/self/cgroup: unknown, said as absent */
    rm(f, "proc/self/cgroup");
    s = read_now(f);
    assert_false(find(s, "cgroup version")->available);
    assert_note(find(s, "cgroup version"), "absent");
}

/* A FIFO where a file should be is refused at once, not read (which would block forever). */
static void test_not_regular_file(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.high", "1\n");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" CG "memory.max", f->root);
    assert_int_equal(mkfifo(path, 0600), 0);
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(s->has_cgroup_max);
    assert_note(find(s, "cgroup memory.max"), "not a regular file");
    assert_true(s->has_cgroup_high);
}

/* memory.stat as Linux 6.1 writes it: the unreclaimable sum is anon + shmem + file_mapped +
 * file_dirty + file_writeback + the kernel parts other than reclaimable slab. */
static const char stat_6_1[] =
    "anon 4202496\nfile 7553024\nkernel 1187840\nkernel_stack 65536\npagetables 159744\n"
    "sec_pagetables 0\npercpu 4320\nsock 8192\nvmalloc 16384\nshmem 12288\nzswap 0\n"
    "zswapped 0\nfile_mapped 3334144\nfile_dirty 4096\nfile_writeback 8192\nswapcached 0\n"
    "anon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon 4190208\nactive_anon 24576\n"
    "inactive_file 5275648\nactive_file 2277376\nunevictable 0\nslab_reclaimable 700000\n"
    "slab_unreclaimable 233472\nslab 933472\nworkingset_refault_anon 0\npgfault 3000\n";

static void test_memory_stat(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.stat", stat_6_1);
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_cgroup_stat);
    uint64_t want = 4202496ull + 12288 + 3334144 + 4096 + 8192 + 65536 + 159744 + 4320 + 8192 + 16384 + 233472;
    assert_int_equal(s->cgroup_unreclaimable, want);
    assert_int_equal(s->cgroup_file, 7553024);
    assert_true(find(s, "cgroup memory unreclaimable")->value == (double)want);
    assert_true(find(s, "cgroup page cache")->value == 7553024.0);
    /* an older kernel without some kernel lines: those count 0 */
    put(f, CG "memory.stat", "anon 100\nfile 50\nfile_mapped 10\n");
    s = read_now(f);
    assert_true(s->has_cgroup_stat);
    assert_int_equal(s->cgroup_unreclaimable, 110);
    /* no anon or no file line, garbage, a prefix of a key: not available */
    const char *bad[] = {"file 50\n", "anon 100\n", "anon x\nfile 1\n", "anon -1\nfile 1\n",
                         "anonymous 5\nfile 1\n", "anon 5\nfile_mapped 1\n", "", "anon\nfile\n",
                         "anon 1 2\nfile 1\n", "anon 99999999999999999999999\nfile 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(f, CG "memory.stat", bad[i]);
        s = read_now(f);
        if (s->has_cgroup_stat)
            fail_msg("accepted memory.stat \"%s\"", bad[i]);
        assert_false(find(s, "cgroup memory unreclaimable")->available);
    }
    rm(f, CG "memory.stat");
    s = read_now(f);
    assert_false(s->has_cgroup_stat);
    assert_note(find(s, "cgroup memory unreclaimable"), "absent");
}

static void test_memory_events(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.events", "low 0\nhigh 1234\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_cgroup_events);
    assert_int_equal(s->events_high, 1234);
    assert_int_equal(s->events_max, 5);
    assert_int_equal(s->events_oom, 3);
    const qd_reading *r = find(s, "cgroup memory.events high");
    assert_true(r->available && r->value == 1234.0);
    assert_note(r, "max 5, oom 2, oom_kill 1");
    put(f, CG "memory.events", "low 0\nhigh 7\n"); /* no max line */
    s = read_now(f);
    assert_false(s->has_cgroup_events);
    put(f, CG "memory.events", "high x\nmax 1\n");
    assert_false(read_now(f)->has_cgroup_events);
}

/* ---- PSI ---------------------------------------------------------------------------------- */

static void test_psi_sources(void **state)
{
    fixture *f = *state;
    put(f, "proc/pressure/memory",
        "some avg10=2.50 avg60=1.00 avg300=0.00 total=123\n"
        "full avg10=1.00 avg60=0.00 avg300=0.00 total=45\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_true(s->has_psi);
    assert_true(s->psi_avg10 > 2.499 && s->psi_avg10 < 2.501);
    assert_note(find(s, "psi memory avg10"), "/proc/pressure/memory");
    /* the machine's "some" total and the read's time, for the policy's "is it still going on" */
    assert_true(s->has_machine_stall);
    assert_int_equal(s->machine_stall_us, 123);
    assert_true(s->read_s == 100.0);
    assert_true(read_at(f, 101.5)->read_s == 101.5);

    /* the larger of the cgroup's and the machine's counts; each is a reading of its own */
    put_cgroup(f);
    put(f, CG "memory.pressure", "some avg10=42.25 avg60=0.10 avg300=0.00 total=9\n"
                                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    s = read_now(f);
    assert_true(s->has_psi);
    assert_true(s->psi_avg10 > 42.249 && s->psi_avg10 < 42.251);
    assert_note(find(s, "psi memory avg10"), "cgroup");
    assert_string_equal(find(s, "psi memory avg10")->unit, "%");
    assert_true(find(s, "psi memory avg10 cgroup")->value == 42.25);
    assert_true(find(s, "psi memory avg10 machine")->value == 2.5);
    assert_true(s->has_cgroup_stall);
    assert_int_equal(s->cgroup_stall_us, 9);
    /* a thrashing neighbour shows in the machine's figure: that one counts then */
    put(f, "proc/pressure/memory", "some avg10=60.00 avg60=1.00 avg300=0.00 total=123\n");
    s = read_now(f);
    assert_true(s->psi_avg10 == 60.0);
    assert_note(find(s, "psi memory avg10"), "/proc/pressure/memory");
    put(f, "proc/pressure/memory", "some avg10=2.50 avg60=1.00 avg300=0.00 total=123\n");

    /* a garbled cgroup file falls back to the machine's */
    put(f, CG "memory.pressure", "some avg10=abc avg60=0.10\n");
    s = read_now(f);
    assert_true(s->has_psi);
    assert_true(s->psi_avg10 > 2.499 && s->psi_avg10 < 2.501);
}

static void test_psi_garbage(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"", "some\n", "full avg10=1.00 avg60=0 avg300=0 total=0\n",
                         "some avg10= avg60=0\n", "some avg10=1.2.3 avg60=0\n",
                         "some avg10=-1.00 avg60=0\n", "some avg10=101.00 avg60=0\n",
                         "some avg10=1. avg60=0\n", "some avg60=1.00 total=1\n",
                         "some avg10=12x avg60=0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(f, "proc/pressure/memory", bad[i]);
        const qd_telemetry_snapshot *s = read_now(f);
        if (s->has_psi)
            fail_msg("accepted PSI \"%s\"", bad[i]);
        assert_false(find(s, "psi memory avg10")->available);
    }
    put(f, "proc/pressure/memory", "some avg10=7 avg60=0.00 avg300=0.00 total=1");
    assert_true(read_now(f)->has_psi);
    assert_true(f->snap.psi_avg10 == 7.0);
    assert_true(f->snap.has_machine_stall);
    /* the machine's total is optional: avg10 alone still counts, without a total */
    put(f, "proc/pressure/memory", "some avg10=7 avg60=0.00 avg300=0.00\n");
    assert_true(read_now(f)->has_psi);
    assert_false(f->snap.has_machine_stall);
    put(f, "proc/pressure/memory", "some avg10=7 avg60=0.00 avg300=0.00 total=x\n");
    assert_true(read_now(f)->has_psi);
    assert_false(f->snap.has_machine_stall);
}

/* ---- files kept open ------------------------------------------------------------------------ */

/* Descriptors this process has open. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

/* Replaces ROOT/rel by renaming a new file over it, as a test tree does (the kept one then has
 * no links). */
static void replace(const fixture *f, const char *rel, const char *content)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/new.tmp", f->root);
    snprintf(path, sizeof path, "%s/%s", f->root, rel);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    assert_int_equal(rename(tmp, path), 0);
}

/* A tick after the first opens nothing (telemetry_fds.c: a service throttled at memory.high
 * sleeps after every open), yet sees every change: a file rewritten in place, one renamed over,
 * one removed, a directory that gains an entry. */
static void test_kept_files(void **state)
{
    fixture *f = *state;
    put_cgroup(f);
    put(f, CG "memory.high", "20971520\n");
    put(f, CG "memory.stat", "anon 100\nfile 200\n");
    put(f, "proc/pressure/memory", "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n");
    put(f, "sys/class/hwmon/hwmon0/name", "ina2xx\n");
    int before = open_fds();
    read_now(f);
    int kept = open_fds();
    assert_true(kept > before);
    assert_true(kept - before <= 16); /* TEL_MAX_OPEN: within the daemon's descriptor reserve */
    const qd_telemetry_snapshot *s = read_now(f);
    assert_int_equal(open_fds(), kept);
    assert_int_equal(s->cgroup_high, 20 * MIB);

    put(f, CG "memory.high", "10485760\n"); /* in place */
    assert_int_equal(read_now(f)->cgroup_high, 10 * MIB);
    replace(f, CG "memory.high", "5242880\n"); /* renamed over: the kept one is unlinked */
    assert_int_equal(read_now(f)->cgroup_high, 5 * MIB);
    assert_int_equal(open_fds(), kept);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->root, CG "memory.high");
    assert_int_equal(unlink(path), 0);
    s = read_now(f);
    assert_false(s->has_cgroup_high);
    assert_int_equal(open_fds(), kept - 1);
    put(f, CG "memory.high", "1048576\n");
    assert_int_equal(read_now(f)->cgroup_high, MIB);

    put(f, "sys/class/hwmon/hwmon1/name", "ina3221\n");
    put(f, "sys/class/hwmon/hwmon1/power1_input", "2000000\n");
    s = read_now(f);
    assert_true(find(s, "hwmon1 ina3221 power1")->value == 2.0);
}

/* ---- power -------------------------------------------------------------------------------- */

static void test_hwmon_power_input(void **state)
{
    fixture *f = *state;
    put(f, "sys/class/hwmon/hwmon0/name", "coretemp\n");
    put(f, "sys/class/hwmon/hwmon0/temp1_input", "45000\n"); /* not a power source */
    put(f, "sys/class/hwmon/hwmon1/name", "ina2xx\n");
    put(f, "sys/class/hwmon/hwmon1/power1_input", "2500000\n");
    put(f, "sys/class/hwmon/hwmon1/in1_input", "5000\n"); /* same rail: not counted twice */
    put(f, "sys/class/hwmon/hwmon1/curr1_input", "500\n");
    put(f, "sys/class/hwmon/hwmon1/power2_input", "1500000\n");
    put(f, "sys/class/hwmon/hwmon1/power2_label", "CPU\n");
    const qd_telemetry_snapshot *s = read_now(f);
    const qd_reading *r = find(s, "hwmon1 ina2xx power1");
    assert_true(r->available);
    assert_true(r->value == 2.5);
    assert_string_equal(r->unit, "W");
    assert_true(find(s, "hwmon1 CPU")->value == 1.5);
    assert_false(has_reading(s, "hwmon1 ina2xx in1*curr1"));
    /* no board rail, no battery, no RAPL: the sum of the channels */
    assert_true(s->has_power);
    assert_true(s->power_w == 4.0);
    assert_string_equal(s->power_source, "hwmon power channels (2)");
    assert_false(has_reading(s, "hwmon")); /* there were power channels */
}

static void test_hwmon_jetson_ina3221(void **state)
{
    fixture *f = *state;
    const char *d = "sys/class/hwmon/hwmon2/";
    char rel[128];
#define PUT(file, text) (snprintf(rel, sizeof rel, "%s%s", d, file), put(f, rel, text))
    PUT("name", "ina3221\n");
    PUT("in1_label", "VDD_IN\n");
    PUT("in1_input", "5080\n");
    PUT("curr1_input", "1000\n");
    PUT("in2_label", "VDD_CPU_GPU_CV\n");
    PUT("in2_input", "5000\n");
    PUT("curr2_input", "400\n");
    PUT("in3_label", "VDD_SOC\n");
    PUT("in3_input", "5000\n");
    PUT("curr3_input", "garbage\n");
    PUT("in4_input", "1200\n"); /* shunt voltage, with the chip's sum current: not a rail */
    PUT("curr4_input", "1400\n");
#undef PUT
    put(f, "sys/class/hwmon/hwmon10/power1_input", "9000000\n"); /* another chip, no label */
    const qd_telemetry_snapshot *s = read_now(f);
    const qd_reading *r = find(s, "hwmon2 VDD_IN");
    assert_true(r->available);
    assert_true(r->value > 5.0799 && r->value < 5.0801);
    assert_true(find(s, "hwmon2 VDD_CPU_GPU_CV")->value == 2.0);
    r = find(s, "hwmon2 VDD_SOC");
    assert_false(r->available);
    assert_note(r, "not a number");
    assert_false(has_reading(s, "hwmon2 ina3221 in4*curr4"));
    /* hwmon2 sorts before hwmon10 */
    size_t i2 = (size_t)(find(s, "hwmon2 VDD_IN") - s->readings);
    size_t i10 = (size_t)(find(s, "hwmon10 power1") - s->readings);
    assert_true(i2 < i10);
    /* the board input rail, not the sum */
    assert_true(s->has_power);
    assert_string_equal(s->power_source, "hwmon2 VDD_IN");
    assert_true(s->power_w > 5.0799 && s->power_w < 5.0801);
}

static void test_hwmon_board_labels(void **state)
{
    fixture *f = *state;
    put(f, "sys/class/hwmon/hwmon0/power1_input", "3000000\n");
    put(f, "sys/class/hwmon/hwmon0/power1_label", "GPU\n");
    put(f, "sys/class/hwmon/hwmon0/power2_input", "7000000\n");
    put(f, "sys/class/hwmon/hwmon0/power2_label", "Total Power\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_string_equal(s->power_source, "hwmon0 Total Power");
    assert_true(s->power_w == 7.0);
    /* Nano's input rail */
    put(f, "sys/class/hwmon/hwmon0/power2_label", "POM_5V_IN\n");
    s = read_now(f);
    assert_string_equal(s->power_source, "hwmon0 POM_5V_IN");
}

static void test_hwmon_unreadable_channel(void **state)
{
    fixture *f = *state;
    put(f, "sys/class/hwmon/hwmon0/power1_input", "1000000\n");
    put(f, "sys/class/hwmon/hwmon0/curr1_input", "100\n"); /* no power: pairs are skipped */
    put(f, "sys/class/hwmon/hwmon1/curr1_input", "100\n"); /* a current without its voltage */
    const qd_telemetry_snapshot *s = read_now(f);
    const qd_reading *r = find(s, "hwmon1 in1*curr1");
    assert_false(r->available);
    assert_note(r, "in1_input absent");
    assert_string_equal(s->power_source, "hwmon0 power1");
    assert_true(s->power_w == 1.0);
}

static void test_power_supply(void **state)
{
    fixture *f = *state;
    put(f, "sys/class/power_supply/AC/type", "Mains\n");
    put(f, "sys/class/power_supply/AC/online", "0\n");
    put(f, "sys/class/power_supply/BAT0/type", "Battery\n");
    put(f, "sys/class/power_supply/BAT0/status", "Discharging\n");
    put(f, "sys/class/power_supply/BAT0/capacity", "87\n");
    put(f, "sys/class/power_supply/BAT0/power_now", "6500000\n");
    const qd_telemetry_snapshot *s = read_now(f);
    assert_false(has_reading(s, "power_supply AC"));
    const qd_reading *r = find(s, "power_supply BAT0");
    assert_true(r->available);
    assert_true(r->value == 6.5);
    assert_note(r, "Discharging");
    r = find(s, "power_supply BAT0 capacity");
    assert_true(r->available && r->value == 87);
    assert_string_equal(r->unit, "%");
    assert_true(s->has_power);
    assert_string_equal(s->power_source, "power_supply BAT0");
    assert_true(s->power_w == 6.5);

    /* voltage × current when power_now is absent; some drivers report a negative current */
    rm(f, "sys/class/power_supply/BAT0/power_now");
    put(f, "sys/class/power_supply/BAT0/voltage_now", "12000000\n");
    put(f, "sys/class/power_supply/BAT0/current_now", "-500000\n");
    s = read_now(f);
    r = find(s, "power_supply BAT0");
    assert_true(r->available);
    assert_true(r->value > 5.9999 && r->value < 6.0001);
    assert_note(r, "voltage_now x current_now");
    assert_true(s->power_w > 5.9999 && s->power_w < 6.0001);

    /* a charging battery is no measure of the board */
    put(f, "sys/class/power_supply/BAT0/status", "Charging\n");
    s = read_now(f);
    assert_true(find(s, "power_supply BAT0")->available);
    assert_false(s->has_power);

    /* garbage */
    put(f, "sys/class/power_supply/BAT0/status", "Discharging\n");
    put(f, "sys/class/power_supply/BAT0/current_now", "n/a\n");
    put(f, "sys/class/power_supply/BAT0/capacity", "150\n");
    s = read_now(f);
    assert_false(find(s, "power_supply BAT0")->available);
    assert_note(find(s, "power_supply BAT0"), "not a number");
    assert_false(find(s, "power_supply BAT0 capacity")->available);
    assert_false(s->has_power);
}

static void put_rapl(const fixture *f, const char *zone, const char *name, const char *uj,
                     const char *range)
{
    char rel[128];
    snprintf(rel, sizeof rel, "sys/class/powercap/%s/name", zone);
    put(f, rel, name);
    snprintf(rel, sizeof rel, "sys/class/powercap/%s/energy_uj", zone);
    put(f, rel, uj);
    snprintf(rel, sizeof rel, "sys/class/powercap/%s/max_energy_range_uj", zone);
    put(f, rel, range);
}

static void test_rapl_rate(void **state)
{
    fixture *f = *state;
    put_rapl(f, "intel-rapl:0", "package-0\n", "1000000\n", "262143328850\n");
    put_rapl(f, "intel-rapl:0:0", "core\n", "500000\n", "262143328850\n"); /* subzone: skipped */
    const qd_telemetry_snapshot *s = read_at(f, 10.0);
    const qd_reading *r = find(s, "rapl package-0");
    assert_false(r->available);
    assert_note(r, "no rate yet");
    assert_false(has_reading(s, "rapl core"));
    assert_false(s->has_power);

    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "9000000\n"); /* 8 J in 2 s */
    s = read_at(f, 12.0);
    r = find(s, "rapl package-0");
    assert_true(r->available);
    assert_true(r->value > 3.9999 && r->value < 4.0001);
    assert_true(s->has_power);
    assert_string_equal(s->power_source, "rapl package-0");

    /* the same instant again keeps the rate */
    s = read_at(f, 12.0);
    assert_true(find(s, "rapl package-0")->available);

    /* two packages are summed */
    put_rapl(f, "intel-rapl:1", "package-1\n", "0\n", "1000000000\n");
    s = read_at(f, 13.0);
    assert_false(find(s, "rapl package-1")->available);
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "10000000\n"); /* 1 J in 1 s */
    put(f, "sys/class/powercap/intel-rapl:1/energy_uj", "2000000\n");  /* 2 J in 1 s */
    s = read_at(f, 14.0);
    assert_true(s->power_w > 2.9999 && s->power_w < 3.0001);
    assert_string_equal(s->power_source, "rapl packages (2)");
}

static void test_rapl_wraparound(void **state)
{
    fixture *f = *state;
    put_rapl(f, "intel-rapl:0", "package-0\n", "999000000\n", "1000000000\n");
    read_at(f, 1.0);
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "2000000\n"); /* 1 J + 2 J over 1 s */
    const qd_telemetry_snapshot *s = read_at(f, 2.0);
    const qd_reading *r = find(s, "rapl package-0");
    assert_true(r->available);
    assert_true(r->value > 2.9999 && r->value < 3.0001);

    /* a counter that goes back with no range to say how: no rate */
    rm(f, "sys/class/powercap/intel-rapl:0/max_energy_range_uj");
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "1000000\n");
    s = read_at(f, 3.0);
    assert_false(find(s, "rapl package-0")->available);
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "1500000\n");
    s = read_at(f, 4.0);
    assert_true(find(s, "rapl package-0")->value > 0.4999);

    /* unreadable counter (energy_uj is root-only on recent kernels): a note */
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "oops\n");
    s = read_at(f, 5.0);
    assert_false(find(s, "rapl package-0")->available);
    assert_note(find(s, "rapl package-0"), "not a number");
}

static void test_rapl_psys_preferred(void **state)
{
    fixture *f = *state;
    put_rapl(f, "intel-rapl:0", "package-0\n", "0\n", "1000000000\n");
    put_rapl(f, "intel-rapl:1", "psys\n", "0\n", "1000000000\n");
    read_at(f, 0.0);
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "3000000\n");
    put(f, "sys/class/powercap/intel-rapl:1/energy_uj", "9000000\n");
    const qd_telemetry_snapshot *s = read_at(f, 1.0);
    assert_string_equal(s->power_source, "rapl psys");
    assert_true(s->power_w > 8.9999 && s->power_w < 9.0001);
}

/* Rule order: board input rail > discharging battery > RAPL > sum of hwmon channels. */
static void test_power_preference(void **state)
{
    fixture *f = *state;
    put(f, "sys/class/hwmon/hwmon0/power1_input", "1000000\n");
    put_rapl(f, "intel-rapl:0", "package-0\n", "0\n", "1000000000\n");
    read_at(f, 0.0);
    put(f, "sys/class/powercap/intel-rapl:0/energy_uj", "5000000\n");
    const qd_telemetry_snapshot *s = read_at(f, 1.0);
    assert_string_equal(s->power_source, "rapl package-0"); /* RAPL > hwmon sum */

    put(f, "sys/class/power_supply/BAT0/type", "Battery\n");
    put(f, "sys/class/power_supply/BAT0/status", "Discharging\n");
    put(f, "sys/class/power_supply/BAT0/power_now", "7000000\n");
    s = read_at(f, 2.0);
    assert_string_equal(s->power_source, "power_supply BAT0"); /* battery > RAPL */

    put(f, "sys/class/hwmon/hwmon1/in1_input", "5000\n");
    put(f, "sys/class/hwmon/hwmon1/curr1_input", "2000\n");
    put(f, "sys/class/hwmon/hwmon1/in1_label", "VDD_IN\n");
    s = read_at(f, 3.0);
    assert_string_equal(s->power_source, "hwmon1 VDD_IN"); /* input rail > battery */
    assert_true(s->power_w == 10.0);
}

/* Many sources: the readings stop at the array's size, and nothing overflows. */
static void test_readings_bounded(void **state)
{
    fixture *f = *state;
    char rel[128];
    for (int h = 0; h < 40; h++)
        for (int k = 1; k <= 9; k++) {
            snprintf(rel, sizeof rel, "sys/class/hwmon/hwmon%d/power%d_input", h, k);
            put(f, rel, "1000000\n");
        }
    const qd_telemetry_snapshot *s = read_now(f);
    assert_int_equal(s->n_readings, QD_TELEMETRY_MAX_READINGS);
    /* the sum does not depend on the readings' room: 32 chips × 8 channels */
    assert_true(s->has_power);
    assert_true(s->power_w == 256.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_root_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_trailing_slash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_max_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_high_and_current_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meminfo_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_memory_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_max_unlimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_file_quirks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_stat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_psi_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_psi_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hwmon_power_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hwmon_jetson_ina3221, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hwmon_board_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hwmon_unreadable_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_supply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rapl_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rapl_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rapl_psys_preferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_preference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readings_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
