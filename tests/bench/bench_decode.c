/* bench-decode: one-token decode speed against the memory-bandwidth roofline.
 *
 *   bench-decode [--threads N] [--tokens N] [--runs N] [--types f32,f16,q4_0,...]
 *                [--edge TYPE] [--batch N] [--prefill N] [--chunk N] [--no-synthetic]
 *                [MODEL.qslm ...]
 *
 * For each model (the given files, plus a synthetic SpikeGPT-216M-shaped model in each of
 * --types, default f32 and f16, unless --no-synthetic) it decodes --tokens tokens --runs times
 * and prints the bits per weight read, the median tokens/s, the bytes of weights read per token,
 * and the roofline: read bandwidth measured in this process with the same threads, divided by
 * those bytes. The synthetic models store the embedding and head in the same type as the other
 * matrices unless --edge names a type for both. With --prefill, each model's chunked forward
 * (qr_forward_sequence) over N known tokens, beside its decode speed. Then, per type, the
 * matrix-matrix products of --batch rows: dequantized panels + sgemm against the integer gemm.
 * A benchmark, not a test: it prints figures and asserts nothing. */
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
#include "linear.h"
#include "model.h"
#include "model_file.h"
#include "pool.h"
#include "quantize.h"
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

/* Read bandwidth of the model's own matrices (the mapped file, as decode reads them), in tasks of
 * 128 KiB over the pool, median of 5 passes. The 1 GiB buffer above lands wherever the allocator
 * puts it; on a VM its bandwidth varies between processes (we saw 28 and 44 GB/s), while the
 * weights stay in the same page-cache pages, so this is the fairer roofline for them. Caveat: a
 * model under a few times the last-level cache keeps part of itself cached between passes, which
 * inflates this figure (the 216M shape at 2 and 3 bits on a 32 MB L3); and it is noisy too. */
#define W_CHUNK ((size_t)1 << 17)

typedef struct {
    const uint8_t *base[1024];
    size_t len[1024], n;
    size_t *span, *off; /* task -> span, offset */
    unsigned sums[256];
} w_ctx;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static unsigned sum_bytes(const uint8_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a = _mm256_add_epi32(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi32(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
    }
    unsigned out[8];
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi32(a, b));
    for (; i < n; i++)
        out[0] += p[i];
    return out[0] ^ out[7];
}
#else
static unsigned sum_bytes(const uint8_t *p, size_t n)
{
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}
#endif

static void w_task(void *arg, size_t i)
{
    w_ctx *c = arg;
    size_t s = c->span[i], o = c->off[i];
    c->sums[i % 256] += sum_bytes(c->base[s] + o, c->len[s] - o < W_CHUNK ? c->len[s] - o : W_CHUNK);
}

static double weights_bandwidth(const qr_model *m, qr_pool *pool)
{
    static w_ctx c;
    memset(&c, 0, sizeof c);
    double total = 0;
    for (size_t i = 0; i < m->n_layer && c.n + 8 < 1024; i++) {
        const qr_layer *l = &m->layers[i];
        const qr_matrix *mats[] = {&l->att_key, &l->att_value, &l->att_receptance, &l->att_output,
                                   &l->ffn_key, &l->ffn_receptance, &l->ffn_value};
        for (size_t j = 0; j < 7; j++) {
            c.base[c.n] = mats[j]->data;
            c.len[c.n++] = mats[j]->rows * mats[j]->row_bytes;
        }
    }
    if (m->has_lm_head) {
        c.base[c.n] = m->head.data;
        c.len[c.n++] = m->head.rows * m->head.row_bytes;
    }
    size_t n_tasks = 0;
    for (size_t s = 0; s < c.n; s++)
        n_tasks += (c.len[s] + W_CHUNK - 1) / W_CHUNK;
    c.span = malloc(n_tasks * sizeof *c.span);
    c.off = malloc(n_tasks * sizeof *c.off);
    if (!c.span || !c.off) {
        free(c.span);
        free(c.off);
        return 0;
    }
    n_tasks = 0;
    for (size_t s = 0; s < c.n; s++) {
        total += (double)c.len[s];
        for (size_t o = 0; o < c.len[s]; o += W_CHUNK) {
            c.span[n_tasks] = s;
            c.off[n_tasks++] = o;
        }
    }
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        qr_pool_run(pool, n_tasks, w_task, &c);
        t[r] = total / (now() - t0);
    }
    free(c.span);
    free(c.off);
    return median(t, 5);
}

