/* ctl.h: the parts of qslmctl, the command-line client of qslmd.
 *
 * ctl_args.c turns argv into one validated request (everything the protocol fixes is checked
 * here, so a typo is a usage error before any connection); ctl_print.c turns result replies
 * into the human tables; qslmctl.c connects, sends, reads and decides the exit code. The
 * request's strings are borrowed from argv. Not here: anything of the daemon itself; qslmctl
 * links the ipc library only. */
#ifndef QD_CTL_H
#define QD_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "reply_parse.h"
#include "request.h"

/* Exit codes, part of qslmctl's interface (scripts test them). */
enum {
    CTL_EXIT_OK = 0,      /* the server answered with a result (a cancelled generate too) */
    CTL_EXIT_SERVER = 1,  /* the server answered with an error reply */
    CTL_EXIT_USAGE = 2,   /* bad options or values: nothing was sent */
    CTL_EXIT_CONNECT = 3, /* no connection, lost connection, no reply in time, bad reply */
};

#define CTL_DEFAULT_SOCKET "/run/qslmd.sock"
#define CTL_DEFAULT_TIMEOUT_S 30.0 /* every op but generate, which waits as long as it takes */
#define CTL_MAX_ARGS 256           /* argv entries, the program name included */

/* Which generate fields the user gave: the others are left out of the request line so the
 * server applies its own defaults (some depend on its limits: max_tokens, top_k). */
typedef struct {
    bool max_tokens, temperature, top_k, top_p, repetition_penalty;
} ctl_given;

typedef struct {
    const char *socket; /* --socket, else $QSLM_SOCKET, else CTL_DEFAULT_SOCKET */
    bool json;          /* --json: print reply lines as they come */
    double timeout_s;   /* --timeout; 0 = wait forever */
    bool help, version; /* --help / --version: print and exit 0, nothing else is done */
    qi_request req;     /* id 1; strings borrowed from argv, stop[] and pos[] */
    ctl_given given;    /* generate only */
    char *stop[QI_STOP_MAX];
    char *pos[CTL_MAX_ARGS]; /* the positional arguments: the op, then its operands */
} ctl_args;

/* Parses argv into *a. On a usage error prints "qslmctl: <why>" and a short hint to stderr
 * and returns false. */
bool ctl_parse_args(int argc, char **argv, ctl_args *a);

/* The full --help text. */
void ctl_print_usage(FILE *f);

/* Prints a result reply (QI_REPLY_RESULT) of op the human way to stdout. */
void ctl_print_result(qi_op op, const qi_reply *r);

/* The one-line summary of a finished generation, for stderr. */
void ctl_print_gen_stats(FILE *f, const qi_gen_stats *s);

#endif
