/* telemetry_memory.c: the memory sources: the service's cgroup v2 files, MemAvailable and
 * memory PSI (the files are listed in telemetry.h; what the policy makes of them, policy.h).
 *
 * memory.stat is read for what the kernel cannot simply take back from the service; the policy
 * uses it instead of memory.current, which also counts page cache the kernel drops at will (a
 * service at its memory.high sits there with its cache trimmed, whatever its real needs).
 * memory.events and memory.pressure's cumulative stall time are passed on as totals: the
 * policy compares them with what it saw at its last decision, so a `status` read in between
 * cannot hide a throttling from it. */
#include "telemetry_impl.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* How the host mounts cgroups, as far as memory goes: qslmd reads cgroup v2's memory files only,
 * and on a legacy (v1 only) or hybrid host (v2 mounted beside v1 controllers, at
 * sys/fs/cgroup/unified) the memory controller is v1's. Without this, status would show each
 * cgroup reading "absent" with no word of why. */
typedef enum { CG_UNKNOWN, CG_V2, CG_HYBRID, CG_V1 } cg_layout;

/* The layout from proc/self/cgroup's lines ("0::/PATH" for v2, "N:CONTROLLERS:/PATH" for a v1
 * hierarchy) and, to tell hybrid from legacy, whether sys/fs/cgroup/unified is there. The
 * reading "cgroup version" says it: 2, or 1 (legacy or hybrid) with what that means. */
static cg_layout read_cgroup_layout(const qd_telemetry *t, qd_telemetry_snapshot *s, char *note)
{
    qd_reading *r = tel_add_reading(s, "", "cgroup version");
    char buf[SMALL_FILE_MAX], unused[QD_READING_NOTE_MAX];
    if (tel_read_small(t, "proc/self/cgroup", buf, sizeof buf, note) != RD_OK) {
        tel_set_unavailable(r, note);
        return CG_UNKNOWN;
    }
    bool v2 = false, v1_memory = false, v1_any = false;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "0::", 3) == 0) {
            v2 = true;
            continue;
        }
        char *colon = strchr(line, ':'), *end = colon ? strchr(colon + 1, ':') : NULL;
        if (!end)
            continue;
        v1_any = true;
        *end = '\0';
        for (char *c = strtok_r(colon + 1, ",", &end); c; c = strtok_r(NULL, ",", &end))
            v1_memory |= strcmp(c, "memory") == 0;
    }
    if (v1_memory || (!v2 && v1_any)) {
        bool hybrid = v2 || tel_read_small(t, "sys/fs/cgroup/unified/cgroup.controllers", buf, sizeof buf,
                                           unused) != RD_ABSENT;
        tel_fmt(note, QD_READING_NOTE_MAX, "%s: qslmd reads cgroup v2 memory limits only, not v1's",
                hybrid ? "hybrid host, memory controller on cgroup v1" : "cgroup v1 host");
        tel_set_value(r, 1, hybrid ? "hybrid (v1 controllers, v2 at sys/fs/cgroup/unified): v1 memory "
                                     "limits are not read"
                                   : "legacy cgroup v1: v1 memory limits (memory.limit_in_bytes) are not read");
        return hybrid ? CG_HYBRID : CG_V1;
    }
    if (!v2) {
        tel_fmt(note, QD_READING_NOTE_MAX, "no cgroup v2 entry (0::) in proc/self/cgroup");
        tel_set_unavailable(r, note);
        return CG_UNKNOWN;
    }
    tel_set_value(r, 2, "unified");
    return CG_V2;
}

/* The service's cgroup v2 directory, relative to ROOT ("sys/fs/cgroup/PATH"), from the "0::"
 * line of proc/self/cgroup. A path with ".." is refused: it could leave the cgroup tree. */
static bool find_cgroup(const qd_telemetry *t, char *dir, size_t cap, char *note)
{
    char buf[SMALL_FILE_MAX];
    if (tel_read_small(t, "proc/self/cgroup", buf, sizeof buf, note) != RD_OK)
        return false;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        const char *path = tel_trim(line + 3);
        if (path[0] != '/' || strstr(path, "/..") || strlen(path) + 16 >= cap) {
            tel_fmt(note, QD_READING_NOTE_MAX, "cgroup path not usable: \"%.40s\"", path);
            return false;
        }
        tel_fmt(dir, cap, "sys/fs/cgroup%s", strcmp(path, "/") == 0 ? "" : path);
        return true;
    }
    tel_fmt(note, QD_READING_NOTE_MAX, "no cgroup v2 entry (0::) in proc/self/cgroup");
    return false;
}

