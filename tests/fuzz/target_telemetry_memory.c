/* target_telemetry_memory.c: fuzz the memory telemetry's parsers (daemon/telemetry_memory.c)
 * through the same path as a real read: the input, cut at NUL bytes, becomes the files of a
 * sysfs/proc-shaped tree (memory.stat, memory.events, memory.pressure, /proc/pressure/memory,
 * /proc/meminfo, memory.max, in that order; missing parts are absent files), then
 * qd_telemetry_read reads it. A read never fails; what it reports must hold together: every
 * reading's text terminated, PSI within 0..100. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "telemetry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const files[] = {
    "sys/fs/cgroup/q.service/memory.stat",     "sys/fs/cgroup/q.service/memory.events",
    "sys/fs/cgroup/q.service/memory.pressure", "proc/pressure/memory",
    "proc/meminfo",                            "sys/fs/cgroup/q.service/memory.max",
};
#define N_FILES (sizeof files / sizeof files[0])

static char root[64];

static void put(const char *rel, const uint8_t *p, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(void)
{
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The tree's directories and proc/self/cgroup, once per process (removed at exit). */
static void make_tree(void)
{
    snprintf(root, sizeof root, "/tmp/qslm-fuzz-tel-XXXXXX");
    if (!mkdtemp(root))
        abort();
    atexit(remove_tree);
    const char *dirs[] = {"proc", "proc/self", "proc/pressure", "sys", "sys/fs", "sys/fs/cgroup",
                          "sys/fs/cgroup/q.service"};
    char path[256];
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        if (mkdir(path, 0755) != 0)
            abort();
    }
    put("proc/self/cgroup", (const uint8_t *)"0::/q.service\n", 14);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        make_tree();
    size_t at = 0;
    for (size_t i = 0; i < N_FILES; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", root, files[i]);
        if (at > size) {
            unlink(path);
            continue;
        }
        const uint8_t *nul = memchr(data + at, 0, size - at);
        size_t n = nul ? (size_t)(nul - (data + at)) : size - at;
        put(files[i], data + at, n);
        at += n + 1;
    }
    qd_telemetry *t = NULL;
    qr_error err;
    if (qd_telemetry_new(root, &t, &err) != QR_OK)
        abort();
    static qd_telemetry_snapshot s; /* large: not on libFuzzer's stack */
    qd_telemetry_read(t, 1.0, &s);
    qd_telemetry_free(t);
    if (s.n_readings > QD_TELEMETRY_MAX_READINGS)
        abort();
    for (size_t i = 0; i < s.n_readings; i++)
        if (!memchr(s.readings[i].source, 0, sizeof s.readings[i].source) ||
            !memchr(s.readings[i].note, 0, sizeof s.readings[i].note) || !memchr(s.readings[i].unit, 0, sizeof s.readings[i].unit))
            abort();
    if (s.has_psi && !(s.psi_avg10 >= 0 && s.psi_avg10 <= 100))
        abort();
    return 0;
}
