/* line_reader.h: framing a byte stream into '\n'-terminated lines, in bounded memory.
 *
 * Bytes are fed as they arrive, in chunks of any size; complete lines come out one at a time.
 * The reader never holds more than max_line bytes plus a NUL, whatever the peer sends: a line
 * that grows past max_line is reported once (QI_LINE_TOO_LARGE, as soon as it crosses the limit)
 * and the rest of it is dropped, unbuffered, up to and including its '\n'; the next line is read
 * normally. It knows nothing of JSON; a '\r' before the '\n' stays in the line. Not thread-safe:
 * one reader per connection. */
#ifndef QI_LINE_READER_H
#define QI_LINE_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "ipc_error.h"

typedef struct qi_line_reader qi_line_reader;

typedef enum {
    QI_LINE_NONE,      /* every byte given was consumed; no line is complete yet */
    QI_LINE_READY,     /* a line is complete: *line / *line_len */
    QI_LINE_TOO_LARGE, /* the current line passed max_line; it is being skipped */
    QI_LINE_NOMEM,     /* the buffer could not grow; the reader is unchanged, drop the peer */
} qi_line_event;

/* max_line: the longest line accepted, in bytes, without its '\n' (at least 1). The buffer
 * starts small and grows with the longest line seen, up to max_line + 1. */
qi_code qi_line_reader_new(size_t max_line, qi_line_reader **out, qi_error *err);
void qi_line_reader_free(qi_line_reader *r);

/* Consumes data[0..len) up to the first event and sets *used to the bytes consumed (all of them
 * for QI_LINE_NONE; call again with the rest otherwise). On QI_LINE_READY, *line (NUL-terminated,
 * without its '\n'; it may hold other NUL bytes) and *line_len stay valid until the next call.
 * Typical use:
 *     for (size_t off = 0, used; off < n; off += used)
 *         switch (qi_line_reader_feed(r, buf + off, n - off, &used, &line, &line_len)) ... */
qi_line_event qi_line_reader_feed(qi_line_reader *r, const char *data, size_t len, size_t *used,
                                  const char **line, size_t *line_len);

/* Bytes of an unfinished line held now (0 while skipping an over-long one): at end of stream,
 * non-zero means the peer stopped in the middle of a line. */
size_t qi_line_reader_pending(const qi_line_reader *r);

/* True while the rest of an over-long line is being dropped. */
bool qi_line_reader_skipping(const qi_line_reader *r);

/* Bytes allocated for the line buffer: never more than max_line + 1. */
size_t qi_line_reader_capacity(const qi_line_reader *r);

size_t qi_line_reader_max_line(const qi_line_reader *r);

#endif
