/* telemetry.h: what the machine says about the memory and power qslmd may use.
 *
 * Every file is read under a root directory ("/" in production; a fake tree in tests), so the
 * same code reads a real cgroup and a test's sysfs-shaped directory. Sources:
 *   - cgroup v2: the service's cgroup from ROOT/proc/self/cgroup ("0::/PATH"), then
 *     ROOT/sys/fs/cgroup/PATH/{memory.max,memory.high,memory.current,memory.stat,
 *     memory.events,memory.pressure}; on a cgroup v1 or hybrid host (the memory controller on a
 *     v1 line of proc/self/cgroup) none of them, and the reading "cgroup version" says so;
 *   - ROOT/proc/meminfo MemAvailable; ROOT/proc/pressure/memory (the machine's memory PSI,
 *     read beside the cgroup's: either one can say memory is short);
 *   - power: ROOT/sys/class/hwmon/hwmonN (power*_input in µW, or in*_input mV × curr*_input mA,
 *     with labels from *_label: the Jetson INA3221 rails such as VDD_IN), ROOT/sys/class/
 *     power_supply/NAME (power_now µW, or voltage_now µV × current_now µA; capacity; status), and
 *     RAPL ROOT/sys/class/powercap/intel-rapl:N/energy_uj (a rate from two reads).
 * A source that is missing, unreadable or holds garbage is a reading marked unavailable with a
 * note saying why; it is never an error. Not thread-safe: one reader (the event loop).
 * Bounded: at most 32 hwmon chips (8 channels each), 8 power supplies and 8 RAPL zones are read,
 * each file at most 4 KiB; readings past QD_TELEMETRY_MAX_READINGS are dropped (the power
 * choice still sees them). */
#ifndef QD_TELEMETRY_H
#define QD_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define QD_TELEMETRY_MAX_READINGS 48
#define QD_READING_SOURCE_MAX 96
#define QD_READING_NOTE_MAX 128

/* One source as read now. */
typedef struct {
    char source[QD_READING_SOURCE_MAX]; /* "cgroup memory.max", "MemAvailable",
                                           "psi memory avg10", "hwmon1 VDD_IN", ... */
    char unit[8];                       /* "bytes", "%", "W" */
    bool available;
    double value;                       /* in unit; meaningless when !available */
    char note[QD_READING_NOTE_MAX];     /* why unavailable ("absent", "not readable: ...",
                                           "not a number: ..."), or what it means; "" if none */
} qd_reading;

typedef struct {
    /* memory, bytes; has_* false when the source is absent, unreadable or unlimited ("max") */
    bool has_cgroup_max, has_cgroup_high, has_cgroup_current, has_mem_available;
    uint64_t cgroup_max, cgroup_high, cgroup_current, mem_available;
    /* memory.stat: the service's memory the kernel cannot simply drop (see policy.h for why
     * each part counts): anon + shmem + file_mapped + file_dirty + file_writeback + kernel
     * (kernel_stack, pagetables, percpu, sock, vmalloc, slab_unreclaimable) */
    bool has_cgroup_stat;
    uint64_t cgroup_unreclaimable;
    uint64_t cgroup_file;   /* page cache charged to the service (mapped or not) */
    /* memory.events, cumulative since the cgroup was made: the policy watches them grow */
    bool has_cgroup_events;
    uint64_t events_high, events_max, events_oom; /* "high", "max", "oom" + "oom_kill" */
    /* the cgroup's memory.pressure "some" total= (µs the service's tasks stalled on memory,
     * cumulative): how long the kernel made it wait, between two decisions */
    bool has_cgroup_stall;
    uint64_t cgroup_stall_us;
    /* the same total for the whole machine (/proc/pressure/memory's "some" line): whether a
     * stall is still going on, which avg10 (an average that takes tens of seconds to forget a
     * stall that ended) cannot say, is read from how the totals grow */
    bool has_machine_stall;
    uint64_t machine_stall_us;
    double read_s;          /* the now_s the snapshot was read at */
    /* not read from the system: the caller fills it in after qd_telemetry_read, which leaves
     * it unset. The bytes of variant images the service held while the snapshot was read
     * (qd_engine_held_bytes, the larger of its values before and after the read), which the
     * policy subtracts from cgroup_unreclaimable to find what others use */
    bool has_held;
    uint64_t held_bytes;
    bool has_psi;           /* memory pressure, "some" avg10 in percent: the larger of the */
    double psi_avg10;       /* cgroup's and the machine's */
    /* power drawn now, watts: the board's total if a source gives it, with the name of the
     * source it came from. Preference (telemetry.c's top comment has the detail): a hwmon rail
     * labelled as the board input (VDD_IN, *_IN, "total", "input"), else discharging
     * batteries, else RAPL psys or the sum of package zones, else the sum of hwmon channels */
    bool has_power;
    double power_w;
    char power_source[QD_READING_SOURCE_MAX];
    /* every source, for `status` */
    qd_reading readings[QD_TELEMETRY_MAX_READINGS];
    size_t n_readings;
} qd_telemetry_snapshot;

typedef struct qd_telemetry qd_telemetry;

/* Finds the sources under root (the directory must exist; QR_ERR_IO otherwise). Sources are
 * looked for again on every read, so ones that appear later are picked up. */
qr_status qd_telemetry_new(const char *root, qd_telemetry **out, qr_error *err);
void qd_telemetry_free(qd_telemetry *t);

/* Reads every source now. now_s: a monotonic clock in seconds (RAPL rates are energy deltas
 * over it; the first read of a RAPL zone gives no rate yet). Never fails. */
void qd_telemetry_read(qd_telemetry *t, double now_s, qd_telemetry_snapshot *out);

#endif
