/* client.h: a small blocking client of the protocol, for qslmctl and anyone's C program.
 *
 * Connects to the server's Unix stream socket, sends request lines, and reads reply lines
 * framed by a line reader (so a misbehaving server cannot make it buffer without bound).
 * Blocking, one thread per client; a client may pipeline (send several requests, then read the
 * replies, matching them by id). Connect failures are told apart (no socket, permission denied,
 * nobody listening) because each needs a different fix. A broken connection never raises
 * SIGPIPE. */
#ifndef QI_CLIENT_H
#define QI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "ipc_error.h"
#include "reply_parse.h"
#include "request.h"

/* The longest reply line a client accepts by default (a generate's done message carries the
 * whole text; a classify of 64 texts carries all their probabilities). */
#define QI_CLIENT_MAX_REPLY (4u << 20)

typedef struct qi_client qi_client;

/* Connects to the Unix stream socket at path. Errors: QI_ERR_NO_SOCKET (no such file or
 * directory), QI_ERR_ACCESS (permission denied), QI_ERR_REFUSED (a file is there but nothing
 * listens: a stale socket, or not a socket), QI_ERR_INVALID_ARGUMENT (path empty or longer than
 * a socket address holds), QI_ERR_IO (anything else); each message names the path. */
qi_code qi_client_connect(const char *path, qi_client **out, qi_error *err);

/* Wraps a connected stream socket (socketpair, socket activation...); the client owns fd from
 * now on, also on failure. max_reply: 0 for QI_CLIENT_MAX_REPLY. */
qi_code qi_client_from_fd(int fd, size_t max_reply, qi_client **out, qi_error *err);

/* Closes the socket and frees the client. */
void qi_client_close(qi_client *c);

/* The socket, for poll() in a caller's own loop. */
int qi_client_fd(const qi_client *c);

/* Sends one line: line[0..len) must hold no '\n' except, optionally, as its last byte; one is
 * added if missing. Blocks until all is written. QI_ERR_CLOSED if the server went away. */
qi_code qi_client_send_line(qi_client *c, const char *line, size_t len, qi_error *err);

/* Builds (qi_request_build) and sends a request. */
qi_code qi_client_send(qi_client *c, const qi_request *req, qi_error *err);

/* Reads the next reply line (without '\n'; valid until the next read). timeout_ms < 0 waits
 * forever; otherwise QI_ERR_TIMEOUT when no full line came in time (the bytes read so far are
 * kept for the next call); 0 takes only what has already arrived. A signal does not end the
 * wait (EINTR is retried): a caller that must react to one (Ctrl-C) polls qi_client_fd in its
 * own loop, with qi_client_has_buffered telling it when bytes are already waiting here. QI_ERR_CLOSED at end of stream, QI_ERR_PROTOCOL for a line longer
 * than max_reply (it is skipped: the next read returns the line after it). */
qi_code qi_client_read_line(qi_client *c, int timeout_ms, const char **line, size_t *len,
                            qi_error *err);

/* True when bytes read from the socket are waiting here, not yet returned as lines: poll on
 * the socket would not show them. */
bool qi_client_has_buffered(const qi_client *c);

/* Reads and parses the next reply (qi_reply_free it). */
qi_code qi_client_read_reply(qi_client *c, int timeout_ms, qi_reply *out, qi_error *err);

#endif
