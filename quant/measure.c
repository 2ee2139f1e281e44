/* measure.c: settings tried in memory against the f32 reference kept from one run. */
#include "measure.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "f16.h"
#include "forward.h"
#include "model.h"
#include "quantize.h"
#include "requantize.h"
#include "tensor_types.h"
#include "vexp.h"

#define N_CODES QR_TYPE_CODE_LIMIT
#define QQ_CACHE_MIN ((uint64_t)64 << 20)
#define QQ_EVAL_STEPS 128 /* at most this many steps of each window per forward call */

typedef struct {
    uint32_t *types;
    const qq_split *split; /* NULL: the calibration split against the reference */
    bool refined;          /* measured with the setting's refined copies (qq_measurer_set_refined) */
    qq_metrics metrics;
} memo_entry;

/* Per head, one byte per sentence of a split: 1 where the model's answer is the label. */
typedef struct {
    uint8_t *right[QQ_HEADS_MAX];
} answers;

/* The f32 master's answers on one split, which every setting measured there is paired with. */
typedef struct {
    const qq_split *split; /* NULL: the calibration split */
    answers a;
} f32_answers;

struct qq_measurer {
    const qr_model_file *master;
    qr_pool *pool;
    size_t window, batch;
    qq_split calib;
    size_t vocab, n_classes;
    uint16_t *ref_logp;  /* calib.n_tokens × vocab: the master's log-probabilities in binary16, by
                            target position (at 216M, 103 MB where floats took 206) */
    double *ref_offset;  /* calib.n_tokens: each row's KL against its own f32 log-probabilities,
                            what the binary16 rounding alone contributes (subtracted) */
    float *ref_cls;      /* calib.n_items × n_classes: the master's class log-probabilities */
    qq_metrics reference;
    qr_model *base;      /* the master, bound */
    qr_model view;       /* a copy of base whose matrices point at the setting under test */
    qr_runner *runner;   /* runs `view` */
    qr_matrix **slots;   /* per master tensor: its matrix in `view`, or NULL for vectors */
    const qr_matrix **base_slots; /* per master tensor: its matrix in `base`, or NULL */
    void **cache;        /* per tensor × type code: quantized copy, made on first use */
    size_t *cache_row_bytes;
    uint64_t *cache_used; /* per slot: the setting (stamp) that last used it */
    uint64_t stamp;       /* settings applied so far */
    uint64_t cache_bytes, cache_limit;
    memo_entry *memo;    /* settings already measured, per split: a search and the budgets of a
                            build meet the same settings again */
    size_t n_memo, cap_memo;
    double **act_sums;   /* per tensor: Σ x² per input column over the reference run */
    uint64_t *act_rows;  /* per tensor: rows of x seen */
    float **importance;  /* per tensor: the quantizer's column weights, or NULL (uniform) */
    float **hessian;     /* per tensor while they are gathered: Σ x xᵀ of its inputs, or NULL */
    uint64_t *hess_rows; /* per tensor: rows of x summed into it */
    float **hess_buf;    /* per tensor in the pass: QQ_EC_ROWS rows of x not yet summed */
    size_t *hess_held;   /* per tensor: rows in hess_buf */
    bool *in_pass;       /* per tensor: gathered in the pass under way */
    qr_ec_factor *ec;    /* per tensor: error compensation's factor (n = 0: none), in ec_map or
                            in ec_own (qq_measurer_gather_hessians) */
    float **ec_own;      /* per tensor: the factor's floats when they are not in a file */
    void *ec_map;        /* the factors' file, mapped read-only (NULL: they are in memory) */
    size_t ec_map_bytes;
    qq_rounding rounding; /* how copies are quantized now */
    const int32_t *ec_tokens; /* the text the factors were fitted on (the caller's), and the */
    size_t ec_n_tokens;       /* dampening they got: refinement fits on the same */
    double ec_damp;
    uint32_t *refined_types; /* the one setting with refined copies (NULL: none), and per */
    void **refined;          /* tensor its copy (NULL: the setting's usual one) */
    f32_answers *f32;    /* the master's answers, per split measured so far */
    size_t n_f32, cap_f32;
};

typedef struct {
    const uint32_t *types;
    const qr_model_file *master;
} chooser_ctx;

/* The requantizer asks per matrix; the setting is indexed by the master's tensor order. */
static uint32_t choose_type(void *arg, const char *name, uint32_t n_dims, const uint64_t *dims)
{
    (void)n_dims;
    (void)dims;
    const chooser_ctx *c = arg;
    size_t n = qr_model_file_tensor_count(c->master);
    for (size_t i = 0; i < n; i++)
        if (strcmp(qr_model_file_tensor(c->master, i)->name, name) == 0)
            return c->types[i];
    return QR_TYPE_F32;
}

qr_status qq_write_setting(const qr_model_file *master, const uint32_t *types, const char *path,
                           const qr_importance *importance, qr_pool *pool, qr_error *err)
{
    chooser_ctx c = {types, master};
    return qr_requantize(master, path, choose_type, &c, importance, pool, err);
}

/* A factor's pages of the mapped file leave the resident set once it has been used: at 216M the
 * factors take 620 MB, and a setting reads each once. Nothing to do for factors in memory. */
static void release_factor(const qq_measurer *q, const qr_ec_factor *f)
{
    if (!q->ec_map || !f->n)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)f->u & ~(page - 1);
    uintptr_t hi = (uintptr_t)(f->diag + f->n);
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static void factor_written(void *ctx, const qr_importance_entry *e)
{
    if (e->ec)
        release_factor(ctx, e->ec);
}

qr_status qq_measurer_write_setting(qq_measurer *q, const uint32_t *types, const char *path, qr_error *err)
{
    /* The file gets the quantization the copies measured got: per matrix the importance (none
     * when rounding to nearest), the error-compensation factor (the embedding's too, which has
     * no importance: it is never a product's weight) and the refined copy. */
    size_t n = qr_model_file_tensor_count(q->master), count = 0;
    bool refined = qq_measurer_is_refined(q, types);
    qr_importance_entry *entries = calloc(n ? n : 1, sizeof *entries);
    if (!entries)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory writing %s", path);
    for (size_t i = 0; i < n; i++) {
        if (!q->slots[i])
            continue;
        qr_importance_entry e = {qr_model_file_tensor(q->master, i)->name,
                                 q->rounding == QQ_ROUND_NEAREST ? NULL : q->importance[i], q->slots[i]->cols,
                                 q->rounding == QQ_ROUND_EC && q->ec[i].n ? &q->ec[i] : NULL,
                                 refined ? q->refined[i] : NULL, types[i]};
        if (e.values || e.ec || e.quantized)
            entries[count++] = e;
    }
    qr_importance imp = {entries, count, factor_written, q};
    qr_status st = qq_write_setting(q->master, types, path, &imp, q->pool, err);
    free(entries);
    /* Writing read every f32 matrix; the next setting measured touches again only those it
     * keeps f32, and the variant is measured beside this (cmd_build). */
    for (size_t i = 0; i < n; i++)
        if (q->slots[i]) {
            const qr_matrix *src = qr_model_matrix(q->base, qr_model_file_tensor(q->master, i)->name);
            qr_model_file_release(q->master, src->data, (uint64_t)src->rows * src->row_bytes);
        }
    return st;
}