/* ---------------------------------------------------------------- decode */

typedef struct {
    int threads;
    size_t tokens, runs;
    int synthetic;
    const char *types;      /* comma-separated synthetic types */
    const char *edge;       /* type of the synthetic emb and head, or NULL: as the matrices */
    size_t batch;           /* tokens of the matrix-matrix bench (0: skip it) */
    int spike_hidden;       /* also bench each synthetic type with spike.ffn_hidden */
    size_t prefill;         /* tokens of the prefill bench per model (0: skip it) */
    size_t chunk;           /* tokens per call of the prefill bench */
} options;

/* The prefill table, printed after the decode table. */
#define MAX_PREFILL_ROWS 64
static struct {
    char label[64], kernel[24];
    double prefill, decode;
} prefill_rows[MAX_PREFILL_ROWS];
static size_t n_prefill_rows;

/* Median tokens/s of qr_forward_sequence over `tokens` random tokens from a fresh state, in
 * chunks of `chunk`, the last token's logits computed (as a prompt needs). 0 on failure. */
static double bench_prefill(const qr_model *m, qr_pool *pool, const options *o)
{
    qr_error err;
    qr_runner *r = NULL;
    qr_state *s = NULL;
    int32_t *toks = malloc(o->prefill * sizeof *toks);
    float *logits = malloc(m->vocab * sizeof *logits);
    double med = 0, tps[64];
    size_t runs = o->runs < 64 ? o->runs : 64;
    if (!toks || !logits || qr_runner_new(m, pool, o->chunk, &r, &err) || qr_state_new(m, &s, &err))
        goto out;
    uint64_t seed = 99;
    for (size_t i = 0; i < o->prefill; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((seed >> 33) % m->vocab);
    }
    for (size_t run = 0; run <= runs; run++) { /* the first run warms up */
        qr_state_reset(s);
        double t0 = now();
        if (qr_forward_sequence(r, s, toks, o->prefill, m->has_lm_head ? logits : NULL, NULL, &err)) {
            fprintf(stderr, "bench-decode: %s\n", err.msg);
            goto out;
        }
        if (run > 0)
            tps[run - 1] = (double)o->prefill / (now() - t0);
    }
    med = median(tps, runs);
out:
    qr_state_free(s);
    qr_runner_free(r);
    free(logits);
    free(toks);
    return med;
}

