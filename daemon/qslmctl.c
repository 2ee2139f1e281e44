/* qslmctl.c: the command-line client of qslmd (usage: qslmctl --help).
 *
 * One connection, one request (id 1), its replies read until the final one, an exit code that
 * says who is at fault (ctl.h). generate streams its tokens to stdout as they come; Ctrl-C
 * sends a cancel (id 2) and still waits for the done message, so the text so far and its stats
 * are printed. Reading is a poll() on the socket and a self-pipe that the SIGINT handler writes
 * to, so a Ctrl-C is seen at once however long the server takes. Not here: argument parsing
 * (ctl_args.c) and the human tables (ctl_print.c); nothing here parses JSON by hand. */
#include <errno.h>
#include <fcntl.h>
#include <json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ctl.h"

#ifndef QSLM_VERSION
#define QSLM_VERSION "unknown"
#endif

#define CANCEL_ID 2
#define SLICE_MS 10 /* how long one read waits inside the library, where a signal is not seen */

/* ---------------------------------------------------------------- the connection */

typedef struct {
    qi_client *client;
    const char *path;
    bool json;
    long long deadline_ms; /* CLOCK_MONOTONIC ms; -1: none */
    double timeout_s;
    int wake_fd;           /* the self-pipe's read end, or -1 when Ctrl-C is not handled */
    bool cancelling;       /* the Ctrl-C has been acted on: report it only once */
} ctl_conn;

enum { READ_OK = 0, READ_INTERRUPTED = -1 }; /* read_reply's results besides an exit code */

static volatile sig_atomic_t g_interrupted;
static int g_wake_w = -1;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The SIGINT handler: note it and wake the poll. SA_RESETHAND makes the next Ctrl-C kill the
 * process the default way, which is "a second Ctrl-C exits at once". */
static void on_sigint(int sig)
{
    (void)sig;
    int saved = errno;
    g_interrupted = 1;
    if (g_wake_w >= 0) {
        ssize_t w = write(g_wake_w, "", 1);
        (void)w;
    }
    errno = saved;
}

/* Installs on_sigint and its self-pipe. Without SA_RESTART, though poll() never restarts. */
static void catch_sigint(ctl_conn *cx)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return; /* Ctrl-C then just kills us: still correct, only less polite */
    cx->wake_fd = p[0];
    g_wake_w = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* A regular file (or anything but a socket) refuses connections like a stale socket does;
 * saying which it is spares the user a wrong guess. */
