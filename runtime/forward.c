/* forward.c: SpikeGPT (RWKV-4 with LIF neurons) in RNN mode.
 *
 * Per block:  x += LIF1(TimeMix(LN1(x)));  x += LIF2(ChannelMix(LN2(x)))
 * with LN0 before block 0 and the head on LN_out(x). Spikes replace the sub-block output in the
 * residual stream, as in SpikeGPT (ridgerchu/SpikeGPT src/model.py). Each layer keeps its own
 * membranes, as both SpikeGPT's training code and its inference code (src/model_run.py, one
 * LIFNode per layer and sub-block) do; tests/runtime/test_upstream.c holds this file to the
 * latter's outputs. The model file's metadata decides which spikes apply, so RWKV-4 is the
 * same code with every spike off.
 *
 * With spike.ffn_hidden the channel-mix hidden activation is a LIF spike instead of relu(k)²,
 * and the value projection becomes a sum of the weight rows of the units that fired
 * (spike_linear.h).
 *
 * By far the most time goes to the products in project(); everything else is O(d) per token. */
#include "forward.h"

#include "fast_math.h"
#include "spike_linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Calls of up to SMALL_BATCH rows run the decode kernels (see project()). */
#define SMALL_BATCH 8

struct qr_runner {
    const qr_model *m;
    qr_pool *pool;
    size_t max_batch;
    qr_spike_trace *trace;
    /* B × d unless noted */
    float *x;      /* residual stream */
    float *xn;     /* layer-normed x */
    float *xk, *xv, *xr;
    float *k, *v, *r;
    /* Two buffers borrowed from inputs that are dead by then: the time-mix products have read
     * xk and xv before the WKV recurrence and the output projection write these, and the
     * channel-mix never uses xv. 2 × B × d floats fewer, which the served footprint counts. */
    float *wkv;    /* = xk: r ⊙ wkv, input of the output projection */
    float *out;    /* = xv: sub-block output */
    float *hidden; /* B × f: channel-mix hidden activation */
    qr_x8_group *xq; /* rows of x rounded to 8-bit blocks for the chunk products (linear.h) */
    uint32_t *active; /* f: positions of the hidden spikes of one item (spike.ffn_hidden) */
    qr_state **row_states; /* max_batch: qr_forward_sequence's rows, all one state */
    /* The call's rows by state (chunk_plan): for row b, the row before it of the same state
     * (or -1), and whether a later row has the same state */
    ptrdiff_t *prev_row;
    bool *has_next;
    qr_product_observer observer;
    void *observer_ctx;
    /* Runners of their own (no pool) for the parts of a call split between the pool's threads */
    qr_runner *part[QR_RUNNER_PARTS_MAX];
    size_t n_parts;
    uint64_t split_calls;
};

/* ---------------------------------------------------------------- runner */

/* Rounded rows for the largest product call: the three time-mix inputs (d wide) or the
 * channel-mix value's (n_ffn wide). */
static size_t xq_groups(const qr_model *m, size_t max_batch)
{
    size_t three = 3 * qr_matmul_x8_groups(m->d, max_batch), value = qr_matmul_x8_groups(m->f, max_batch);
    return three > value ? three : value;
}

/* The floats of the batch-sized buffers (x .. r: 8 of B × d, wkv and out sharing two of them;
 * hidden: B × f). */
static size_t runner_floats(const qr_model *m, size_t max_batch)
{
    return 8 * max_batch * m->d + max_batch * m->f;
}

uint64_t qr_runner_bytes(const qr_model *m, size_t max_batch)
{
    uint64_t xq = max_batch > SMALL_BATCH ? xq_groups(m, max_batch) * sizeof(qr_x8_group) : 0;
    return sizeof(qr_runner) + runner_floats(m, max_batch) * sizeof(float) + m->f * sizeof(uint32_t) + xq +
           max_batch * (sizeof(qr_state *) + sizeof(ptrdiff_t) + sizeof(bool));
}

qr_status qr_runner_new(const qr_model *m, qr_pool *pool, size_t max_batch, qr_runner **out,
                        qr_error *err)
{
    *out = NULL;
    if (max_batch == 0 || max_batch > 4096)
        return qr_fail(err, QR_ERR_INVALID, "batch size %zu is out of range (1..4096)", max_batch);
    qr_runner *r = calloc(1, sizeof *r);
    if (!r)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the runner");
    r->m = m;
    r->pool = pool;
    r->max_batch = max_batch;
    size_t bd = max_batch * m->d;
    float **bufs[] = {&r->x, &r->xn, &r->xk, &r->xv, &r->xr, &r->k, &r->v, &r->r};
    bool ok = true;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ok = ok && (*bufs[i] = malloc(bd * sizeof(float))) != NULL;
    r->wkv = r->xk;
    r->out = r->xv;
    ok = ok && (r->hidden = malloc(max_batch * m->f * sizeof(float))) != NULL;
    ok = ok && (r->active = malloc(m->f * sizeof(uint32_t))) != NULL;
    ok = ok && (r->row_states = malloc(max_batch * sizeof *r->row_states)) != NULL;
    ok = ok && (r->prev_row = malloc(max_batch * sizeof *r->prev_row)) != NULL;
    ok = ok && (r->has_next = malloc(max_batch * sizeof *r->has_next)) != NULL;
    /* 64-byte aligned: the gemm kernels read x in 32- and 64-byte vectors */
    ok = ok && (max_batch <= SMALL_BATCH || (r->xq = aligned_alloc(64, xq_groups(m, max_batch) * sizeof(qr_x8_group))) != NULL);
    if (!ok) {
        qr_runner_free(r);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the runner (batch %zu)", max_batch);
    }
    size_t threads = pool ? (size_t)qr_pool_threads(pool) : 1;
    if (threads > 1 && max_batch >= 2 * QR_PART_MIN_ROWS) {
        r->n_parts = threads < QR_RUNNER_PARTS_MAX ? threads : QR_RUNNER_PARTS_MAX;
        for (size_t i = 0; i < r->n_parts; i++) {
            qr_status st = qr_runner_new(m, NULL, max_batch, &r->part[i], err);
            if (st) {
                qr_runner_free(r);
                return st;
            }
        }
    }
    *out = r;
    return QR_OK;
}