/* Weights read for one token, the denominator of the bits per weight column. */
static uint64_t weights_per_token(const qr_model *m)
{
    uint64_t n = m->emb.cols;
    for (size_t i = 0; i < m->n_layer; i++) {
        const qr_layer *l = &m->layers[i];
        const qr_matrix *mats[] = {&l->att_key, &l->att_value, &l->att_receptance, &l->att_output,
                                   &l->ffn_key, &l->ffn_receptance, &l->ffn_value};
        for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++)
            n += (uint64_t)mats[j]->rows * mats[j]->cols;
    }
    if (m->has_lm_head)
        n += (uint64_t)m->head.rows * m->head.cols;
    return n;
}

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
    /* With spike.ffn_hidden only the value rows of units that fire are read: count them. */
    uint64_t hidden_fired[4096] = {0};
    qr_spike_trace trace = {.hidden_fired = hidden_fired};
    if (m->spike_ffn_hidden && m->n_layer <= 4096)
        qr_runner_set_trace(r, &trace);
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
    if (trace.tokens) {
        double unread = 0, fired = 0;
        for (size_t i = 0; i < m->n_layer; i++) {
            const qr_matrix *v = &m->layers[i].ffn_value;
            double rate = (double)hidden_fired[i] / ((double)trace.tokens * (double)m->f);
            unread += (1.0 - rate) * (double)(v->rows * v->row_bytes);
            fired += rate / (double)m->n_layer;
        }
        bytes -= (uint64_t)unread;
        fprintf(stderr, "bench-decode: %s: hidden units fire at %.3f on average; bytes per token "
                "count the value rows read\n", label, fired);
    }
    double roof = bandwidth / (double)bytes, wbw = weights_bandwidth(m, pool);
    double wroof = wbw / (double)bytes;
    printf("| %-26s | %-17s | %5.2f | %d | %4zu x %4zu x %6zu | %8.2f | %9.1f | %8.3f | %9.1f | %5.1f%% | %5.1f | %5.1f%% |\n",
           label, m->layers[0].ffn_value.ops->name, 8.0 * (double)bytes / (double)weights_per_token(m),
           qr_pool_threads(pool), m->n_layer, m->d, m->vocab, (double)bytes / 1e6, med, 1000.0 / med,
           roof, 100.0 * med / roof, wbw / 1e9, 100.0 * med / wroof);
    fflush(stdout);
    if (o->prefill && n_prefill_rows < MAX_PREFILL_ROWS) {
        snprintf(prefill_rows[n_prefill_rows].label, sizeof prefill_rows[0].label, "%s", label);
        snprintf(prefill_rows[n_prefill_rows].kernel, sizeof prefill_rows[0].kernel, "%s",
                 m->layers[0].ffn_value.ops->name);
        prefill_rows[n_prefill_rows].decode = med;
        prefill_rows[n_prefill_rows++].prefill = bench_prefill(m, pool, o);
    }
    rc = 0;
out:
    free(logits);
    qr_state_free(s);
    qr_runner_free(r);
    qr_model_free(m);
    qr_model_file_close(file);
    return rc;
}

static int bench_synthetic(uint32_t type, const char *edge, bool spike_hidden, qr_pool *pool,
                           double bandwidth, const options *o)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/qslm-bench-216m-%s-%ld.qslm", tmp, qr_type_get(type)->name, (long)getpid());
    synthetic_shape shape = {18, 768, 3072, 50277, type, 42};
    shape.pool = pool;
    shape.spike_ffn_hidden = spike_hidden;
    if (edge) {
        shape.own_edge_types = true;
        qr_type_from_name(edge, &shape.emb_type);
        shape.head_type = shape.emb_type;
    }
    qr_error err;
    fprintf(stderr, "bench-decode: writing a synthetic 216M-shaped %s model to %s\n", qr_type_get(type)->name, path);
    if (synthetic_model_write(&shape, path, &err)) {
        fprintf(stderr, "bench-decode: %s\n", err.msg);
        return 1;
    }
    char label[64];
    snprintf(label, sizeof label, "synthetic-216M %s%s%s%s", qr_type_get(type)->name, edge ? "/" : "",
             edge ? edge : "", spike_hidden ? " spk" : "");
    int rc = bench_model(path, label, pool, bandwidth, o);
    unlink(path);
    return rc;
}

/* ---------------------------------------------------------------- batched */

/* The batched path (qr_matmul: dequantize row panels, then sgemm) on the 216M shape's ffn.key
 * (3072 x 768) with --batch tokens: GFLOP/s, median of 5. */
