/* bench-daemon: qslmd's serving figures, measured through its socket.
 *
 *   bench-daemon --socket PATH --pid PID [--runs N] [--tokens N] [--switches N] [--text FILE]
 *
 * Talks to a running qslmd (started with --up-delay 0 so that switches up are not held back,
 * and with --max-line 256K so that a 64 KiB text fits in a request line) and prints, as medians
 * over --runs:
 *   - aggregate decode tokens/s with 1, 4 and 16 concurrent generations (one connection each,
 *     --tokens tokens each, greedy), and the ratio to 1;
 *   - classify requests/s (4 connections, one short text per request, back to back);
 *   - classify latency by text length (1, 8 and 64 KiB of --text, by default words of the
 *     corpus), alone, and the prompt's tokens/s of a generate of the same text (its done
 *     message counts the prompt's tokens);
 *   - the round's bound as a client sees it: the gaps between the token events of an 8-token
 *     generate while another connection's 64 KiB classify is read, median and longest (and
 *     the time from its request to its first token);
 *   - switch latency p50/p99 as the daemon measures it (from the policy's decision to serving
 *     the new variant), over --switches budget changes between the two ends of the bundle;
 *   - resident memory per variant: the daemon's VmRSS with each variant pinned and warm (a
 *     generation and a 64 KiB classify run on it), minus its VmRSS with no variant loaded (a
 *     budget below every footprint), against the footprint `variants` reports.
 * A benchmark: it prints figures and asserts nothing. */
#include <getopt.h>
#include <json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

static const char *socket_path;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static qi_client *connect_or_die(void)
{
    qi_client *c;
    qi_error e;
    if (qi_client_connect(socket_path, &c, &e) != QI_OK) {
        fprintf(stderr, "bench-daemon: %s\n", e.msg);
        exit(1);
    }
    return c;
}

/* Sends one request line and returns its final reply (token events are skipped). */
static void call(qi_client *c, const char *line, qi_reply *out)
{
    qi_error e;
    if (qi_client_send_line(c, line, strlen(line), &e) != QI_OK) {
        fprintf(stderr, "bench-daemon: send: %s\n", e.msg);
        exit(1);
    }
    for (;;) {
        if (qi_client_read_reply(c, 120000, out, &e) != QI_OK) {
            fprintf(stderr, "bench-daemon: read: %s\n", e.msg);
            exit(1);
        }
        if (qi_reply_is_final(out))
            break;
        qi_reply_free(out);
    }
    if (out->kind == QI_REPLY_ERROR) {
        fprintf(stderr, "bench-daemon: %s: %s: %s\n", line, out->code_name, out->message);
        exit(1);
    }
}

static void call_simple(const char *line)
{
    qi_client *c = connect_or_die();
    qi_reply r;
    call(c, line, &r);
    qi_reply_free(&r);
    qi_client_close(c);
}

/* status.active.variant, or "" */
static void active_variant(char *buf, size_t cap)
{
    qi_client *c = connect_or_die();
    qi_reply r;
    call(c, "{\"id\":1,\"op\":\"status\"}", &r);
    json_object *active, *v;
    buf[0] = '\0';
    if (json_object_object_get_ex(r.body, "active", &active) && json_object_object_get_ex(active, "variant", &v) &&
        json_object_is_type(v, json_type_string))
        snprintf(buf, cap, "%s", json_object_get_string(v));
    qi_reply_free(&r);
    qi_client_close(c);
}

static void wait_active(const char *want)
{
    char got[80];
    double t0 = now();
    do {
        active_variant(got, sizeof got);
        if (strcmp(got, want) == 0)
            return;
        usleep(2000);
    } while (now() - t0 < 30);
    fprintf(stderr, "bench-daemon: variant %s never became active (active: '%s')\n", want, got);
    exit(1);
}

/* ---------------------------------------------------------------- concurrent generations */

typedef struct {
    int tokens;
    int seed;
    uint32_t generated;
} gen_arg;

static void *gen_thread(void *p)
{
    gen_arg *a = p;
    qi_client *c = connect_or_die();
    char line[256];
    snprintf(line, sizeof line,
             "{\"id\":1,\"op\":\"generate\",\"prompt\":\"The state of the Union\",\"max_tokens\":%d,"
             "\"temperature\":0.8,\"seed\":%d}",
             a->tokens, a->seed);
    qi_reply r;
    call(c, line, &r);
    a->generated = r.stats.tokens;
    qi_reply_free(&r);
    qi_client_close(c);
    return NULL;
}