static void print_connect_error(const char *path, const qi_error *err)
{
    struct stat st;
    if (err->code == QI_ERR_REFUSED && stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        fprintf(stderr, "qslmctl: cannot connect to %s: not a socket\n", path);
    else
        fprintf(stderr, "qslmctl: cannot connect: %s\n", err->msg);
}

static int ctl_connect(ctl_conn *cx, const ctl_args *a)
{
    qi_error err;
    memset(cx, 0, sizeof *cx);
    cx->path = a->socket;
    cx->json = a->json;
    cx->wake_fd = -1;
    cx->timeout_s = a->timeout_s;
    cx->deadline_ms = a->timeout_s > 0 ? now_ms() + (long long)(a->timeout_s * 1000) : -1;
    if (qi_client_connect(a->socket, &cx->client, &err) == QI_OK)
        return CTL_EXIT_OK;
    if (err.code == QI_ERR_INVALID_ARGUMENT) { /* a path no socket address can hold */
        fprintf(stderr, "qslmctl: bad socket path '%s': %s\n", a->socket, err.msg);
        fputs("Try 'qslmctl --help' for more.\n", stderr);
        return CTL_EXIT_USAGE;
    }
    print_connect_error(a->socket, &err);
    return CTL_EXIT_CONNECT;
}

/* After a send: 0 to go on reading, or an exit code. A server that closed the connection
 * while we were still writing (a request line over its max line) may have said why first
 * (too_large, id null), so that is read, within a second, before giving up. */
static int sent(ctl_conn *cx, qi_code code, const qi_error *err)
{
    if (code == QI_OK)
        return CTL_EXIT_OK;
    if (code == QI_ERR_CLOSED) {
        long long soon = now_ms() + 1000;
        if (cx->deadline_ms < 0 || cx->deadline_ms > soon)
            cx->deadline_ms = soon;
        return CTL_EXIT_OK;
    }
    fprintf(stderr, "qslmctl: %s: cannot send the request: %s\n", cx->path, err->msg);
    return code == QI_ERR_NOMEM || code == QI_ERR_INVALID_ARGUMENT ? CTL_EXIT_USAGE
                                                                   : CTL_EXIT_CONNECT;
}

/* ---------------------------------------------------------------- reading */

/* Waits until the socket may have a line, a Ctrl-C came, or the deadline passed (exit code). */
static int wait_input(ctl_conn *cx)
{
    int timeout = -1;
    if (cx->deadline_ms >= 0) {
        long long left = cx->deadline_ms - now_ms();
        if (left <= 0) {
            fprintf(stderr, "qslmctl: %s: no answer within %g s\n", cx->path, cx->timeout_s);
            return CTL_EXIT_CONNECT;
        }
        timeout = left > INT_MAX ? INT_MAX : (int)left;
    }
    struct pollfd p[2] = {{.fd = qi_client_fd(cx->client), .events = POLLIN},
                          {.fd = cx->wake_fd, .events = POLLIN}};
    int r = poll(p, cx->wake_fd >= 0 ? 2 : 1, timeout);
    if (r < 0 && errno != EINTR) {
        fprintf(stderr, "qslmctl: %s: poll: %s\n", cx->path, strerror(errno));
        return CTL_EXIT_CONNECT;
    }
    char drain[16];
    if (r > 0 && cx->wake_fd >= 0 && (p[1].revents & POLLIN))
        while (read(cx->wake_fd, drain, sizeof drain) > 0) {
        }
    return CTL_EXIT_OK;
}

/* A line that came: copied to stdout under --json (before parsing, so even a bad one is
 * seen), then parsed. */
static int take_line(ctl_conn *cx, const char *line, size_t len, qi_reply *out)
{
    qi_error err;
    if (cx->json) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (qi_reply_parse(line, len, out, &err) != QI_OK) {
        fprintf(stderr, "qslmctl: %s: malformed reply: %s\n", cx->path, err.msg);
        return CTL_EXIT_CONNECT;
    }
    return READ_OK;
}

/* Reads the next reply into *out (qi_reply_free it). Returns READ_OK, READ_INTERRUPTED (once,
 * after a Ctrl-C, when it is handled), or an exit code after saying what went wrong. */
static int read_reply(ctl_conn *cx, qi_reply *out)
{
    for (;;) {
        if (g_interrupted && cx->wake_fd >= 0 && !cx->cancelling)
            return READ_INTERRUPTED;
        const char *line;
        size_t len;
        qi_error err;
        qi_code code = qi_client_read_line(cx->client, SLICE_MS, &line, &len, &err);
        if (code == QI_OK)
            return take_line(cx, line, len, out);
        if (code == QI_ERR_CLOSED) {
            fprintf(stderr, "qslmctl: %s: connection lost before the final reply (%s)\n",
                    cx->path, err.msg);
            return CTL_EXIT_CONNECT;
        }
        if (code != QI_ERR_TIMEOUT) {
            fprintf(stderr, "qslmctl: %s: %s\n", cx->path, err.msg);
            return CTL_EXIT_CONNECT;
        }
        int rc = wait_input(cx);
        if (rc)
            return rc;
    }
}

/* True when r answers request `id`. A null id answers a line the server could not read at
 * all (too_large, invalid_json) or one that reused an id in flight (duplicate_id): with one
 * request in flight, that line was ours. */
static bool reply_for(const qi_reply *r, uint64_t id)
{
    if (r->id.kind == QI_ID_NONE)
        return r->kind == QI_REPLY_ERROR;
    return r->id.kind == QI_ID_INT && r->id.num == id;
}

static int server_error(const qi_reply *r)
{
    fprintf(stderr, "qslmctl: %s: %s\n", r->code_name, r->message);
    return CTL_EXIT_SERVER;
}

/* ---------------------------------------------------------------- every op but generate */

static int run_simple(ctl_conn *cx, const ctl_args *a)
{
    qi_error err;
    int rc = sent(cx, qi_client_send(cx->client, &a->req, &err), &err);
    if (rc)
        return rc;
    for (;;) {
        qi_reply r;
        rc = read_reply(cx, &r);
        if (rc)
            return rc;
        if (!reply_for(&r, 1) || !qi_reply_is_final(&r)) {
            qi_reply_free(&r);
            continue;
        }
        if (r.kind == QI_REPLY_ERROR)
            rc = server_error(&r);
        else if (!cx->json)
            ctl_print_result(a->req.op, &r);
        qi_reply_free(&r);
        return rc;
    }
}

/* ---------------------------------------------------------------- generate */

/* The generate line without the fields the user did not give, so the server applies its own
 * defaults: max_tokens and top_k default to its limits when those are smaller, which a
 * client cannot know (qi_request_build writes every field). */
static int send_generate(ctl_conn *cx, const ctl_args *a)
{
    static const char *const keys[] = {"max_tokens", "temperature", "top_k", "top_p",
                                        "repetition_penalty"};
    const bool given[] = {a->given.max_tokens, a->given.temperature, a->given.top_k,
                          a->given.top_p, a->given.repetition_penalty};
    qi_error err;
    char *full;
    size_t n;
    if (qi_request_build(&a->req, &full, &n, &err) != QI_OK) {
        fprintf(stderr, "qslmctl: cannot build the request: %s\n", err.msg);
        return CTL_EXIT_USAGE;
    }
    json_object *o = json_tokener_parse(full);
    free(full);
    if (!o) {
        fputs("qslmctl: out of memory\n", stderr);
        return CTL_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!given[i])
            json_object_object_del(o, keys[i]);
    const char *line = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    qi_code code = qi_client_send_line(cx->client, line, n, &err);
    json_object_put(o);
    return sent(cx, code, &err);
}

static int send_cancel(ctl_conn *cx)
{
    qi_request req;
    qi_id id, target;
    qi_error err;
    qi_id_set_int(&id, CANCEL_ID);
    qi_id_set_int(&target, 1);
    qi_request_init(&req, QI_OP_CANCEL, &id, NULL);
    req.u.cancel.target = target;
    qi_code code = qi_client_send(cx->client, &req, &err);
    if (code != QI_OK)
        return sent(cx, code, &err); /* closed: the done message may still be there to read */
    fputs("qslmctl: cancelling (Ctrl-C again to quit at once)\n", stderr);
    return CTL_EXIT_OK;
}

typedef struct {
    bool printed;       /* text went to stdout without its final newline */
    bool done;          /* the generate's final message came */
    bool cancel_open;   /* a cancel was sent and its reply has not come */
} gen_state;

/* One reply during a generation: a token to print, the final message, or the cancel's reply. */
static int on_gen_reply(const ctl_conn *cx, const ctl_args *a, const qi_reply *r, gen_state *st)
{
    if (reply_for(r, CANCEL_ID) && r->id.kind == QI_ID_INT) {
        st->cancel_open = false;
        return CTL_EXIT_OK;
    }
    if (!reply_for(r, 1))
        return CTL_EXIT_OK;
    if (r->kind == QI_REPLY_TOKEN || r->kind == QI_REPLY_DONE)
        st->done = r->kind == QI_REPLY_DONE;
    if (cx->json && r->kind != QI_REPLY_ERROR)
        return CTL_EXIT_OK;
    if (r->kind == QI_REPLY_TOKEN && r->text_len > 0) {
        fwrite(r->text, 1, r->text_len, stdout);
        fflush(stdout);
        st->printed = true;
    } else if (r->kind == QI_REPLY_DONE) {
        if (!a->req.u.generate.stream)
            fwrite(r->text, 1, r->text_len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        st->printed = false;
        ctl_print_gen_stats(stderr, &r->stats);
    } else if (r->kind == QI_REPLY_ERROR) {
        if (st->printed && !cx->json)
            fputc('\n', stdout);
        fflush(stdout);
        return server_error(r);
    }
    return CTL_EXIT_OK;
}

/* Reads until the done message (and the cancel's reply, if one was sent). A Ctrl-C sends the
 * cancel; the server then ends the generation with stop_reason "cancelled", exit 0. */
static int run_generate(ctl_conn *cx, const ctl_args *a)
{
    catch_sigint(cx);
    int rc = send_generate(cx, a);
    gen_state st = {0};
    while (!rc && (!st.done || st.cancel_open)) {
        qi_reply r;
        rc = read_reply(cx, &r);
        if (rc == READ_INTERRUPTED) {
            cx->cancelling = true;
            rc = send_cancel(cx);
            st.cancel_open = rc == CTL_EXIT_OK;
            continue;
        }
        if (rc && st.done)
            return CTL_EXIT_OK; /* the answer came; only the cancel's reply was lost */
        if (rc) {
            if (st.printed)
                fputc('\n', stdout);
            return rc;
        }
        rc = on_gen_reply(cx, a, &r, &st);
        qi_reply_free(&r);
    }
    return rc;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    ctl_args a;
    if (!ctl_parse_args(argc, argv, &a))
        return CTL_EXIT_USAGE;
    if (a.help) {
        ctl_print_usage(stdout);
        return CTL_EXIT_OK;
    }
    if (a.version) {
        printf("qslmctl %s (protocol %d)\n", QSLM_VERSION, QI_PROTOCOL_VERSION);
        return CTL_EXIT_OK;
    }
    ctl_conn cx;
    int rc = ctl_connect(&cx, &a);
    if (rc)
        return rc;
    rc = a.req.op == QI_OP_GENERATE ? run_generate(&cx, &a) : run_simple(&cx, &a);
    qi_client_close(cx.client);
    return rc;
}