static void bench_matmul(uint32_t type, size_t B)
{
    size_t rows = 3072, cols = 768;
    uint64_t rb;
    float *w = malloc(rows * cols * sizeof *w), *X = malloc(B * cols * sizeof *X);
    float *Y = malloc(B * rows * sizeof *Y), *panel = malloc(qr_matmul_panel_floats(cols, B) * sizeof(float));
    void *q = qr_type_bytes(type, cols, &rb) ? malloc(rows * (size_t)rb) : NULL;
    if (!w || !X || !Y || !panel || !q) {
        fprintf(stderr, "bench-decode: out of memory for the matmul bench\n");
        goto out;
    }
    uint64_t seed = 7;
    for (size_t i = 0; i < rows * cols; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((seed >> 40) & 0xffff) / 32768.0f - 1.0f;
    }
    for (size_t i = 0; i < B * cols; i++)
        X[i] = (float)(i % 17) / 8.0f - 1.0f;
    qr_quantize_tensor(type, w, rows, cols, NULL, q, NULL);
    qr_matrix m = {q, type, rows, cols, (size_t)rb, qr_kernels_best(type)};
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        qr_matmul(&m, X, B, Y, panel);
        t[r] = now() - t0;
    }
    double med = median(t, 5), ops = 2.0 * (double)(B * rows * cols);
    /* The chunk products: x rounded to 8-bit blocks (in the gemm layout), then integer gemm. */
    double gmed = 0;
    if (m.ops->gemm_x8) {
        size_t groups = (cols / 32 + 7) / 8;
        qr_x8_group *xq = malloc(B * groups * sizeof *xq);
        for (int r = 0; xq && r < 5; r++) {
            double t0 = now();
            for (size_t b = 0; b < B; b++)
                m.ops->prepare_x_gemm(X + b * cols, cols, xq + b * groups);
            m.ops->gemm_x8(q, (size_t)rb, rows, xq, B, cols, Y, rows);
            t[r] = now() - t0;
        }
        gmed = xq ? median(t, 5) : 0;
        free(xq);
    }
    printf("| %-5s | %-17s | %5.2f | %4zu x %4zu | %4zu | %8.2f | %7.1f | %8.2f | %7.1f | %5.2f |\n",
           qr_type_get(type)->name, m.ops->name, qr_type_bits_per_weight(type), rows, cols, B, med * 1e3,
           ops / med / 1e9, gmed * 1e3, gmed > 0 ? ops / gmed / 1e9 : 0.0, gmed > 0 ? med / gmed : 0.0);
out:
    free(w);
    free(X);
    free(Y);
    free(panel);
    free(q);
}

