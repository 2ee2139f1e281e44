/* load_flood.c: qslm-load's `flood` mode: long-text classify floods next to short generates.
 *
 *   qslm-load flood --socket PATH [--flooders 4] [--classifies 16] [--text-kb 60]
 *                   [--status-clients 10] [--status-pipeline 32] [--probes 20]
 *                   [--probe-tokens 8] [--warmup SEC] [--bound SEC] [--timeout SEC] [--json]
 *
 * A probe client sends one short `generate` at a time (--probe-tokens tokens, fixed seed) and
 * times each from sending to its done message: first --probes of them alone, then as many
 * while --flooders other connections each pipeline --classifies classifies of one --text-kb KB
 * text (every answer or `busy` is followed by the same request again, so the flood never ebbs)
 * and --status-clients more keep --status-pipeline `status` requests in flight each. It prints
 * the probe's p50/p99 alone and under the flood, and the flood's own counts. A `busy` reply to
 * the probe is honoured (it waits retry_after_ms, or 100 ms, and sends again): its time counts.
 *
 * What it checks, for the suite: every probe is answered with a done message (an error other
 * than `busy`, a lost connection or --timeout seconds without the answer fail it), and with
 * --bound, the probe's median under the flood is at most SEC. Exit 0 when all holds, 1 when
 * not, 2 on a usage or connection error. It does not check the flood's replies beyond their
 * kind: the main mode does that. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "load_flood.h"
#include "reply_parse.h"

typedef struct {
    const char *socket;
    unsigned flooders, classifies, status_clients, status_pipeline, probes, probe_tokens;
    double text_kb, warmup, bound, timeout;
    bool json;
} flood_opts;

static flood_opts fo = {
    .flooders = 4, .classifies = 16, .text_kb = 60, .status_clients = 10, .status_pipeline = 32,
    .probes = 20, .probe_tokens = 8, .warmup = 2.0, .bound = 0, .timeout = 120,
};

static atomic_bool flood_stop;
static atomic_uint_fast64_t n_classified, n_flood_busy, n_status, n_flood_errors;
static char *flood_line_tail; /* `,"op":"classify","text":"…"}` shared by every flooder */

static double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A deterministic English-looking text of about kb kilobytes (plain ASCII: no JSON escaping). */
static char *make_text(double kb)
{
    static const char *const words[] = {"the", "people", "of", "our", "nation", "will", "build", "a",
                                        "stronger", "future", "and", "Congress", "must", "act", "now",
                                        "for", "every", "family", "in", "America", "tonight", "we"};
    size_t want = (size_t)(kb * 1000), n = 0;
    char *t = malloc(want + 16);
    if (!t)
        return NULL;
    uint64_t s = 12345;
    while (n < want) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(s >> 33) % (sizeof words / sizeof *words)];
        size_t len = strlen(w);
        if (n + len + 2 > want)
            break;
        if (n && (s >> 20) % 13 == 0)
            t[n++] = '.';
        if (n)
            t[n++] = ' ';
        memcpy(t + n, w, len);
        n += len;
    }
    t[n] = '\0';
    return t;
}

/* Sends one classify of the shared text with id k. */
static bool send_classify(qi_client *c, unsigned k)
{
    char head[32];
    int hn = snprintf(head, sizeof head, "{\"id\":%u", k);
    size_t tl = strlen(flood_line_tail);
    char *line = malloc((size_t)hn + tl + 1);
    if (!line)
        return false;
    memcpy(line, head, (size_t)hn);
    memcpy(line + hn, flood_line_tail, tl + 1);
    qi_error e;
    bool ok = qi_client_send_line(c, line, (size_t)hn + tl, &e) == QI_OK;
    free(line);
    return ok;
}

/* One flooding connection: keeps --classifies classifies in flight until told to stop. A busy
 * answer is sent again after the hint (at most 1 s), so it presses as hard as the server lets
 * it. */
static void *flooder_main(void *arg)
{
    (void)arg;
    qi_client *c = NULL;
    qi_error e;
    if (qi_client_connect(fo.socket, &c, &e) != QI_OK) {
        atomic_fetch_add(&n_flood_errors, 1);
        return NULL;
    }
    unsigned next = 1;
    for (unsigned i = 0; i < fo.classifies; i++)
        if (!send_classify(c, next++))
            goto out;
    while (!atomic_load(&flood_stop)) {
        qi_reply r;
        qi_code rc = qi_client_read_reply(c, 100, &r, &e);
        if (rc == QI_ERR_TIMEOUT)
            continue;
        if (rc != QI_OK)
            break;
        if (r.kind == QI_REPLY_ERROR && r.code == QI_ERR_BUSY) {
            atomic_fetch_add(&n_flood_busy, 1);
            double wait = r.retry_after_ms >= 0 ? (double)r.retry_after_ms / 1e3 : 0.1;
            nap(wait < 1.0 ? wait : 1.0);
        } else if (r.kind == QI_REPLY_RESULT) {
            atomic_fetch_add(&n_classified, 1);
        } else {
            atomic_fetch_add(&n_flood_errors, 1);
        }
        qi_reply_free(&r);
        if (!send_classify(c, next++))
            break;
    }
out:
    qi_client_close(c); /* the daemon drops what is still in flight */
    return NULL;
}

