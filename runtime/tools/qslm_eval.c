/* qslm-eval: perplexity of a model on a text file, or accuracy on labelled sentences.
 *
 *   qslm-eval MODEL --text FILE [--window N] [options]
 *   qslm-eval MODEL --labels FILE.jsonl [options]
 *
 * Runs the batched evaluator (the same code QSLM's search uses). Exit codes: 0 success, 1 the
 * evaluation failed, 2 bad arguments or a bad file. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eval.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "tokenizer.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: qslm-eval MODEL (--text FILE | --labels FILE.jsonl) [options]\n"
    "\n"
    "Measures a .qslm model on a data set, on the batched evaluation path.\n"
    "  --text FILE        perplexity: exp(mean token NLL) over the whole file, cut into\n"
    "                     windows of --window tokens, each starting from a fresh state and\n"
    "                     scoring its tokens 2..N\n"
    "  --labels FILE      accuracy: one JSON object per line, {\"text\": \"...\", \"label\": N};\n"
    "                     the classifier head reads the mean of ln_out(x) over the text's tokens\n"
    "  --window N         tokens per perplexity window (default 1024)\n"
    "  --batch N          sequences evaluated together (default 16)\n"
    "  --threads N        worker threads (default: one per CPU)\n"
    "  --tokenizer FILE   a tokenizer.json, if the model file does not embed one\n"
    "  --spike-rates      also print, per layer, the fraction of LIF neurons that fired per\n"
    "                     token (time-mix and channel-mix outputs; channel-mix hidden units\n"
    "                     with spike.ffn_hidden)\n"
    "  --json             print one JSON object instead of text\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 evaluation failed, 2 bad arguments or a bad file.\n";

typedef struct {
    const char *model_path, *text_path, *labels_path, *tokenizer_path;
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
        {NULL, 0, NULL, 0}};
    *o = (options){.window = 1024, .batch = 16};
    int c;
    size_t v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->text_path = optarg; break;
        case 'l': o->labels_path = optarg; break;
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
    if (optind + 1 != argc) {
        fprintf(stderr, "qslm-eval: expected exactly one MODEL argument\n%s", usage);
        return -1;
    }
    o->model_path = argv[optind];
    if (!o->text_path == !o->labels_path) {
        fprintf(stderr, "qslm-eval: give exactly one of --text and --labels\n");
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "qslm-eval: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "qslm-eval: %s: cannot read%s\n", path, buf ? "" : " (out of memory)");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
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

/* Encodes text and checks every id fits the model's vocabulary. */
static int encode_checked(const qr_tokenizer *tok, const qr_model *m, const char *text, size_t len,
                          const char *where, int32_t **ids, size_t *n)
{
    qr_error err;
    if (qr_tokenizer_encode(tok, text, len, QR_TOKENIZE_SPECIAL_AS_TEXT, ids, n, &err)) {
        fprintf(stderr, "qslm-eval: %s: %s\n", where, err.msg);
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        if ((size_t)(*ids)[i] >= m->vocab) {
            fprintf(stderr, "qslm-eval: %s: the tokenizer produced id %d but the model's vocabulary has %zu tokens\n",
                    where, (int)(*ids)[i], m->vocab);
            return -1;
        }
    }
    return 0;
}

