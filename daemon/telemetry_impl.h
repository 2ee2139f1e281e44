/* telemetry_impl.h: what telemetry.c (power), telemetry_memory.c (cgroup, meminfo, PSI) and
 * telemetry_files.c (the readers they share) have in common. Private to telemetry*.c. */
#ifndef QD_TELEMETRY_IMPL_H
#define QD_TELEMETRY_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "telemetry.h"

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

typedef enum { RD_OK, RD_ABSENT, RD_FAILED } rd_status;
typedef bool (*name_filter)(const char *name);

/* snprintf into a fixed buffer where cutting the text is acceptable (names, notes). */
__attribute__((format(printf, 3, 4)))
void tel_fmt(char *buf, size_t cap, const char *f, ...);
char *tel_trim(char *s);
/* A whole string as a non-negative decimal integer (no blanks, sign or trailing junk). */
bool tel_parse_u64(const char *s, uint64_t *out);
/* A whole string as a decimal integer with an optional '-'. */
bool tel_parse_i64(const char *s, int64_t *out);
/* "12.34" at s, locale-independent; *end is set after the last digit. */
bool tel_parse_decimal(const char *s, const char **end, double *out);
const char *tel_base_name(const char *rel);

/* Reads ROOT/rel into buf (NUL-terminated, cut at cap-1 bytes); a note says why on failure.
 * Non-blocking, regular files only: a FIFO in a test tree cannot hang the event loop. */
rd_status tel_read_small(const qd_telemetry *t, const char *rel, char *buf, size_t cap, char *note);
/* A one-line text file (a name, a label, a status), trimmed. */
rd_status tel_read_text(const qd_telemetry *t, const char *rel, char *out, size_t cap, char *note);
/* A file holding one integer. */
rd_status tel_read_i64(const qd_telemetry *t, const char *rel, int64_t *out, char *note);
/* A note that shows the bad text (cut, non-printables as '?'). */
void tel_note_garbage(char *note, const char *rel, const char *text);
/* Up to cap entry names of ROOT/rel that keep() accepts, in version order; -1 and a note if the
 * directory cannot be opened. */
int tel_list_dir(const qd_telemetry *t, const char *rel, name_filter keep, char (*names)[DIR_NAME_MAX],
                 size_t cap, char *note);

/* The next free reading with its source and unit set, or NULL once the array is full. */
__attribute__((format(printf, 3, 4)))
qd_reading *tel_add_reading(qd_telemetry_snapshot *s, const char *unit, const char *f, ...);
void tel_set_value(qd_reading *r, double v, const char *note);
void tel_set_unavailable(qd_reading *r, const char *note);

/* The memory sources (telemetry_memory.c), in the order status lists them. */
void tel_read_memory(const qd_telemetry *t, qd_telemetry_snapshot *out);

#endif
