/* qslm-generate: continue a prompt with a model, streaming the text as it is produced.
 *
 *   qslm-generate MODEL [options] PROMPT
 *
 * The daemon's path from the command line: the prompt read in chunks (qr_forward_sequence, as
 * qslmd reads it: the same chunks give the same bits), then one-token decode, the sampler and
 * the stop strings. Exit codes: 0 success, 1 generation failed, 2 bad arguments or a
 * bad file. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "footprint.h"
#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "sampler.h"
#include "state.h"
#include "stop.h"
#include "tokenizer.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage[] =
    "usage: qslm-generate MODEL [options] PROMPT\n"
    "\n"
    "Continues PROMPT with the model's LM head and prints the text as it is generated.\n"
    "  -n, --max-tokens N     tokens to generate (default 64)\n"
    "  -t, --temperature T    0 = greedy (default 0.8)\n"
    "  -k, --top-k K          0 = off (default 40)\n"
    "  -p, --top-p P          1 = off (default 0.95)\n"
    "  -r, --repeat-penalty R 1 = off (default 1.1, over the last 64 tokens)\n"
    "  -s, --seed S           sampling seed (default 1)\n"
    "  -S, --stop TEXT        stop before TEXT (repeatable, up to 16)\n"
    "  -j, --threads N        worker threads (default: one per CPU)\n"
    "  --prefill-chunk N      prompt tokens read at once, 1..63 (default " STR(QR_PREFILL_CHUNK) ", as qslmd)\n"
    "  --tokenizer FILE       a tokenizer.json, if the model file does not embed one\n"
    "  --stats                print tokens, time and tokens/s to stderr at the end\n"
    "  -h, --help             this help\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int number(const char *arg, const char *name, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || *end || end == arg || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "qslm-generate: %s must be a number in [%g, %g], not '%s'\n", name, min, max, arg);
        return -1;
    }
    *out = v;
    return 0;
}

static void emit(qr_utf8_stream *u, const char *text, size_t len)
{
    uint8_t buf[1024 + QR_UTF8_STREAM_MAX_HELD];
    while (len > 0) {
        size_t n = len < 1024 ? len : 1024;
        size_t k = qr_utf8_stream_feed(u, (const uint8_t *)text, n, buf);
        fwrite(buf, 1, k, stdout);
        text += n;
        len -= n;
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"max-tokens", required_argument, NULL, 'n'}, {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},      {"top-p", required_argument, NULL, 'p'},
        {"repeat-penalty", required_argument, NULL, 'r'}, {"seed", required_argument, NULL, 's'},
        {"stop", required_argument, NULL, 'S'},       {"threads", required_argument, NULL, 'j'},
        {"tokenizer", required_argument, NULL, 'T'},  {"stats", no_argument, NULL, 'X'},
        {"prefill-chunk", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};
    qr_sampler_params sp = qr_sampler_defaults();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.repetition_penalty = 1.1f;
    sp.repetition_window = 64;
    sp.seed = 1;
    size_t max_tokens = 64, chunk = QR_PREFILL_CHUNK;
    int threads = 0, stats = 0;
    const char *stops[QR_STOP_MAX], *tokenizer_path = NULL;
    size_t n_stops = 0;
    double v;
    int c;
    while ((c = getopt_long(argc, argv, "n:t:k:p:r:s:S:j:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': if (number(optarg, "--max-tokens", 1, 1e6, &v)) return 2; max_tokens = (size_t)v; break;
        case 't': if (number(optarg, "--temperature", 0, 100, &v)) return 2; sp.temperature = (float)v; break;
        case 'k': if (number(optarg, "--top-k", 0, 1e7, &v)) return 2; sp.top_k = (size_t)v; break;
        case 'p': if (number(optarg, "--top-p", 1e-6, 1, &v)) return 2; sp.top_p = (float)v; break;
        case 'r': if (number(optarg, "--repeat-penalty", 1, 10, &v)) return 2; sp.repetition_penalty = (float)v; break;
        case 's': if (number(optarg, "--seed", 0, 1e18, &v)) return 2; sp.seed = (uint64_t)v; break;
        case 'j': if (number(optarg, "--threads", 1, 256, &v)) return 2; threads = (int)v; break;
        case 'C': if (number(optarg, "--prefill-chunk", 1, 63, &v)) return 2; chunk = (size_t)v; break;
        case 'S':
            if (n_stops == QR_STOP_MAX) {
                fprintf(stderr, "qslm-generate: at most %d --stop strings\n", QR_STOP_MAX);
                return 2;
            }
            stops[n_stops++] = optarg;
            break;
        case 'T': tokenizer_path = optarg; break;
        case 'X': stats = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind + 2 != argc) {
        fprintf(stderr, "qslm-generate: expected MODEL and PROMPT\n%s", usage);
        return 2;
    }
    const char *model_path = argv[optind], *prompt = argv[optind + 1];
    qr_error err;
    qr_model_file *file = NULL;
    qr_model *m = NULL;
    qr_tokenizer *tok = NULL;
    qr_pool *pool = NULL;
    qr_runner *r = NULL;
    qr_state *s = NULL;
    qr_sampler *sampler = NULL;
    qr_stop *stop = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int rc = 2;
    if (qr_model_file_open(model_path, &file, &err) || qr_model_bind(file, &m, &err))
        goto fail;
    if (!m->has_lm_head) {
        fprintf(stderr, "qslm-generate: %s has no LM head\n", model_path);
        goto out;
    }
    if (tokenizer_path) {
        if (qr_tokenizer_load_hf_file(tokenizer_path, &tok, &err))
            goto fail;
    } else {
        const char *json;
        uint64_t len;
        if (qr_model_file_get_blob(file, "tokenizer.json", &json, &len, &err))
            goto fail;
        if (!json) {
            fprintf(stderr, "qslm-generate: %s embeds no tokenizer; give --tokenizer FILE\n", model_path);
            goto out;
        }
        if (qr_tokenizer_load_hf_json(json, (size_t)len, model_path, &tok, &err))
            goto fail;
    }
    size_t n_prompt;
    if (qr_tokenizer_encode(tok, prompt, strlen(prompt), QR_TOKENIZE_SPECIAL_AS_TEXT, &ids, &n_prompt, &err) ||
        qr_sampler_new(m->vocab, &sp, &sampler, &err) || qr_stop_new(stops, n_stops, &stop, &err))
        goto fail;
    if (n_prompt == 0) {
        fprintf(stderr, "qslm-generate: the prompt is empty\n");
        goto out;
    }
    rc = 1;
    int32_t *hist = realloc(ids, (n_prompt + max_tokens) * sizeof *hist);
    if (hist)
        ids = hist;
    logits = malloc(m->vocab * sizeof *logits);
    if (!hist || !logits) {
        qr_fail(&err, QR_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (qr_pool_new(threads, &pool, &err) || qr_runner_new(m, pool, chunk, &r, &err) || qr_state_new(m, &s, &err))
        goto fail;
    double t0 = now();
    /* the prompt in chunks of the runner's rows from its start; the last token's logits */
    if (qr_forward_sequence(r, s, ids, n_prompt, logits, NULL, &err))
        goto fail;
    double t1 = now();
    qr_utf8_stream u;
    qr_utf8_stream_init(&u);
    size_t n = n_prompt, generated = 0;
    int32_t eot = qr_tokenizer_token_id(tok, "<|endoftext|>");
    bool stopped = false;
    while (generated < max_tokens && !stopped) {
        int32_t next = qr_sampler_sample(sampler, logits, ids, n);
        ids[n++] = next;
        generated++;
        if (next == eot)
            break;
        size_t len;
        const uint8_t *bytes = qr_tokenizer_decode_token(tok, next, &len);
        const char *out;
        size_t out_len;
        stopped = qr_stop_feed(stop, (const char *)bytes, len, &out, &out_len);
        emit(&u, out, out_len);
        if (!stopped && generated < max_tokens && qr_forward(r, &s, &next, 1, logits, NULL, &err))
            goto fail;
    }
    const char *out;
    size_t out_len;
    if (!stopped) {
        qr_stop_flush(stop, &out, &out_len);
        emit(&u, out, out_len);
    }
    uint8_t tail[QR_UTF8_STREAM_MAX_HELD];
    fwrite(tail, 1, qr_utf8_stream_flush(&u, tail), stdout);
    putchar('\n');
    fflush(stdout);
    double t2 = now();
    if (stats)
        fprintf(stderr, "qslm-generate: prompt %zu tokens in %.3f s, generated %zu tokens in %.3f s (%.1f tokens/s)\n",
                n_prompt, t1 - t0, generated, t2 - t1, (double)generated / (t2 - t1));
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "qslm-generate: %s\n", err.msg);
out:
    free(logits);
    free(ids);
    qr_stop_free(stop);
    qr_sampler_free(sampler);
    qr_state_free(s);
    qr_runner_free(r);
    qr_pool_free(pool);
    qr_tokenizer_free(tok);
    qr_model_free(m);
    qr_model_file_close(file);
    return rc;
}
