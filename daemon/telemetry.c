/* telemetry.c: reading memory limits, memory pressure and power draw from cgroup v2, procfs and
 * sysfs files under a root directory (see telemetry.h for the files).
 *
 * Every file is small and read whole into a fixed 4 KiB buffer; every number is parsed with
 * bounds (strtoull/strtoll with errno and end checks, a hand-written decimal for PSI). Directory
 * scans are bounded (MAX_DIR_ENTRIES read, a few dozen kept). A file that is absent, unreadable
 * or garbage becomes a reading marked unavailable with a note: this file never fails.
 *
 * The board's total power (snapshot.power_w) is the first of, in this order:
 *   1. a hwmon rail that measures the board's input: its label is "VDD_IN" or ends in "_IN"
 *      (the Jetson INA3221 rails: VDD_IN on Xavier/Orin, POM_5V_IN on Nano), or contains
 *      "total" or "input" (any case); the first such rail in hwmon order;
 *   2. the batteries that are discharging (power_supply type "Battery", status "Discharging"):
 *      the sum of their power, since they then feed the whole machine;
 *   3. RAPL: the "psys" zone (whole platform) if it has a rate, else the sum of the "package-*"
 *      zones that have one (a zone has a rate from its second read on);
 *   4. the sum of every other hwmon power channel that could be read.
 * A hwmon chip's in*×curr* pairs are used only when it has no power*_input (a chip that has both
 * measures the same rail twice), and for "ina3221" only channels 1-3 (its curr4 is a sum).
 *
 * Not done here: any averaging or smoothing (the policy's hysteresis does that), cgroup v1. */
#include "telemetry.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL_FILE_MAX 4096   /* every file we read fits; longer ones are cut */
#define MAX_DIR_ENTRIES 1024  /* entries looked at per directory scan */
#define MAX_HWMON_DIRS 32
#define MAX_HWMON_CHANNELS 8  /* power1..8, in0..8 × curr0..8 */
#define MAX_SUPPLIES 8
#define MAX_RAPL_ZONES 8
#define DIR_NAME_MAX 64

/* One RAPL zone's last counter read, kept between reads to make a rate. */
typedef struct {
    bool used;
    char dir[DIR_NAME_MAX]; /* "intel-rapl:0" */
    bool has_prev;
    uint64_t prev_uj;
    double prev_s;
    bool has_rate;
    double rate_w;
} rapl_zone;

struct qd_telemetry {
    char *root; /* without trailing '/'; "" for "/" */
    rapl_zone rapl[MAX_RAPL_ZONES];
};

/* What the board-power rule (see the top comment) has seen during one read. */
typedef struct {
    bool has_input;             /* rule 1 */
    double input_w;
    char input_src[QD_READING_SOURCE_MAX];
    size_t n_batteries;         /* rule 2 */
    double battery_w;
    char battery_src[QD_READING_SOURCE_MAX];
    bool has_psys;              /* rule 3 */
    double psys_w;
    size_t n_packages;
    double package_w;
    char package_src[QD_READING_SOURCE_MAX];
    size_t n_hwmon;             /* rule 4 */
    double hwmon_w;
    char hwmon_src[QD_READING_SOURCE_MAX];
} power_pick;

/* ---- small helpers ---------------------------------------------------------------------- */

/* snprintf into a fixed buffer where cutting the text is acceptable (names, notes). Going
 * through a va_list keeps -Wformat-truncation quiet about the deliberate cut. */
__attribute__((format(printf, 3, 4)))
static void fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A whole string as a non-negative decimal integer. strtoull alone would accept leading
 * blanks, a sign ("-1" wraps to 2^64-1) and trailing junk, so those are checked here. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

/* A whole string as a decimal integer with an optional '-' (hwmon currents, battery currents
 * and powers may be negative, by driver convention). */
static bool parse_i64(const char *s, int64_t *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)d[0]))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

/* "12.34" at s: digits, optionally '.' and digits, as the kernel prints PSI averages. Written
 * by hand because strtod depends on the locale; *end is set after the last digit. */