/* One of memory.max/high/current: bytes, or "max" (no limit) where allow_max. */
static void read_cgroup_file(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg,
                             const char *cg_note, const char *file, bool allow_max,
                             bool *has, uint64_t *out)
{
    qd_reading *r = tel_add_reading(s, "bytes", "cgroup %s", file);
    if (!cg) {
        tel_set_unavailable(r, cg_note);
        return;
    }
    char rel[PATH_MAX], buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    tel_fmt(rel, sizeof rel, "%s/%s", cg, file);
    if (tel_read_small(t, rel, buf, sizeof buf, note) != RD_OK) {
        tel_set_unavailable(r, note);
        return;
    }
    char *v = tel_trim(buf);
    uint64_t bytes = 0;
    if (allow_max && strcmp(v, "max") == 0) {
        tel_set_unavailable(r, "max (no limit)");
    } else if (tel_parse_u64(v, &bytes)) {
        *has = true;
        *out = bytes;
        tel_set_value(r, (double)bytes, NULL);
    } else {
        tel_note_garbage(note, rel, v);
        tel_set_unavailable(r, note);
    }
}

/* MemAvailable from proc/meminfo ("MemAvailable:   123456 kB"). */
static void read_meminfo(const qd_telemetry *t, qd_telemetry_snapshot *s)
{
    qd_reading *r = tel_add_reading(s, "bytes", "MemAvailable");
    char buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    if (tel_read_small(t, "proc/meminfo", buf, sizeof buf, note) != RD_OK) {
        tel_set_unavailable(r, note);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "MemAvailable:", 13) != 0)
            continue;
        char *v = tel_trim(line + 13);
        size_t len = strlen(v);
        uint64_t kib = 0;
        if (len > 2 && strcmp(v + len - 2, "kB") == 0) {
            v[len - 2] = '\0';
            v = tel_trim(v);
            if (tel_parse_u64(v, &kib) && kib <= UINT64_MAX / 1024) {
                s->has_mem_available = true;
                s->mem_available = kib * 1024;
                tel_set_value(r, (double)s->mem_available, NULL);
                return;
            }
        }
        tel_note_garbage(note, "MemAvailable", tel_trim(line + 13));
        tel_set_unavailable(r, note);
        return;
    }
    tel_set_unavailable(r, "no MemAvailable line in proc/meminfo");
}

/* "key value" lines (memory.stat, memory.events): the value of key, if present and a number. */
static bool keyed_value(const char *text, const char *key, uint64_t *out)
{
    size_t n = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, key, n) != 0 || line[n] != ' ')
            continue;
        char num[32];
        size_t len = strcspn(line + n + 1, "\n");
        if (len == 0 || len >= sizeof num)
            return false;
        memcpy(num, line + n + 1, len);
        num[len] = '\0';
        return tel_parse_u64(num, out);
    }
    return false;
}

/* memory.stat: the unreclaimable part and the page cache. Needs at least anon and file; the
 * kernel parts absent from an older kernel count as 0. */
static void read_cgroup_stat(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg,
                             const char *cg_note)
{
    qd_reading *un = tel_add_reading(s, "bytes", "cgroup memory unreclaimable");
    qd_reading *fc = tel_add_reading(s, "bytes", "cgroup page cache");
    char rel[PATH_MAX], buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    if (!cg) {
        tel_set_unavailable(un, cg_note);
        tel_set_unavailable(fc, cg_note);
        return;
    }
    tel_fmt(rel, sizeof rel, "%s/memory.stat", cg);
    if (tel_read_small(t, rel, buf, sizeof buf, note) != RD_OK) {
        tel_set_unavailable(un, note);
        tel_set_unavailable(fc, note);
        return;
    }
    uint64_t anon, file;
    if (!keyed_value(buf, "anon", &anon) || !keyed_value(buf, "file", &file)) {
        tel_set_unavailable(un, "memory.stat has no anon or no file line");
        tel_set_unavailable(fc, "memory.stat has no anon or no file line");
        return;
    }
    static const char *const kept[] = {"shmem", "file_mapped", "file_dirty", "file_writeback",
                                       "kernel_stack", "pagetables", "percpu", "sock", "vmalloc",
                                       "slab_unreclaimable"};
    uint64_t total = anon;
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        uint64_t v = 0;
        if (keyed_value(buf, kept[i], &v) && v <= UINT64_MAX - total)
            total += v;
    }
    s->has_cgroup_stat = true;
    s->cgroup_unreclaimable = total;
    s->cgroup_file = file;
    tel_set_value(un, (double)total, "memory.stat: anon, shmem, mapped, dirty and kernel memory");
    tel_set_value(fc, (double)file, "memory.stat file: the kernel reclaims what is not mapped");
}

/* memory.events: the totals of high, max and oom (+ oom_kill). */
static void read_cgroup_events(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg,
                               const char *cg_note)
{
    qd_reading *r = tel_add_reading(s, "events", "cgroup memory.events high");
    char rel[PATH_MAX], buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    if (!cg) {
        tel_set_unavailable(r, cg_note);
        return;
    }
    tel_fmt(rel, sizeof rel, "%s/memory.events", cg);
    if (tel_read_small(t, rel, buf, sizeof buf, note) != RD_OK) {
        tel_set_unavailable(r, note);
        return;
    }
    uint64_t high, max, oom = 0, kill = 0;
    if (!keyed_value(buf, "high", &high) || !keyed_value(buf, "max", &max)) {
        tel_set_unavailable(r, "memory.events has no high or no max line");
        return;
    }
    keyed_value(buf, "oom", &oom);
    keyed_value(buf, "oom_kill", &kill);
    s->has_cgroup_events = true;
    s->events_high = high;
    s->events_max = max;
    s->events_oom = oom + kill;
    char what[QD_READING_NOTE_MAX];
    tel_fmt(what, sizeof what, "since the cgroup was made; max %llu, oom %llu, oom_kill %llu",
            (unsigned long long)max, (unsigned long long)oom, (unsigned long long)kill);
    tel_set_value(r, (double)high, what);
}