void qr_runner_free(qr_runner *r)
{
    if (!r)
        return;
    float *bufs[] = {r->x, r->xn, r->xk, r->xv, r->xr, r->k, r->v, r->r, r->hidden};
    for (size_t i = 0; i < r->n_parts; i++)
        qr_runner_free(r->part[i]);
    free(r->active);
    free(r->xq);
    free(r->row_states);
    free(r->prev_row);
    free(r->has_next);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(r);
}

void qr_runner_set_trace(qr_runner *r, qr_spike_trace *trace)
{
    r->trace = trace;
}

void qr_runner_set_observer(qr_runner *r, qr_product_observer fn, void *ctx)
{
    r->observer = fn;
    r->observer_ctx = ctx;
}

const qr_model *qr_runner_model(const qr_runner *r)
{
    return r->m;
}

size_t qr_runner_max_batch(const qr_runner *r)
{
    return r->max_batch;
}

qr_pool *qr_runner_pool(const qr_runner *r)
{
    return r->pool;
}

uint64_t qr_runner_split_calls(const qr_runner *r)
{
    return r->split_calls;
}

/* ---------------------------------------------------------------- small pure helpers */

/* The elementwise helpers work in blocks of LANES floats with a scalar tail: gcc -O2 vectorizes
 * only loops whose trip count is a multiple of the vector width (its "very cheap" cost model),
 * which an inner loop of LANES is and a loop to d is not. Reductions keep LANES partial sums, so
 * the order of the additions, hence the result, is the same for every vector width. On x86-64
 * the helpers are built for AVX-512 and AVX2 beside the baseline and the loader picks one; every
 * clone computes the same floats (-std=c11 contracts nothing into an FMA), so decode and batches,
 * and machines, agree bit for bit on this part. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LANE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__)
#define LANE_CLONES __attribute__((noinline)) /* as clones are: inlined, gcc forgets restrict */
#else
#define LANE_CLONES
#endif
#define LANES 16

/* Sums of LANES partial sums, in double. */
static double lane_total(const float *acc)
{
    double sum = 0.0;
    for (size_t k = 0; k < LANES; k++)
        sum += acc[k];
    return sum;
}

static double lane_total_d(const double *acc)
{
    double sum = 0.0;
    for (size_t k = 0; k < LANES; k++)
        sum += acc[k];
    return sum;
}

/* Sums of dev = x - m0 and dev² over x[0..n), into lanes, in double: the deviations and their
 * squares are exact, and an outlier that dominates the sum loses nothing of the rest. */
static inline void deviation_sums(const float *restrict x, size_t n, float m0, double *restrict s1,
                                  double *restrict s2)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++) {
            double dev = (double)x[i + k] - m0;
            s1[k] += dev;
            s2[k] += dev * dev;
        }
    for (size_t k = 0; i + k < n; k++) {
        double dev = (double)x[i + k] - m0;
        s1[k] += dev;
        s2[k] += dev * dev;
    }
}

/* Mean and 1/sqrt(variance + 1e-5) of x, as a double computation gives them but in lanes: a
 * float sum gives a first mean m0, then the deviations from it are summed, and squared, in
 * double lanes. Their sum corrects the mean (the corrected two-pass algorithm), so both round
 * to the floats a double computation gives but for near-ties, and nothing cancels when the mean
 * is far from 0. */
