/* telemetry_files.c: the small file and directory readers every telemetry source uses (see
 * telemetry_impl.h): bounded reads under the telemetry root, strict number parsing, readings. */
#include "telemetry_impl.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------- */

/* snprintf into a fixed buffer where cutting the text is acceptable (names, notes). Going
 * through a va_list keeps -Wformat-truncation quiet about the deliberate cut. */
void tel_fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

char *tel_trim(char *s)
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
bool tel_parse_u64(const char *s, uint64_t *out)
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
bool tel_parse_i64(const char *s, int64_t *out)
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
bool tel_parse_decimal(const char *s, const char **end, double *out)
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

const char *tel_base_name(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    return slash ? slash + 1 : rel;
}

/* ---- files -------------------------------------------------------------------------------- */

/* Reads fd from offset 0 into buf (NUL-terminated, cut at cap-1 bytes); false with errno set on
 * failure. pread: a kept file is read from its start again (telemetry_fds.c). */
static bool read_from_start(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t got = pread(fd, buf + len, cap - 1 - len, (off_t)len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return false;
        if (got == 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    return true;
}

/* Reads ROOT/rel into buf (NUL-terminated, at most cap-1 bytes: the rest is cut). On failure
 * writes why into note. Opens non-blocking and refuses non-regular files, so a FIFO or a
 * device left in a test tree (or a bad root) cannot hang the event loop. The file is kept open
 * for the next read when there is room (telemetry_fds.c: a throttled service must not open). */
rd_status tel_read_small(const qd_telemetry *t, const char *rel, char *buf, size_t cap,
                            char *note)
{
    int kept = tel_kept_fd(t->kept, rel);
    if (kept >= 0) {
        if (read_from_start(kept, buf, cap))
            return RD_OK;
        tel_kept_forget(t->kept, rel); /* say, its cgroup went: the path again */
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", t->root, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        tel_fmt(note, QD_READING_NOTE_MAX, "%s: path too long", tel_base_name(rel));
        return RD_FAILED;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            tel_fmt(note, QD_READING_NOTE_MAX, "%s absent", tel_base_name(rel));
            return RD_ABSENT;
        }
        tel_fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", tel_base_name(rel), strerror(errno));
        return RD_FAILED;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        tel_fmt(note, QD_READING_NOTE_MAX, "%s not readable: not a regular file", tel_base_name(rel));
        return RD_FAILED;
    }
    if (!read_from_start(fd, buf, cap)) {
        int e = errno;
        close(fd);
        tel_fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", tel_base_name(rel), strerror(e));
        return RD_FAILED;
    }
    if (!tel_kept_add_fd(t->kept, rel, fd))
        close(fd);
    return RD_OK;
}

/* Reads a one-line text file (a name, a label, a status), trimmed into out. */
rd_status tel_read_text(const qd_telemetry *t, const char *rel, char *out, size_t cap,
                           char *note)
{
    char buf[SMALL_FILE_MAX];
    rd_status s = tel_read_small(t, rel, buf, sizeof buf, note);
    if (s == RD_OK) {
        char *line = tel_trim(buf);
        line[strcspn(line, "\n")] = '\0';
        tel_fmt(out, cap, "%s", line);
    }
    return s;
}

/* Writes a note that shows the bad text (cut, non-printables as '?'). */
void tel_note_garbage(char *note, const char *rel, const char *text)
{
    char shown[33];
    size_t i = 0;
    for (; text[i] && i + 1 < sizeof shown; i++)
        shown[i] = isprint((unsigned char)text[i]) ? text[i] : '?';
    shown[i] = '\0';
    tel_fmt(note, QD_READING_NOTE_MAX, "%s not a number: \"%s\"", tel_base_name(rel), shown);
}

/* A file holding one integer. */
rd_status tel_read_i64(const qd_telemetry *t, const char *rel, int64_t *out, char *note)
{
    char buf[SMALL_FILE_MAX];
    rd_status s = tel_read_small(t, rel, buf, sizeof buf, note);
    if (s != RD_OK)
        return s;
    char *v = tel_trim(buf);
    if (!tel_parse_i64(v, out)) {
        tel_note_garbage(note, rel, v);
        return RD_FAILED;
    }
    return RD_OK;
}

/* ---- readings ----------------------------------------------------------------------------- */

/* The next free reading with its source and unit set, or NULL once the array is full (the
 * rest is dropped silently; every caller accepts NULL). */
qd_reading *tel_add_reading(qd_telemetry_snapshot *s, const char *unit, const char *f, ...)
{
    if (s->n_readings >= QD_TELEMETRY_MAX_READINGS)
        return NULL;
    qd_reading *r = &s->readings[s->n_readings++];
    memset(r, 0, sizeof *r);
    va_list ap;
    va_start(ap, f);
    vsnprintf(r->source, sizeof r->source, f, ap);
    va_end(ap);
    tel_fmt(r->unit, sizeof r->unit, "%s", unit);
    return r;
}

void tel_set_value(qd_reading *r, double v, const char *note)
{
    if (!r)
        return;
    r->available = true;
    r->value = v;
    tel_fmt(r->note, sizeof r->note, "%s", note ? note : "");
}

void tel_set_unavailable(qd_reading *r, const char *note)
{
    if (!r)
        return;
    r->available = false;
    r->value = 0;
    tel_fmt(r->note, sizeof r->note, "%s", note);
}

/* ---- directories ---------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strverscmp((const char *)a, (const char *)b); /* hwmon2 before hwmon10 */
}

/* Up to cap entry names of ROOT/rel that keep() accepts, in version order. Looks at no more
 * than MAX_DIR_ENTRIES entries. Returns -1 (and a note) if the directory cannot be opened. */
int tel_list_dir(const qd_telemetry *t, const char *rel, name_filter keep,
                    char (*names)[DIR_NAME_MAX], size_t cap, char *note)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", t->root, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        tel_fmt(note, QD_READING_NOTE_MAX, "path too long");
        return -1;
    }
    DIR *d = tel_kept_dir(t->kept, rel);
    bool kept = d != NULL;
    if (!d) {
        d = opendir(path);
        if (!d) {
            if (errno == ENOENT || errno == ENOTDIR)
                tel_fmt(note, QD_READING_NOTE_MAX, "%s absent", rel);
            else
                tel_fmt(note, QD_READING_NOTE_MAX, "%s not readable: %s", rel, strerror(errno));
            return -1;
        }
        kept = tel_kept_add_dir(t->kept, rel, d);
    }
    size_t count = 0;
    struct dirent *e;
    for (int seen = 0; seen < MAX_DIR_ENTRIES && count < cap && (e = readdir(d)); seen++) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= DIR_NAME_MAX || !keep(e->d_name))
            continue;
        tel_fmt(names[count++], DIR_NAME_MAX, "%s", e->d_name);
    }
    if (!kept)
        closedir(d);
    qsort(names, count, sizeof names[0], cmp_names);
    return (int)count;
}