/* One status client: keeps --status-pipeline `status` requests in flight. */
static void *status_main(void *arg)
{
    (void)arg;
    qi_client *c = NULL;
    qi_error e;
    if (qi_client_connect(fo.socket, &c, &e) != QI_OK) {
        atomic_fetch_add(&n_flood_errors, 1);
        return NULL;
    }
    char line[64];
    unsigned next = 1;
    for (unsigned i = 0; i < fo.status_pipeline; i++) {
        int n = snprintf(line, sizeof line, "{\"id\":%u,\"op\":\"status\"}", next++);
        if (qi_client_send_line(c, line, (size_t)n, &e) != QI_OK)
            goto out;
    }
    while (!atomic_load(&flood_stop)) {
        const char *l;
        size_t len;
        qi_code rc = qi_client_read_line(c, 100, &l, &len, &e);
        if (rc == QI_ERR_TIMEOUT)
            continue;
        if (rc != QI_OK)
            break;
        atomic_fetch_add(&n_status, 1);
        int n = snprintf(line, sizeof line, "{\"id\":%u,\"op\":\"status\"}", next++);
        if (qi_client_send_line(c, line, (size_t)n, &e) != QI_OK)
            break;
    }
out:
    qi_client_close(c);
    return NULL;
}

/* Sends probe k and waits for its done message; returns the seconds it took (busy answers
 * and the waits they asked for included), or -1 when it failed (printed). */