static double aggregate_tokens_per_s(int clients, int tokens)
{
    pthread_t th[64];
    gen_arg args[64];
    double t0 = now();
    for (int i = 0; i < clients; i++) {
        args[i] = (gen_arg){tokens, 1000 + i, 0};
        pthread_create(&th[i], NULL, gen_thread, &args[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        total += args[i].generated;
    }
    return (double)total / (now() - t0);
}

/* ---------------------------------------------------------------- classify */

typedef struct {
    int requests;
} cls_arg;

static void *cls_thread(void *p)
{
    cls_arg *a = p;
    qi_client *c = connect_or_die();
    for (int i = 0; i < a->requests; i++) {
        qi_reply r;
        call(c, "{\"id\":1,\"op\":\"classify\",\"text\":\"The acting was wonderful and the story moved me.\"}", &r);
        qi_reply_free(&r);
    }
    qi_client_close(c);
    return NULL;
}

static double classify_per_s(int clients, int per_client)
{
    pthread_t th[16];
    cls_arg a = {per_client};
    double t0 = now();
    for (int i = 0; i < clients; i++)
        pthread_create(&th[i], NULL, cls_thread, &a);
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    return clients * per_client / (now() - t0);
}

/* ---------------------------------------------------------------- prefill */

/* The first n bytes of text (fewer, so as not to cut a UTF-8 character), as a JSON request
 * line: {"id":1,"op":OP,KEY:TEXT,EXTRA}. The caller frees it. */
static char *text_request(const char *text, size_t n, const char *op, const char *key, const char *extra)
{
    while (n > 0 && n < strlen(text) && ((unsigned char)text[n] & 0xc0) == 0x80)
        n--;
    char *cut = strndup(text, n);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int(1));
    json_object_object_add(o, "op", json_object_new_string(op));
    json_object_object_add(o, key, json_object_new_string(cut));
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    char *line = malloc(strlen(body) + strlen(extra) + 2);
    sprintf(line, "%.*s%s}", (int)strlen(body) - 1, body, extra);
    json_object_put(o);
    free(cut);
    return line;
}

/* Words of the corpus, about `bytes` long (when no --text is given). */
static char *word_text(size_t bytes)
{
    static const char *const words[] = {"the", "people", "of", "our", "nation", "will", "build", "a", "stronger",
                                        "future", "and", "Congress", "must", "act", "for", "every", "family"};
    char *t = malloc(bytes + 16);
    size_t n = 0, w = 0;
    while (n + 12 < bytes) {
        n += (size_t)sprintf(t + n, "%s%s", n ? " " : "", words[(w * 7 + w / 3) % (sizeof words / sizeof *words)]);
        w++;
    }
    t[n] = '\0';
    return t;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench-daemon: %s: cannot open\n", path);
        exit(2);
    }
    size_t cap = 1 << 20, n = 0;
    char *t = malloc(cap + 1);
    n = fread(t, 1, cap, f);
    fclose(f);
    t[n] = '\0';
    return t;
}

/* Seconds for one request line to its final reply, on a fresh connection; *prompt_tokens gets
 * a generate's count. */
static double timed_call(const char *line, uint32_t *prompt_tokens)
{
    qi_client *c = connect_or_die();
    qi_reply r;
    double t0 = now();
    call(c, line, &r);
    double s = now() - t0;
    if (prompt_tokens)
        *prompt_tokens = r.stats.prompt_tokens;
    qi_reply_free(&r);
    qi_client_close(c);
    return s;
}

typedef struct {
    const char *line;
    double ended;
} bg_call;

static void *bg_main(void *p)
{
    bg_call *b = p;
    timed_call(b->line, NULL);
    b->ended = now();
    return NULL;
}

/* An 8-token streamed generate while another connection's classify of line is read: the time
 * from its request to its first token event, then the 7 gaps between its token events, in ms,
 * into gaps[0..8). */
