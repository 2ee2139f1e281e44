/* qslm-eval: perplexity of a model on a text file, or accuracy on labelled sentences.
 *
 *   qslm-eval MODEL --text FILE [--window N] [options]
 *   qslm-eval MODEL --labels [TASK=]FILE.jsonl [--labels TASK=FILE.jsonl]... [options]
 *   qslm-eval --check-tokenizer FILE
 *
 * Runs the batched evaluator (the same code QSLM's search uses). Exit codes: 0 success, 1 the
 * evaluation failed, 2 bad arguments or a bad file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "eval.h"
#include "forward.h"
#include "linear.h"
#include "model.h"
#include "model_file.h"
#include "tokenizer.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: qslm-eval MODEL (--text FILE | --labels [TASK=]FILE.jsonl...) [options]\n"
    "       qslm-eval --check-tokenizer FILE\n"
    "\n"
    "Measures a .qslm model on a data set, on the batched evaluation path.\n"
    "  --text FILE        perplexity: exp(mean token NLL) over the whole file, cut into\n"
    "                     windows of --window tokens, each starting from a fresh state and\n"
    "                     scoring its tokens 2..N\n"
    "  --labels FILE      accuracy: one JSON object per line, {\"text\": \"...\", \"label\": N};\n"
    "                     the classifier head reads the mean of ln_out(x) over the text's tokens\n"
    "  --labels TASK=FILE accuracy of the head named TASK (the model's tasks; plain FILE is\n"
    "                     the first head); repeat it to measure several heads, one line each\n"
    "  --window N         tokens per perplexity window (default 1024)\n"
    "  --batch N          sequences evaluated together (default 16)\n"
    "  --threads N        worker threads (default: one per CPU)\n"
    "  --tokenizer FILE   a tokenizer.json, if the model file does not embed one\n"
    "  --spike-rates      also print, per layer, the fraction of LIF neurons that fired per\n"
    "                     token (time-mix and channel-mix outputs; channel-mix hidden units\n"
    "                     with spike.ffn_hidden)\n"
    "  --json             print one JSON object instead of text\n"
    "  --check-tokenizer FILE  only load FILE (a tokenizer.json) as the runtime would and\n"
    "                     report: exit 0 and one line if it loads, else exit 2 and the\n"
    "                     loader's error (for converters that must refuse a bad tokenizer)\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 evaluation failed, 2 bad arguments or a bad file.\n";

#define MAX_LABELS QR_HEADS_MAX

typedef struct {
    const char *model_path, *text_path, *tokenizer_path, *check_path;
    const char *labels[MAX_LABELS]; /* --labels arguments, [TASK=]FILE */
    size_t n_labels;
    size_t window, batch;
    int threads;
    int json;
    int spike_rates;
} options;

static int parse_size(const char *arg, const char *name, size_t min, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || end == arg || arg[0] == '-' || v < min || v > max) {
        fprintf(stderr, "qslm-eval: %s must be an integer in %zu..%zu, not '%s'\n", name, min, max, arg);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"text", required_argument, NULL, 't'},   {"labels", required_argument, NULL, 'l'},
        {"window", required_argument, NULL, 'w'}, {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 'j'}, {"tokenizer", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'J'},         {"help", no_argument, NULL, 'h'},
        {"spike-rates", no_argument, NULL, 'S'},
        {"check-tokenizer", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0}};
    *o = (options){.window = 1024, .batch = 16};
    int c;
    size_t v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->text_path = optarg; break;
        case 'l':
            if (o->n_labels == MAX_LABELS) {
                fprintf(stderr, "qslm-eval: at most %d --labels\n", MAX_LABELS);
                return -1;
            }
            o->labels[o->n_labels++] = optarg;
            break;
        case 'C': o->check_path = optarg; break;
        case 'k': o->tokenizer_path = optarg; break;
        case 'J': o->json = 1; break;
        case 'S': o->spike_rates = 1; break;
        case 'w':
            if (parse_size(optarg, "--window", 2, 1 << 20, &o->window))
                return -1;
            break;
        case 'b':
            if (parse_size(optarg, "--batch", 1, 4096, &o->batch))
                return -1;
            break;
        case 'j':
            if (parse_size(optarg, "--threads", 1, 256, &v))
                return -1;
            o->threads = (int)v;
            break;
        case 'h': fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    if (o->check_path) {
        if (optind != argc || o->text_path || o->n_labels || o->tokenizer_path) {
            fprintf(stderr, "qslm-eval: --check-tokenizer takes no MODEL and no other option\n");
            return -1;
        }
        return 0;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "qslm-eval: expected exactly one MODEL argument\n%s", usage);
        return -1;
    }
    o->model_path = argv[optind];
    if (!o->text_path == !o->n_labels) {
        fprintf(stderr, "qslm-eval: give exactly one of --text and --labels\n");
        return -1;
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    double start, last;
    int tty;
} progress_state;

