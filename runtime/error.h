/* error.h: how the runtime reports failure.
 *
 * Library functions never print and never exit: they return a qr_status and, when the caller
 * passes a qr_error, fill it with one human-readable line naming what failed (the file, the
 * tensor, the byte offset). The caller decides whether to log it, show it or retry. */
#ifndef QR_ERROR_H
#define QR_ERROR_H

#include <stddef.h>

typedef enum {
    QR_OK = 0,
    QR_ERR_IO,        /* the OS refused: open, read, mmap, write */
    QR_ERR_FORMAT,    /* a file's content is malformed */
    QR_ERR_NOMEM,     /* an allocation failed or a size overflowed */
    QR_ERR_INVALID,   /* a caller passed an argument we cannot honour */
    QR_ERR_NOT_FOUND, /* a named thing (tensor, key, token) does not exist */
} qr_status;

#define QR_ERROR_MSG_MAX 512

typedef struct {
    qr_status status;
    char msg[QR_ERROR_MSG_MAX];
} qr_error;

/* Records status and a printf-style message in err (which may be NULL) and returns status, so a
 * failing path can read `return qr_fail(err, QR_ERR_FORMAT, "...", ...);`. */
qr_status qr_fail(qr_error *err, qr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short fixed name for a status ("format error", ...), for callers that log. */
const char *qr_status_name(qr_status status);

#endif