static void gaps_beside(const char *line, double *gaps)
{
    pthread_t th;
    bg_call b = {line, 0};
    pthread_create(&th, NULL, bg_main, &b);
    usleep(100000); /* the classify is being read */
    qi_client *c = connect_or_die();
    const char *gen = "{\"id\":2,\"op\":\"generate\",\"prompt\":\"The economy\",\"max_tokens\":8,\"seed\":3,"
                      "\"stream\":true}";
    qi_error e;
    double last = now();
    if (qi_client_send_line(c, gen, strlen(gen), &e) != QI_OK) {
        fprintf(stderr, "bench-daemon: send: %s\n", e.msg);
        exit(1);
    }
    for (int k = 0;;) {
        qi_reply r;
        if (qi_client_read_reply(c, 120000, &r, &e) != QI_OK) {
            fprintf(stderr, "bench-daemon: read: %s\n", e.msg);
            exit(1);
        }
        bool final = qi_reply_is_final(&r);
        if (r.kind == QI_REPLY_TOKEN && k < 8) {
            double t = now();
            gaps[k++] = (t - last) * 1e3;
            last = t;
        }
        qi_reply_free(&r);
        if (final)
            break;
    }
    qi_client_close(c);
    pthread_join(th, NULL);
    if (b.ended < last)
        fprintf(stderr, "bench-daemon: the classify ended before the generate: the gaps were not measured beside it\n");
}

static void prefill_figures(const char *text_path, int runs)
{
    char *text = text_path ? read_text(text_path) : word_text(70 << 10);
    static const size_t kib[] = {1, 8, 64};
    double v[99];
    printf("prefill (%s), median of %d runs:\n", text_path ? text_path : "words of the corpus", runs);
    char *big = NULL;
    for (size_t l = 0; l < 3; l++) {
        char *cls = text_request(text, kib[l] << 10, "classify", "text", "");
        char *gen = text_request(text, kib[l] << 10, "generate", "prompt", ",\"max_tokens\":1,\"temperature\":0");
        uint32_t prompt_tokens = 0;
        timed_call(cls, NULL); /* warm */
        for (int r = 0; r < runs; r++)
            v[r] = timed_call(cls, NULL) * 1e3;
        double ms = median(v, (size_t)runs);
        for (int r = 0; r < runs; r++)
            v[r] = timed_call(gen, &prompt_tokens);
        double gen_s = median(v, (size_t)runs);
        printf("  %2zu KiB: classify %8.1f ms; a generate's prompt of %u tokens: %.0f tokens/s\n", kib[l], ms,
               prompt_tokens, prompt_tokens / gen_s);
        free(gen);
        if (kib[l] == 64)
            big = cls;
        else
            free(cls);
    }
    double first[99], med[99], most[99], all_max = 0;
    for (int r = 0; r < runs; r++) {
        double gaps[8];
        gaps_beside(big, gaps);
        first[r] = gaps[0];
        med[r] = median(gaps + 1, 7);
        qsort(gaps + 1, 7, sizeof *gaps, cmp);
        most[r] = gaps[7];
        all_max = most[r] > all_max ? most[r] : all_max;
    }
    printf("  an 8-token generate beside a 64 KiB classify: first token %.1f ms after its request; then\n"
           "    %.1f ms between tokens (median), longest %.1f ms (median of the runs' longest; %.1f ms over\n"
           "    all runs): the round as a client sees it\n",
           median(first, (size_t)runs), median(med, (size_t)runs), median(most, (size_t)runs), all_max);
    free(big);
    free(text);
}

