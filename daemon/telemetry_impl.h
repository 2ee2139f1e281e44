/* telemetry_impl.h: what telemetry.c (power), telemetry_memory.c (cgroup, meminfo, PSI) and
 * telemetry_files.c (the readers they share) have in common. Private to telemetry*.c. */
#ifndef QD_TELEMETRY_IMPL_H
#define QD_TELEMETRY_IMPL_H

#include <dirent.h>
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

/* Files and directories kept open between reads (telemetry_fds.c says why). */
#define TEL_MAX_OPEN 16
#define TEL_KEPT_PATH_MAX 160
typedef struct tel_kept_files tel_kept_files;

struct qd_telemetry {
    char *root; /* without trailing '/'; "" for "/" */
    rapl_zone rapl[MAX_RAPL_ZONES];
    tel_kept_files *kept; /* NULL: nothing is kept (out of memory at start): open each read */
};

tel_kept_files *tel_kept_new(void);
void tel_kept_free(tel_kept_files *c);
/* The kept descriptor of ROOT/rel while it is still that file, else -1 (and it is let go). */
int tel_kept_fd(tel_kept_files *c, const char *rel);
/* The kept directory, rewound, while it is still there; else NULL (and it is let go). */
DIR *tel_kept_dir(tel_kept_files *c, const char *rel);
/* Lets go of rel (a read of it failed). */
void tel_kept_forget(tel_kept_files *c, const char *rel);
/* Keeps fd (or d) for rel; false when there is no room: the caller closes it then. */
bool tel_kept_add_fd(tel_kept_files *c, const char *rel, int fd);
bool tel_kept_add_dir(tel_kept_files *c, const char *rel, DIR *d);

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
