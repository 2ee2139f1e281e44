/* line_reader.c: one growable buffer, one "skipping" flag. */
#include "line_reader.h"

#include <stdlib.h>
#include <string.h>

#define INITIAL_CAPACITY 256

struct qi_line_reader {
    size_t max_line;  /* longest accepted line, without '\n' */
    char *buf;        /* cap bytes; buf[0..len) is the unfinished line */
    size_t cap;
    size_t len;
    bool skipping;    /* dropping the rest of an over-long line */
};

qi_code qi_line_reader_new(size_t max_line, qi_line_reader **out, qi_error *err)
{
    *out = NULL;
    if (max_line < 1 || max_line > ((size_t)1 << 40))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, "max_line", "must be in 1..2^40");
    qi_line_reader *r = calloc(1, sizeof *r);
    if (!r)
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    r->max_line = max_line;
    *out = r;
    return QI_OK;
}

void qi_line_reader_free(qi_line_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

/* Makes room for `need` bytes, doubling up to max_line + 1 so a stream of long lines costs
 * O(log) reallocations, and never more. */
static bool reserve(qi_line_reader *r, size_t need)
{
    if (need <= r->cap)
        return true;
    size_t cap = r->cap ? r->cap : INITIAL_CAPACITY;
    while (cap < need)
        cap *= 2;
    if (cap > r->max_line + 1)
        cap = r->max_line + 1;
    char *b = realloc(r->buf, cap);
    if (!b)
        return false;
    r->buf = b;
    r->cap = cap;
    return true;
}

qi_line_event qi_line_reader_feed(qi_line_reader *r, const char *data, size_t len, size_t *used,
                                  const char **line, size_t *line_len)
{
    size_t off = 0;
    for (;;) {
        if (off == len) {
            *used = len;
            return QI_LINE_NONE;
        }
        const char *nl = memchr(data + off, '\n', len - off);
        if (r->skipping) {
            if (!nl) {
                *used = len;
                return QI_LINE_NONE;
            }
            r->skipping = false;
            off = (size_t)(nl - data) + 1;
            continue;
        }
        size_t chunk = nl ? (size_t)(nl - (data + off)) : len - off;
        if (chunk > r->max_line - r->len) {
            /* Over the limit: report now, keep nothing, drop the rest up to its newline. */
            r->len = 0;
            if (nl) {
                *used = (size_t)(nl - data) + 1;
            } else {
                r->skipping = true;
                *used = len;
            }
            return QI_LINE_TOO_LARGE;
        }
        if (!reserve(r, r->len + chunk + 1)) {
            *used = off;
            return QI_LINE_NOMEM;
        }
        memcpy(r->buf + r->len, data + off, chunk);
        r->len += chunk;
        if (!nl) {
            *used = len;
            return QI_LINE_NONE;
        }
        r->buf[r->len] = '\0';
        *line = r->buf;
        *line_len = r->len;
        r->len = 0; /* the bytes stay in buf until the next call overwrites them */
        *used = (size_t)(nl - data) + 1;
        return QI_LINE_READY;
    }
}

size_t qi_line_reader_pending(const qi_line_reader *r)
{
    return r->len;
}

bool qi_line_reader_skipping(const qi_line_reader *r)
{
    return r->skipping;
}

size_t qi_line_reader_capacity(const qi_line_reader *r)
{
    return r->cap;
}

size_t qi_line_reader_max_line(const qi_line_reader *r)
{
    return r->max_line;
}