int main(int argc, char **argv)
{
    qr_blas_use_capable_core(argv);
    static const struct option longopts[] = {{"threads", required_argument, NULL, 'j'},
                                             {"tokens", required_argument, NULL, 'n'},
                                             {"runs", required_argument, NULL, 'r'},
                                             {"no-synthetic", no_argument, NULL, 'S'},
                                             {"types", required_argument, NULL, 't'},
                                             {"edge", required_argument, NULL, 'e'},
                                             {"batch", required_argument, NULL, 'b'},
                                             {"spike-hidden", no_argument, NULL, 'H'},
                                             {"prefill", required_argument, NULL, 'p'},
                                             {"chunk", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    options o = {0, 64, 5, 1, "f32,f16", NULL, 64, 0, 0, 64};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': o.threads = atoi(optarg); break;
        case 'n': o.tokens = (size_t)strtoul(optarg, NULL, 10); break;
        case 'r': o.runs = (size_t)strtoul(optarg, NULL, 10); break;
        case 'S': o.synthetic = 0; break;
        case 't': o.types = optarg; break;
        case 'e': o.edge = optarg; break;
        case 'b': o.batch = (size_t)strtoul(optarg, NULL, 10); break;
        case 'H': o.spike_hidden = 1; break;
        case 'p': o.prefill = (size_t)strtoul(optarg, NULL, 10); break;
        case 'c': o.chunk = (size_t)strtoul(optarg, NULL, 10); break;
        case 'h':
            printf("usage: bench-decode [--threads N] [--tokens N] [--runs N] [--types T1,T2,...]\n"
                   "                    [--edge TYPE] [--batch N] [--prefill N] [--chunk N]\n"
                   "                    [--no-synthetic] [MODEL.qslm ...]\n"
                   "Median one-token decode tokens/s per model, beside the read-bandwidth roofline.\n"
                   "  --types   synthetic 216M-shaped models to bench (default f32,f16); any of\n"
                   "            f32 f16 q8_0 q6_0 q5_0 q4_0 q3_0 q2_0 q8_1 q6_1 q5_1 q4_1 q3_1 q2_1\n"
                   "            q4_s q3_s q2_s\n"
                   "  --edge    store the synthetic embedding and head in this type (default: as\n"
                   "            the other matrices)\n"
                   "  --batch N rows of the matrix-matrix table (sgemm on dequantized panels\n"
                   "            against the integer gemm), per type of --types (default 64; 0 skips it)\n"
                   "  --spike-hidden  also bench each synthetic type with spike.ffn_hidden (LIF\n"
                   "            hidden units, value product as sums of the rows that fired; label\n"
                   "            'spk'); its bytes per token count only the rows read\n"
                   "  --prefill N  also time N known tokens of one sequence per model through the\n"
                   "            chunked forward (qr_forward_sequence, last token's logits), beside\n"
                   "            its decode tokens/s (default 0: skip)\n"
                   "  --chunk N tokens per call of the prefill bench (default 64, at most 4096)\n");
            return 0;
        default: return 2;
        }
    }
    if (o.tokens == 0 || o.runs == 0) {
        fprintf(stderr, "bench-decode: --tokens and --runs must be positive\n");
        return 2;
    }
    uint32_t types[64], edge_type;
    size_t n_types = 0;
    char list[512];
    snprintf(list, sizeof list, "%s", o.types);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n_types == 64 || !qr_type_from_name(tok, &types[n_types])) {
            fprintf(stderr, "bench-decode: --types: unknown or too many types at '%s'\n", tok);
            return 2;
        }
        n_types++;
    }
    if (o.chunk == 0 || o.chunk > 4096) {
        fprintf(stderr, "bench-decode: --chunk must be 1..4096\n");
        return 2;
    }
    if (o.batch > 4096) {
        fprintf(stderr, "bench-decode: --batch must be at most 4096\n");
        return 2;
    }
    if (o.edge && !qr_type_from_name(o.edge, &edge_type)) {
        fprintf(stderr, "bench-decode: --edge: unknown type '%s'\n", o.edge);
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
    printf("roofline/s and ratio: against the 1 GiB buffer's bandwidth; weights GB/s and ratio(w): against\n"
           "reading the model's own mapped matrices in this run (the fairer roofline on a VM)\n\n");
    printf("| model                      | kernel            | bits/w | thr | layers x d x vocab      | MB/token | tokens/s  | ms/token | roofline/s | ratio  | weights GB/s | ratio(w) |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        const char *base = strrchr(argv[i], '/');
        rc |= bench_model(argv[i], base ? base + 1 : argv[i], pool, bw, &o);
    }
    for (size_t t = 0; o.synthetic && t < n_types; t++) {
        rc |= bench_synthetic(types[t], o.edge, false, pool, bw, &o);
        if (o.spike_hidden)
            rc |= bench_synthetic(types[t], o.edge, true, pool, bw, &o);
    }
    if (n_prefill_rows) {
        printf("\nprefill: %zu tokens of one sequence in chunks of %zu (qr_forward_sequence, the last\n"
               "token's logits), median of %zu runs, beside decode's tokens/s of the same run\n\n", o.prefill,
               o.chunk, o.runs);
        printf("| model                      | kernel            | prefill tokens/s | decode tokens/s | ratio |\n"
               "|---|---|---|---|---|\n");
        for (size_t i = 0; i < n_prefill_rows; i++)
            printf("| %-26s | %-17s | %9.1f | %9.1f | %5.2f |\n", prefill_rows[i].label, prefill_rows[i].kernel,
                   prefill_rows[i].prefill, prefill_rows[i].decode,
                   prefill_rows[i].decode > 0 ? prefill_rows[i].prefill / prefill_rows[i].decode : 0.0);
    }
    if (o.batch) {
        printf("\nproducts of --batch rows on one thread, median of 5: dequantized panels + OpenBLAS sgemm\n"
               "(qr_matmul), and the integer gemm of the quantized types (x rounded to 8 bits, then\n"
               "gemm_x8), with its speed-up over sgemm\n\n");
        printf("| type  | kernel            | bits/w | rows x cols | batch | sgemm ms | GFLOP/s | gemm ms | GOP/s | ratio |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t t = 0; t < n_types; t++)
            bench_matmul(types[t], o.batch);
    }
    qr_pool_free(pool);
    return rc;
}