static int run_text(const options *o, const qr_tokenizer *tok, qr_runner *runner, const qr_model *m)
{
    size_t len;
    char *text = read_file(o->text_path, &len);
    if (!text)
        return EXIT_USAGE;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = encode_checked(tok, m, text, len, o->text_path, &ids, &n);
    free(text);
    if (rc) {
        free(ids);
        return EXIT_USAGE;
    }
    if (n < 2) {
        fprintf(stderr, "qslm-eval: %s: %zu tokens; perplexity needs at least 2\n", o->text_path, n);
        free(ids);
        return EXIT_USAGE;
    }
    progress_state p = {now_seconds(), 0, isatty(STDERR_FILENO)};
    qr_ppl_result res;
    qr_error err;
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

/* Reads FILE.jsonl into labelled items; errors name the file and line. */
static int load_labels(const char *path, const qr_tokenizer *tok, const qr_model *m,
                       qr_labelled **items_out, size_t *n_out, size_t *tokens_out)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return -1;
    qr_labelled *items = NULL;
    size_t n = 0, cap = 0, total = 0, line_no = 0;
    int rc = 0;
    char *save = NULL;
    char where[4200];
    for (char *line = text; line && *line && rc == 0; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        line_no++;
        if (strspn(line, " \t\r") == strlen(line))
            continue;
        snprintf(where, sizeof where, "%s:%zu", path, line_no);
        enum json_tokener_error jerr = json_tokener_success;
        json_object *obj = json_tokener_parse_verbose(line, &jerr);
        json_object *jtext, *jlabel;
        if (!obj || jerr != json_tokener_success) {
            fprintf(stderr, "qslm-eval: %s: not valid JSON (%s)\n", where, json_tokener_error_desc(jerr));
            rc = -1;
        } else if (!json_object_is_type(obj, json_type_object) ||
                   !json_object_object_get_ex(obj, "text", &jtext) ||
                   !json_object_is_type(jtext, json_type_string)) {
            fprintf(stderr, "qslm-eval: %s: needs a string field \"text\"\n", where);
            rc = -1;
        } else if (!json_object_object_get_ex(obj, "label", &jlabel) ||
                   !json_object_is_type(jlabel, json_type_int) || json_object_get_int64(jlabel) < 0 ||
                   (size_t)json_object_get_int64(jlabel) >= m->n_classes) {
            fprintf(stderr, "qslm-eval: %s: needs an integer field \"label\" in 0..%zu\n", where,
                    m->n_classes - 1);
            rc = -1;
        } else {
            int32_t *ids = NULL;
            size_t nt = 0;
            if (encode_checked(tok, m, json_object_get_string(jtext), (size_t)json_object_get_string_len(jtext),
                               where, &ids, &nt)) {
                rc = -1;
            } else if (nt == 0) {
                fprintf(stderr, "qslm-eval: %s: the text is empty\n", where);
                rc = -1;
            } else {
                if (n == cap) {
                    cap = cap ? cap * 2 : 256;
                    qr_labelled *ni = realloc(items, cap * sizeof *ni);
                    if (!ni) {
                        fprintf(stderr, "qslm-eval: out of memory\n");
                        rc = -1;
                    } else {
                        items = ni;
                    }
                }
                if (rc == 0) {
                    items[n++] = (qr_labelled){ids, nt, (int)json_object_get_int64(jlabel)};
                    total += nt;
                    ids = NULL;
                }
            }
            free(ids);
        }
        json_object_put(obj);
    }
    free(text);
    if (rc == 0 && n == 0) {
        fprintf(stderr, "qslm-eval: %s: no labelled lines\n", path);
        rc = -1;
    }
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free((void *)items[i].tokens);
        free(items);
        return -1;
    }
    *items_out = items;
    *n_out = n;
    *tokens_out = total;
    return 0;
}

static int run_labels(const options *o, const qr_tokenizer *tok, qr_runner *runner, const qr_model *m)
{
    if (m->n_classes == 0) {
        fprintf(stderr, "qslm-eval: %s: the model has no classifier head (head.n_classes is 0)\n", o->model_path);
        return EXIT_USAGE;
    }
    qr_labelled *items;
    size_t n, tokens;
    if (load_labels(o->labels_path, tok, m, &items, &n, &tokens))
        return EXIT_USAGE;
    progress_state p = {now_seconds(), 0, isatty(STDERR_FILENO)};
    qr_acc_result res;
    qr_error err;
    qr_status st = qr_eval_accuracy(runner, items, n, o->batch, show_progress, &p, &res, &err);
    double secs = now_seconds() - p.start;
    for (size_t i = 0; i < n; i++)
        free((void *)items[i].tokens);
    free(items);
    if (st) {
        fprintf(stderr, "qslm-eval: %s\n", err.msg);
        return EXIT_RUNTIME;
    }
    if (o->json)
        printf("{\"accuracy\": %.6f, \"correct\": %llu, \"total\": %llu, \"nll\": %.6f, \"tokens\": %zu, "
               "\"seconds\": %.3f",
               res.accuracy, (unsigned long long)res.correct, (unsigned long long)res.total, res.nll_mean,
               tokens, secs);
    else
        printf("accuracy %.4f (%llu/%llu), classifier NLL %.4f, %zu tokens in %.2f s\n", res.accuracy,
               (unsigned long long)res.correct, (unsigned long long)res.total, res.nll_mean, tokens, secs);
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

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o))
        return EXIT_USAGE;
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
    if (qr_pool_new(o.threads, &pool, &err) || qr_runner_new(model, pool, o.batch, &runner, &err)) {
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