static double probe_once(qi_client *c, unsigned *k, unsigned *busy)
{
    double t0 = t_now();
    for (;;) {
        char line[160];
        unsigned id = (*k)++;
        int n = snprintf(line, sizeof line,
                         "{\"id\":%u,\"op\":\"generate\",\"prompt\":\"The economy\",\"max_tokens\":%u,\"seed\":7}", id,
                         fo.probe_tokens);
        qi_error e;
        if (qi_client_send_line(c, line, (size_t)n, &e) != QI_OK) {
            fprintf(stderr, "qslm-load flood: probe: %s\n", e.msg);
            return -1;
        }
        qi_reply r;
        int left_ms = (int)((fo.timeout - (t_now() - t0)) * 1000);
        if (left_ms < 1 || qi_client_read_reply(c, left_ms, &r, &e) != QI_OK) {
            fprintf(stderr, "qslm-load flood: probe %u: no answer within %.0f s\n", id, fo.timeout);
            return -1;
        }
        if (r.kind == QI_REPLY_DONE && r.stats.tokens >= 1) {
            qi_reply_free(&r);
            return t_now() - t0;
        }
        if (r.kind == QI_REPLY_ERROR && r.code == QI_ERR_BUSY) {
            (*busy)++;
            double wait = r.retry_after_ms >= 0 ? (double)r.retry_after_ms / 1e3 : 0.1;
            qi_reply_free(&r);
            nap(wait);
            continue;
        }
        fprintf(stderr, "qslm-load flood: probe %u: unexpected reply (%s)\n", id,
                r.kind == QI_REPLY_ERROR ? r.message : "not a done message");
        qi_reply_free(&r);
        return -1;
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p50 and p99 of v[0..n) (sorts v). */
static void pct(double *v, size_t n, double *p50, double *p99)
{
    *p50 = *p99 = NAN;
    if (!n)
        return;
    qsort(v, n, sizeof *v, cmp_d);
    *p50 = v[(n - 1) / 2];
    *p99 = v[(size_t)ceil(0.99 * (double)n) - 1];
}

/* Runs --probes probes; returns how many were answered before the first that failed. */
static unsigned probe_series(qi_client *c, unsigned *k, double *lat, unsigned *busy)
{
    for (unsigned i = 0; i < fo.probes; i++)
        if ((lat[i] = probe_once(c, k, busy)) < 0)
            return i;
    return fo.probes;
}

/* status's queue.active and queue.waiting, to show the flood is on (-1 when unreadable). */
static void read_queue(qi_client *c, long *active, long *waiting)
{
    *active = *waiting = -1;
    qi_error e;
    const char *line = "{\"id\":\"q\",\"op\":\"status\"}";
    qi_reply r;
    if (qi_client_send_line(c, line, strlen(line), &e) != QI_OK || qi_client_read_reply(c, 10000, &r, &e) != QI_OK)
        return;
    json_object *q, *v;
    if (r.kind == QI_REPLY_RESULT && json_object_object_get_ex(r.body, "queue", &q)) {
        if (json_object_object_get_ex(q, "active", &v))
            *active = (long)json_object_get_int64(v);
        if (json_object_object_get_ex(q, "waiting", &v))
            *waiting = (long)json_object_get_int64(v);
    }
    qi_reply_free(&r);
}

/* x with 4 decimals, or null when it is not a number. */
static void json_num(char buf[24], double x)
{
    if (isnan(x))
        snprintf(buf, 24, "null");
    else
        snprintf(buf, 24, "%.4f", x);
}

static void flood_usage(FILE *f)
{
    fprintf(f,
            "usage: qslm-load flood --socket PATH [options]\n"
            "Times a short generate alone, then while other connections flood the daemon with\n"
            "long-text classifies and status requests.\n\n"
            "  --socket PATH          the daemon's socket (required)\n"
            "  --flooders N           connections pipelining classifies (default 4)\n"
            "  --classifies N         classifies each keeps in flight (default 16)\n"
            "  --text-kb KB           each classify's one text, in kilobytes (default 60)\n"
            "  --status-clients N     connections pipelining status (default 10)\n"
            "  --status-pipeline N    status requests each keeps in flight (default 32)\n"
            "  --probes N             probes alone, and again under the flood (default 20)\n"
            "  --probe-tokens N       max_tokens of a probe (default 8)\n"
            "  --warmup SEC           flood this long before the probes start (default 2)\n"
            "  --bound SEC            fail when the probe's median under the flood exceeds this\n"
            "  --timeout SEC          a probe unanswered this long fails (default 120)\n"
            "  --json                 the report as one JSON object on stdout\n");
}

int qslm_load_flood(int argc, char **argv)
{
    enum { F_SOCKET = 256, F_FLOODERS, F_CLASSIFIES, F_TEXT, F_STATUS, F_STATUS_PIPE, F_PROBES, F_TOKENS, F_WARMUP,
           F_BOUND, F_TIMEOUT, F_JSON };
    static const struct option longopts[] = {
        {"socket", required_argument, 0, F_SOCKET},         {"flooders", required_argument, 0, F_FLOODERS},
        {"classifies", required_argument, 0, F_CLASSIFIES}, {"text-kb", required_argument, 0, F_TEXT},
        {"status-clients", required_argument, 0, F_STATUS}, {"status-pipeline", required_argument, 0, F_STATUS_PIPE},
        {"probes", required_argument, 0, F_PROBES},         {"probe-tokens", required_argument, 0, F_TOKENS},
        {"warmup", required_argument, 0, F_WARMUP},         {"bound", required_argument, 0, F_BOUND},
        {"timeout", required_argument, 0, F_TIMEOUT},       {"json", no_argument, 0, F_JSON},
        {"help", no_argument, 0, 'h'},                      {0, 0, 0, 0},
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        double v = optarg ? strtod(optarg, &end) : 0;
        bool ok = !optarg || (end != optarg && !*end && v >= 0 && v <= 1e6);
        bool whole = ok && v == floor(v);
        switch (ch) {
        case F_SOCKET: fo.socket = optarg; ok = true; break;
        case F_FLOODERS: ok = whole; fo.flooders = (unsigned)v; break;
        case F_CLASSIFIES: ok = whole && v >= 1; fo.classifies = (unsigned)v; break;
        case F_TEXT: ok = ok && v >= 0.01 && v <= 64; fo.text_kb = v; break;
        case F_STATUS: ok = whole; fo.status_clients = (unsigned)v; break;
        case F_STATUS_PIPE: ok = whole && v >= 1; fo.status_pipeline = (unsigned)v; break;
        case F_PROBES: ok = whole && v >= 1; fo.probes = (unsigned)v; break;
        case F_TOKENS: ok = whole && v >= 1; fo.probe_tokens = (unsigned)v; break;
        case F_WARMUP: fo.warmup = v; break;
        case F_BOUND: ok = ok && v > 0; fo.bound = v; break;
        case F_TIMEOUT: ok = ok && v > 0; fo.timeout = v; break;
        case F_JSON: fo.json = true; break;
        case 'h': flood_usage(stdout); return 0;
        default: flood_usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "qslm-load flood: %s: bad value '%s'\n", argv[optind - 1], optarg);
            return 2;
        }
    }
    if (!fo.socket || optind < argc) {
        flood_usage(stderr);
        return 2;
    }
    char *text = make_text(fo.text_kb);
    if (!text || asprintf(&flood_line_tail, ",\"op\":\"classify\",\"text\":\"%s\"}", text) < 0)
        return 2;
    free(text);
    qi_client *probe = NULL;
    qi_error e;
    if (qi_client_connect(fo.socket, &probe, &e) != QI_OK) {
        fprintf(stderr, "qslm-load flood: %s\n", e.msg);
        return 2;
    }
    double *alone = calloc(fo.probes, sizeof *alone), *flooded = calloc(fo.probes, sizeof *flooded);
    unsigned n_threads = fo.flooders + fo.status_clients;
    pthread_t *th = calloc(n_threads ? n_threads : 1, sizeof *th);
    if (!alone || !flooded || !th)
        return 2;
    unsigned k = 1, busy_alone = 0, busy_flood = 0;
    unsigned n_alone = probe_series(probe, &k, alone, &busy_alone), n_flooded = 0;
    bool ok = n_alone == fo.probes;
    unsigned started = 0;
    for (unsigned i = 0; ok && i < n_threads; i++)
        if (pthread_create(&th[started], NULL, i < fo.flooders ? flooder_main : status_main, NULL) == 0)
            started++;
    nap(fo.warmup);
    long active = -1, waiting = -1;
    read_queue(probe, &active, &waiting);
    double t_flood = t_now();
    if (ok) {
        n_flooded = probe_series(probe, &k, flooded, &busy_flood);
        ok = n_flooded == fo.probes;
    }
    t_flood = t_now() - t_flood;
    atomic_store(&flood_stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    qi_client_close(probe);

    double a50, a99, f50, f99;
    pct(alone, n_alone, &a50, &a99);
    pct(flooded, n_flooded, &f50, &f99);
    bool within = fo.bound <= 0 || (ok && f50 <= fo.bound);
    uint64_t cls = atomic_load(&n_classified), fbusy = atomic_load(&n_flood_busy), st = atomic_load(&n_status),
             ferr = atomic_load(&n_flood_errors);
    if (fo.json) { /* a quantile of no probe is null */
        char a50s[24], a99s[24], f50s[24], f99s[24];
        json_num(a50s, a50);
        json_num(a99s, a99);
        json_num(f50s, f50);
        json_num(f99s, f99);
        printf("{\"probe_alone\":{\"n\":%u,\"p50_s\":%s,\"p99_s\":%s,\"busy\":%u},"
               "\"probe_flood\":{\"n\":%u,\"p50_s\":%s,\"p99_s\":%s,\"busy\":%u},"
               "\"flood\":{\"flooders\":%u,\"classifies\":%u,\"text_kb\":%.1f,\"status_clients\":%u,"
               "\"queue_active\":%ld,\"queue_waiting\":%ld,\"classified\":%llu,\"busy\":%llu,\"status\":%llu,"
               "\"errors\":%llu,\"seconds\":%.2f},\"ok\":%s}\n",
               n_alone, a50s, a99s, busy_alone, n_flooded, f50s, f99s, busy_flood, fo.flooders, fo.classifies, fo.text_kb,
               fo.status_clients, active, waiting, (unsigned long long)cls, (unsigned long long)fbusy,
               (unsigned long long)st, (unsigned long long)ferr, t_flood, ok && within ? "true" : "false");
    } else {
        printf("probe (generate, %u tokens) alone:       n=%u p50=%.3f s p99=%.3f s (busy %u)\n", fo.probe_tokens,
               n_alone, a50, a99, busy_alone);
        printf("probe under flood:                     n=%u p50=%.3f s p99=%.3f s (busy %u)%s\n", n_flooded, f50,
               f99, busy_flood, ok ? "" : " -- a probe failed");
        printf("flood: %u connections x %u classifies of %.1f KB, %u status connections x %u; at the start "
               "active=%ld waiting=%ld; during the %.1f s of probes: %llu classifies answered, %llu busy, "
               "%llu status answered, %llu errors\n",
               fo.flooders, fo.classifies, fo.text_kb, fo.status_clients, fo.status_pipeline, active, waiting,
               t_flood, (unsigned long long)cls, (unsigned long long)fbusy, (unsigned long long)st,
               (unsigned long long)ferr);
        if (fo.bound > 0)
            printf("bound: p50 under flood %.3f s %s %.3f s\n", f50, within ? "<=" : ">", fo.bound);
    }
    free(alone);
    free(flooded);
    free(th);
    free(flood_line_tail);
    return ok && within ? 0 : 1;
}