/* log-softmax of n logits into out, given their log-sum-exp. */
static void log_softmax(const float *logits, size_t n, double lse, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((double)logits[i] - lse);
}

/* One term p·(lp − lq) of the KL divergence, p = exp(lp) by the vectorisable exponential. Both
 * log-probabilities are rounded to float alike (log_softmax), so identical outputs give exactly
 * 0; their difference is exact in double. */
static inline double kl_term(float lp, float logit, double lse)
{
    float lq = (float)((double)logit - lse);
    return (double)qr_vexpf(lp) * ((double)lp - (double)lq);
}

/* KL(p ‖ q) with p given as log-probabilities and q as logits with their log-sum-exp: one term
 * per logit of every calibration prediction, so in 8 double lanes that vectorise (added in a
 * fixed order: the same inputs give the same KL). */
QR_VEC_CLONES static double kl_divergence(const float *ref_logp, const float *logits, size_t n, double lse)
{
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            lane[k] += kl_term(ref_logp[i + k], logits[i + k], lse);
    for (size_t k = 0; i < n; i++, k++)
        lane[k] += kl_term(ref_logp[i], logits[i], lse);
    double kl = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    return kl > 0.0 ? kl : 0.0;
}

typedef struct {
    qq_measurer *q;
    bool kl;                  /* against the kept reference outputs (the calibration split) */
    bool record;              /* the reference run: store them; otherwise compare */
    double kl_sum;            /* the classifier's (the LM's adds up in the evaluator) */
    uint64_t n;
    const qr_labelled *items; /* a classifier run's sentences ... */
    size_t n_classes;         /* ... its head's classes ... */
    uint8_t *right;           /* ... and where to mark each answer right (may be NULL) */
} hook_ctx;

/* The reference run keeps each distribution in `row` (and scores 0); later runs score their
 * divergence from it. Writes nothing but `row`. */
static double record_or_compare(const hook_ctx *h, float *row, const float *logits, size_t n, double lse)
{
    if (h->record) {
        log_softmax(logits, n, lse, row);
        return 0.0;
    }
    return kl_divergence(row, logits, n, lse);
}

/* A kept binary16 log-probability as a float, exactly (normal or subnormal: the bits moved into
 * a float's and scaled by 2^112), branch-free so that the KL's lanes vectorise. Log-probabilities
 * are finite and at most 0, so there is no infinity or NaN to carry. */
static inline float half_lp(uint16_t h)
{
    uint32_t bits = ((uint32_t)(h & 0x8000) << 16) | ((uint32_t)(h & 0x7fff) << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f * 0x1p112f;
}

/* Σ p·(lp − lq) over a row with lp kept in binary16, p = exp(lp): kl_divergence's lanes. */
QR_VEC_CLONES static double kl_half(const uint16_t *ref, const float *logits, size_t n, double lse)
{
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            lane[k] += kl_term(half_lp(ref[i + k]), logits[i + k], lse);
    for (size_t k = 0; i < n; i++, k++)
        lane[k] += kl_term(half_lp(ref[i]), logits[i], lse);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* The evaluator's per-prediction score, run on its pool's threads: the reference row of target
 * `pos` is this prediction's alone. The reference run rounds the row to binary16 and keeps, as
 * its offset, the row's kl_half against the f32 log-probabilities it came from; a later run's
 * KL is its kl_half less that offset: Σ p·(lp32 − lq) with p from the rounded row (within
 * 2^-11·|lp| relative), and exactly 0 when the outputs are the master's (the same sum). */
static double on_logits(void *arg, size_t pos, const float *logits, double lse)
{
    const hook_ctx *h = arg;
    qq_measurer *q = h->q;
    uint16_t *row = q->ref_logp + pos * q->vocab;
    if (h->record) {
        for (size_t i = 0; i < q->vocab; i++) {
            float lp = (float)((double)logits[i] - lse);
            row[i] = qr_f32_to_f16(lp > -65000.0f ? lp : -65000.0f); /* finite in binary16 */
        }
        q->ref_offset[pos] = kl_half(row, logits, q->vocab, lse);
        return 0.0;
    }
    double kl = kl_half(row, logits, q->vocab, lse) - q->ref_offset[pos];
    return kl > 0.0 ? kl : 0.0;
}

/* A sentence's class logits: their KL from the reference's, and whether the answer is right —
 * the first largest logit, as the evaluator counts it (runtime/eval.c). */
static void on_class(void *arg, size_t item, const float *class_logits)
{
    hook_ctx *h = arg;
    if (h->kl) {
        h->kl_sum += record_or_compare(h, h->q->ref_cls + item * h->q->n_classes, class_logits, h->q->n_classes,
                                       qr_log_sum_exp(class_logits, h->q->n_classes));
        h->n++;
    }
    if (h->right) {
        size_t best = 0;
        for (size_t c = 1; c < h->n_classes; c++)
            if (class_logits[c] > class_logits[best])
                best = c;
        h->right[item] = best == (size_t)h->items[item].label;
    }
}

/* The master tensor whose slot in the view is w (an observer's argument), or the tensor count. */
static size_t tensor_of(const qq_measurer *q, const qr_matrix *w)
{
    size_t n = qr_model_file_tensor_count(q->master), i = 0;
    while (i < n && q->slots[i] != w)
        i++;
    return i;
}

/* The reference run's product observer: Σ x² per column of each matrix the view multiplies. */
static void observe_product(void *arg, const qr_matrix *w, const float *x, size_t B)
{
    qq_measurer *q = arg;
    size_t i = tensor_of(q, w);
    if (i == qr_model_file_tensor_count(q->master))
        return;
    if (!q->act_sums[i] && !(q->act_sums[i] = calloc(w->cols, sizeof(double))))
        return; /* out of memory: this matrix keeps uniform weights */
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < w->cols; c++)
            q->act_sums[i][c] += (double)x[b * w->cols + c] * x[b * w->cols + c];
    q->act_rows[i] += B;
}

/* Rows of a matrix's inputs held before they are added to its sums: one rank-QQ_EC_ROWS update
 * instead of one per product call (a forward call gives a few dozen rows, and an update reads and
 * writes the whole cols × cols sum: 38 MB for a 3072-wide input). */
#define QQ_EC_ROWS 1024

static void flush_hessian(qq_measurer *q, size_t i)
{
    size_t c = q->slots[i]->cols;
    if (q->hess_held[i])
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)c, (int)q->hess_held[i], 1.0f, q->hess_buf[i],
                    (int)c, 1.0f, q->hessian[i], (int)c);
    q->hess_rows[i] += q->hess_held[i];
    q->hess_held[i] = 0;
}

