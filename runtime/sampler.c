/* sampler.c: the sampling chain — penalty, temperature, top-k, softmax, top-p, draw.
 *
 * Sorting 50k logits per token would cost more than a small model's forward pass, so top-k
 * keeps a heap of k candidates and top-p sorts only the candidates above a probability floor
 * that provably contains the nucleus. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float p;      /* logit, then probability */
    int32_t id;
} candidate;

struct qr_sampler {
    qr_sampler_params params;
    size_t vocab;
    uint64_t rng[4];
    candidate *cand;      /* vocab */
    uint8_t *penalized;   /* vocab: marks tokens already penalized this call */
};

qr_sampler_params qr_sampler_defaults(void)
{
    return (qr_sampler_params){1.0f, 0, 1.0f, 1.0f, 0, 0};
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(qr_sampler *s)
{
    uint64_t *r = s->rng;
    uint64_t result = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

double qr_sampler_uniform(qr_sampler *s)
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

qr_status qr_sampler_new(size_t vocab, const qr_sampler_params *params, qr_sampler **out,
                         qr_error *err)
{
    *out = NULL;
    const qr_sampler_params *p = params;
    if (vocab == 0 || vocab > INT32_MAX)
        return qr_fail(err, QR_ERR_INVALID, "vocabulary size %zu out of range", vocab);
    if (!isfinite(p->temperature) || p->temperature < 0.0f || p->temperature > 100.0f)
        return qr_fail(err, QR_ERR_INVALID, "temperature %g must be in [0, 100]", (double)p->temperature);
    if (!isfinite(p->top_p) || p->top_p <= 0.0f || p->top_p > 1.0f)
        return qr_fail(err, QR_ERR_INVALID, "top_p %g must be in (0, 1]", (double)p->top_p);
    if (!isfinite(p->repetition_penalty) || p->repetition_penalty < 1.0f || p->repetition_penalty > 10.0f)
        return qr_fail(err, QR_ERR_INVALID, "repetition penalty %g must be in [1, 10]",
                       (double)p->repetition_penalty);
    qr_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the sampler");
    s->params = *p;
    s->vocab = vocab;
    s->cand = malloc(vocab * sizeof *s->cand);
    s->penalized = calloc(vocab, 1);
    if (!s->cand || !s->penalized) {
        qr_sampler_free(s);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the sampler");
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return QR_OK;
}

void qr_sampler_free(qr_sampler *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s->penalized);
    free(s);
}

/* CTRL-style penalty, once per distinct token: positive logits shrink, negative ones grow. */
static void apply_penalty(qr_sampler *s, float *logits, const int32_t *history, size_t n)
{
    float pen = s->params.repetition_penalty;
    if (pen == 1.0f || n == 0)
        return;
    size_t start = s->params.repetition_window && n > s->params.repetition_window
                       ? n - s->params.repetition_window
                       : 0;
    for (size_t i = start; i < n; i++) {
        int32_t t = history[i];
        if (t < 0 || (size_t)t >= s->vocab || s->penalized[t])
            continue;
        s->penalized[t] = 1;
        logits[t] = logits[t] > 0.0f ? logits[t] / pen : logits[t] * pen;
    }
    for (size_t i = start; i < n; i++)
        if (history[i] >= 0 && (size_t)history[i] < s->vocab)
            s->penalized[history[i]] = 0;
}

static int32_t argmax(const float *logits, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return (int32_t)best;
}

static bool cand_less(candidate a, candidate b)
{
    return a.p < b.p || (a.p == b.p && a.id > b.id);
}

static void sift_down(candidate *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_less(h[l], h[m]))
            m = l;
        if (r < n && cand_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        candidate t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k largest logits, via a min-heap of size k; O(V log k). */
static size_t keep_top_k(candidate *c, const float *logits, size_t vocab, size_t k)
{
    for (size_t i = 0; i < k; i++)
        c[i] = (candidate){logits[i], (int32_t)i};
    for (size_t i = k / 2; i-- > 0;)
        sift_down(c, k, i);
    for (size_t i = k; i < vocab; i++) {
        candidate x = {logits[i], (int32_t)i};
        if (cand_less(c[0], x)) {
            c[0] = x;
            sift_down(c, k, 0);
        }
    }
    return k;
}

static int cmp_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t qr_sampler_sample(qr_sampler *s, float *logits, const int32_t *history, size_t n_history)
{
    apply_penalty(s, logits, history, n_history);
    if (s->params.temperature <= 0.0f)
        return argmax(logits, s->vocab);

    size_t n;
    if (s->params.top_k > 0 && s->params.top_k < s->vocab) {
        n = keep_top_k(s->cand, logits, s->vocab, s->params.top_k);
    } else {
        n = s->vocab;
        for (size_t i = 0; i < n; i++)
            s->cand[i] = (candidate){logits[i], (int32_t)i};
    }
    /* Softmax at temperature T over the candidates. */
    float max = s->cand[0].p;
    for (size_t i = 1; i < n; i++)
        max = s->cand[i].p > max ? s->cand[i].p : max;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        s->cand[i].p = expf((s->cand[i].p - max) / s->params.temperature);
        total += s->cand[i].p;
    }
    for (size_t i = 0; i < n; i++)
        s->cand[i].p = (float)(s->cand[i].p / total);

    if (s->params.top_p < 1.0f) {
        /* Lower a floor until the candidates above it hold top_p of the mass: the nucleus (the
         * shortest sorted prefix reaching top_p) then lies among them, so only they are sorted. */
        float pmax = 0.0f;
        for (size_t i = 0; i < n; i++)
            pmax = s->cand[i].p > pmax ? s->cand[i].p : pmax;
        size_t kept = n;
        for (float floor_p = pmax * 0.1f; floor_p > 1e-12f; floor_p *= 0.1f) {
            double mass = 0.0;
            for (size_t i = 0; i < n; i++)
                if (s->cand[i].p >= floor_p)
                    mass += s->cand[i].p;
            if (mass >= s->params.top_p) {
                kept = 0;
                for (size_t i = 0; i < n; i++)
                    if (s->cand[i].p >= floor_p)
                        s->cand[kept++] = s->cand[i];
                break;
            }
        }
        qsort(s->cand, kept, sizeof *s->cand, cmp_desc);
        double cum = 0.0;
        size_t cut = kept;
        for (size_t i = 0; i < kept; i++) {
            cum += s->cand[i].p;
            if (cum >= s->params.top_p) {
                cut = i + 1;
                break;
            }
        }
        n = cut;
    }
    total = 0.0;
    for (size_t i = 0; i < n; i++)
        total += s->cand[i].p;
    double u = qr_sampler_uniform(s) * total, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += s->cand[i].p;
        if (u < acc)
            return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
