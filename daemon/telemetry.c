/* telemetry.c: reading the power draw from sysfs files under a root directory, and the whole
 * snapshot (see telemetry.h for the files; memory is telemetry_memory.c's, the shared file
 * readers telemetry_files.c's).
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
#include "telemetry_impl.h"

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
        tel_fmt(src, QD_READING_SOURCE_MAX, "%s", name);
    else
        tel_fmt(src, QD_READING_SOURCE_MAX, "%s (%zu)", what, *count + 1);
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
            tel_fmt(p->input_src, sizeof p->input_src, "%s", name);
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
    tel_fmt(rel, sizeof rel, "%s/%s", dir, a);
    if (tel_read_text(t, rel, out, cap, note) == RD_OK && out[0])
        return;
    out[0] = '\0';
    if (b) {
        tel_fmt(rel, sizeof rel, "%s/%s", dir, b);
        if (tel_read_text(t, rel, out, cap, note) != RD_OK)
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
    tel_fmt(dir, sizeof dir, "sys/class/hwmon/%s", hw);
    tel_fmt(rel, sizeof rel, "%s/name", dir);
    if (tel_read_text(t, rel, chip, sizeof chip, note) != RD_OK)
        chip[0] = '\0';
    tel_fmt(unlabelled, sizeof unlabelled, "%s%s%s", hw, chip[0] ? " " : "", chip);
    size_t channels = 0;
    for (int k = 1; k <= MAX_HWMON_CHANNELS; k++) {
        int64_t uw = 0;
        tel_fmt(rel, sizeof rel, "%s/power%d_input", dir, k);
        rd_status st = tel_read_i64(t, rel, &uw, note);
        if (st == RD_ABSENT)
            continue;
        channels++;
        char lname[24];
        tel_fmt(lname, sizeof lname, "power%d_label", k);
        channel_label(t, dir, lname, NULL, label, sizeof label);
        if (label[0])
            tel_fmt(name, sizeof name, "%s %s", hw, label);
        else
            tel_fmt(name, sizeof name, "%s power%d", unlabelled, k);
        qd_reading *r = tel_add_reading(s, "W", "%s", name);
        if (st != RD_OK) {
            tel_set_unavailable(r, note);
            continue;
        }
        double w = fabs((double)uw) / 1e6;
        tel_set_value(r, w, "power_input");
        hwmon_power(p, name, label, w);
    }
    if (channels > 0)
        return channels;
    int last = strcmp(chip, "ina3221") == 0 ? 3 : MAX_HWMON_CHANNELS;
    for (int k = 0; k <= last; k++) {
        int64_t mv = 0, ma = 0;
        tel_fmt(rel, sizeof rel, "%s/curr%d_input", dir, k);
        rd_status cs = tel_read_i64(t, rel, &ma, note);
        if (cs == RD_ABSENT)
            continue;
        channels++;
        char lin[24], lcurr[24];
        tel_fmt(lin, sizeof lin, "in%d_label", k);
        tel_fmt(lcurr, sizeof lcurr, "curr%d_label", k);
        channel_label(t, dir, lin, lcurr, label, sizeof label);
        if (label[0])
            tel_fmt(name, sizeof name, "%s %s", hw, label);
        else
            tel_fmt(name, sizeof name, "%s in%d*curr%d", unlabelled, k, k);
        qd_reading *r = tel_add_reading(s, "W", "%s", name);
        if (cs != RD_OK) {
            tel_set_unavailable(r, note);
            continue;
        }
        tel_fmt(rel, sizeof rel, "%s/in%d_input", dir, k);
        if (tel_read_i64(t, rel, &mv, note) != RD_OK) {
            tel_set_unavailable(r, note);
            continue;
        }
        double w = fabs((double)mv * (double)ma) / 1e6;
        tel_set_value(r, w, "in_input x curr_input");
        hwmon_power(p, name, label, w);
    }
    return channels;
}

static void read_hwmon(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p)
{
    char names[MAX_HWMON_DIRS][DIR_NAME_MAX], note[QD_READING_NOTE_MAX];
    int n = tel_list_dir(t, "sys/class/hwmon", is_hwmon, names, MAX_HWMON_DIRS, note);
    size_t channels = 0;
    for (int i = 0; i < n; i++)
        channels += read_hwmon_chip(t, s, p, names[i]);
    if (n < 0)
        tel_set_unavailable(tel_add_reading(s, "W", "hwmon"), note);
    else if (channels == 0)
        tel_set_unavailable(tel_add_reading(s, "W", "hwmon"), "no power channels");
}

/* One power_supply: power_now (µW) or voltage_now (µV) × current_now (µA), and capacity (%).
 * A supply with none of those files and a type other than Battery (a mains adapter) is not
 * reported. Returns whether it was. */