/* The Hessian run's observer: Σ x xᵀ of each matrix's inputs (the upper triangle; mirrored
 * when the run ends). An allocation failure leaves that matrix to the plain quantizer. */
static void observe_hessian(void *arg, const qr_matrix *w, const float *x, size_t B)
{
    qq_measurer *q = arg;
    size_t i = tensor_of(q, w), c = w->cols;
    if (i == qr_model_file_tensor_count(q->master) || !q->in_pass[i])
        return;
    if ((!q->hessian[i] && !(q->hessian[i] = calloc(c * c, sizeof(float)))) ||
        (!q->hess_buf[i] && !(q->hess_buf[i] = malloc(QQ_EC_ROWS * c * sizeof(float))))) {
        free(q->hessian[i]); /* out of memory: this matrix keeps the plain quantizer */
        q->hessian[i] = NULL;
        q->in_pass[i] = false;
        return;
    }
    for (size_t b = 0; b < B; b++) {
        memcpy(q->hess_buf[i] + q->hess_held[i] * c, x + b * c, c * sizeof(float));
        if (++q->hess_held[i] == QQ_EC_ROWS)
            flush_hessian(q, i);
    }
}

/* Mean squared activation per column, plus 0.1% of its average so that no column's error is
 * ignored outright (a column never active on calibration may be on other text). */
static void finish_importance(qq_measurer *q)
{
    size_t n = qr_model_file_tensor_count(q->master);
    for (size_t i = 0; i < n; i++) {
        if (!q->act_sums[i] || !q->act_rows[i])
            continue;
        size_t cols = q->slots[i]->cols;
        float *imp = malloc(cols * sizeof *imp);
        if (!imp)
            continue;
        double mean = 0.0;
        for (size_t c = 0; c < cols; c++)
            mean += q->act_sums[i][c] / (double)q->act_rows[i];
        mean /= (double)cols;
        for (size_t c = 0; c < cols; c++)
            imp[c] = (float)(q->act_sums[i][c] / (double)q->act_rows[i] + 1e-3 * mean + 1e-12);
        q->importance[i] = imp;
    }
}

/* Runs a bound model over split; with `reference` set (the calibration split), against — or,
 * when recording, into — the kept reference outputs. right (may be NULL) gets, per head with
 * sentences, each sentence's answer (answers_new sized it). */
static qr_status measure_model(qq_measurer *q, qr_runner *r, const qr_model *m, const qq_split *split,
                               bool reference, bool record, answers *right, qq_metrics *out, qr_error *err)
{
    memset(out, 0, sizeof *out);
    qr_status st;
    if (split->tokens && split->n_tokens >= 2 && m->has_lm_head) {
        hook_ctx h = {q, reference, record, 0.0, 0, NULL, 0, NULL};
        qr_ppl_result ppl;
        st = qr_eval_perplexity_with(r, split->tokens, split->n_tokens, split->window ? split->window : q->window, q->batch,
                                     reference ? on_logits : NULL, &h, NULL, NULL, &ppl, err);
        if (st)
            return st;
        out->lm = true;
        out->nll = ppl.nll_sum / (double)ppl.predictions;
        out->ppl = ppl.ppl;
        out->predictions = ppl.predictions;
        out->kl = reference && !record && ppl.predictions ? ppl.hook_sum / (double)ppl.predictions : 0.0;
    }
    if (split->items && split->n_items && m->n_classes) {
        hook_ctx h = {q, reference, record, 0.0, 0, split->items, m->n_classes, right ? right->right[0] : NULL};
        qr_acc_result acc;
        st = qr_eval_accuracy_with(r, split->items, split->n_items, q->batch,
                                   reference || h.right ? on_class : NULL, &h, NULL, NULL, &acc, err);
        if (st)
            return st;
        out->cls = true;
        out->accuracy = acc.accuracy;
        out->cls_nll = acc.nll_mean;
        out->cls_kl = reference && !record && h.n ? h.kl_sum / (double)h.n : 0.0;
        out->head_measured[0] = true;
        out->head_accuracy[0] = acc.accuracy;
        out->head_items[0] = split->n_items;
    }
    /* Every other head with sentences: its accuracy (the search's KL stays head 0's). */
    for (size_t hd = 1; hd < QQ_HEADS_MAX && hd < m->head_info.n; hd++) {
        const qq_head_items *hi = &split->heads[hd];
        if (!hi->items || !hi->n_items)
            continue;
        hook_ctx h = {q, false, false, 0.0, 0, hi->items, m->cls[hd].n_classes, right ? right->right[hd] : NULL};
        qr_acc_result acc;
        st = qr_eval_accuracy_head(r, hd, hi->items, hi->n_items, q->batch, h.right ? on_class : NULL, &h, NULL, NULL,
                                   &acc, err);
        if (st)
            return st;
        out->head_measured[hd] = true;
        out->head_accuracy[hd] = acc.accuracy;
        out->head_items[hd] = hi->n_items;
    }
    return QR_OK;
}

/* Frees the quantized copy in cache slot `slot` (tensor slot / N_CODES). */
static void free_copy(qq_measurer *q, size_t slot)
{
    q->cache_bytes -= (uint64_t)q->slots[slot / N_CODES]->rows * q->cache_row_bytes[slot];
    free(q->cache[slot]);
    q->cache[slot] = NULL;
}

/* Points every matrix of the view back at the master's own weights. */
static void view_at_master(qq_measurer *q)
{
    size_t n = qr_model_file_tensor_count(q->master);
    for (size_t i = 0; i < n; i++)
        if (q->slots[i])
            *q->slots[i] = *qr_model_matrix(q->base, qr_model_file_tensor(q->master, i)->name);
}

/* Frees the least recently used copies that the setting being applied does not use, until `need`
 * more bytes fit under the limit (or nothing else can go). Copies are cheap to make again; at
 * hundreds of millions of parameters keeping every (tensor, type) ever tried would hold several
 * times the master. */