LANE_CLONES static void norm_stats(const float *restrict x, size_t d, float *mean_out, float *inv_out)
{
    float s[LANES] = {0};
    double s1[LANES] = {0}, s2[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= d; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            s[k] += x[i + k];
    for (size_t k = 0; i + k < d; k++)
        s[k] += x[i + k];
    float m0 = (float)(lane_total(s) / (double)d);
    deviation_sums(x, d, m0, s1, s2);
    double sum1 = lane_total_d(s1), sum2 = lane_total_d(s2);
    double var = (sum2 - sum1 * sum1 / (double)d) / (double)d;
    *mean_out = (float)((double)m0 + sum1 / (double)d);
    *inv_out = (float)(1.0 / sqrt(var + 1e-5));
}

/* out = (x - mean)·inv·w + b. x may be out (the embedding is normalized in place), so each block
 * is read into a local copy before it is written. */
LANE_CLONES static void norm_apply(const float *x, const float *restrict w, const float *restrict b,
                                   float mean, float inv, size_t d, float *out)
{
    size_t i = 0;
    for (; i + LANES <= d; i += LANES) {
        float v[LANES];
        for (size_t k = 0; k < LANES; k++)
            v[k] = x[i + k];
        for (size_t k = 0; k < LANES; k++)
            out[i + k] = (v[k] - mean) * inv * w[i + k] + b[i + k];
    }
    for (; i < d; i++)
        out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

static void layer_norm(const float *x, const float *w, const float *b, size_t d, float *out)
{
    float mean, inv;
    norm_stats(x, d, &mean, &inv);
    norm_apply(x, w, b, mean, inv, d, out);
}

/* out = x·mix + prev·(1 - mix): the token shift. */
LANE_CLONES static void token_shift(const float *restrict x, const float *restrict prev,
                                    const float *restrict mix, size_t d, float *restrict out)
{
    size_t i = 0;
    for (; i + LANES <= d; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            out[i + k] = x[i + k] * mix[i + k] + prev[i + k] * (1.0f - mix[i + k]);
    for (; i < d; i++)
        out[i] = x[i] * mix[i] + prev[i] * (1.0f - mix[i]);
}

/* One LIF neuron (spikingjelly, decay_input, hard reset to 0) on input in: H = V + (in - V)/τ,
 * S = [H ≥ θ], V = H·(1 - S). Returns S. */
QR_FAST_INLINE uint32_t lif_step(float in, float *v, float tau, float threshold, float *spike)
{
    float h = *v + (in - *v) / tau;
    uint32_t s = h >= threshold;
    *v = s ? 0.0f : h;
    *spike = s ? 1.0f : 0.0f;
    return s;
}

/* Replaces x by the spikes of the LIF neurons fed x·scale (scale 1 is exact). Returns the number
 * of spikes. */
LANE_CLONES static size_t lif(float *restrict x, float *restrict membrane, size_t n, float scale, float tau,
                              float threshold)
{
    uint32_t count[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            count[k] += lif_step(x[i + k] * scale, &membrane[i + k], tau, threshold, &x[i + k]);
    size_t fired = 0;
    for (; i < n; i++)
        fired += lif_step(x[i] * scale, &membrane[i], tau, threshold, &x[i]);
    for (size_t k = 0; k < LANES; k++)
        fired += count[k];
    return fired;
}

/* The spikes lif() left in x, as bytes (a trace's record). */
static void record_spikes(const float *x, size_t n, uint8_t *record)
{
    for (size_t i = 0; i < n; i++)
        record[i] = x[i] != 0.0f;
}

/* x += y·scale (scale 1 is exact). */
LANE_CLONES static void add_scaled(float *restrict x, const float *restrict y, float scale, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            x[i + k] += y[i + k] * scale;
    for (; i < n; i++)
        x[i] += y[i] * scale;
}

/* h = relu(h)²: the channel-mix hidden activation (relu as a select: as a conditional
 * expression gcc would square only the positive branch, which it cannot vectorize). */
LANE_CLONES static void relu_square(float *restrict h, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++) {
            float v = qr_fast_select(h[i + k] > 0.0f, h[i + k], 0.0f);
            h[i + k] = v * v;
        }
    for (; i < n; i++) {
        float v = qr_fast_select(h[i] > 0.0f, h[i], 0.0f);
        h[i] = v * v;
    }
}

/* out = sigmoid(r)·out, the receptance gate, as out / (1 + exp(-r)): one division, no multiply
 * (and one rounding fewer). */
LANE_CLONES static void sigmoid_gate(float *restrict out, const float *restrict r, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            out[i + k] = out[i + k] / (1.0f + qr_fast_expf(-r[i + k]));
    for (; i < n; i++)
        out[i] = out[i] / (1.0f + qr_fast_expf(-r[i]));
}

/* exp(a - max(a, b)) and exp(b - max(a, b)): one of the two is exp(0) = 1 exactly, so one
 * exponential does for both (bit-identical to computing both). */
QR_FAST_INLINE void exp_pair(float a, float b, float *ea, float *eb)
{
    float e = qr_fast_expf(-fabsf(a - b));
    *ea = qr_fast_select(a >= b, 1.0f, e);
    *eb = qr_fast_select(a >= b, e, 1.0f);
}

/* The numerically stable RWKV-4 WKV for channel i of one token: updates aa, bb, pp and writes
 * sigmoid(r)·a/b, as a / (b·(1 + exp(-r))): one division where the sigmoid and the quotient took
 * two in a row, the longest latency in the loop (b ≥ 1, so the product only overflows when
 * sigmoid(r) is 0 in float anyway). max(ww, k) is a select rather than fmaxf, which is a call
 * on x86 (the same value for every input but NaN). */
QR_FAST_INLINE void wkv_channel(const float *restrict k, const float *restrict v, const float *restrict r,
                               const float *restrict decay, const float *restrict first, float *restrict aa,
                               float *restrict bb, float *restrict pp, float *restrict out, size_t i)
{
    float e1, e2;
    exp_pair(pp[i], first[i] + k[i], &e1, &e2);
    float a = e1 * aa[i] + e2 * v[i];
    float b = e1 * bb[i] + e2;
    float ww = pp[i] + decay[i];
    exp_pair(ww, k[i], &e1, &e2);
    aa[i] = e1 * aa[i] + e2 * v[i];
    bb[i] = e1 * bb[i] + e2;
    pp[i] = qr_fast_select(ww >= k[i], ww, k[i]);
    out[i] = a / (b * (1.0f + qr_fast_expf(-r[i])));
}

/* The WKV for n channels of one token (every pointer at the first of them). Channels are
 * independent, so they go in lanes; the token order of a sequence is the caller's. */
LANE_CLONES static void wkv(const float *restrict k, const float *restrict v, const float *restrict r,
                            const float *restrict decay, const float *restrict first, float *restrict aa,
                            float *restrict bb, float *restrict pp, size_t n, float *restrict out)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (size_t j = 0; j < LANES; j++)
            wkv_channel(k, v, r, decay, first, aa, bb, pp, out, i + j);
    for (; i < n; i++)
        wkv_channel(k, v, r, decay, first, aa, bb, pp, out, i);
}

/* Every job y = W·x for all B rows. Decode and small batches (a daemon serving a few requests at
 * once) run the decode kernels on the pool, each slice of weights read once for all B rows: for a
 * few rows that beats dequantizing panels for BLAS (the default model's 8M variant served 4
 * concurrent generations at 0.59x the tokens/s of one through the panels), and every row gets
 * the same bits it would get decoded alone, so a request's tokens do not depend on what else is
 * running. Larger calls (chunks of a sequence, evaluation) are matrix-matrix products on the
 * pool (qr_matmul_multi: the integer gemm for the quantized types, x rounded as decode rounds
 * it). */
#define SMALL_BATCH_JOBS 8

static void project(qr_runner *r, const qr_matvec_job *jobs, size_t n_jobs, size_t B)
{
    if (r->observer)
        for (size_t j = 0; j < n_jobs; j++)
            r->observer(r->observer_ctx, jobs[j].w, jobs[j].x, B);
    if (B == 1) {
        qr_matvec_multi(r->pool, jobs, n_jobs);
        return;
    }
    if (B <= SMALL_BATCH && n_jobs <= SMALL_BATCH_JOBS) {
        qr_matvec_job multi[SMALL_BATCH_JOBS];
        for (size_t j = 0; j < n_jobs; j++)
            multi[j] = (qr_matvec_job){jobs[j].w, jobs[j].x, jobs[j].y, B};
        qr_matvec_multi(r->pool, multi, n_jobs);
        return;
    }
    qr_matmul_multi(r->pool, jobs, n_jobs, B, r->xq);
}

/* Applies a spike site's LIF (or nothing) to the sub-block output of every item, adds it to x.
 * The membranes are per state and rows run in order, so consecutive rows of one sequence see
 * each other's updates; without spikes every row is independent and it is one pass over B × d. */
static void residual_add(qr_runner *r, qr_state *const *states, size_t B, size_t layer,
                         float scale, bool spiking, qr_state_vector membrane, bool is_att)
{
    const qr_model *m = r->m;
    size_t d = m->d;
    if (!spiking) {
        add_scaled(r->x, r->out, scale, B * d);
        return;
    }
    qr_spike_trace *t = r->trace;
    float *h_rec = t ? (is_att ? t->att_h : t->ffn_h) : NULL;
    for (size_t b = 0; b < B; b++) {
        float *out = r->out + b * d, *v = qr_state_vec(states[b], layer, membrane);
        if (h_rec) /* as lif_step computes it */
            for (size_t i = 0; i < d; i++)
                h_rec[(b * m->n_layer + layer) * d + i] = v[i] + (out[i] * scale - v[i]) / m->tau;
        size_t fired = lif(out, v, d, scale, m->tau, m->threshold);
        uint8_t *rec = t && b == 0 ? (is_att ? t->att_spikes : t->ffn_spikes) : NULL;
        if (rec)
            record_spikes(out, d, rec + layer * d);
        uint64_t *count = t ? (is_att ? t->att_fired : t->ffn_fired) : NULL;
        if (count)
            count[layer] += fired;
    }
    add_scaled(r->x, r->out, 1.0f, B * d);
}

/* ---------------------------------------------------------------- the block */

/* spike.ffn_hidden: the hidden LIF turns k (in r->hidden) into spikes, and the value product is
 * the sum of the transposed value matrix's rows of the units that fired, item by item (each
 * item fires its own units, so there is no shared matrix-matrix product to make). */
static void spiking_hidden_value(qr_runner *r, qr_state *const *states, size_t B, size_t layer)
{
    const qr_model *m = r->m;
    size_t f = m->f;
    qr_spike_trace *t = r->trace;
    for (size_t b = 0; b < B; b++) {
        float *h = r->hidden + b * f;
        uint8_t *rec = t && b == 0 && t->hidden_spikes ? t->hidden_spikes + layer * f : NULL;
        size_t fired = lif(h, qr_state_hidden_membrane(states[b], layer), f, 1.0f, m->tau, m->threshold);
        if (rec)
            record_spikes(h, f, rec);
        if (t && t->hidden_fired)
            t->hidden_fired[layer] += fired;
        size_t n_active = qr_spike_positions(h, f, r->active);
        qr_spike_matvec(r->pool, &m->layers[layer].ffn_value, r->active, n_active, r->out + b * m->d);
    }
}

/* The WKV is the costliest per-channel step (two exponentials and a sigmoid per channel), and
 * channels are independent: it runs on the pool in WKV_SLICES slices per item, so the workers
 * do not wait through it between two products. */
#define WKV_SLICES 4

typedef struct {
    qr_runner *r;
    qr_state *const *states;
    const qr_layer *l;
    size_t B;
    size_t slice;           /* channels per slice */
} wkv_region;

static void wkv_rows(const wkv_region *w, size_t b, size_t lo, size_t hi)
{
    qr_runner *r = w->r;
    size_t d = r->m->d, layer = (size_t)(w->l - r->m->layers), o = b * d + lo;
    wkv(r->k + o, r->v + o, r->r + o, w->l->att_decay + lo, w->l->att_first + lo,
        qr_state_vec(w->states[b], layer, QR_STATE_AA) + lo, qr_state_vec(w->states[b], layer, QR_STATE_BB) + lo,
        qr_state_vec(w->states[b], layer, QR_STATE_PP) + lo, hi - lo, r->wkv + o);
}

/* One slice of channels of every row, rows in order: a state's rows (a chunk's tokens) must
 * meet its WKV state in order, channels need not. */
static void wkv_task(void *arg, size_t task)
{
    const wkv_region *w = arg;
    size_t d = w->r->m->d, lo = task * w->slice, hi = lo + w->slice < d ? lo + w->slice : d;
    for (size_t b = 0; lo < hi && b < w->B; b++)
        wkv_rows(w, b, lo, hi);
}

/* Chunks (calls of more than SMALL_BATCH rows, on a pool of several threads) run the
 * element-wise work on the pool too: layer norms and token shifts by rows, the membranes and the
 * residual by slices of channels, each slice walking the rows in order. Every element gets the
 * arithmetic the one-row path gives it, so the results do not depend on the split. Calls with a
 * spike trace keep the one-row path (the trace counts in row order). */
static bool chunk_parallel(const qr_runner *r, size_t B)
{
    return B > SMALL_BATCH && qr_pool_threads(r->pool) > 1 && !r->trace;
}

/* prev_row and has_next of the call's rows: a state's rows are its tokens in order. */
static void chunk_plan(qr_runner *r, qr_state *const *states, size_t B)
{
    for (size_t b = 0; b < B; b++) {
        r->prev_row[b] = -1;
        r->has_next[b] = false;
        for (size_t p = b; p-- > 0;)
            if (states[p] == states[b]) {
                r->prev_row[b] = (ptrdiff_t)p;
                r->has_next[p] = true;
                break;
            }
    }
}

#define CHANNEL_SLICES 8 /* tasks of the per-channel regions */
#define ROW_TASKS 16     /* tasks of the per-row regions (at most) */

typedef enum { PREP_NORM, PREP_SHIFT_ATT, PREP_SHIFT_FFN, PREP_RELU, RESID_ATT, RESID_FFN } chunk_step;

typedef struct {
    qr_runner *r;
    qr_state *const *states;
    const qr_layer *l;
    size_t layer, B, per;  /* per: rows (row steps) or channels (RESID_*) per task */
    chunk_step step;
    const float *ln_w, *ln_b;
} chunk_region;

static void chunk_rows_task(void *arg, size_t task)
{
    chunk_region *c = arg;
    qr_runner *r = c->r;
    const qr_layer *l = c->l;
    size_t d = r->m->d, f = r->m->f, b0 = task * c->per, b1 = b0 + c->per < c->B ? b0 + c->per : c->B;
    for (size_t b = b0; b < b1; b++) {
        float *xn = r->xn + b * d;
        if (c->step == PREP_NORM) {
            layer_norm(r->x + b * d, c->ln_w, c->ln_b, d, xn);
            continue;
        }
        if (c->step == PREP_RELU) {
            relu_square(r->hidden + b * f, f);
            continue;
        }
        bool att = c->step == PREP_SHIFT_ATT;
        const float *prev = r->prev_row[b] >= 0 ? r->xn + (size_t)r->prev_row[b] * d
                                                : qr_state_vec(c->states[b], c->layer, att ? QR_STATE_ATT_XX : QR_STATE_FFN_XX);
        token_shift(xn, prev, att ? l->att_mix_k : l->ffn_mix_k, d, r->xk + b * d);
        if (att)
            token_shift(xn, prev, l->att_mix_v, d, r->xv + b * d);
        token_shift(xn, prev, att ? l->att_mix_r : l->ffn_mix_r, d, r->xr + b * d);
    }
}

/* One slice of channels of every row, rows in order: the channel-mix gate (RESID_FFN), then the
 * spike site's membranes (when the site spikes), then x += the sub-block output. */
static void chunk_channels_task(void *arg, size_t task)
{
    chunk_region *c = arg;
    qr_runner *r = c->r;
    const qr_model *m = r->m;
    size_t d = m->d, lo = task * c->per, hi = lo + c->per < d ? lo + c->per : d;
    if (lo >= hi)
        return;
    bool att = c->step == RESID_ATT, spiking = att ? m->spike_att : m->spike_ffn;
    float scale = c->l->out_scale;
    for (size_t b = 0; b < c->B; b++) {
        float *out = r->out + b * d + lo;
        if (!att)
            sigmoid_gate(out, r->r + b * d + lo, hi - lo);
        if (spiking) {
            float *v = qr_state_vec(c->states[b], c->layer, att ? QR_STATE_V_ATT : QR_STATE_V_FFN) + lo;
            lif(out, v, hi - lo, scale, m->tau, m->threshold);
            add_scaled(r->x + b * d + lo, out, 1.0f, hi - lo);
        } else {
            add_scaled(r->x + b * d + lo, out, scale, hi - lo);
        }
    }
}

static void chunk_rows(chunk_region *c, chunk_step step)
{
    c->step = step;
    c->per = (c->B + ROW_TASKS - 1) / ROW_TASKS;
    qr_pool_run(c->r->pool, (c->B + c->per - 1) / c->per, chunk_rows_task, c);
}

/* The layer norm and token shift of every row, then each state's shift vector is its last
 * row's normed input. */
static void chunk_prep(chunk_region *c, const float *ln_w, const float *ln_b, bool att)
{
    c->ln_w = ln_w;
    c->ln_b = ln_b;
    chunk_rows(c, PREP_NORM);
    chunk_rows(c, att ? PREP_SHIFT_ATT : PREP_SHIFT_FFN);
    size_t d = c->r->m->d;
    for (size_t b = 0; b < c->B; b++)
        if (!c->r->has_next[b])
            memcpy(qr_state_vec(c->states[b], c->layer, att ? QR_STATE_ATT_XX : QR_STATE_FFN_XX), c->r->xn + b * d,
                   d * sizeof(float));
}

static void chunk_residual(chunk_region *c, bool att)
{
    c->step = att ? RESID_ATT : RESID_FFN;
    c->per = (c->r->m->d + CHANNEL_SLICES - 1) / CHANNEL_SLICES;
    qr_pool_run(c->r->pool, CHANNEL_SLICES, chunk_channels_task, c);
}

static void time_mix(qr_runner *r, qr_state *const *states, size_t B, size_t i)
{
    const qr_model *m = r->m;
    const qr_layer *l = &m->layers[i];
    size_t d = m->d;
    bool par = chunk_parallel(r, B);
    chunk_region c = {.r = r, .states = states, .l = l, .layer = i, .B = B};
    if (par) {
        chunk_prep(&c, l->ln1_w, l->ln1_b, true);
    } else {
        for (size_t b = 0; b < B; b++) {
            float *xn = r->xn + b * d;
            layer_norm(r->x + b * d, l->ln1_w, l->ln1_b, d, xn);
            float *prev = qr_state_vec(states[b], i, QR_STATE_ATT_XX);
            token_shift(xn, prev, l->att_mix_k, d, r->xk + b * d);
            token_shift(xn, prev, l->att_mix_v, d, r->xv + b * d);
            token_shift(xn, prev, l->att_mix_r, d, r->xr + b * d);
            memcpy(prev, xn, d * sizeof(float));
        }
    }
    const qr_matvec_job kvr[] = {
        {&l->att_key, r->xk, r->k}, {&l->att_value, r->xv, r->v}, {&l->att_receptance, r->xr, r->r}};
    project(r, kvr, 3, B);
    /* On the pool, in slices of channels, each slice walking the rows in order. */
    wkv_region region = {r, states, l, B, (d + WKV_SLICES - 1) / WKV_SLICES};
    qr_pool_run(r->pool, WKV_SLICES, wkv_task, &region);
    const qr_matvec_job o = {&l->att_output, r->wkv, r->out};
    project(r, &o, 1, B);
    if (par)
        chunk_residual(&c, true);
    else
        residual_add(r, states, B, i, l->out_scale, m->spike_att, QR_STATE_V_ATT, true);
}

static void channel_mix(qr_runner *r, qr_state *const *states, size_t B, size_t i)
{
    const qr_model *m = r->m;
    const qr_layer *l = &m->layers[i];
    size_t d = m->d, f = m->f;
    bool par = chunk_parallel(r, B) && !m->spike_ffn_hidden;
    chunk_region c = {.r = r, .states = states, .l = l, .layer = i, .B = B};
    if (par) {
        chunk_prep(&c, l->ln2_w, l->ln2_b, false);
    } else {
        for (size_t b = 0; b < B; b++) {
            float *xn = r->xn + b * d;
            layer_norm(r->x + b * d, l->ln2_w, l->ln2_b, d, xn);
            float *prev = qr_state_vec(states[b], i, QR_STATE_FFN_XX);
            token_shift(xn, prev, l->ffn_mix_k, d, r->xk + b * d);
            token_shift(xn, prev, l->ffn_mix_r, d, r->xr + b * d);
            memcpy(prev, xn, d * sizeof(float));
        }
    }
    const qr_matvec_job kr[] = {{&l->ffn_key, r->xk, r->hidden}, {&l->ffn_receptance, r->xr, r->r}};
    project(r, kr, 2, B);
    if (m->spike_ffn_hidden) {
        spiking_hidden_value(r, states, B, i);
    } else {
        if (par)
            chunk_rows(&c, PREP_RELU);
        else
            relu_square(r->hidden, B * f);
        const qr_matvec_job v = {&l->ffn_value, r->hidden, r->out};
        project(r, &v, 1, B);
    }
    if (par) {
        chunk_residual(&c, false);
        return;
    }
    sigmoid_gate(r->out, r->r, B * d);
    residual_add(r, states, B, i, l->out_scale, m->spike_ffn, QR_STATE_V_FFN, false);
}

/* ---------------------------------------------------------------- the model */

/* The residual stream entering layer 0 of B rows: ln0 of the (spiking) embedding, in r->x. */
static void embed_rows(qr_runner *r, const int32_t *tokens, size_t B)
{
    const qr_model *m = r->m;
    size_t d = m->d;
    for (size_t b = 0; b < B; b++) {
        float *x = r->x + b * d;
        m->emb.ops->to_float((const char *)m->emb.data + (size_t)tokens[b] * m->emb.row_bytes, x, d);
        if (m->spike_emb) /* SpikeGPT's ATan surrogate forward: Heaviside, H(0) = 1 */
            for (size_t i = 0; i < d; i++)
                x[i] = x[i] >= 0.0f ? 1.0f : 0.0f;
        layer_norm(x, m->ln0_w, m->ln0_b, d, x);
    }
}

/* Layers [first, last) on the B rows of r->x. */
static void run_layers(qr_runner *r, qr_state *const *states, size_t B, size_t first, size_t last)
{
    const qr_model *m = r->m;
    if (chunk_parallel(r, B))
        chunk_plan(r, states, B);
    for (size_t i = first; i < last; i++) {
        time_mix(r, states, B, i);
        channel_mix(r, states, B, i);
        if (m->rescale_layer && (i + 1) % m->rescale_layer == 0)
            for (size_t j = 0; j < B * m->d; j++)
                r->x[j] *= 0.5f;
    }
}

/* ln_out of r->x (into r->xn), then the features and the head's logits (either may be NULL)
 * of rows [head_from, B): B − head_from rows of logits. */
static void output_rows(qr_runner *r, size_t B, float *logits, float *features, size_t head_from)
{
    const qr_model *m = r->m;
    size_t d = m->d;
    for (size_t b = 0; b < B; b++)
        layer_norm(r->x + b * d, m->ln_out_w, m->ln_out_b, d, r->xn + b * d);
    if (features)
        memcpy(features, r->xn, B * d * sizeof(float));
    if (logits) {
        const qr_matvec_job head = {&m->head, r->xn + head_from * d, logits};
        project(r, &head, 1, B - head_from);
    }
}

/* The forward pass over B checked rows, on this runner's buffers. */
static void forward_rows(qr_runner *r, qr_state *const *states, const int32_t *tokens, size_t B, float *logits,
                         float *features)
{
    embed_rows(r, tokens, B);
    run_layers(r, states, B, 0, r->m->n_layer);
    if (r->trace)
        r->trace->tokens += B;
    output_rows(r, B, logits, features, 0);
}

/* One stage of the pass (forward.h's staged calls) over B rows on this runner: x (B × d) in and
 * out where the stage has one. */
typedef enum { STAGE_EMBED, STAGE_LAYERS, STAGE_OUTPUT } stage_kind;

typedef struct {
    stage_kind kind;
    const int32_t *tokens; /* STAGE_EMBED */
    size_t first, last;    /* STAGE_LAYERS */
    float *x;              /* B × d: the embedding's output, the layers' input and output, the output's input */
    float *logits, *features;
} stage;

static void stage_rows(qr_runner *r, qr_state *const *states, size_t B, const stage *s)
{
    size_t bytes = B * r->m->d * sizeof(float);
    switch (s->kind) {
    case STAGE_EMBED:
        embed_rows(r, s->tokens, B);
        memcpy(s->x, r->x, bytes);
        break;
    case STAGE_LAYERS:
        memcpy(r->x, s->x, bytes);
        run_layers(r, states, B, s->first, s->last);
        memcpy(s->x, r->x, bytes);
        break;
    case STAGE_OUTPUT:
        memcpy(r->x, s->x, bytes);
        output_rows(r, B, s->logits, s->features, 0);
        break;
    }
}

/* ---------------------------------------------------------------- splitting a call */

typedef struct {
    qr_runner *r;
    qr_state *const *states;
    const int32_t *tokens;
    float *logits, *features;
    const stage *st;                       /* a staged call, or NULL: the whole pass */
    size_t bound[QR_RUNNER_PARTS_MAX + 1]; /* part i is rows [bound[i], bound[i + 1]) */
} split_call;

static void part_task(void *arg, size_t i)
{
    split_call *c = arg;
    size_t lo = c->bound[i], n = c->bound[i + 1] - lo;
    if (n == 0)
        return;
    const qr_model *m = c->r->m;
    float *logits = c->logits ? c->logits + lo * m->vocab : NULL, *features = c->features ? c->features + lo * m->d : NULL;
    qr_state *const *states = c->states ? c->states + lo : NULL;
    if (!c->st) {
        forward_rows(c->r->part[i], states, c->tokens + lo, n, logits, features);
        return;
    }
    stage mine = *c->st;
    mine.tokens = mine.tokens ? mine.tokens + lo : NULL;
    mine.x += lo * m->d;
    mine.logits = logits;
    mine.features = features;
    stage_rows(c->r->part[i], states, n, &mine);
}

/* Whether each state's rows are consecutive (sequence-major rows, as the evaluators lay them
 * out): then cuts between two states give parts that share no state and can run at once. */
static bool states_contiguous(qr_state *const *states, size_t B)
{
    for (size_t i = 1; i < B; i++) {
        if (states[i] == states[i - 1])
            continue;
        for (size_t j = 0; j + 1 < i; j++)
            if (states[j] == states[i])
                return false;
    }
    return true;
}

/* Cuts rows [0, B) into up to n parts of about B / n rows each, at state boundaries (anywhere when
 * states is NULL: rows without a state are independent); returns false when that leaves only one
 * part. */
static bool plan_split(qr_state *const *states, size_t B, size_t n, size_t *bound)
{
    bound[0] = 0;
    size_t parts = 0;
    for (size_t i = 1; i < n; i++) {
        size_t cut = B * i / n;
        if (cut <= bound[parts])
            cut = bound[parts] + 1;
        while (cut < B && states && states[cut] == states[cut - 1])
            cut++;
        if (cut >= B)
            break;
        bound[++parts] = cut;
    }
    bound[++parts] = B;
    for (size_t i = parts + 1; i <= n; i++)
        bound[i] = B;
    return parts > 1;
}

/* Runs a call as parts on the pool's threads when it is large enough, no observer or trace
 * watches it and its rows can be cut between states (any rows when it has none); false when it
 * must run whole on this thread. */
static bool run_split(split_call *c, size_t B)
{
    qr_runner *r = c->r;
    if (r->n_parts < 2 || B < 2 * QR_PART_MIN_ROWS || r->observer || r->trace ||
        (c->states && !states_contiguous(c->states, B)) || !plan_split(c->states, B, r->n_parts, c->bound))
        return false;
    qr_pool_run(r->pool, r->n_parts, part_task, c);
    r->split_calls++;
    return true;
}

qr_status qr_forward(qr_runner *r, qr_state *const *states, const int32_t *tokens, size_t B,
                     float *logits, float *features, qr_error *err)
{
    const qr_model *m = r->m;
    if (B == 0 || B > r->max_batch)
        return qr_fail(err, QR_ERR_INVALID, "batch of %zu sequences; this runner takes 1..%zu", B,
                       r->max_batch);
    for (size_t b = 0; b < B; b++)
        if (tokens[b] < 0 || (size_t)tokens[b] >= m->vocab)
            return qr_fail(err, QR_ERR_INVALID, "token id %d is outside the vocabulary (0..%zu)",
                           (int)tokens[b], m->vocab - 1);
    if (logits && !m->has_lm_head)
        return qr_fail(err, QR_ERR_INVALID, "logits requested but the model has no LM head");
    /* Large calls whose sequences can be told apart run as independent parts, one per thread,
     * each multiplying its own rows single-threaded: for chunked evaluation that used both
     * cores better than BLAS's own threads. Observers and traces see one stream of calls. */
    split_call c = {r, states, tokens, logits, features, NULL, {0}};
    if (!run_split(&c, B))
        forward_rows(r, states, tokens, B, logits, features);
    return QR_OK;
}

qr_status qr_forward_sequence(qr_runner *r, qr_state *state, const int32_t *tokens, size_t T, float *last_logits,
                              double *feature_sum, qr_error *err)
{
    const qr_model *m = r->m;
    if (T == 0)
        return qr_fail(err, QR_ERR_INVALID, "no token to advance the sequence by");
    for (size_t t = 0; t < T; t++)
        if (tokens[t] < 0 || (size_t)tokens[t] >= m->vocab)
            return qr_fail(err, QR_ERR_INVALID, "token id %d at position %zu is outside the vocabulary (0..%zu)",
                           (int)tokens[t], t, m->vocab - 1);
    if (last_logits && !m->has_lm_head)
        return qr_fail(err, QR_ERR_INVALID, "logits requested but the model has no LM head");
    size_t d = m->d;
    for (size_t t0 = 0; t0 < T; t0 += r->max_batch) {
        size_t n = T - t0 < r->max_batch ? T - t0 : r->max_batch;
        for (size_t b = 0; b < n; b++)
            r->row_states[b] = state;
        bool last = t0 + n == T;
        embed_rows(r, tokens + t0, n);
        run_layers(r, r->row_states, n, 0, m->n_layer);
        if (r->trace)
            r->trace->tokens += n;
        if (feature_sum || (last && last_logits))
            output_rows(r, n, last ? last_logits : NULL, NULL, n - 1);
        if (feature_sum)
            for (size_t b = 0; b < n; b++)
                for (size_t j = 0; j < d; j++)
                    feature_sum[j] += r->xn[b * d + j];
    }
    return QR_OK;
}

/* A staged call: in parts like qr_forward when it is large and its states allow it. */
static qr_status run_stage(qr_runner *r, qr_state *const *states, size_t B, const stage *s, qr_error *err)
{
    if (B == 0 || B > r->max_batch)
        return qr_fail(err, QR_ERR_INVALID, "batch of %zu rows; this runner takes 1..%zu", B, r->max_batch);
    split_call c = {r, states, s->tokens, s->logits, s->features, s, {0}};
    if (!run_split(&c, B))
        stage_rows(r, states, B, s);
    return QR_OK;
}

qr_status qr_forward_embed(qr_runner *r, const int32_t *tokens, size_t B, float *x, qr_error *err)
{
    const qr_model *m = r->m;
    for (size_t b = 0; b < B; b++)
        if (tokens[b] < 0 || (size_t)tokens[b] >= m->vocab)
            return qr_fail(err, QR_ERR_INVALID, "token id %d is outside the vocabulary (0..%zu)",
                           (int)tokens[b], m->vocab - 1);
    stage s = {STAGE_EMBED, tokens, 0, 0, x, NULL, NULL};
    return run_stage(r, NULL, B, &s, err);
}

qr_status qr_forward_layers(qr_runner *r, qr_state *const *states, float *x, size_t B, size_t first, size_t last,
                            qr_error *err)
{
    if (first > last || last > r->m->n_layer)
        return qr_fail(err, QR_ERR_INVALID, "layers %zu..%zu: the model has %zu", first, last, r->m->n_layer);
    stage s = {STAGE_LAYERS, NULL, first, last, x, NULL, NULL};
    return run_stage(r, states, B, &s, err);
}

qr_status qr_forward_output(qr_runner *r, float *x, size_t B, float *logits, float *features, qr_error *err)
{
    if (logits && !r->m->has_lm_head)
        return qr_fail(err, QR_ERR_INVALID, "logits requested but the model has no LM head");
    stage s = {STAGE_OUTPUT, NULL, 0, 0, x, logits, features};
    return run_stage(r, NULL, B, &s, err);
}

void qr_classify_head(const qr_model *m, size_t head, const float *mean_feature, float *class_logits)
{
    const qr_cls_head *h = &m->cls[head];
    h->w.ops->dot_rows(h->w.data, h->w.row_bytes, h->n_classes, mean_feature, m->d, class_logits);
    for (size_t c = 0; c < h->n_classes; c++)
        class_logits[c] += h->b[c];
}

void qr_classify(const qr_model *m, const float *mean_feature, float *class_logits)
{
    qr_classify_head(m, 0, mean_feature, class_logits);
}