static bool read_supply(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p,
                        const char *name)
{
    char dir[PATH_MAX], rel[PATH_MAX], note[QD_READING_NOTE_MAX], vnote[QD_READING_NOTE_MAX];
    char type[32], status[32];
    tel_fmt(dir, sizeof dir, "sys/class/power_supply/%s", name);
    tel_fmt(rel, sizeof rel, "%s/type", dir);
    if (tel_read_text(t, rel, type, sizeof type, note) != RD_OK)
        type[0] = '\0';
    tel_fmt(rel, sizeof rel, "%s/status", dir);
    if (tel_read_text(t, rel, status, sizeof status, note) != RD_OK)
        tel_fmt(status, sizeof status, "status unknown");
    bool battery = strcmp(type, "Battery") == 0;

    int64_t pw = 0, uv = 0, ua = 0;
    tel_fmt(rel, sizeof rel, "%s/power_now", dir);
    rd_status ps = tel_read_i64(t, rel, &pw, note);
    rd_status vs = RD_ABSENT, cs = RD_ABSENT;
    if (ps != RD_OK) {
        tel_fmt(rel, sizeof rel, "%s/voltage_now", dir);
        vs = tel_read_i64(t, rel, &uv, vnote);
        if (vs == RD_OK) {
            tel_fmt(rel, sizeof rel, "%s/current_now", dir);
            cs = tel_read_i64(t, rel, &ua, vnote);
        }
    }
    if (!battery && ps == RD_ABSENT && vs == RD_ABSENT && cs == RD_ABSENT)
        return false;

    char src[QD_READING_SOURCE_MAX], how[QD_READING_NOTE_MAX];
    tel_fmt(src, sizeof src, "power_supply %s", name);
    qd_reading *r = tel_add_reading(s, "W", "%s", src);
    double w = -1;
    if (ps == RD_OK) {
        w = fabs((double)pw) / 1e6;
        tel_fmt(how, sizeof how, "%s, power_now", status);
    } else if (vs == RD_OK && cs == RD_OK) {
        w = fabs((double)uv * (double)ua) / 1e12;
        tel_fmt(how, sizeof how, "%s, voltage_now x current_now", status);
    } else if (ps == RD_ABSENT) {
        tel_fmt(how, sizeof how, "%s; %s", status, vnote);
    } else {
        tel_fmt(how, sizeof how, "%s; %s", status, note);
    }
    if (w < 0) {
        tel_set_unavailable(r, how);
    } else {
        tel_set_value(r, w, how);
        if (battery && strcmp(status, "Discharging") == 0)
            add_to_sum(&p->n_batteries, &p->battery_w, p->battery_src, w, src,
                       "power_supply discharging batteries");
    }

    int64_t pct = 0;
    tel_fmt(rel, sizeof rel, "%s/capacity", dir);
    rd_status st = tel_read_i64(t, rel, &pct, note);
    if (st == RD_OK && (pct < 0 || pct > 100)) {
        tel_fmt(note, sizeof note, "capacity out of range: %lld", (long long)pct);
        st = RD_FAILED;
    }
    if (st != RD_ABSENT) {
        qd_reading *c = tel_add_reading(s, "%", "power_supply %s capacity", name);
        if (st == RD_OK)
            tel_set_value(c, (double)pct, status);
        else
            tel_set_unavailable(c, note);
    }
    return true;
}

static void read_supplies(const qd_telemetry *t, qd_telemetry_snapshot *s, power_pick *p)
{
    char names[MAX_SUPPLIES][DIR_NAME_MAX], note[QD_READING_NOTE_MAX];
    int n = tel_list_dir(t, "sys/class/power_supply", is_any, names, MAX_SUPPLIES, note);
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= read_supply(t, s, p, names[i]);
    if (n < 0)
        tel_set_unavailable(tel_add_reading(s, "W", "power_supply"), note);
    else if (!any)
        tel_set_unavailable(tel_add_reading(s, "W", "power_supply"), "no battery or power reading");
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
        tel_fmt(free_slot->dir, sizeof free_slot->dir, "%s", dir);
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
    tel_fmt(dir, sizeof dir, "sys/class/powercap/%s", dir_name);
    tel_fmt(rel, sizeof rel, "%s/name", dir);
    if (tel_read_text(t, rel, zone, sizeof zone, note) != RD_OK || !zone[0])
        tel_fmt(zone, sizeof zone, "%s", dir_name);
    char src[QD_READING_SOURCE_MAX];
    tel_fmt(src, sizeof src, "rapl %s", zone);
    qd_reading *r = tel_add_reading(s, "W", "%s", src);

    int64_t uj = 0, range = 0;
    tel_fmt(rel, sizeof rel, "%s/energy_uj", dir);
    if (tel_read_i64(t, rel, &uj, note) != RD_OK || uj < 0) {
        if (uj < 0)
            tel_fmt(note, sizeof note, "energy_uj negative");
        tel_set_unavailable(r, note);
        return;
    }
    tel_fmt(rel, sizeof rel, "%s/max_energy_range_uj", dir);
    if (tel_read_i64(t, rel, &range, note) != RD_OK || range < 0)
        range = 0;

    rapl_zone *z = rapl_slot(t, dir_name);
    if (!z) {
        tel_set_unavailable(r, "too many RAPL zones to follow");
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
        tel_set_unavailable(r, "no rate yet");
        return;
    }
    tel_set_value(r, z->rate_w, "energy_uj rate");
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
    int n = tel_list_dir(t, "sys/class/powercap", is_rapl_zone, names, MAX_RAPL_ZONES, note);
    for (int i = 0; i < n; i++)
        read_rapl_zone(t, s, p, names[i], now_s);
    if (n < 0)
        tel_set_unavailable(tel_add_reading(s, "W", "rapl"), note);
    else if (n == 0)
        tel_set_unavailable(tel_add_reading(s, "W", "rapl"), "no intel-rapl zones");
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
    tel_fmt(s->power_source, sizeof s->power_source, "%s", src);
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
    t->kept = tel_kept_new(); /* NULL: every read opens its file, which still works */
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
    tel_kept_free(t->kept);
    free(t->root);
    free(t);
}

void qd_telemetry_read(qd_telemetry *t, double now_s, qd_telemetry_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->read_s = now_s;
    tel_read_memory(t, out);

    power_pick p;
    memset(&p, 0, sizeof p);
    read_hwmon(t, out, &p);
    read_supplies(t, out, &p);
    read_rapl(t, out, &p, now_s);
    pick_power(&p, out);
}