static void make_room(qq_measurer *q, uint64_t need)
{
    size_t n = qr_model_file_tensor_count(q->master) * N_CODES;
    while (q->cache_bytes + need > q->cache_limit) {
        size_t victim = n;
        for (size_t i = 0; i < n; i++)
            if (q->cache[i] && q->cache_used[i] < q->stamp &&
                (victim == n || q->cache_used[i] < q->cache_used[victim]))
                victim = i;
        if (victim == n)
            return;
        free_copy(q, victim);
    }
}

/* ---- pairing with the f32 master's answers (McNemar's discordant pairs) ---- */

/* A split's sentences of head h (head 0: its items). */
static qq_head_items sentences_of(const qq_split *s, size_t h)
{
    return h == 0 ? (qq_head_items){s->items, s->n_items} : s->heads[h];
}

static void answers_free(answers *a)
{
    for (size_t h = 0; h < QQ_HEADS_MAX; h++)
        free(a->right[h]);
    memset(a, 0, sizeof *a);
}

/* Room for an answer per sentence of every head the split has sentences for. */
static qr_status answers_new(const qq_split *s, answers *a, qr_error *err)
{
    memset(a, 0, sizeof *a);
    for (size_t h = 0; h < QQ_HEADS_MAX; h++) {
        qq_head_items hi = sentences_of(s, h);
        if (!hi.items || !hi.n_items)
            continue;
        if (!(a->right[h] = calloc(hi.n_items, 1))) {
            answers_free(a);
            return qr_fail(err, QR_ERR_NOMEM, "out of memory for %zu answers", hi.n_items);
        }
    }
    return QR_OK;
}

static const answers *f32_find(const qq_measurer *q, const qq_split *split)
{
    for (size_t i = 0; i < q->n_f32; i++)
        if (q->f32[i].split == split)
            return &q->f32[i].a;
    return NULL;
}

/* Keeps the master's answers on split (taking a's buffers). */
static qr_status f32_keep(qq_measurer *q, const qq_split *split, answers *a, qr_error *err)
{
    if (q->n_f32 == q->cap_f32) {
        size_t cap = q->cap_f32 ? 2 * q->cap_f32 : 4;
        f32_answers *e = realloc(q->f32, cap * sizeof *e);
        if (!e) {
            answers_free(a);
            return qr_fail(err, QR_ERR_NOMEM, "out of memory for the f32 answers");
        }
        q->f32 = e;
        q->cap_f32 = cap;
    }
    q->f32[q->n_f32++] = (f32_answers){split, *a};
    memset(a, 0, sizeof *a);
    return QR_OK;
}

/* True when the setting leaves every matrix as the master stores it. */
static bool is_master(const qq_measurer *q, const uint32_t *types)
{
    size_t n = qr_model_file_tensor_count(q->master);
    for (size_t i = 0; i < n; i++)
        if (q->slots[i] && types[i] != qr_model_file_tensor(q->master, i)->type)
            return false;
    return true;
}

/* The master's answers on split, run once (sentences only, no LM text) when not known yet.
 * Leaves the view at the master's own weights. */
static qr_status f32_answers_of(qq_measurer *q, const qq_split *split, const answers **out, qr_error *err)
{
    if ((*out = f32_find(q, split)))
        return QR_OK;
    const qq_split *s = split ? split : &q->calib;
    view_at_master(q);
    qq_split sentences = *s;
    sentences.tokens = NULL;
    sentences.n_tokens = 0;
    answers a;
    qq_metrics m;
    qr_status st = answers_new(s, &a, err);
    if (st == QR_OK && (st = measure_model(q, q->runner, &q->view, &sentences, false, false, &a, &m, err)))
        answers_free(&a);
    if (st == QR_OK && (st = f32_keep(q, split, &a, err)) == QR_OK)
        *out = &q->f32[q->n_f32 - 1].a;
    return st;
}

/* Counts, per head measured on both, the sentences f32 gets right and the setting wrong (lost)
 * and the reverse (gained). */
static void pair(const answers *f32, const answers *mine, const qq_split *s, qq_metrics *out)
{
    for (size_t h = 0; h < QQ_HEADS_MAX; h++) {
        qq_head_items hi = sentences_of(s, h);
        if (!out->head_measured[h] || !f32->right[h] || !mine->right[h])
            continue;
        uint64_t lost = 0, gained = 0;
        for (size_t i = 0; i < hi.n_items; i++) {
            lost += f32->right[h][i] && !mine->right[h][i];
            gained += !f32->right[h][i] && mine->right[h][i];
        }
        out->head_paired[h] = true;
        out->head_lost[h] = lost;
        out->head_gained[h] = gained;
    }
}

/* Runs a bound model (the view, or a file's) over split and pairs its answers with the master's
 * there; the master's are gathered first if need be, or from this very run when the model is
 * the master (master set). */
static qr_status measure_paired(qq_measurer *q, qr_runner *r, const qr_model *m, const qq_split *split,
                                bool master, qq_metrics *out, qr_error *err)
{
    const qq_split *s = split ? split : &q->calib;
    const answers *f32 = f32_find(q, split);
    answers mine;
    qr_status st = answers_new(s, &mine, err);
    if (st)
        return st;
    st = measure_model(q, r, m, s, split == NULL, false, &mine, out, err);
    if (st == QR_OK && !f32 && master && (st = f32_keep(q, split, &mine, err)) == QR_OK)
        f32 = f32_find(q, split);
    if (st == QR_OK && f32)
        pair(f32, master ? f32 : &mine, s, out);
    answers_free(&mine);
    return st;
}

/* The quantized copy of master tensor i at `type`, made on first use with the quantizer a
 * variant file written by qq_write_setting gets, so a setting measured here is the file. */