static bool parse_decimal(const char *s, const char **end, double *out)
{
    const char *p = s;
    double v = 0;
    int digits = 0;
    while (isdigit((unsigned char)*p) && digits < 18) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    if (digits == 0 || isdigit((unsigned char)*p))
        return false;
    if (*p == '.') {
        p++;
        double scale = 0.1;
        int frac = 0;
        while (isdigit((unsigned char)*p) && frac < 18) {
            v += (*p++ - '0') * scale;
            scale /= 10;
            frac++;
        }
        if (frac == 0 || isdigit((unsigned char)*p))
            return false;
    }
    *end = p;
    *out = v;
    return true;
}

static const char *base_name(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    return slash ? slash + 1 : rel;
}

/* ---- files -------------------------------------------------------------------------------- */

typedef enum { RD_OK, RD_ABSENT, RD_FAILED } rd_status;

/* Reads ROOT/rel into buf (NUL-terminated, at most cap-1 bytes: the rest is cut). On failure
 * writes why into note. Opens non-blocking and refuses non-regular files, so a FIFO or a
 * device left in a test tree (or a bad root) cannot hang the event loop. */
static rd_status read_small(const qd_telemetry *t, const char *rel, char *buf, size_t cap,
                            char *note)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", t->root, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        fmt(note, QD_READING_NOTE_MAX, "%s: path too long", base_name(rel));
        return RD_FAILED;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            fmt(note, QD_READING_NOTE_MAX, "%s absent", base_name(rel));
            return RD_ABSENT;
        }
        fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", base_name(rel), strerror(errno));
        return RD_FAILED;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fmt(note, QD_READING_NOTE_MAX, "%s not readable: not a regular file", base_name(rel));
        return RD_FAILED;
    }
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t got = read(fd, buf + len, cap - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", base_name(rel), strerror(e));
            return RD_FAILED;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    return RD_OK;
}

/* Reads a one-line text file (a name, a label, a status), trimmed into out. */
static rd_status read_text(const qd_telemetry *t, const char *rel, char *out, size_t cap,
                           char *note)
{
    char buf[SMALL_FILE_MAX];
    rd_status s = read_small(t, rel, buf, sizeof buf, note);
    if (s == RD_OK) {
        char *line = trim(buf);
        line[strcspn(line, "\n")] = '\0';
        fmt(out, cap, "%s", line);
    }
    return s;
}

/* Writes a note that shows the bad text (cut, non-printables as '?'). */
static void note_garbage(char *note, const char *rel, const char *text)
{
    char shown[33];
    size_t i = 0;
    for (; text[i] && i + 1 < sizeof shown; i++)
        shown[i] = isprint((unsigned char)text[i]) ? text[i] : '?';
    shown[i] = '\0';
    fmt(note, QD_READING_NOTE_MAX, "%s not a number: \"%s\"", base_name(rel), shown);
}

/* A file holding one integer. */
static rd_status read_i64(const qd_telemetry *t, const char *rel, int64_t *out, char *note)
{
    char buf[SMALL_FILE_MAX];
    rd_status s = read_small(t, rel, buf, sizeof buf, note);
    if (s != RD_OK)
        return s;
    char *v = trim(buf);
    if (!parse_i64(v, out)) {
        note_garbage(note, rel, v);
        return RD_FAILED;
    }
    return RD_OK;
}

/* ---- readings ----------------------------------------------------------------------------- */

/* The next free reading with its source and unit set, or NULL once the array is full (the
 * rest is dropped silently; every caller accepts NULL). */
__attribute__((format(printf, 3, 4)))
static qd_reading *add_reading(qd_telemetry_snapshot *s, const char *unit, const char *f, ...)
{
    if (s->n_readings >= QD_TELEMETRY_MAX_READINGS)
        return NULL;
    qd_reading *r = &s->readings[s->n_readings++];
    memset(r, 0, sizeof *r);
    va_list ap;
    va_start(ap, f);
    vsnprintf(r->source, sizeof r->source, f, ap);
    va_end(ap);
    fmt(r->unit, sizeof r->unit, "%s", unit);
    return r;
}