/* A progress line on a terminal, at most ten times a second; nothing when stderr is a file. */
static void show_progress(void *arg, uint64_t done, uint64_t total)
{
    progress_state *p = arg;
    double t = now_seconds();
    if (!p->tty || (t - p->last < 0.1 && done < total))
        return;
    p->last = t;
    fprintf(stderr, "\rqslm-eval: %5.1f%% (%llu/%llu tokens) %.1f s", 100.0 * (double)done / (double)total,
            (unsigned long long)done, (unsigned long long)total, t - p->start);
    if (done >= total)
        fputc('\n', stderr);
}

static int run_text(const options *o, const qr_tokenizer *tok, qr_runner *runner, const qr_model *m)
{
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    qr_error err;
    if (qr_text_load(o->text_path, tok, m->vocab, &ids, &n, &len, &err)) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (n < 2) {
        fprintf(stderr, "qslm-eval: %s: %zu tokens; perplexity needs at least 2\n", o->text_path, n);
        free(ids);
        return EXIT_USAGE;
    }
    progress_state p = {now_seconds(), 0, isatty(STDERR_FILENO)};
    qr_ppl_result res;
    qr_status st = qr_eval_perplexity(runner, ids, n, o->window, o->batch, show_progress, &p, &res, &err);
    double secs = now_seconds() - p.start;
    free(ids);
    if (st) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    if (o->json)
        printf("{\"ppl\": %.6f, \"nll\": %.8f, \"tokens\": %zu, \"predictions\": %llu, \"window\": %zu, "
               "\"bytes\": %zu, \"bits_per_byte\": %.6f, \"seconds\": %.3f",
               res.ppl, res.nll_sum / (double)res.predictions, n, (unsigned long long)res.predictions,
               o->window, len, res.nll_sum / 0.6931471805599453 / (double)len, secs);
    else
        printf("perplexity %.4f over %llu predictions (%zu tokens, %zu bytes, window %zu) in %.2f s\n",
               res.ppl, (unsigned long long)res.predictions, n, len, o->window, secs);
    return 0;
}

/* Which head a --labels argument measures and from which file: "TASK=FILE" when the text before
 * the first '=' names one of the model's tasks, else the whole argument is a file for head 0. */
static void labels_target(const char *arg, const qr_model *m, size_t *head, const char **path)
{
    const char *eq = strchr(arg, '=');
    *head = 0;
    *path = arg;
    if (eq && (size_t)(eq - arg) <= QR_TASK_NAME_MAX) {
        char task[QR_TASK_NAME_MAX + 1];
        snprintf(task, sizeof task, "%.*s", (int)(eq - arg), arg);
        int h = qr_model_task(m, task);
        if (h >= 0) {
            *head = (size_t)h;
            *path = eq + 1;
        }
    }
}