static qr_status cached_tensor(qq_measurer *q, size_t i, uint32_t type, qr_error *err)
{
    size_t slot = i * N_CODES + type;
    q->cache_used[slot] = q->stamp;
    if (q->cache[slot])
        return QR_OK;
    const qr_tensor_info *t = qr_model_file_tensor(q->master, i);
    const qr_matrix *src = qr_model_matrix(q->base, t->name);
    uint64_t row_bytes;
    if (!src || src->type != QR_TYPE_F32)
        return qr_fail(err, QR_ERR_INVALID, "%s: tensor '%s' is not an f32 matrix; QSLM starts from an f32 model",
                       qr_model_file_path(q->master), t->name);
    if (!qr_type_bytes(type, src->cols, &row_bytes))
        return qr_fail(err, QR_ERR_INVALID, "tensor '%s' (%zu columns) cannot be stored as %s", t->name,
                       src->cols, qr_type_get(type)->name);
    make_room(q, src->rows * row_bytes);
    void *buf = malloc(src->rows * (size_t)row_bytes);
    if (!buf)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for tensor '%s' as %s", t->name,
                       qr_type_get(type)->name);
    bool ec = q->rounding == QQ_ROUND_EC && q->ec && q->ec[i].n && qr_type_is_quantized(type);
    qr_status st = ec ? qr_quantize_tensor_ec(type, src->data, src->rows, src->cols, &q->ec[i], buf, q->pool)
                      : qr_quantize_tensor(type, src->data, src->rows, src->cols,
                                           q->rounding == QQ_ROUND_NEAREST ? NULL : q->importance[i], buf, q->pool);
    if (ec)
        release_factor(q, &q->ec[i]);
    if (st) {
        free(buf);
        return qr_fail(err, st, "tensor '%s' cannot be quantized to %s", t->name, qr_type_get(type)->name);
    }
    q->cache[slot] = buf;
    q->cache_row_bytes[slot] = (size_t)row_bytes;
    q->cache_bytes += src->rows * row_bytes;
    return QR_OK;
}

/* Points the view's matrices at the setting: the master's own for f32, cached copies otherwise. */
static qr_status apply_setting(qq_measurer *q, const uint32_t *types, qr_error *err)
{
    size_t n = qr_model_file_tensor_count(q->master);
    bool refined = qq_measurer_is_refined(q, types);
    q->stamp++;
    for (size_t i = 0; i < n; i++) {
        qr_matrix *dst = q->slots[i];
        if (!dst)
            continue;
        const qr_matrix *src = qr_model_matrix(q->base, qr_model_file_tensor(q->master, i)->name);
        uint32_t type = types[i];
        if (type == src->type) {
            *dst = *src;
            continue;
        }
        if (type >= N_CODES || !qr_type_get(type))
            return qr_fail(err, QR_ERR_INVALID, "unknown type code %u", (unsigned)type);
        if (refined && q->refined[i]) {
            uint64_t row_bytes;
            qr_type_bytes(type, src->cols, &row_bytes);
            qr_model_file_release(q->master, src->data, (uint64_t)src->rows * src->row_bytes);
            *dst = (qr_matrix){q->refined[i], type, src->rows, src->cols, (size_t)row_bytes, qr_kernels_best(type)};
            continue;
        }
        qr_status st = cached_tensor(q, i, type, err);
        if (st)
            return st;
        /* The f32 weights are not read while the copy stands in for them. */
        qr_model_file_release(q->master, src->data, (uint64_t)src->rows * src->row_bytes);
        size_t slot = i * N_CODES + type;
        *dst = (qr_matrix){q->cache[slot], type, src->rows, src->cols, q->cache_row_bytes[slot],
                           qr_kernels_best(type)};
    }
    return QR_OK;
}

qr_status qq_measurer_new(const qr_model_file *master, qr_pool *pool, const qq_split *calib,
                          size_t window, size_t batch, qq_measurer **out, qr_error *err)
{
    *out = NULL;
    qq_measurer *q = calloc(1, sizeof *q);
    if (!q)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the measurer");
    q->master = master;
    q->pool = pool;
    q->window = window;
    q->batch = batch;
    q->calib = *calib;
    size_t n = qr_model_file_tensor_count(master);
    qr_status st = qr_model_bind(master, &q->base, err);
    if (st)
        goto fail;
    q->vocab = q->base->vocab;
    q->n_classes = q->base->n_classes;
    q->view = *q->base;
    q->view.layers = malloc(q->base->n_layer * sizeof *q->view.layers);
    q->view.cls = malloc((q->base->head_info.n ? q->base->head_info.n : 1) * sizeof *q->view.cls);
    q->slots = calloc(n, sizeof *q->slots);
    q->base_slots = calloc(n ? n : 1, sizeof *q->base_slots);
    q->cache = calloc(n * N_CODES, sizeof *q->cache);
    q->cache_row_bytes = calloc(n * N_CODES, sizeof *q->cache_row_bytes);
    q->cache_used = calloc(n * N_CODES, sizeof *q->cache_used);
    q->act_sums = calloc(n ? n : 1, sizeof *q->act_sums);
    q->act_rows = calloc(n ? n : 1, sizeof *q->act_rows);
    q->importance = calloc(n ? n : 1, sizeof *q->importance);
    q->ref_logp = calib->tokens ? malloc(calib->n_tokens * q->vocab * sizeof *q->ref_logp) : NULL;
    q->ref_offset = calib->tokens ? calloc(calib->n_tokens, sizeof *q->ref_offset) : NULL;
    q->ref_cls = calib->items && q->n_classes ? malloc(calib->n_items * q->n_classes * sizeof(float)) : NULL;
    if (!q->view.layers || !q->view.cls || !q->slots || !q->base_slots || !q->cache || !q->cache_row_bytes || !q->cache_used ||
        !q->act_sums || !q->act_rows ||
        !q->importance ||
        (calib->tokens && (!q->ref_logp || !q->ref_offset)) || (calib->items && q->n_classes && !q->ref_cls)) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the measurer (reference outputs of %zu tokens x %zu)",
                     calib->n_tokens, q->vocab);
        goto fail;
    }
    memcpy(q->view.layers, q->base->layers, q->base->n_layer * sizeof *q->view.layers);
    memcpy(q->view.cls, q->base->cls, q->base->head_info.n * sizeof *q->view.cls); /* its own heads too */
    for (size_t i = 0; i < n; i++) {
        const qr_tensor_info *t = qr_model_file_tensor(master, i);
        q->slots[i] = t->n_dims == 2 ? qr_model_matrix(&q->view, t->name) : NULL;
        q->base_slots[i] = t->n_dims == 2 ? qr_model_matrix(q->base, t->name) : NULL;
        if (q->slots[i])
            q->cache_limit += (uint64_t)q->slots[i]->rows * q->slots[i]->cols * sizeof(float);
    }
    /* Quantized copies kept beyond the setting in use: a sixteenth of the master's matrices, at
     * least QQ_CACHE_MIN: at 216M the block tier's settings hold most of the f32 master resident
     * beside them, and a copy costs a fraction of a second to make again. */
    q->cache_limit = q->cache_limit / 16 > QQ_CACHE_MIN ? q->cache_limit / 16 : QQ_CACHE_MIN;
    /* Several steps of every window per forward call (eval.h): each weight dequantized once per
     * chunk; the validation split's longer windows take the same rows. */
    if ((st = qr_runner_new(&q->view, pool, qr_eval_rows(&q->view, batch, QQ_EVAL_STEPS), &q->runner, err)))
        goto fail;
    qr_runner_set_observer(q->runner, observe_product, q);
    st = measure_model(q, q->runner, &q->view, calib, true, true, NULL, &q->reference, err);
    qr_runner_set_observer(q->runner, NULL, NULL);
    if (st)
        goto fail;
    finish_importance(q);
    *out = q;
    return QR_OK;
