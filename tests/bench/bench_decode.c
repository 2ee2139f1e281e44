/* bench-decode: one-token decode speed against the memory-bandwidth roofline.
 *
 *   bench-decode [--threads N] [--tokens N] [--runs N] [--no-synthetic] [MODEL.qslm ...]
 *
 * For each model (the given files, plus a synthetic SpikeGPT-216M-shaped model in f32 and f16
 * unless --no-synthetic) it decodes --tokens tokens --runs times and prints the median tokens/s,
 * the bytes of weights read per token, and the roofline: read bandwidth measured in this
 * process with the same threads, divided by those bytes. A benchmark, not a test: it prints
 * figures and asserts nothing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "forward.h"
#include "model.h"
#include "model_file.h"
#include "pool.h"
#include "state.h"
#include "synthetic_model.h"
#include "tensor_types.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---------------------------------------------------------------- bandwidth */

#define BW_CHUNK (1u << 20)

typedef struct {
    const float *buf;
    float sums[256];
    size_t chunk_floats;
} bw_ctx;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static float sum_chunk(const float *p, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#else
static float sum_chunk(const float *p, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}
#endif

static void bw_task(void *arg, size_t i)
{
    bw_ctx *c = arg;
    c->sums[i % 256] += sum_chunk(c->buf + i * c->chunk_floats, c->chunk_floats);
}

/* Read bandwidth in bytes/s over a buffer far larger than the caches, median of 7 passes. */
static double measure_bandwidth(qr_pool *pool)
{
    size_t bytes = (size_t)1 << 30;
    float *buf = aligned_alloc(64, bytes);
    if (!buf)
        return 0;
    memset(buf, 0, bytes);
    bw_ctx c = {buf, {0}, BW_CHUNK / sizeof(float)};
    double t[7];
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        qr_pool_run(pool, bytes / BW_CHUNK, bw_task, &c);
        t[r] = (double)bytes / (now() - t0);
    }
    free(buf);
    return median(t, 7);
}

/* ---------------------------------------------------------------- decode */

typedef struct {
    int threads;
    size_t tokens, runs;
    int synthetic;
} options;

static int bench_model(const char *path, const char *label, qr_pool *pool, double bandwidth,
                       const options *o)
{
    qr_error err;
    qr_model_file *file = NULL;
    qr_model *m = NULL;
    qr_runner *r = NULL;
    qr_state *s = NULL;
    float *logits = NULL;
    int rc = 1;
    if (qr_model_file_open(path, &file, &err) || qr_model_bind(file, &m, &err) ||
        qr_runner_new(m, pool, 1, &r, &err) || qr_state_new(m, &s, &err)) {
        fprintf(stderr, "bench-decode: %s\n", err.msg);
        goto out;
    }
    logits = malloc(m->vocab * sizeof(float));
    double tps[64];
    size_t runs = o->runs < 64 ? o->runs : 64;
    uint64_t seed = 12345;
    int32_t tok = 0;
    /* One warm-up run pulls the weights into the page cache. */
    for (size_t run = 0; run <= runs; run++) {
        qr_state_reset(s);
        double t0 = now();
        for (size_t i = 0; i < o->tokens; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            tok = (int32_t)((seed >> 33) % m->vocab);
            if (qr_forward(r, &s, &tok, 1, m->has_lm_head ? logits : NULL, NULL, &err)) {
                fprintf(stderr, "bench-decode: %s\n", err.msg);
                goto out;
            }
        }
        if (run > 0)
            tps[run - 1] = (double)o->tokens / (now() - t0);
    }
    double med = median(tps, runs);
    uint64_t bytes = qr_model_bytes_per_token(m, true);
    double roof = bandwidth / (double)bytes;
    printf("| %-22s | %-8s | %d | %4zu x %4zu x %6zu | %8.2f | %9.1f | %8.3f | %9.1f | %5.1f%% |\n", label,
           m->head.ops ? m->head.ops->name : m->emb.ops->name, qr_pool_threads(pool), m->n_layer, m->d,
           m->vocab, (double)bytes / 1e6, med, 1000.0 / med, roof, 100.0 * med / roof);
    fflush(stdout);
    rc = 0;
out:
    free(logits);
    qr_state_free(s);
    qr_runner_free(r);
    qr_model_free(m);
    qr_model_file_close(file);
    return rc;
}

static int bench_synthetic(uint32_t type, qr_pool *pool, double bandwidth, const options *o)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/qslm-bench-216m-%s-%ld.qslm", tmp, qr_type_get(type)->name, (long)getpid());
    synthetic_shape shape = {18, 768, 3072, 50277, type, 42};
    qr_error err;
    fprintf(stderr, "bench-decode: writing a synthetic 216M-shaped %s model to %s\n", qr_type_get(type)->name, path);
    if (synthetic_model_write(&shape, path, &err)) {
        fprintf(stderr, "bench-decode: %s\n", err.msg);
        return 1;
    }
    char label[64];
    snprintf(label, sizeof label, "synthetic-216M %s", qr_type_get(type)->name);
    int rc = bench_model(path, label, pool, bandwidth, o);
    unlink(path);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"threads", required_argument, NULL, 'j'},
                                             {"tokens", required_argument, NULL, 'n'},
                                             {"runs", required_argument, NULL, 'r'},
                                             {"no-synthetic", no_argument, NULL, 'S'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    options o = {0, 64, 5, 1};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': o.threads = atoi(optarg); break;
        case 'n': o.tokens = (size_t)strtoul(optarg, NULL, 10); break;
        case 'r': o.runs = (size_t)strtoul(optarg, NULL, 10); break;
        case 'S': o.synthetic = 0; break;
        case 'h':
            printf("usage: bench-decode [--threads N] [--tokens N] [--runs N] [--no-synthetic] [MODEL.qslm ...]\n"
                   "Median one-token decode tokens/s per model, beside the read-bandwidth roofline.\n");
            return 0;
        default: return 2;
        }
    }
    if (o.tokens == 0 || o.runs == 0) {
        fprintf(stderr, "bench-decode: --tokens and --runs must be positive\n");
        return 2;
    }
    qr_pool *pool;
    qr_error err;
    if (qr_pool_new(o.threads, &pool, &err)) {
        fprintf(stderr, "bench-decode: %s\n", err.msg);
        return 1;
    }
    double bw = measure_bandwidth(pool);
    printf("read bandwidth (1 GiB, %d threads, median of 7): %.2f GB/s\n", qr_pool_threads(pool), bw / 1e9);
    printf("decode: %zu tokens per run, median of %zu runs\n\n", o.tokens, o.runs);
    printf("| model                  | kernel   | thr | layers x d x vocab      | MB/token | tokens/s  | ms/token | roofline/s | ratio  |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        const char *base = strrchr(argv[i], '/');
        rc |= bench_model(argv[i], base ? base + 1 : argv[i], pool, bw, &o);
    }
    if (o.synthetic) {
        rc |= bench_synthetic(QR_TYPE_F32, pool, bw, &o);
        rc |= bench_synthetic(QR_TYPE_F16, pool, bw, &o);
    }
    qr_pool_free(pool);
    return rc;
}