/* ---------------------------------------------------------------- memory */

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    long pid = 0;
    int runs = 5, tokens = 256, switches = 40;
    const char *text_path = NULL;
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"pid", required_argument, NULL, 'p'},
        {"runs", required_argument, NULL, 'r'},   {"tokens", required_argument, NULL, 't'},
        {"switches", required_argument, NULL, 'w'}, {"text", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': socket_path = optarg; break;
        case 'p': pid = atol(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 't': tokens = atoi(optarg); break;
        case 'w': switches = atoi(optarg); break;
        case 'x': text_path = optarg; break;
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: bench-daemon --socket PATH --pid PID [--runs N] [--tokens N] [--switches N] [--text FILE]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!socket_path || pid <= 0 || runs < 1 || runs > 99 || tokens < 1 || switches < 2) {
        fprintf(stderr, "bench-daemon: --socket and --pid are required (try --help)\n");
        return 2;
    }
    double v[99];

    printf("aggregate decode, %d tokens per generation, median of %d runs:\n", tokens, runs);
    double base = 0;
    const int levels[] = {1, 4, 16};
    for (size_t l = 0; l < 3; l++) {
        for (int r = 0; r < runs; r++)
            v[r] = aggregate_tokens_per_s(levels[l], tokens);
        double m = median(v, (size_t)runs);
        if (l == 0)
            base = m;
        printf("  %2d concurrent: %8.0f tokens/s  (%.2fx of 1)\n", levels[l], m, m / base);
    }

    for (int r = 0; r < runs; r++)
        v[r] = classify_per_s(4, 50);
    printf("classify, 4 connections x 50 one-text requests, median of %d runs: %.0f requests/s\n", runs,
           median(v, (size_t)runs));

    prefill_figures(text_path, runs);

    /* switches: between the bundle's two ends, by budget (the daemon measures each) */
    char best[80];
    active_variant(best, sizeof best);
    qi_client *q = connect_or_die();
    qi_reply r;
    call(q, "{\"id\":1,\"op\":\"variants\"}", &r);
    json_object *vars;
    json_object_object_get_ex(r.body, "variants", &vars);
    size_t nv = json_object_array_length(vars);
    char names[16][80];
    uint64_t footprints[16], smallest = UINT64_MAX;
    for (size_t i = 0; i < nv && i < 16; i++) {
        json_object *o = json_object_array_get_idx(vars, i), *x;
        json_object_object_get_ex(o, "name", &x);
        snprintf(names[i], sizeof names[i], "%s", json_object_get_string(x));
        json_object_object_get_ex(o, "footprint_bytes", &x);
        footprints[i] = (uint64_t)json_object_get_int64(x);
        if (footprints[i] < smallest)
            smallest = footprints[i];
    }
    qi_reply_free(&r);
    qi_client_close(q);
    const char *small_name = NULL;
    for (size_t i = 0; i < nv && i < 16; i++)
        if (footprints[i] == smallest)
            small_name = names[i];
    char line[2048];
    double t_client[512];
    int n_sw = switches > 512 ? 512 : switches;
    for (int i = 0; i < n_sw; i++) {
        bool down = i % 2 == 0;
        if (down)
            snprintf(line, sizeof line, "{\"id\":1,\"op\":\"set-budget\",\"memory\":%llu}", (unsigned long long)smallest);
        else
            snprintf(line, sizeof line, "{\"id\":1,\"op\":\"set-budget\",\"memory\":\"auto\"}");
        double t0 = now();
        call_simple(line);
        wait_active(down ? small_name : best);
        t_client[i] = (now() - t0) * 1e3;
    }
    q = connect_or_die();
    call(q, "{\"id\":1,\"op\":\"status\"}", &r);
    json_object *lat, *p50, *p99;
    if (json_object_object_get_ex(r.body, "switch_latency_ms", &lat) && json_object_object_get_ex(lat, "p50", &p50) &&
        json_object_object_get_ex(lat, "p99", &p99))
        printf("switch latency (in the daemon: decision to serving), %d switches %s <-> %s: p50 %.2f ms, p99 %.2f ms\n",
               n_sw, best, small_name, json_object_get_double(p50), json_object_get_double(p99));
    qi_reply_free(&r);
    qi_client_close(q);
    printf("  seen by a client (set-budget sent to status showing the new variant, 2 ms polls): median %.2f ms\n",
           median(t_client, (size_t)n_sw));

    /* resident memory per variant */
    call_simple("{\"id\":1,\"op\":\"set-budget\",\"memory\":1024}");
    usleep(300000);
    long none = rss_kib(pid);
    call_simple("{\"id\":1,\"op\":\"set-budget\",\"memory\":\"auto\"}");
    printf("resident memory (VmRSS of pid %ld): %ld KiB with no variant loaded\n", pid, none);
    char *words = word_text(8 << 10), *warm = text_request(words, 8 << 10, "classify", "text", "");
    for (size_t i = 0; i < nv && i < 16; i++) {
        snprintf(line, sizeof line, "{\"id\":1,\"op\":\"pin\",\"variant\":\"%s\"}", names[i]);
        call_simple(line);
        wait_active(names[i]);
        gen_arg a = {64, 1, 0};
        gen_thread(&a);
        timed_call(warm, NULL); /* every row of the runner, in chunks */
        long rss = rss_kib(pid);
        printf("  %-8s VmRSS %ld KiB, +%ld KiB over none; served footprint %.0f KiB (ratio %.2f)\n", names[i], rss,
               rss - none, footprints[i] / 1024.0, (rss - none) * 1024.0 / (double)footprints[i]);
    }
    call_simple("{\"id\":1,\"op\":\"unpin\"}");
    free(warm);
    free(words);
    return 0;
}