fail:
    qq_measurer_free(q);
    return st;
}

void qq_measurer_free(qq_measurer *q)
{
    if (!q)
        return;
    size_t n = qr_model_file_tensor_count(q->master);
    qq_measurer_drop_refined(q);
    for (size_t i = 0; q->cache && i < n * N_CODES; i++)
        free(q->cache[i]);
    free(q->cache);
    free(q->cache_row_bytes);
    free(q->cache_used);
    for (size_t i = 0; i < q->n_memo; i++)
        free(q->memo[i].types);
    free(q->memo);
    for (size_t i = 0; i < n; i++) {
        if (q->act_sums)
            free(q->act_sums[i]);
        if (q->importance)
            free(q->importance[i]);
    }
    for (size_t i = 0; q->hessian && i < n; i++)
        free(q->hessian[i]);
    free(q->hessian);
    free(q->in_pass);
    for (size_t i = 0; q->hess_buf && i < n; i++)
        free(q->hess_buf[i]);
    free(q->hess_buf);
    free(q->hess_held);
    for (size_t i = 0; q->ec_own && i < n; i++)
        free(q->ec_own[i]);
    free(q->ec_own);
    free(q->ec);
    if (q->ec_map)
        munmap(q->ec_map, q->ec_map_bytes);
    free(q->hess_rows);
    free(q->act_sums);
    free(q->act_rows);
    free(q->importance);
    free(q->slots);
    free(q->base_slots);
    qr_runner_free(q->runner);
    free(q->view.layers);
    free(q->view.cls);
    qr_model_free(q->base);
    free(q->ref_logp);
    free(q->ref_offset);
    free(q->ref_cls);
    for (size_t i = 0; i < q->n_f32; i++)
        answers_free(&q->f32[i].a);
    free(q->f32);
    free(q);
}

void qq_measurer_drop_copies(qq_measurer *q)
{
    size_t n = qr_model_file_tensor_count(q->master) * N_CODES;
    for (size_t i = 0; i < n; i++)
        if (q->cache[i])
            free_copy(q, i);
    view_at_master(q); /* no slot points at a freed copy */
}

void qq_measurer_set_cache_limit(qq_measurer *q, uint64_t bytes)
{
    q->cache_limit = bytes;
}

uint64_t qq_measurer_cache_bytes(const qq_measurer *q)
{
    return q->cache_bytes;
}

const qr_model *qq_measurer_view(const qq_measurer *q)
{
    return &q->view;
}

qr_runner *qq_measurer_runner(const qq_measurer *q)
{
    return q->runner;
}

const qr_model_file *qq_measurer_master(const qq_measurer *q)
{
    return q->master;
}

qr_pool *qq_measurer_pool(const qq_measurer *q)
{
    return q->pool;
}

const qq_split *qq_measurer_calib(const qq_measurer *q)
{
    return &q->calib;
}

size_t qq_measurer_window(const qq_measurer *q)
{
    return q->calib.window ? q->calib.window : q->window;
}

size_t qq_measurer_batch(const qq_measurer *q)
{
    return q->batch;
}

qr_status qq_measurer_apply(qq_measurer *q, const uint32_t *types, qr_error *err)
{
    return apply_setting(q, types, err);
}

const qq_metrics *qq_measurer_reference(const qq_measurer *q)
{
    return &q->reference;
}

static memo_entry *memo_find(qq_measurer *q, const uint32_t *types, const qq_split *split)
{
    size_t n = qr_model_file_tensor_count(q->master);
    bool refined = qq_measurer_is_refined(q, types);
    for (size_t i = 0; i < q->n_memo; i++)
        if (q->memo[i].split == split && q->memo[i].refined == refined &&
            memcmp(q->memo[i].types, types, n * sizeof *types) == 0)
            return &q->memo[i];
    return NULL;
}

/* Remembers a measurement; forgetting (out of memory) only costs a measurement later. */
static void memo_add(qq_measurer *q, const uint32_t *types, const qq_split *split, const qq_metrics *m)
{
    size_t n = qr_model_file_tensor_count(q->master);
    if (q->n_memo == q->cap_memo) {
        size_t cap = q->cap_memo ? 2 * q->cap_memo : 64;
        memo_entry *e = realloc(q->memo, cap * sizeof *e);
        if (!e)
            return;
        q->memo = e;
        q->cap_memo = cap;
    }
    uint32_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy)
        return;
    memcpy(copy, types, n * sizeof *copy);
    q->memo[q->n_memo++] = (memo_entry){copy, split, qq_measurer_is_refined(q, types), *m};
}

qr_status qq_measure_setting(qq_measurer *q, const uint32_t *types, const qq_split *split,
                             qq_metrics *out, qr_error *err)
{
    memo_entry *e = memo_find(q, types, split);
    if (e) {
        *out = e->metrics;
        return QR_OK;
    }
    bool master = is_master(q, types);
    const answers *f32;
    qr_status st = master ? QR_OK : f32_answers_of(q, split, &f32, err);
    if (st || (st = apply_setting(q, types, err)))
        return st;
    st = measure_paired(q, q->runner, &q->view, split, master, out, err);
    if (st == QR_OK)
        memo_add(q, types, split, out);
    return st;
}

qr_status qq_measure_minmax(qq_measurer *q, int bits, const qq_split *split, qq_metrics *out,
                            qr_error *err)
{
    size_t n = qr_model_file_tensor_count(q->master);
    const answers *f32;
    qr_status st = f32_answers_of(q, split, &f32, err); /* before the view's weights change */
    if (st)
        return st;
    float **copies = calloc(n ? n : 1, sizeof *copies);
    st = copies ? QR_OK : qr_fail(err, QR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == QR_OK && i < n; i++) {
        qr_matrix *dst = q->slots[i];
        if (!dst)
            continue;
        const qr_matrix *src = qr_model_matrix(q->base, qr_model_file_tensor(q->master, i)->name);
        if (src->type != QR_TYPE_F32) {
            st = qr_fail(err, QR_ERR_INVALID, "the min-max baseline needs an f32 master");
            break;
        }
        size_t count = src->rows * src->cols;
        if (!(copies[i] = malloc(count * sizeof(float)))) {
            st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the min-max baseline");
            break;
        }
        if ((st = qr_fake_quant_minmax_per_tensor(src->data, count, bits, copies[i])))
            st = qr_fail(err, st, "min-max quantization to %d bits failed", bits);
        *dst = *src;
        dst->data = copies[i];
    }
    if (st == QR_OK)
        st = measure_paired(q, q->runner, &q->view, split, false, out, err);
    view_at_master(q);
    for (size_t i = 0; copies && i < n; i++)
        free(copies[i]);
    free(copies);
    return st;
}