/* Accuracy of one head on one labelled file; prints its line (or JSON member). */
static int run_head(const options *o, const qr_tokenizer *tok, qr_runner *runner, const qr_model *m, size_t head,
                    const char *path, bool named, bool first)
{
    const qr_head_info *hi = &m->head_info.heads[head];
    qr_labelled *items;
    size_t n, tokens;
    qr_error err;
    if (qr_labels_load(path, tok, m->vocab, hi->n_classes, &items, &n, &tokens, &err)) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_USAGE;
    }
    progress_state p = {now_seconds(), 0, isatty(STDERR_FILENO)};
    qr_acc_result res;
    qr_status st = qr_eval_accuracy_head(runner, head, items, n, o->batch, NULL, NULL, show_progress, &p, &res, &err);
    double secs = now_seconds() - p.start;
    qr_labels_free(items, n);
    if (st) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    if (o->json && named)
        printf("%s{\"task\": \"%s\", \"accuracy\": %.6f, \"correct\": %llu, \"total\": %llu, \"nll\": %.6f, "
               "\"tokens\": %zu, \"seconds\": %.3f}",
               first ? "" : ", ", hi->name, res.accuracy, (unsigned long long)res.correct,
               (unsigned long long)res.total, res.nll_mean, tokens, secs);
    else if (o->json)
        printf("{\"accuracy\": %.6f, \"correct\": %llu, \"total\": %llu, \"nll\": %.6f, \"tokens\": %zu, "
               "\"seconds\": %.3f",
               res.accuracy, (unsigned long long)res.correct, (unsigned long long)res.total, res.nll_mean,
               tokens, secs);
    else
        printf("%s%s%saccuracy %.4f (%llu/%llu), classifier NLL %.4f, %zu tokens in %.2f s\n", named ? "task " : "",
               named ? hi->name : "", named ? ": " : "", res.accuracy, (unsigned long long)res.correct,
               (unsigned long long)res.total, res.nll_mean, tokens, secs);
    return 0;
}

/* Every --labels: one head each. With a single plain FILE the output is the one-head form of
 * before heads had names; otherwise one "task NAME:" line per head (JSON: a "tasks" array). */
static int run_labels(const options *o, const qr_tokenizer *tok, qr_runner *runner, const qr_model *m)
{
    if (m->head_info.n == 0) {
        fprintf(stderr, "qslm-eval: %s: the model has no classifier head\n", o->model_path);
        return EXIT_USAGE;
    }
    size_t heads[MAX_LABELS];
    const char *paths[MAX_LABELS];
    bool named = o->n_labels > 1;
    for (size_t i = 0; i < o->n_labels; i++) {
        labels_target(o->labels[i], m, &heads[i], &paths[i]);
        named |= paths[i] != o->labels[i];
        for (size_t j = 0; j < i; j++)
            if (heads[j] == heads[i]) {
                fprintf(stderr, "qslm-eval: two --labels for task '%s'\n", m->head_info.heads[heads[i]].name);
                return EXIT_USAGE;
            }
    }
    if (o->json && named)
        printf("{\"tasks\": [");
    for (size_t i = 0; i < o->n_labels; i++) {
        int rc = run_head(o, tok, runner, m, heads[i], paths[i], named, i == 0);
        if (rc)
            return rc;
    }
    if (o->json && named)
        printf("]");
    return 0;
}

/* One site's rates per layer: fired / (tokens × neurons per layer). */
static void print_rates(const char *site, const uint64_t *fired, size_t n_layer, uint64_t tokens,
                        size_t width, int json, int *first)
{
    if (json)
        printf("%s\"%s\": [", *first ? "" : ", ", site);
    else
        printf("  %-11s", site);
    *first = 0;
    for (size_t l = 0; l < n_layer; l++)
        printf(json ? "%s%.6f" : "%s%.4f", l ? (json ? ", " : " ") : "",
               tokens ? (double)fired[l] / ((double)tokens * (double)width) : 0.0);
    printf(json ? "]" : "\n");
}

/* The --spike-rates report: per layer, the fraction of each LIF site's neurons that fired per
 * token over everything evaluated. In JSON, a member of the result object. */