static void set_value(qd_reading *r, double v, const char *note)
{
    if (!r)
        return;
    r->available = true;
    r->value = v;
    fmt(r->note, sizeof r->note, "%s", note ? note : "");
}

static void set_unavailable(qd_reading *r, const char *note)
{
    if (!r)
        return;
    r->available = false;
    r->value = 0;
    fmt(r->note, sizeof r->note, "%s", note);
}

/* ---- memory ------------------------------------------------------------------------------- */

/* The service's cgroup v2 directory, relative to ROOT ("sys/fs/cgroup/PATH"), from the "0::"
 * line of proc/self/cgroup. A path with ".." is refused: it could leave the cgroup tree. */
static bool find_cgroup(const qd_telemetry *t, char *dir, size_t cap, char *note)
{
    char buf[SMALL_FILE_MAX];
    if (read_small(t, "proc/self/cgroup", buf, sizeof buf, note) != RD_OK)
        return false;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        const char *path = trim(line + 3);
        if (path[0] != '/' || strstr(path, "/..") || strlen(path) + 16 >= cap) {
            fmt(note, QD_READING_NOTE_MAX, "cgroup path not usable: \"%.40s\"", path);
            return false;
        }
        fmt(dir, cap, "sys/fs/cgroup%s", strcmp(path, "/") == 0 ? "" : path);
        return true;
    }
    fmt(note, QD_READING_NOTE_MAX, "no cgroup v2 entry (0::) in proc/self/cgroup");
    return false;
}

/* One of memory.max/high/current: bytes, or "max" (no limit) where allow_max. */
static void read_cgroup_file(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg,
                             const char *cg_note, const char *file, bool allow_max,
                             bool *has, uint64_t *out)
{
    qd_reading *r = add_reading(s, "bytes", "cgroup %s", file);
    if (!cg) {
        set_unavailable(r, cg_note);
        return;
    }
    char rel[PATH_MAX], buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    fmt(rel, sizeof rel, "%s/%s", cg, file);
    if (read_small(t, rel, buf, sizeof buf, note) != RD_OK) {
        set_unavailable(r, note);
        return;
    }
    char *v = trim(buf);
    uint64_t bytes = 0;
    if (allow_max && strcmp(v, "max") == 0) {
        set_unavailable(r, "max (no limit)");
    } else if (parse_u64(v, &bytes)) {
        *has = true;
        *out = bytes;
        set_value(r, (double)bytes, NULL);
    } else {
        note_garbage(note, rel, v);
        set_unavailable(r, note);
    }
}

/* MemAvailable from proc/meminfo ("MemAvailable:   123456 kB"). */
static void read_meminfo(const qd_telemetry *t, qd_telemetry_snapshot *s)
{
    qd_reading *r = add_reading(s, "bytes", "MemAvailable");
    char buf[SMALL_FILE_MAX], note[QD_READING_NOTE_MAX];
    if (read_small(t, "proc/meminfo", buf, sizeof buf, note) != RD_OK) {
        set_unavailable(r, note);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "MemAvailable:", 13) != 0)
            continue;
        char *v = trim(line + 13);
        size_t len = strlen(v);
        uint64_t kib = 0;
        if (len > 2 && strcmp(v + len - 2, "kB") == 0) {
            v[len - 2] = '\0';
            v = trim(v);
            if (parse_u64(v, &kib) && kib <= UINT64_MAX / 1024) {
                s->has_mem_available = true;
                s->mem_available = kib * 1024;
                set_value(r, (double)s->mem_available, NULL);
                return;
            }
        }
        note_garbage(note, "MemAvailable", trim(line + 13));
        set_unavailable(r, note);
        return;
    }
    set_unavailable(r, "no MemAvailable line in proc/meminfo");
}

/* The "some" line's avg10 from a PSI file ("some avg10=0.50 avg60=... total=..."), in percent.
 * text is modified (cut into lines). */
static bool parse_psi(char *text, double *avg10)
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
        if (!parse_decimal(key + 7, &end, &v) || (*end != ' ' && *end != '\0'))
            return false;
        if (v > 100)
            return false;
        *avg10 = v;
        return true;
    }
    return false;
}