qr_status qq_measure_file(qq_measurer *q, const char *path, const qq_split *split,
                          qq_metrics *out, qr_error *err)
{
    qr_model_file *file = NULL;
    qr_model *m = NULL;
    qr_runner *r = NULL;
    const answers *f32;
    qr_status st = f32_answers_of(q, split, &f32, err);
    if (!st && !(st = qr_model_file_open(path, &file, err)) && !(st = qr_model_bind(file, &m, err)) &&
        !(st = qr_runner_new(m, q->pool, qr_eval_rows(m, q->batch, QQ_EVAL_STEPS), &r, err)))
        st = measure_paired(q, r, m, split, false, out, err);
    qr_runner_free(r);
    qr_model_free(m);
    qr_model_file_close(file);
    return st;
}

/* Matrices whose sums (and held rows) are gathered together, at most this many bytes of them (one
 * matrix at least):
 * at 216M all of them would take 620 MB; in passes of 96 MB the text is run seven times. */
#define QQ_EC_PASS_BYTES (96ull << 20)

/* Turns matrix i's gathered sums into its factor, in `fd` at *file_bytes when fd ≥ 0, else in
 * memory. */
static qr_status finish_factor(qq_measurer *q, size_t i, double damp, int fd, uint64_t *file_bytes,
                               uint64_t *offset, qr_error *err)
{
    size_t c = q->slots[i]->cols;
    float *h = q->hessian[i], scale = 1.0f / (float)q->hess_rows[i];
    for (size_t r = 0; r < c; r++)
        for (size_t k = r; k < c; k++)
            h[k * c + r] = h[r * c + k] = h[r * c + k] * scale;
    float *fl = malloc((c * c + c) * sizeof *fl);
    if (!fl)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the error-compensation factors");
    qr_status st = qr_ec_factor_compute(h, c, damp, fl, fl + c * c);
    if (st) {
        free(fl);
        return qr_fail(err, st, "%s: the inputs' second moments of '%s' cannot be factorised",
                       qr_model_file_path(q->master), qr_model_file_tensor(q->master, i)->name);
    }
    q->ec[i] = (qr_ec_factor){c, fl, fl + c * c};
    if (fd < 0) {
        q->ec_own[i] = fl;
        return QR_OK;
    }
    size_t bytes = (c * c + c) * sizeof *fl, done = 0;
    while (done < bytes) {
        ssize_t w = pwrite(fd, (const char *)fl + done, bytes - done, (off_t)(*file_bytes + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            free(fl);
            return qr_fail(err, QR_ERR_IO, "cannot write the error-compensation factors: %s",
                           w < 0 ? strerror(errno) : "no space");
        }
        done += (size_t)w;
    }
    free(fl);
    offset[i] = *file_bytes;
    *file_bytes += bytes;
    return QR_OK;
}

/* The embedding is a lookup, not a product, so no text gives it second moments; but each row it
 * gives goes straight into ln0, which removes the row's mean and scales column j by ln0's gain
 * g_j, so a row's rounding error e matters as ‖diag(g)·P·e‖² (P = I − 11ᵀ/d, the centring; the
 * row's own standard deviation scales every column alike and does not change the rounding).
 * H = P·diag(g²)·P is that error's matrix: error-compensating rounding then spends the codes where
 * ln0 passes errors on, and lets the rows' common offset (which ln0 removes) absorb the rest.
 * Nothing to do for a model that spikes on the embedding (the LIF is not linear). */
static qr_status embedding_factor(qq_measurer *q, double damp, int fd, uint64_t *file_bytes, uint64_t *offset,
                                  qr_error *err)
{
    const qr_model *m = q->base;
    const qr_tensor_info *t = qr_model_file_find_tensor(q->master, "emb.weight");
    if (!t || m->spike_emb || !m->ln0_w)
        return QR_OK;
    size_t i = (size_t)(t - qr_model_file_tensor(q->master, 0)), d = m->d;
    if (!q->slots[i] || q->slots[i]->cols != d || q->ec[i].n)
        return QR_OK;
    float *h = malloc(d * d * sizeof *h);
    if (!h)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the embedding's factor");
    double sum = 0.0;
    for (size_t j = 0; j < d; j++)
        sum += (double)m->ln0_w[j] * m->ln0_w[j];
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < d; b++) {
            double ga = (double)m->ln0_w[a] * m->ln0_w[a], gb = (double)m->ln0_w[b] * m->ln0_w[b];
            h[a * d + b] = (float)((a == b ? ga : 0.0) - (ga + gb) / (double)d + sum / ((double)d * d));
        }
    q->hessian[i] = h;
    q->hess_rows[i] = 1;
    qr_status st = finish_factor(q, i, damp, fd, file_bytes, offset, err);
    free(h);
    q->hessian[i] = NULL;
    return st;
}

