/* ipc_error.c: filling a qi_error, and the names of the codes. */
#include "ipc_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const names[] = {
    [QI_OK] = "ok",
    [QI_ERR_INVALID_JSON] = "invalid_json",
    [QI_ERR_UNKNOWN_OP] = "unknown_op",
    [QI_ERR_INVALID_ARGUMENT] = "invalid_argument",
    [QI_ERR_TOO_LARGE] = "too_large",
    [QI_ERR_BUSY] = "busy",
    [QI_ERR_NO_VARIANT_FITS] = "no_variant_fits",
    [QI_ERR_PERMISSION_DENIED] = "permission_denied",
    [QI_ERR_CANCELLED] = "cancelled",
    [QI_ERR_SHUTTING_DOWN] = "shutting_down",
    [QI_ERR_NOT_FOUND] = "not_found",
    [QI_ERR_RELOAD_REFUSED] = "reload_refused",
    [QI_ERR_TOO_MANY_CONNECTIONS] = "too_many_connections",
    [QI_ERR_IDLE_TIMEOUT] = "idle_timeout",
    [QI_ERR_INTERNAL] = "internal",
    [QI_ERR_NOMEM] = "nomem",
    [QI_ERR_IO] = "io",
    [QI_ERR_NO_SOCKET] = "no_socket",
    [QI_ERR_ACCESS] = "access",
    [QI_ERR_REFUSED] = "refused",
    [QI_ERR_CLOSED] = "closed",
    [QI_ERR_TIMEOUT] = "timeout",
    [QI_ERR_PROTOCOL] = "protocol",
    [QI_ERR_UNKNOWN_CODE] = "unknown_code",
};

qi_code qi_fail(qi_error *err, qi_code code, const char *field, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->field[0] = '\0';
    size_t used = 0;
    if (field && field[0]) {
        snprintf(err->field, sizeof err->field, "%s", field);
        int n = snprintf(err->msg, sizeof err->msg, "%s: ", err->field);
        used = n > 0 && (size_t)n < sizeof err->msg ? (size_t)n : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + used, sizeof err->msg - used, fmt, ap);
    va_end(ap);
    return code;
}

const char *qi_code_name(qi_code code)
{
    if ((unsigned)code < sizeof names / sizeof names[0] && names[code])
        return names[code];
    return "unknown";
}

bool qi_code_is_wire(qi_code code)
{
    return code >= QI_ERR_INVALID_JSON && code <= QI_ERR_INTERNAL;
}

qi_code qi_code_from_name(const char *name)
{
    for (int c = QI_ERR_INVALID_JSON; c <= QI_ERR_INTERNAL; c++)
        if (strcmp(names[c], name) == 0)
            return (qi_code)c;
    return QI_ERR_UNKNOWN_CODE;
}
