/* ipc_error.h: how the wire-protocol library reports failure.
 *
 * One enum holds both the stable error codes a server sends in `{"error":{"code":...}}` (their
 * names are part of the protocol, PROTOCOL.md) and the local failures of this library's client
 * (no such socket, connection refused, ...), which never go on the wire. Functions return a
 * qi_code and, when the caller passes a qi_error, fill it with the field at fault and one
 * human-readable line; nothing here prints or exits. Named ipc_error.h, not error.h, so a program
 * that also includes the runtime's error.h gets both. */
#ifndef QI_IPC_ERROR_H
#define QI_IPC_ERROR_H

#include <stdbool.h>

typedef enum {
    QI_OK = 0,
    /* Wire codes: the names in qi_code_name are stable protocol strings. */
    QI_ERR_INVALID_JSON,      /* "invalid_json": the line is not one JSON object */
    QI_ERR_UNKNOWN_OP,        /* "unknown_op" */
    QI_ERR_INVALID_ARGUMENT,  /* "invalid_argument": a field is missing, unknown, or out of range */
    QI_ERR_TOO_LARGE,         /* "too_large": a line longer than the limit */
    QI_ERR_BUSY,              /* "busy": queue or per-connection in-flight limit reached */
    QI_ERR_NO_VARIANT_FITS,   /* "no_variant_fits": no variant meets the budgets */
    QI_ERR_PERMISSION_DENIED, /* "permission_denied": the peer may not use this op */
    QI_ERR_CANCELLED,         /* "cancelled" */
    QI_ERR_SHUTTING_DOWN,     /* "shutting_down" */
    QI_ERR_NOT_FOUND,         /* "not_found": e.g. pin of a variant the bundle lacks */
    QI_ERR_RELOAD_REFUSED,    /* "reload_refused": the new configuration or bundle is bad; the
                                 old ones are still served */
    QI_ERR_TOO_MANY_CONNECTIONS, /* "too_many_connections": the server is at its connection
                                    limit (or out of descriptors or memory); it closes this one */
    QI_ERR_IDLE_TIMEOUT,      /* "idle_timeout": no request line for the idle timeout; the
                                 server closes the connection */
    QI_ERR_INTERNAL,          /* "internal" */
    /* Local codes: this library's own failures, never sent. */
    QI_ERR_NOMEM,             /* an allocation failed */
    QI_ERR_IO,                /* the OS refused a read or write */
    QI_ERR_NO_SOCKET,         /* connect: no such socket (ENOENT, ENOTDIR) */
    QI_ERR_ACCESS,            /* connect: permission denied on the socket or its directory */
    QI_ERR_REFUSED,           /* connect: nobody listens there (ECONNREFUSED, not a socket) */
    QI_ERR_CLOSED,            /* the peer closed the connection */
    QI_ERR_TIMEOUT,           /* no complete line within the time asked for */
    QI_ERR_PROTOCOL,          /* the peer sent something that is not a valid reply */
    QI_ERR_UNKNOWN_CODE,      /* a reply carried an error code this library does not know */
} qi_code;

#define QI_ERROR_MSG_MAX 256
#define QI_ERROR_FIELD_MAX 64

typedef struct {
    qi_code code;
    char field[QI_ERROR_FIELD_MAX]; /* the offending field ("max_tokens", "stop[2]"), or "" */
    char msg[QI_ERROR_MSG_MAX];     /* "max_tokens: must be an integer in 1..1024" */
} qi_error;

/* Records code, field (may be NULL) and a printf-style message in err (which may be NULL) and
 * returns code. With a field the message reads "<field>: <text>", so it always names the field. */
qi_code qi_fail(qi_error *err, qi_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The code's name: the protocol string for wire codes ("invalid_argument"), a short
 * lower-case name for local ones ("no_socket"). Never NULL. */
const char *qi_code_name(qi_code code);

/* The wire code called name, or QI_ERR_UNKNOWN_CODE. Local names are not accepted. */
qi_code qi_code_from_name(const char *name);

/* True for the codes that may appear in an error reply. */
bool qi_code_is_wire(qi_code code);

#endif
