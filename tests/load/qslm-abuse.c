/* qslm-abuse: hostile clients against a running qslmd, each mode with its bound checked.
 *
 *   qslm-abuse --socket PATH --mode fds   [--connections N] [--probe-within SEC]
 *   qslm-abuse --socket PATH --mode loris [--connections N] [--seconds T] [--probe-within SEC]
 *   qslm-abuse --socket PATH --mode flood [--connections N] [--requests M] --pid PID
 *                                         [--settle SEC] [--rss-slack MIB]
 *
 * fds: opens N connections and holds them, each sending `status` and reading its first line;
 *   more than the daemon can hold (its max_connections, or its file descriptors) must each get
 *   the error too_many_connections, never a silent close or reset. Then all close, and a new
 *   client must be served within --probe-within seconds.
 * loris: N connections trickle a request line a byte every 100 ms and never end it, for T
 *   seconds; meanwhile another connection sends `status` every 100 ms, and its slowest answer
 *   must come within --probe-within. Each loris must have been closed with idle_timeout (so run
 *   the daemon with an idle timeout below T).
 * flood: N connections each pipeline M `status` (written by one thread while another reads), then close; the
 *   daemon's VmRSS (PID) must come back within --rss-slack MiB of where it was before, within
 *   --settle seconds. Prints before / peak (VmHWM) / after.
 * Exit status: 0 when the bound held, 1 when not, 2 on a usage or connection error.
 *
 * It is the by-hand, full-size companion of tests/daemon/test_limits.c; run_limits.sh runs it
 * small in the suite. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "reply_parse.h"

static struct {
    const char *socket, *mode;
    unsigned connections;
    unsigned requests;
    double seconds, probe_within, settle, rss_slack_mib;
    long pid;
} opt = {NULL, NULL, 0, 3000, 5, 5, 20, 16, 0};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A size field of /proc/PID/status in KiB, or -1. */
static long proc_kb(long pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* ---------------------------------------------------------------- fds */

enum { SERVED, REFUSED, SILENT };

/* Connects, sends status, reads the first line: what happened. The client is kept in *out when
 * served. */
static int try_client(qi_client **out, char *why, size_t cap)
{
    *out = NULL;
    qi_client *c;
    qi_error e;
    if (qi_client_connect(opt.socket, &c, &e) != QI_OK) {
        snprintf(why, cap, "connect: %.200s", e.msg);
        return SILENT;
    }
    static const char line[] = "{\"id\":\"p\",\"op\":\"status\"}";
    qi_client_send_line(c, line, sizeof line - 1, &e); /* a refused client may see EPIPE: read on */
    qi_reply r;
    if (qi_client_read_reply(c, 10000, &r, &e) != QI_OK) {
        snprintf(why, cap, "no line: %.200s", e.msg);
        qi_client_close(c);
        return SILENT;
    }
    int what = SILENT;
    if (r.kind == QI_REPLY_ERROR && r.code == QI_ERR_TOO_MANY_CONNECTIONS)
        what = REFUSED;
    else if (r.kind == QI_REPLY_RESULT)
        what = SERVED;
    else
        snprintf(why, cap, "unexpected reply (%s)", r.kind == QI_REPLY_ERROR ? r.code_name : "not a result");
    qi_reply_free(&r);
    if (what == SERVED)
        *out = c;
    else
        qi_client_close(c);
    return what;
}

/* A new client served within opt.probe_within s (refusals retried); the seconds it took or -1. */
static double probe(void)
{
    double t0 = now_s();
    char why[512];
    while (now_s() - t0 < opt.probe_within) {
        qi_client *c;
        if (try_client(&c, why, sizeof why) == SERVED) {
            qi_client_close(c);
            return now_s() - t0;
        }
        sleep_ms(50);
    }
    return -1;
}

static int mode_fds(void)
{
    unsigned n = opt.connections ? opt.connections : 200;
    qi_client **held = calloc(n, sizeof *held);
    if (!held)
        return 2;
    unsigned count[3] = {0, 0, 0};
    char why[512] = "";
    for (unsigned i = 0; i < n; i++) {
        int w = try_client(&held[i], why, sizeof why);
        count[w]++;
        if (w == SILENT && count[SILENT] <= 3)
            fprintf(stderr, "qslm-abuse: client %u: %s\n", i, why);
    }
    for (unsigned i = 0; i < n; i++)
        if (held[i])
            qi_client_close(held[i]);
    free(held);
    double t = probe();
    printf("qslm-abuse fds: %u connections: %u served, %u got too_many_connections, %u closed without a line; "
           "after they closed a new client was served in %.2f s (bound %g s)\n",
           n, count[SERVED], count[REFUSED], count[SILENT], t, opt.probe_within);
    bool pass = count[SILENT] == 0 && count[SERVED] > 0 && t >= 0;
    printf("qslm-abuse: %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}

/* ---------------------------------------------------------------- loris */

static int mode_loris(void)
{
    unsigned n = opt.connections ? opt.connections : 20;
    qi_client **l = calloc(n, sizeof *l);
    bool *closed = calloc(n, sizeof *closed), *told = calloc(n, sizeof *told);
    qi_client *p = NULL;
    qi_error e;
    if (!l || !closed || !told || qi_client_connect(opt.socket, &p, &e) != QI_OK)
        return 2;
    for (unsigned i = 0; i < n; i++)
        if (qi_client_connect(opt.socket, &l[i], &e) != QI_OK) {
            fprintf(stderr, "qslm-abuse: %s\n", e.msg);
            return 2;
        }
    static const char half[] = "{\"id\":\"slow\",\"op\":\"status\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    double t0 = now_s(), worst = 0;
    unsigned probes = 0, probe_bad = 0;
    for (unsigned k = 0; now_s() - t0 < opt.seconds; k++) {
        for (unsigned i = 0; i < n; i++)
            if (!closed[i] && send(qi_client_fd(l[i]), half + k % (sizeof half - 1), 1, MSG_NOSIGNAL) != 1)
                closed[i] = true;
        double t = now_s();
        qi_reply r;
        char line[64];
        int len = snprintf(line, sizeof line, "{\"id\":%u,\"op\":\"status\"}", probes);
        if (qi_client_send_line(p, line, (size_t)len, &e) != QI_OK ||
            qi_client_read_reply(p, (int)(opt.probe_within * 1000) + 1000, &r, &e) != QI_OK) {
            probe_bad++;
        } else {
            probe_bad += r.kind != QI_REPLY_RESULT;
            qi_reply_free(&r);
        }
        probes++;
        if (now_s() - t > worst)
            worst = now_s() - t;
        sleep_ms(100);
    }
    /* every loris: an idle_timeout line, then the end */
    unsigned got = 0;
    for (unsigned i = 0; i < n; i++) {
        qi_reply r;
        while (qi_client_read_reply(l[i], 2000, &r, &e) == QI_OK) {
            told[i] = told[i] || (r.kind == QI_REPLY_ERROR && r.code == QI_ERR_IDLE_TIMEOUT);
            qi_reply_free(&r);
        }
        got += told[i];
        qi_client_close(l[i]);
    }
    qi_client_close(p);
    printf("qslm-abuse loris: %u connections trickling half a line for %g s: %u closed with idle_timeout; "
           "%u status probes meanwhile, slowest %.3f s (bound %g s), %u failed\n",
           n, opt.seconds, got, probes, worst, opt.probe_within, probe_bad);
    bool pass = got == n && probe_bad == 0 && worst < opt.probe_within;
    printf("qslm-abuse: %s\n", pass ? "PASS" : "FAIL");
    free(l);
    free(closed);
    free(told);
    return pass ? 0 : 1;
}

/* ---------------------------------------------------------------- flood */

typedef struct {
    unsigned requests;
    bool ok;
} flooder;

/* The writing half of a flooder: every request, as fast as the socket takes them. qslmd stops
 * reading a connection whose replies it cannot write (backpressure), so the writes must run
 * beside the reads, not before them, or both ends would wait on each other. */
typedef struct {
    qi_client *c;
    unsigned requests;
    bool ok;
} flood_writer;

static void *flood_write_main(void *arg)
{
    flood_writer *w = arg;
    char line[64];
    qi_error e;
    for (unsigned i = 0; i < w->requests; i++) {
        int len = snprintf(line, sizeof line, "{\"id\":%u,\"op\":\"status\"}", i);
        if (qi_client_send_line(w->c, line, (size_t)len, &e) != QI_OK)
            return NULL;
    }
    w->ok = true;
    return NULL;
}

static void *flood_main(void *arg)
{
    flooder *f = arg;
    qi_client *c;
    qi_error e;
    if (qi_client_connect(opt.socket, &c, &e) != QI_OK)
        return NULL;
    flood_writer w = {c, f->requests, false};
    pthread_t writer;
    if (pthread_create(&writer, NULL, flood_write_main, &w) != 0) {
        qi_client_close(c);
        return NULL;
    }
    unsigned got = 0;
    for (; got < f->requests; got++) {
        qi_reply r;
        if (qi_client_read_reply(c, 60000, &r, &e) != QI_OK)
            break;
        qi_reply_free(&r);
    }
    if (got < f->requests)
        shutdown(qi_client_fd(c), SHUT_RDWR); /* unblocks the writer */
    pthread_join(writer, NULL);
    f->ok = w.ok && got == f->requests;
    qi_client_close(c);
    return NULL;
}

static int mode_flood(void)
{
    if (opt.pid <= 0) {
        fprintf(stderr, "qslm-abuse: --mode flood needs --pid (the daemon's)\n");
        return 2;
    }
    unsigned n = opt.connections ? opt.connections : 10;
    long before = proc_kb(opt.pid, "VmRSS");
    pthread_t *t = calloc(n, sizeof *t);
    flooder *f = calloc(n, sizeof *f);
    if (!t || !f || before < 0)
        return 2;
    unsigned started = 0, failed = 0;
    for (unsigned i = 0; i < n; i++) {
        f[i].requests = opt.requests;
        if (pthread_create(&t[i], NULL, flood_main, &f[i]) != 0)
            break;
        started++;
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        failed += !f[i].ok;
    }
    long peak = proc_kb(opt.pid, "VmHWM"), after = proc_kb(opt.pid, "VmRSS");
    double t0 = now_s(), slack_kb = opt.rss_slack_mib * 1024;
    while (after > before + slack_kb && now_s() - t0 < opt.settle) {
        sleep_ms(250);
        after = proc_kb(opt.pid, "VmRSS");
    }
    printf("qslm-abuse flood: %u connections x %u pipelined status (%u failed): VmRSS %.1f MiB before, "
           "peak (VmHWM) %.1f MiB, %.1f MiB after %.1f s (bound: before + %g MiB)\n",
           n, opt.requests, failed + (n - started), before / 1024.0, peak / 1024.0, after / 1024.0, now_s() - t0,
           opt.rss_slack_mib);
    bool pass = failed == 0 && started == n && after >= 0 && after <= before + slack_kb;
    printf("qslm-abuse: %s\n", pass ? "PASS" : "FAIL");
    free(t);
    free(f);
    return pass ? 0 : 1;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: qslm-abuse --socket PATH --mode fds|loris|flood [options]\n"
               "  --connections N     hostile connections (default: fds 200, loris 20, flood 10)\n"
               "  --requests M        flood: status requests per connection (default 3000)\n"
               "  --seconds T         loris: how long to trickle (default 5)\n"
               "  --probe-within SEC  fds, loris: the bound on serving a probe (default 5)\n"
               "  --pid PID           flood: the daemon, whose VmRSS is read\n"
               "  --settle SEC        flood: how long RSS may take to come back (default 20)\n"
               "  --rss-slack MIB     flood: how far above the first RSS it may stay (default 16)\n"
               "Exit status: 0 when the mode's bound held, 1 when not, 2 on a usage or connection error.\n");
}

int main(int argc, char **argv)
{
    enum { O_SOCKET = 256, O_MODE, O_CONN, O_REQ, O_SEC, O_PROBE, O_PID, O_SETTLE, O_SLACK };
    static const struct option longopts[] = {
        {"socket", required_argument, 0, O_SOCKET}, {"mode", required_argument, 0, O_MODE},
        {"connections", required_argument, 0, O_CONN}, {"requests", required_argument, 0, O_REQ},
        {"seconds", required_argument, 0, O_SEC}, {"probe-within", required_argument, 0, O_PROBE},
        {"pid", required_argument, 0, O_PID}, {"settle", required_argument, 0, O_SETTLE},
        {"rss-slack", required_argument, 0, O_SLACK}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        bool numeric = ch >= O_CONN && ch <= O_SLACK;
        double v = numeric ? strtod(optarg, &end) : 0;
        if (numeric && (end == optarg || *end || v < 0)) {
            fprintf(stderr, "qslm-abuse: bad value '%s'\n", optarg);
            return 2;
        }
        switch (ch) {
        case O_SOCKET: opt.socket = optarg; break;
        case O_MODE: opt.mode = optarg; break;
        case O_CONN: opt.connections = (unsigned)v; break;
        case O_REQ: opt.requests = (unsigned)v; break;
        case O_SEC: opt.seconds = v; break;
        case O_PROBE: opt.probe_within = v; break;
        case O_PID: opt.pid = (long)v; break;
        case O_SETTLE: opt.settle = v; break;
        case O_SLACK: opt.rss_slack_mib = v; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!opt.socket || !opt.mode || optind < argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(opt.mode, "fds") == 0)
        return mode_fds();
    if (strcmp(opt.mode, "loris") == 0)
        return mode_loris();
    if (strcmp(opt.mode, "flood") == 0)
        return mode_flood();
    usage(stderr);
    return 2;
}
