/* error.c: filling a qr_error. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

qr_status qr_fail(qr_error *err, qr_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

const char *qr_status_name(qr_status status)
{
    switch (status) {
    case QR_OK: return "ok";
    case QR_ERR_IO: return "I/O error";
    case QR_ERR_FORMAT: return "format error";
    case QR_ERR_NOMEM: return "out of memory";
    case QR_ERR_INVALID: return "invalid argument";
    case QR_ERR_NOT_FOUND: return "not found";
    }
    return "unknown error";
}