/* Memory PSI: the cgroup's memory.pressure when it can be read (it is about this service),
 * else the machine's proc/pressure/memory. */
static void read_psi(const qd_telemetry *t, qd_telemetry_snapshot *s, const char *cg)
{
    qd_reading *r = add_reading(s, "%", "psi memory avg10");
    char buf[SMALL_FILE_MAX], cg_note[QD_READING_NOTE_MAX] = "no cgroup", note[QD_READING_NOTE_MAX];
    double v = 0;
    if (cg) {
        char rel[PATH_MAX];
        fmt(rel, sizeof rel, "%s/memory.pressure", cg);
        if (read_small(t, rel, buf, sizeof buf, cg_note) == RD_OK) {
            if (parse_psi(buf, &v)) {
                s->has_psi = true;
                s->psi_avg10 = v;
                set_value(r, v, "from the cgroup's memory.pressure");
                return;
            }
            fmt(cg_note, sizeof cg_note, "memory.pressure has no \"some avg10=\"");
        }
    }
    if (read_small(t, "proc/pressure/memory", buf, sizeof buf, note) == RD_OK) {
        if (parse_psi(buf, &v)) {
            s->has_psi = true;
            s->psi_avg10 = v;
            set_value(r, v, "from /proc/pressure/memory");
            return;
        }
        fmt(note, sizeof note, "/proc/pressure/memory has no \"some avg10=\"");
    }
    char both[QD_READING_NOTE_MAX];
    fmt(both, sizeof both, "cgroup: %s; %s", cg_note, note);
    set_unavailable(r, both);
}

/* ---- directory scans ---------------------------------------------------------------------- */

typedef bool (*name_filter)(const char *name);

static int cmp_names(const void *a, const void *b)
{
    return strverscmp((const char *)a, (const char *)b); /* hwmon2 before hwmon10 */
}

/* Up to cap entry names of ROOT/rel that keep() accepts, in version order. Looks at no more
 * than MAX_DIR_ENTRIES entries. Returns -1 (and a note) if the directory cannot be opened. */
static int list_dir(const qd_telemetry *t, const char *rel, name_filter keep,
                    char (*names)[DIR_NAME_MAX], size_t cap, char *note)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", t->root, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        fmt(note, QD_READING_NOTE_MAX, "path too long");
        return -1;
    }
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            fmt(note, QD_READING_NOTE_MAX, "%s absent", rel);
        else
            fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", rel, strerror(errno));
        return -1;
    }
    size_t count = 0;
    struct dirent *e;
    for (int seen = 0; seen < MAX_DIR_ENTRIES && count < cap && (e = readdir(d)); seen++) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= DIR_NAME_MAX || !keep(e->d_name))
            continue;
        fmt(names[count++], DIR_NAME_MAX, "%s", e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof names[0], cmp_names);
    return (int)count;
}