qr_status qq_measurer_gather_hessians(qq_measurer *q, const int32_t *tokens, size_t n_tokens, double damp,
                                      const char *spill_dir, qr_error *err)
{
    size_t n = qr_model_file_tensor_count(q->master);
    if (q->n_memo || q->ec)
        return qr_fail(err, QR_ERR_INVALID, "the Hessians are gathered once, before any measurement");
    if (!(damp >= 0.0 && damp <= 1.0))
        return qr_fail(err, QR_ERR_INVALID, "dampening %g is not in [0, 1]", damp);
    q->hessian = calloc(n ? n : 1, sizeof *q->hessian);
    q->hess_rows = calloc(n ? n : 1, sizeof *q->hess_rows);
    q->in_pass = calloc(n ? n : 1, sizeof *q->in_pass);
    q->hess_buf = calloc(n ? n : 1, sizeof *q->hess_buf);
    q->hess_held = calloc(n ? n : 1, sizeof *q->hess_held);
    q->ec = calloc(n ? n : 1, sizeof *q->ec);
    q->ec_own = calloc(n ? n : 1, sizeof *q->ec_own);
    uint64_t *offset = calloc(n ? n : 1, sizeof *offset), file_bytes = 0;
    if (!q->hessian || !q->hess_rows || !q->in_pass || !q->hess_buf || !q->hess_held || !q->ec || !q->ec_own ||
        !offset) {
        free(offset);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the Hessians");
    }
    /* The factors go to an unlinked file in spill_dir when one can be made: read back through a
     * mapping, their pages are dropped after each use. */
    int fd = -1;
    if (spill_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/qslm-ec-XXXXXX", spill_dir);
        if ((fd = mkstemp(path)) >= 0)
            unlink(path);
    }
    qq_measurer_drop_copies(q); /* the view runs the master */
    qq_split text = {.tokens = tokens, .n_tokens = n_tokens, .window = q->window};
    qr_status st = QR_OK;
    for (size_t i0 = 0; i0 < n && st == QR_OK;) {
        uint64_t bytes = 0;
        size_t i1 = i0;
        for (; i1 < n; i1++) {
            if (!q->slots[i1])
                continue;
            uint64_t need = (uint64_t)q->slots[i1]->cols * (q->slots[i1]->cols + QQ_EC_ROWS) * sizeof(float);
            if (bytes && bytes + need > QQ_EC_PASS_BYTES)
                break;
            bytes += need;
            q->in_pass[i1] = true;
        }
        if (bytes) {
            qq_metrics m;
            qr_runner_set_observer(q->runner, observe_hessian, q);
            st = measure_model(q, q->runner, &q->view, &text, false, false, NULL, &m, err);
            qr_runner_set_observer(q->runner, NULL, NULL);
        }
        for (size_t i = i0; i < i1; i++) {
            if (q->hessian[i])
                flush_hessian(q, i);
            free(q->hess_buf[i]);
            q->hess_buf[i] = NULL;
            if (st == QR_OK && q->hessian[i])
                st = finish_factor(q, i, damp, fd, &file_bytes, offset, err);
            free(q->hessian[i]);
            q->hessian[i] = NULL;
            q->in_pass[i] = false;
        }
        i0 = i1;
    }
    if (st == QR_OK)
        st = embedding_factor(q, damp, fd, &file_bytes, offset, err);
    if (fd >= 0 && st == QR_OK && file_bytes) {
        void *map = mmap(NULL, (size_t)file_bytes, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            st = qr_fail(err, QR_ERR_IO, "cannot map the error-compensation factors: %s", strerror(errno));
        } else {
            q->ec_map = map;
            q->ec_map_bytes = (size_t)file_bytes;
            for (size_t i = 0; i < n; i++)
                if (q->ec[i].n) {
                    const float *u = (const float *)((const char *)map + offset[i]);
                    q->ec[i].u = u;
                    q->ec[i].diag = u + q->ec[i].n * q->ec[i].n;
                }
        }
    }
    if (fd >= 0)
        close(fd);
    free(offset);
    if (st) { /* no half-made factors stay behind */
        free(q->ec);
        q->ec = NULL;
        return st;
    }
    q->rounding = QQ_ROUND_EC;
    q->ec_tokens = tokens;
    q->ec_n_tokens = n_tokens;
    q->ec_damp = damp;
    return QR_OK;
}

qr_status qq_measurer_set_rounding(qq_measurer *q, qq_rounding rounding, qr_error *err)
{
    if (rounding == QQ_ROUND_EC && !q->ec)
        return qr_fail(err, QR_ERR_INVALID, "error-compensating rounding needs the Hessians gathered first");
    if (rounding == q->rounding)
        return QR_OK;
    qq_measurer_drop_copies(q);
    qq_measurer_drop_refined(q);
    for (size_t i = 0; i < q->n_memo; i++) /* measured with the other rounding */
        free(q->memo[i].types);
    q->n_memo = 0;
    q->rounding = rounding;
    return QR_OK;
}

qq_rounding qq_measurer_rounding(const qq_measurer *q)
{
    return q->rounding;
}

/* ---------------------------------------------------------------- refined copies */

bool qq_measurer_ec_text(const qq_measurer *q, const int32_t **tokens, size_t *n_tokens, double *damp)
{
    if (!q->ec || q->rounding != QQ_ROUND_EC)
        return false;
    *tokens = q->ec_tokens;
    *n_tokens = q->ec_n_tokens;
    *damp = q->ec_damp;
    return true;
}

const qr_model *qq_measurer_base(const qq_measurer *q)
{
    return q->base;
}

size_t qq_measurer_tensor_of(const qq_measurer *q, const qr_matrix *w)
{
    size_t n = qr_model_file_tensor_count(q->master), i = tensor_of(q, w);
    for (size_t k = 0; i == n && k < n; k++)
        if (q->base_slots[k] == w)
            i = k;
    return i;
}

const qr_matrix *qq_measurer_master_matrix(const qq_measurer *q, size_t tensor)
{
    return q->base_slots[tensor];
}

const qr_ec_factor *qq_measurer_ec_factor(const qq_measurer *q, size_t tensor)
{
    return q->ec && q->ec[tensor].n ? &q->ec[tensor] : NULL;
}

bool qq_measurer_is_refined(const qq_measurer *q, const uint32_t *types)
{
    return q->refined_types &&
           memcmp(q->refined_types, types, qr_model_file_tensor_count(q->master) * sizeof *types) == 0;
}

void qq_measurer_drop_refined(qq_measurer *q)
{
    size_t n = qr_model_file_tensor_count(q->master);
    for (size_t i = 0; q->refined && i < n; i++)
        free(q->refined[i]);
    free(q->refined);
    free(q->refined_types);
    q->refined = NULL;
    q->refined_types = NULL;
    for (size_t i = 0; i < q->n_memo;) { /* what was measured with them is gone with them */
        if (q->memo[i].refined) {
            free(q->memo[i].types);
            q->memo[i] = q->memo[--q->n_memo];
        } else {
            i++;
        }
    }
}

qr_status qq_measurer_set_refined(qq_measurer *q, const uint32_t *types, void **copies, qr_error *err)
{
    size_t n = qr_model_file_tensor_count(q->master);
    qq_measurer_drop_refined(q);
    q->refined_types = malloc((n ? n : 1) * sizeof *q->refined_types);
    q->refined = calloc(n ? n : 1, sizeof *q->refined);
    if (!q->refined_types || !q->refined) {
        free(q->refined_types);
        free(q->refined);
        q->refined_types = NULL;
        q->refined = NULL;
        for (size_t i = 0; i < n; i++)
            free(copies[i]);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the refined setting");
    }
    memcpy(q->refined_types, types, n * sizeof *types);
    for (size_t i = 0; i < n; i++) {
        q->refined[i] = copies[i];
        copies[i] = NULL;
    }
    return QR_OK;
}
