/* stop.c: the stop-string matcher. The held text is never longer than the longest stop string,
 * so each feed costs O(len × stops × longest), tiny next to a forward pass. */
#include "stop.h"

#include <stdlib.h>
#include <string.h>

struct qr_stop {
    char *stops[QR_STOP_MAX];
    size_t lens[QR_STOP_MAX];
    size_t n;
    char *held;     /* text seen but not yet emitted */
    size_t held_len, held_cap;
    char *out;      /* what the last call released */
    size_t out_cap;
    bool stopped;
};

qr_status qr_stop_new(const char *const *stops, size_t n, qr_stop **out, qr_error *err)
{
    *out = NULL;
    if (n > QR_STOP_MAX)
        return qr_fail(err, QR_ERR_INVALID, "%zu stop strings; at most %d", n, QR_STOP_MAX);
    qr_stop *s = calloc(1, sizeof *s);
    if (!s)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for stop strings");
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0 || len > QR_STOP_MAX_LEN) {
            qr_stop_free(s);
            return qr_fail(err, QR_ERR_INVALID, "stop string %zu is empty or longer than %d bytes",
                           i, QR_STOP_MAX_LEN);
        }
        s->stops[i] = strdup(stops[i]);
        s->lens[i] = len;
        s->n = i + 1;
        if (!s->stops[i]) {
            qr_stop_free(s);
            return qr_fail(err, QR_ERR_NOMEM, "out of memory for stop strings");
        }
    }
    *out = s;
    return QR_OK;
}

void qr_stop_free(qr_stop *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->stops[i]);
    free(s->held);
    free(s->out);
    free(s);
}

static bool reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return false;
    *buf = nb;
    *cap = c;
    return true;
}

/* Moves the first n held bytes to the output buffer. */
static void release(qr_stop *s, size_t n, const char **emit, size_t *emit_len)
{
    if (!reserve(&s->out, &s->out_cap, n + 1)) {
        *emit = "";
        *emit_len = 0;
        return;
    }
    memcpy(s->out, s->held, n);
    memmove(s->held, s->held + n, s->held_len - n);
    s->held_len -= n;
    *emit = s->out;
    *emit_len = n;
}

bool qr_stop_feed(qr_stop *s, const char *text, size_t len, const char **emit, size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (s->stopped)
        return true;
    if (!reserve(&s->held, &s->held_cap, s->held_len + len + 1))
        return false;
    memcpy(s->held + s->held_len, text, len);
    s->held_len += len;
    /* The earliest complete stop string wins. */
    size_t first = s->held_len;
    for (size_t i = 0; i < s->n; i++) {
        for (size_t at = 0; at + s->lens[i] <= s->held_len && at < first; at++) {
            if (memcmp(s->held + at, s->stops[i], s->lens[i]) == 0) {
                first = at;
                break;
            }
        }
    }
    if (first < s->held_len) {
        release(s, first, emit, emit_len);
        s->held_len = 0;
        s->stopped = true;
        return true;
    }
    /* Hold back the longest tail that could still grow into a stop string. */
    size_t keep = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t max = s->lens[i] - 1 < s->held_len ? s->lens[i] - 1 : s->held_len;
        for (size_t k = max; k > keep; k--) {
            if (memcmp(s->held + s->held_len - k, s->stops[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    release(s, s->held_len - keep, emit, emit_len);
    return false;
}

void qr_stop_flush(qr_stop *s, const char **emit, size_t *emit_len)
{
    release(s, s->held_len, emit, emit_len);
}