static void print_spike_rates(const qr_model *m, const qr_spike_trace *t, int json)
{
    int first = 1;
    if (json)
        printf(", \"spike_rates\": {");
    else
        printf("spike rates per layer over %llu tokens (fraction of neurons firing per token):\n",
               (unsigned long long)t->tokens);
    if (m->spike_att)
        print_rates("att", t->att_fired, m->n_layer, t->tokens, m->d, json, &first);
    if (m->spike_ffn)
        print_rates("ffn", t->ffn_fired, m->n_layer, t->tokens, m->d, json, &first);
    if (m->spike_ffn_hidden)
        print_rates("ffn_hidden", t->hidden_fired, m->n_layer, t->tokens, m->f, json, &first);
    if (json)
        printf("}");
    else if (first)
        printf("  (this model has no LIF neurons)\n");
}

/* --check-tokenizer: the loader's verdict on a tokenizer.json, nothing else. */
static int check_tokenizer(const char *path)
{
    qr_tokenizer *tok = NULL;
    qr_error err;
    if (qr_tokenizer_load_hf_file(path, &tok, &err)) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_USAGE;
    }
    printf("%s: ok, %zu token ids\n", path, qr_tokenizer_vocab_size(tok));
    qr_tokenizer_free(tok);
    return 0;
}

int main(int argc, char **argv)
{
    qr_blas_use_capable_core(argv);
    qr_blas_use_one_thread();
    options o;
    if (parse_options(argc, argv, &o))
        return EXIT_USAGE;
    if (o.check_path)
        return check_tokenizer(o.check_path);
    qr_error err;
    qr_model_file *file = NULL;
    qr_model *model = NULL;
    qr_tokenizer *tok = NULL;
    qr_pool *pool = NULL;
    qr_runner *runner = NULL;
    int rc = EXIT_USAGE;
    if (qr_model_file_open(o.model_path, &file, &err) || qr_model_bind(file, &model, &err)) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        goto out;
    }
    if (o.tokenizer_path) {
        if (qr_tokenizer_load_hf_file(o.tokenizer_path, &tok, &err)) {
            fprintf(stderr, "qslm-eval: %s\n", err.msg);
            goto out;
        }
    } else {
        const char *json;
        uint64_t len;
        if (qr_model_file_get_blob(file, "tokenizer.json", &json, &len, &err) || !json) {
            fprintf(stderr, "qslm-eval: %s: the model file embeds no tokenizer; give --tokenizer FILE\n",
                    o.model_path);
            goto out;
        }
        if (qr_tokenizer_load_hf_json(json, (size_t)len, o.model_path, &tok, &err)) {
            fprintf(stderr, "qslm-eval: %s\n", err.msg);
            goto out;
        }
    }
    rc = EXIT_RUNTIME;
    if (qr_pool_new(o.threads, &pool, &err) || qr_runner_new(model, pool, qr_eval_rows(model, o.batch, o.window), &runner, &err)) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        goto out;
    }
    uint64_t *counters = calloc(3 * model->n_layer, sizeof(uint64_t));
    qr_spike_trace trace = {0};
    if (!counters) {
        fprintf(stderr, "qslm-eval: out of memory\n");
        goto out;
    }
    if (o.spike_rates) {
        trace.att_fired = counters;
        trace.ffn_fired = counters + model->n_layer;
        trace.hidden_fired = counters + 2 * model->n_layer;
        qr_runner_set_trace(runner, &trace);
    }
    rc = o.text_path ? run_text(&o, tok, runner, model) : run_labels(&o, tok, runner, model);
    if (rc == 0 && o.spike_rates)
        print_spike_rates(model, &trace, o.json);
    if (rc == 0 && o.json)
        printf("}\n");
    free(counters);
out:
    qr_runner_free(runner);
    qr_pool_free(pool);
    qr_tokenizer_free(tok);
    qr_model_free(model);
    qr_model_file_close(file);
    return rc;
}