static bool prefix_then_digits(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || !name[n])
        return false;
    for (const char *p = name + n; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static bool is_hwmon(const char *name) { return prefix_then_digits(name, "hwmon"); }
static bool is_any(const char *name) { (void)name; return true; }
/* Top-level RAPL zones only ("intel-rapl:0", not its subzone "intel-rapl:0:0"). */
static bool is_rapl_zone(const char *name) { return prefix_then_digits(name, "intel-rapl:"); }

/* ---- power -------------------------------------------------------------------------------- */

static bool contains_nocase(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (strncasecmp(s, word, n) == 0)
            return true;
    return false;
}

/* Rule 1 of the top comment: does this hwmon label name the board's input rail? */
static bool is_board_input_label(const char *label)
{
    size_t n = strlen(label);
    return (n >= 3 && strcasecmp(label + n - 3, "_IN") == 0) || contains_nocase(label, "total") ||
           contains_nocase(label, "input");
}

/* Adds w to a sum of sources named by the only source, or by what and a count once several. */
static void add_to_sum(size_t *count, double *sum, char *src, double w, const char *name,
                       const char *what)
{
    if (*count == 0)
        fmt(src, QD_READING_SOURCE_MAX, "%s", name);
    else
        fmt(src, QD_READING_SOURCE_MAX, "%s (%zu)", what, *count + 1);
    (*count)++;
    *sum += w;
}

/* A hwmon channel's power, as the board-input candidate (rule 1) or a part of the fallback
 * sum (rule 4). */
static void hwmon_power(power_pick *p, const char *name, const char *label, double w)
{
    if (label[0] && is_board_input_label(label)) {
        if (!p->has_input) {
            p->has_input = true;
            p->input_w = w;
            fmt(p->input_src, sizeof p->input_src, "%s", name);
        }
        return;
    }
    add_to_sum(&p->n_hwmon, &p->hwmon_w, p->hwmon_src, w, name, "hwmon power channels");
}

/* The label of a channel from the first of the given *_label files that exists, or "". */
static void channel_label(const qd_telemetry *t, const char *dir, const char *a, const char *b,
                          char *out, size_t cap)
{
    char rel[PATH_MAX], note[QD_READING_NOTE_MAX];
    out[0] = '\0';
    fmt(rel, sizeof rel, "%s/%s", dir, a);
    if (read_text(t, rel, out, cap, note) == RD_OK && out[0])
        return;
    out[0] = '\0';
    if (b) {
        fmt(rel, sizeof rel, "%s/%s", dir, b);
        if (read_text(t, rel, out, cap, note) != RD_OK)
            out[0] = '\0';
    }
}

/* One hwmon chip: its power*_input channels (µW), or, if it has none, its in*_input (mV) ×
 * curr*_input (mA) pairs. Channels whose file is absent are not channels; a chip with none is
 * not a power source and adds no reading. Returns how many channels it had. */
static size_t read_hwmon_chip(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p,
                              const char *hw)
{
    char dir[PATH_MAX], rel[PATH_MAX], note[QD_READING_NOTE_MAX], chip[32], label[48];
    char name[QD_READING_SOURCE_MAX];
    char unlabelled[48]; /* "hwmon1 ina2xx": names the channels that have no label */
    fmt(dir, sizeof dir, "sys/class/hwmon/%s", hw);
    fmt(rel, sizeof rel, "%s/name", dir);
    if (read_text(t, rel, chip, sizeof chip, note) != RD_OK)
        chip[0] = '\0';
    fmt(unlabelled, sizeof unlabelled, "%s%s%s", hw, chip[0] ? " " : "", chip);
    size_t channels = 0;
    for (int k = 1; k <= MAX_HWMON_CHANNELS; k++) {
        int64_t uw = 0;
        fmt(rel, sizeof rel, "%s/power%d_input", dir, k);
        rd_status st = read_i64(t, rel, &uw, note);
        if (st == RD_ABSENT)
            continue;
        channels++;
        char lname[24];
        fmt(lname, sizeof lname, "power%d_label", k);
        channel_label(t, dir, lname, NULL, label, sizeof label);
        if (label[0])
            fmt(name, sizeof name, "%s %s", hw, label);
        else
            fmt(name, sizeof name, "%s power%d", unlabelled, k);
        qd_reading *r = add_reading(s, "W", "%s", name);
        if (st != RD_OK) {
            set_unavailable(r, note);
            continue;
        }
        double w = fabs((double)uw) / 1e6;
        set_value(r, w, "power_input");
        hwmon_power(p, name, label, w);
    }
    if (channels > 0)
        return channels;
    int last = strcmp(chip, "ina3221") == 0 ? 3 : MAX_HWMON_CHANNELS;
    for (int k = 0; k <= last; k++) {
        int64_t mv = 0, ma = 0;
        fmt(rel, sizeof rel, "%s/curr%d_input", dir, k);
        rd_status cs = read_i64(t, rel, &ma, note);
        if (cs == RD_ABSENT)
            continue;
        channels++;
        char lin[24], lcurr[24];
        fmt(lin, sizeof lin, "in%d_label", k);
        fmt(lcurr, sizeof lcurr, "curr%d_label", k);
        channel_label(t, dir, lin, lcurr, label, sizeof label);
        if (label[0])
            fmt(name, sizeof name, "%s %s", hw, label);
        else
            fmt(name, sizeof name, "%s in%d*curr%d", unlabelled, k, k);
        qd_reading *r = add_reading(s, "W", "%s", name);
        if (cs != RD_OK) {
            set_unavailable(r, note);
            continue;
        }
        fmt(rel, sizeof rel, "%s/in%d_input", dir, k);
        if (read_i64(t, rel, &mv, note) != RD_OK) {
            set_unavailable(r, note);
            continue;
        }
        double w = fabs((double)mv * (double)ma) / 1e6;
        set_value(r, w, "in_input x curr_input");
        hwmon_power(p, name, label, w);
    }
    return channels;
}

static void read_hwmon(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p)
{
    char names[MAX_HWMON_DIRS][DIR_NAME_MAX], note[QD_READING_NOTE_MAX];
    int n = list_dir(t, "sys/class/hwmon", is_hwmon, names, MAX_HWMON_DIRS, note);
    size_t channels = 0;
    for (int i = 0; i < n; i++)
        channels += read_hwmon_chip(t, s, p, names[i]);
    if (n < 0)
        set_unavailable(add_reading(s, "W", "hwmon"), note);
    else if (channels == 0)
        set_unavailable(add_reading(s, "W", "hwmon"), "no power channels");
}

/* One power_supply: power_now (µW) or voltage_now (µV) × current_now (µA), and capacity (%).
 * A supply with none of those files and a type other than Battery (a mains adapter) is not
 * reported. Returns whether it was. */
static bool read_supply(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p,
                        const char *name)
{
    char dir[PATH_MAX], rel[PATH_MAX], note[QD_READING_NOTE_MAX], vnote[QD_READING_NOTE_MAX];
    char type[32], status[32];
    fmt(dir, sizeof dir, "sys/class/power_supply/%s", name);
    fmt(rel, sizeof rel, "%s/type", dir);
    if (read_text(t, rel, type, sizeof type, note) != RD_OK)
        type[0] = '\0';
    fmt(rel, sizeof rel, "%s/status", dir);
    if (read_text(t, rel, status, sizeof status, note) != RD_OK)
        fmt(status, sizeof status, "status unknown");
    bool battery = strcmp(type, "Battery") == 0;

    int64_t pw = 0, uv = 0, ua = 0;
    fmt(rel, sizeof rel, "%s/power_now", dir);
    rd_status ps = read_i64(t, rel, &pw, note);
    rd_status vs = RD_ABSENT, cs = RD_ABSENT;
    if (ps != RD_OK) {
        fmt(rel, sizeof rel, "%s/voltage_now", dir);
        vs = read_i64(t, rel, &uv, vnote);
        if (vs == RD_OK) {
            fmt(rel, sizeof rel, "%s/current_now", dir);
            cs = read_i64(t, rel, &ua, vnote);
        }
    }
    if (!battery && ps == RD_ABSENT && vs == RD_ABSENT && cs == RD_ABSENT)
        return false;

    char src[QD_READING_SOURCE_MAX], how[QD_READING_NOTE_MAX];
    fmt(src, sizeof src, "power_supply %s", name);
    qd_reading *r = add_reading(s, "W", "%s", src);
    double w = -1;
    if (ps == RD_OK) {
        w = fabs((double)pw) / 1e6;
        fmt(how, sizeof how, "%s, power_now", status);
    } else if (vs == RD_OK && cs == RD_OK) {
        w = fabs((double)uv * (double)ua) / 1e12;
        fmt(how, sizeof how, "%s, voltage_now x current_now", status);
    } else if (ps == RD_ABSENT) {
        fmt(how, sizeof how, "%s; %s", status, vnote);
    } else {
        fmt(how, sizeof how, "%s; %s", status, note);
    }
    if (w < 0) {
        set_unavailable(r, how);
    } else {
        set_value(r, w, how);
        if (battery && strcmp(status, "Discharging") == 0)
            add_to_sum(&p->n_batteries, &p->battery_w, p->battery_src, w, src,
                       "power_supply discharging batteries");
    }

    int64_t pct = 0;
    fmt(rel, sizeof rel, "%s/capacity", dir);
    rd_status st = read_i64(t, rel, &pct, note);
    if (st == RD_OK && (pct < 0 || pct > 100)) {
        fmt(note, sizeof note, "capacity out of range: %lld", (long long)pct);
        st = RD_FAILED;
    }
    if (st != RD_ABSENT) {
        qd_reading *c = add_reading(s, "%", "power_supply %s capacity", name);
        if (st == RD_OK)
            set_value(c, (double)pct, status);
        else
            set_unavailable(c, note);
    }
    return true;
}

static void read_supplies(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p)
{
    char names[MAX_SUPPLIES][DIR_NAME_MAX], note[QD_READING_NOTE_MAX];
    int n = list_dir(t, "sys/class/power_supply", is_any, names, MAX_SUPPLIES, note);
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= read_supply(t, s, p, names[i]);
    if (n < 0)
        set_unavailable(add_reading(s, "W", "power_supply"), note);
    else if (!any)
        set_unavailable(add_reading(s, "W", "power_supply"), "no battery or power reading");
}

/* The state slot of a RAPL zone, made on first sight; NULL if all slots are taken. */
static rapl_zone *rapl_slot(qd_telemetry *t, const char *dir)
{
    rapl_zone *free_slot = NULL;
    for (size_t i = 0; i < MAX_RAPL_ZONES; i++) {
        if (t->rapl[i].used && strcmp(t->rapl[i].dir, dir) == 0)
            return &t->rapl[i];
        if (!t->rapl[i].used && !free_slot)
            free_slot = &t->rapl[i];
    }
    if (free_slot) {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->used = true;
        fmt(free_slot->dir, sizeof free_slot->dir, "%s", dir);
    }
    return free_slot;
}

/* Energy used since the last read, in µJ, given a counter that wraps at range (0: unknown).
 * Returns false when the counter went back and no range says by how much it wrapped. */
static bool rapl_delta(uint64_t prev, uint64_t cur, uint64_t range, uint64_t *out)
{
    if (cur >= prev) {
        *out = cur - prev;
        return true;
    }
    if (range == 0 || prev > range)
        return false;
    *out = (range - prev) + cur;
    return true;
}

/* One RAPL zone: a rate in W from this read's counter and the last one. A zone read twice at
 * the same now_s keeps its last rate. */
static void read_rapl_zone(qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p,
                           const char *dir_name, double now_s)
{
    char dir[PATH_MAX], rel[PATH_MAX], note[QD_READING_NOTE_MAX], zone[32];
    fmt(dir, sizeof dir, "sys/class/powercap/%s", dir_name);
    fmt(rel, sizeof rel, "%s/name", dir);
    if (read_text(t, rel, zone, sizeof zone, note) != RD_OK || !zone[0])
        fmt(zone, sizeof zone, "%s", dir_name);
    char src[QD_READING_SOURCE_MAX];
    fmt(src, sizeof src, "rapl %s", zone);
    qd_reading *r = add_reading(s, "W", "%s", src);

    int64_t uj = 0, range = 0;
    fmt(rel, sizeof rel, "%s/energy_uj", dir);
    if (read_i64(t, rel, &uj, note) != RD_OK || uj < 0) {
        if (uj < 0)
            fmt(note, sizeof note, "energy_uj negative");
        set_unavailable(r, note);
        return;
    }
    fmt(rel, sizeof rel, "%s/max_energy_range_uj", dir);
    if (read_i64(t, rel, &range, note) != RD_OK || range < 0)
        range = 0;

    rapl_zone *z = rapl_slot(t, dir_name);
    if (!z) {
        set_unavailable(r, "too many RAPL zones to follow");
        return;
    }
    if (z->has_prev && now_s > z->prev_s) {
        uint64_t d = 0;
        if (rapl_delta(z->prev_uj, (uint64_t)uj, (uint64_t)range, &d)) {
            z->has_rate = true;
            z->rate_w = (double)d / 1e6 / (now_s - z->prev_s);
        } else {
            z->has_rate = false;
        }
    }
    if (!z->has_prev || now_s > z->prev_s) {
        z->has_prev = true;
        z->prev_uj = (uint64_t)uj;
        z->prev_s = now_s;
    }
    if (!z->has_rate) {
        set_unavailable(r, "no rate yet");
        return;
    }
    set_value(r, z->rate_w, "energy_uj rate");
    if (strcmp(zone, "psys") == 0 && !p->has_psys) {
        p->has_psys = true;
        p->psys_w = z->rate_w;
    } else if (strncmp(zone, "package", 7) == 0) {
        add_to_sum(&p->n_packages, &p->package_w, p->package_src, z->rate_w, src,
                   "rapl packages");
    }
}

static void read_rapl(qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p, double now_s)
{
    char names[MAX_RAPL_ZONES][DIR_NAME_MAX], note[QD_READING_NOTE_MAX];
    int n = list_dir(t, "sys/class/powercap", is_rapl_zone, names, MAX_RAPL_ZONES, note);
    for (int i = 0; i < n; i++)
        read_rapl_zone(t, s, p, names[i], now_s);
    if (n < 0)
        set_unavailable(add_reading(s, "W", "rapl"), note);
    else if (n == 0)
        set_unavailable(add_reading(s, "W", "rapl"), "no intel-rapl zones");
}

/* The board's total, by the rule in the top comment. */
static void pick_power(const power_pick *p, qd_telemetry_snapshot *s)
{
    const char *src = NULL;
    double w = 0;
    if (p->has_input) {
        src = p->input_src;
        w = p->input_w;
    } else if (p->n_batteries > 0) {
        src = p->battery_src;
        w = p->battery_w;
    } else if (p->has_psys) {
        src = "rapl psys";
        w = p->psys_w;
    } else if (p->n_packages > 0) {
        src = p->package_src;
        w = p->package_w;
    } else if (p->n_hwmon > 0) {
        src = p->hwmon_src;
        w = p->hwmon_w;
    }
    if (!src)
        return;
    s->has_power = true;
    s->power_w = w;
    fmt(s->power_source, sizeof s->power_source, "%s", src);
}

/* ---- public ------------------------------------------------------------------------------- */

qr_status qd_telemetry_new(const char *root, qd_telemetry **out, qr_error *err)
{
    *out = NULL;
    if (!root || !root[0])
        return qr_fail(err, QR_ERR_INVALID, "telemetry: empty root directory");
    struct stat st;
    if (stat(root, &st) != 0)
        return qr_fail(err, QR_ERR_IO, "telemetry root %s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return qr_fail(err, QR_ERR_IO, "telemetry root %s: not a directory", root);
    qd_telemetry *t = calloc(1, sizeof *t);
    if (!t || !(t->root = strdup(root))) {
        free(t);
        return qr_fail(err, QR_ERR_NOMEM, "telemetry: out of memory");
    }
    size_t n = strlen(t->root);
    while (n > 0 && t->root[n - 1] == '/')
        t->root[--n] = '\0';
    *out = t;
    return QR_OK;
}

void qd_telemetry_free(qd_telemetry *t)
{
    if (!t)
        return;
    free(t->root);
    free(t);
}

void qd_telemetry_read(qd_telemetry *t, double now_s, qd_telemetry_snapshot *out)
{
    memset(out, 0, sizeof *out);
    char cg[PATH_MAX], cg_note[QD_READING_NOTE_MAX];
    bool has_cg = find_cgroup(t, cg, sizeof cg, cg_note);
    const char *cgp = has_cg ? cg : NULL;
    read_cgroup_file(t, out, cgp, cg_note, "memory.max", true, &out->has_cgroup_max,
                     &out->cgroup_max);
    read_cgroup_file(t, out, cgp, cg_note, "memory.high", true, &out->has_cgroup_high,
                     &out->cgroup_high);
    read_cgroup_file(t, out, cgp, cg_note, "memory.current", false, &out->has_cgroup_current,
                     &out->cgroup_current);
    read_meminfo(t, out);
    read_psi(t, out, cgp);

    power_pick p;
    memset(&p, 0, sizeof p);
    read_hwmon(t, out, &p);
    read_supplies(t, out, &p);
    read_rapl(t, out, &p, now_s);
    pick_power(&p, out);
}
