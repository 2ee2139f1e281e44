/* server.h: qslmd's event loop: the socket, the connections, the policy timer, the signals.
 *
 * The loop owns every connection and job, reads telemetry, runs the policy, and writes reply
 * lines; the engine (engine.h) computes. SIGTERM/SIGINT: stop accepting, end every request with
 * `shutting_down`, flush, exit 0. SIGHUP and `reload`: re-open the bundle off the loop, verify
 * it, and swap it in only if it is good. */
#ifndef QD_SERVER_H
#define QD_SERVER_H

#include "config.h"
#include "config_file.h"
#include "error.h"

typedef struct qd_server qd_server;

/* Opens the bundle (every hash checked), the telemetry, the engine, and binds the socket. */
qr_status qd_server_new(const qd_config *cfg, qd_server **out, qr_error *err);

/* Where the configuration came from (file and command-line overrides), so that SIGHUP and
 * `reload` read it again; without it they reload only the bundle. src's strings are borrowed
 * (argv): they must outlive the server. */
void qd_server_set_source(qd_server *s, const qd_config_source *src);

/* Runs until a shutdown completes; returns the process exit code. */
int qd_server_run(qd_server *s);

void qd_server_free(qd_server *s);

#endif