/* The "some" line of a PSI file ("some avg10=0.50 avg60=... avg300=... total=N"): avg10 in
 * percent, and total (µs) when asked for (has_total NULL: it must be there; else *has_total says
 * whether it was). text is modified (cut into lines). */
static bool parse_psi(char *text, double *avg10, uint64_t *total, bool *has_total)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "some ", 5) != 0)
            continue;
        const char *key = strstr(line, " avg10=");
        if (!key)
            return false;
        const char *end = NULL;
        double v = 0;
        if (!tel_parse_decimal(key + 7, &end, &v) || (*end != ' ' && *end != '\0'))
            return false;
        if (v > 100)
            return false;
        *avg10 = v;
        if (total) {
            const char *tk = strstr(line, " total=");
            bool ok = tk && tel_parse_u64(tk + 7, total);
            if (!has_total && !ok)
                return false;
            if (has_total)
                *has_total = ok;
        }
        return true;
    }
    return false;
}

/* Memory PSI, the service's (its cgroup's memory.pressure) and the machine's (proc/pressure/
 * memory), each a reading; snapshot.psi_avg10 is the larger, so pressure anywhere counts:
 * other services' stalls show in the machine's figure first. */
static void read_psi(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg,
                     const char *cg_note)
{
    qd_reading *r = tel_add_reading(s, "%", "psi memory avg10");
    qd_reading *rc = tel_add_reading(s, "%", "psi memory avg10 cgroup");
    qd_reading *rs = tel_add_reading(s, "%", "psi memory avg10 machine");
    char buf[SMALL_FILE_MAX], cnote[QD_READING_NOTE_MAX], snote[QD_READING_NOTE_MAX];
    tel_fmt(cnote, sizeof cnote, "%s", cg ? "" : cg_note);
    bool has_c = false, has_s = false;
    double vc = 0, vs = 0;
    if (cg) {
        char rel[PATH_MAX];
        tel_fmt(rel, sizeof rel, "%s/memory.pressure", cg);
        if (tel_read_small(t, rel, buf, sizeof buf, cnote) == RD_OK) {
            uint64_t total = 0;
            has_c = parse_psi(buf, &vc, &total, NULL);
            if (has_c) {
                s->has_cgroup_stall = true;
                s->cgroup_stall_us = total;
                tel_set_value(rc, vc, "the cgroup's memory.pressure");
            } else {
                tel_fmt(cnote, sizeof cnote, "memory.pressure has no \"some avg10=... total=\"");
            }
        }
    }
    if (!has_c)
        tel_set_unavailable(rc, cnote);
    if (tel_read_small(t, "proc/pressure/memory", buf, sizeof buf, snote) == RD_OK) {
        has_s = parse_psi(buf, &vs, &s->machine_stall_us, &s->has_machine_stall);
        if (has_s)
            tel_set_value(rs, vs, "/proc/pressure/memory");
        else
            tel_fmt(snote, sizeof snote, "/proc/pressure/memory has no \"some avg10=\"");
    }
    if (!has_s)
        tel_set_unavailable(rs, snote);
    if (!has_c && !has_s) {
        char both[QD_READING_NOTE_MAX];
        tel_fmt(both, sizeof both, "cgroup: %s; %s", cnote[0] ? cnote : "none", snote);
        tel_set_unavailable(r, both);
        return;
    }
    s->has_psi = true;
    s->psi_avg10 = has_c && (!has_s || vc >= vs) ? vc : vs;
    tel_set_value(r, s->psi_avg10, has_c && (!has_s || vc >= vs) ? "from the cgroup's memory.pressure"
                                                                 : "from /proc/pressure/memory");
}

void tel_read_memory(const qd_telemetry *t, qd_telemetry_snapshot *out)
{
    char cg[PATH_MAX], cg_note[QD_READING_NOTE_MAX];
    cg_layout layout = read_cgroup_layout(t, out, cg_note);
    bool has_cg = layout == CG_V2 && find_cgroup(t, cg, sizeof cg, cg_note);
    const char *cgp = has_cg ? cg : NULL;
    read_cgroup_file(t, out, cgp, cg_note, "memory.max", true, &out->has_cgroup_max, &out->cgroup_max);
    read_cgroup_file(t, out, cgp, cg_note, "memory.high", true, &out->has_cgroup_high, &out->cgroup_high);
    read_cgroup_file(t, out, cgp, cg_note, "memory.current", false, &out->has_cgroup_current,
                     &out->cgroup_current);
    read_cgroup_stat(t, out, cgp, cg_note);
    read_cgroup_events(t, out, cgp, cg_note);
    read_meminfo(t, out);
    read_psi(t, out, cgp, cg_note);
}
