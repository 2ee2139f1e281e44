/* eval.c: the evaluators. Sequences of unequal length share a batch: at each step only the
 * sequences that still have a token run, compacted into the first rows of the batch. A call's
 * predictions are scored on the runner's pool, the sums kept in row order. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vexp.h"

/* Tasks per pool thread when scoring a call's rows: a few, so that a thread the machine
 * schedules late leaves its share to the others instead of holding up the call. */
#define SCORE_TASKS_PER_THREAD 4

double qr_log_sum_exp(const float *logits, size_t n)
{
    float max = qr_vmax(logits, n);
    return log(qr_vexp_sum(logits, n, max)) + max;
}

double qr_token_nll(const float *logits, size_t n, int32_t target)
{
    return qr_log_sum_exp(logits, n) - logits[target];
}

/* The batch's states, and the rows of one forward call: up to `rows` (state, token) pairs,
 * several steps of each sequence when the runner takes more rows than there are sequences. */
typedef struct {
    qr_state **states;   /* n: one per sequence slot */
    qr_state **active;   /* rows: the state each row advances (a state recurs once per step) */
    int32_t *tokens;     /* rows */
    size_t *owner;       /* row -> sequence slot */
    size_t *step;        /* row -> step within the sequence */
    float *out;          /* rows × (vocab or d) */
    size_t n, rows;
} batch_buffers;

static void batch_free(batch_buffers *bb)
{
    if (bb->states)
        for (size_t i = 0; i < bb->n; i++)
            qr_state_free(bb->states[i]);
    free(bb->states);
    free(bb->active);
    free(bb->tokens);
    free(bb->owner);
    free(bb->step);
    free(bb->out);
}

static qr_status batch_alloc(const qr_model *m, size_t batch, size_t rows, size_t out_width,
                             batch_buffers *bb, qr_error *err)
{
    memset(bb, 0, sizeof *bb);
    bb->states = calloc(batch, sizeof *bb->states);
    bb->active = calloc(rows, sizeof *bb->active);
    bb->tokens = calloc(rows, sizeof *bb->tokens);
    bb->owner = calloc(rows, sizeof *bb->owner);
    bb->step = calloc(rows, sizeof *bb->step);
    bb->out = malloc(rows * out_width * sizeof(float));
    if (!bb->states || !bb->active || !bb->tokens || !bb->owner || !bb->step || !bb->out) {
        batch_free(bb);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for an evaluation batch of %zu rows", rows);
    }
    bb->n = batch;
    bb->rows = rows;
    for (size_t i = 0; i < batch; i++) {
        qr_status st = qr_state_new(m, &bb->states[i], err);
        if (st) {
            batch_free(bb);
            return st;
        }
    }
    return QR_OK;
}

/* Rows for one forward call: steps t0, t0+1, ... of the nb sequences, as many whole steps as fit
 * in bb->rows (at least one); sequence b takes part in step t while t < len[b]. The rows are
 * sequence-major (each sequence's steps in order, then the next sequence's), so the runner can
 * hand whole sequences to different threads (forward.h). Returns the row count and sets
 * *next_t to the first step left out. */
static size_t gather_rows(batch_buffers *bb, size_t nb, const size_t *len, size_t t0, size_t steps,
                          size_t *next_t)
{
    size_t na = 0, t = t0;
    for (; t < steps; t++) {
        size_t here = 0;
        for (size_t b = 0; b < nb; b++)
            here += t < len[b];
        if (na && na + here > bb->rows)
            break;
        na += here;
    }
    *next_t = t;
    size_t row = 0;
    for (size_t b = 0; b < nb; b++)
        for (size_t s = t0; s < t && s < len[b]; s++) {
            bb->active[row] = bb->states[b];
            bb->owner[row] = b;
            bb->step[row] = s;
            row++;
        }
    return na;
}

size_t qr_eval_rows(const qr_model *m, size_t batch, size_t window)
{
    size_t width = m->has_lm_head ? m->vocab : m->d;
    size_t per_step = batch ? batch : 1;
    size_t steps = QR_EVAL_OUT_BYTES / (per_step * width * sizeof(float));
    steps = steps < 1 ? 1 : steps > window ? window : steps;
    size_t rows = per_step * steps;
    return rows > QR_EVAL_ROWS_MAX ? (per_step > QR_EVAL_ROWS_MAX ? per_step : QR_EVAL_ROWS_MAX / per_step * per_step)
                                   : rows;
}

/* ---------------------------------------------------------------- scoring a call's rows */

/* A call's rows being scored: each task takes rows [i·per_task, (i+1)·per_task) and writes only
 * their entries of nll and hook, which the caller then adds up in row order. */
typedef struct {
    const float *logits;      /* rows × vocab */
    const int32_t *tokens;    /* the whole text */
    const size_t *pos;        /* rows: index in tokens of each row's target */
    size_t vocab, rows, per_task;
    qr_logits_score_fn score; /* may be NULL */
    void *score_ctx;
    double *nll, *hook;       /* rows */
} score_region;

/* One task's rows: the log-sum-exp once, for the NLL and the hook both. */
static void score_task(void *arg, size_t index)
{
    const score_region *s = arg;
    size_t a = index * s->per_task, end = a + s->per_task < s->rows ? a + s->per_task : s->rows;
    for (; a < end; a++) {
        const float *row = s->logits + a * s->vocab;
        double lse = qr_log_sum_exp(row, s->vocab);
        s->nll[a] = lse - row[s->tokens[s->pos[a]]];
        s->hook[a] = s->score ? s->score(s->score_ctx, s->pos[a], row, lse) : 0.0;
    }
}

/* Scores s->rows rows on the pool (NULL: on this thread) and adds them to out in row order, so
 * the sums do not depend on how the rows were split. */
static void score_rows(qr_pool *pool, score_region *s, qr_ppl_result *out)
{
    size_t n_tasks = (size_t)qr_pool_threads(pool) * SCORE_TASKS_PER_THREAD;
    n_tasks = n_tasks < s->rows ? n_tasks : s->rows;
    s->per_task = (s->rows + n_tasks - 1) / n_tasks;
    qr_pool_run(pool, (s->rows + s->per_task - 1) / s->per_task, score_task, s);
    for (size_t a = 0; a < s->rows; a++) {
        out->nll_sum += s->nll[a];
        out->hook_sum += s->hook[a];
    }
}

/* Per-row scratch of the perplexity evaluator: targets' positions and the scores of one call. */
typedef struct {
    size_t *pos;
    double *nll, *hook;
} row_scores;

static void row_scores_free(row_scores *rs)
{
    free(rs->pos);
    free(rs->nll);
    free(rs->hook);
}

static qr_status row_scores_alloc(size_t rows, row_scores *rs, qr_error *err)
{
    rs->pos = malloc(rows * sizeof *rs->pos);
    rs->nll = malloc(rows * sizeof *rs->nll);
    rs->hook = malloc(rows * sizeof *rs->hook);
    if (rs->pos && rs->nll && rs->hook)
        return QR_OK;
    row_scores_free(rs);
    return qr_fail(err, QR_ERR_NOMEM, "out of memory for the scores of %zu rows", rows);
}

/* Each row's target position (window w0 + owner, one step on); fails on a target outside the
 * vocabulary before anything is scored. */
static qr_status row_targets(const batch_buffers *bb, size_t na, size_t w0, size_t window,
                             const int32_t *tokens, size_t vocab, size_t *pos, qr_error *err)
{
    for (size_t a = 0; a < na; a++) {
        pos[a] = (w0 + bb->owner[a]) * window + bb->step[a] + 1;
        int32_t target = tokens[pos[a]];
        if (target < 0 || (size_t)target >= vocab)
            return qr_fail(err, QR_ERR_INVALID, "token id %d is outside the vocabulary", (int)target);
    }
    return QR_OK;
}

/* ---------------------------------------------------------------- perplexity */

size_t qr_eval_windows(size_t n_tokens, size_t window)
{
    size_t n_windows = (n_tokens + window - 1) / window;
    if (n_tokens - (n_windows - 1) * window < 2)
        n_windows--;
    return n_windows;
}

qr_status qr_eval_perplexity_with(qr_runner *r, const int32_t *tokens, size_t n_tokens,
                                  size_t window, size_t batch, qr_logits_score_fn score,
                                  void *score_ctx, qr_progress_fn progress, void *progress_ctx,
                                  qr_ppl_result *out, qr_error *err)
{
    const qr_model *m = qr_runner_model(r);
    memset(out, 0, sizeof *out);
    if (!m->has_lm_head)
        return qr_fail(err, QR_ERR_INVALID, "perplexity needs an LM head; the model has none");
    if (window < 2)
        return qr_fail(err, QR_ERR_INVALID, "window of %zu tokens: it must be at least 2", window);
    if (n_tokens < 2)
        return qr_fail(err, QR_ERR_INVALID, "%zu tokens: perplexity needs at least 2", n_tokens);
    size_t n_windows = qr_eval_windows(n_tokens, window);
    uint64_t total = n_tokens - n_windows;
    if (batch > n_windows)
        batch = n_windows;
    size_t rows = qr_runner_max_batch(r) > batch ? qr_runner_max_batch(r) : batch;
    batch_buffers bb;
    row_scores rs;
    qr_status st = batch_alloc(m, batch, rows, m->vocab, &bb, err);
    if (st)
        return st;
    if ((st = row_scores_alloc(rows, &rs, err))) {
        batch_free(&bb);
        return st;
    }
    score_region sr = {bb.out, tokens, rs.pos, m->vocab, 0, 0, score, score_ctx, rs.nll, rs.hook};
    uint64_t done = 0;
    for (size_t w0 = 0; w0 < n_windows; w0 += batch) {
        size_t nb = n_windows - w0 < batch ? n_windows - w0 : batch;
        size_t len[nb]; /* steps of each window: its tokens but the last, which is only a target */
        size_t steps = 0;
        for (size_t b = 0; b < nb; b++) {
            size_t start = (w0 + b) * window;
            len[b] = (n_tokens - start < window ? n_tokens - start : window) - 1;
            steps = len[b] > steps ? len[b] : steps;
            qr_state_reset(bb.states[b]);
        }
        for (size_t t = 0; t < steps;) {
            size_t na = gather_rows(&bb, nb, len, t, steps, &t);
            for (size_t a = 0; a < na; a++)
                bb.tokens[a] = tokens[(w0 + bb.owner[a]) * window + bb.step[a]];
            if ((st = row_targets(&bb, na, w0, window, tokens, m->vocab, rs.pos, err)) ||
                (st = qr_forward(r, bb.active, bb.tokens, na, bb.out, NULL, err)))
                goto done;
            sr.rows = na;
            score_rows(qr_runner_pool(r), &sr, out);
            out->predictions += na;
            done += na;
            if (progress)
                progress(progress_ctx, done, total);
        }
    }
    out->ppl = exp(out->nll_sum / (double)out->predictions);
done:
    row_scores_free(&rs);
    batch_free(&bb);
    return st;
}

qr_status qr_eval_perplexity(qr_runner *r, const int32_t *tokens, size_t n_tokens, size_t window,
                             size_t batch, qr_progress_fn progress, void *progress_ctx,
                             qr_ppl_result *out, qr_error *err)
{
    return qr_eval_perplexity_with(r, tokens, n_tokens, window, batch, NULL, NULL, progress,
                                   progress_ctx, out, err);
}

qr_status qr_eval_accuracy(qr_runner *r, const qr_labelled *items, size_t n_items, size_t batch,
                           qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                           qr_error *err)
{
    return qr_eval_accuracy_with(r, items, n_items, batch, NULL, NULL, progress, progress_ctx, out,
                                 err);
}

qr_status qr_eval_accuracy_with(qr_runner *r, const qr_labelled *items, size_t n_items,
                                size_t batch, qr_class_fn on_class, void *class_ctx,
                                qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                                qr_error *err)
{
    return qr_eval_accuracy_head(r, 0, items, n_items, batch, on_class, class_ctx, progress,
                                 progress_ctx, out, err);
}

qr_status qr_eval_accuracy_head(qr_runner *r, size_t head, const qr_labelled *items, size_t n_items,
                                size_t batch, qr_class_fn on_class, void *class_ctx,
                                qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                                qr_error *err)
{
    const qr_model *m = qr_runner_model(r);
    memset(out, 0, sizeof *out);
    if (m->head_info.n == 0)
        return qr_fail(err, QR_ERR_INVALID, "accuracy needs a classifier head; the model has none");
    if (head >= m->head_info.n)
        return qr_fail(err, QR_ERR_INVALID, "head %zu does not exist; the model has %zu", head,
                       m->head_info.n);
    const size_t n_classes = m->cls[head].n_classes;
    if (n_items == 0)
        return qr_fail(err, QR_ERR_INVALID, "no labelled items to evaluate");
    uint64_t total = 0;
    for (size_t i = 0; i < n_items; i++) {
        if (items[i].n_tokens == 0)
            return qr_fail(err, QR_ERR_INVALID, "item %zu has no tokens", i);
        if (items[i].label < 0 || (size_t)items[i].label >= n_classes)
            return qr_fail(err, QR_ERR_INVALID, "item %zu has label %d; the classifier has %zu classes",
                           i, items[i].label, n_classes);
        total += items[i].n_tokens;
    }
    if (batch > n_items)
        batch = n_items;
    size_t rows = qr_runner_max_batch(r) > batch ? qr_runner_max_batch(r) : batch;
    batch_buffers bb;
    qr_status st = batch_alloc(m, batch, rows, m->d, &bb, err);
    if (st)
        return st;
    double *sums = calloc(batch * m->d, sizeof *sums);
    float *mean = malloc(m->d * sizeof *mean), *cls = malloc(n_classes * sizeof *cls);
    if (!sums || !mean || !cls) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for accuracy evaluation");
        goto done;
    }
    uint64_t done = 0;
    double nll = 0.0;
    for (size_t i0 = 0; i0 < n_items; i0 += batch) {
        size_t nb = n_items - i0 < batch ? n_items - i0 : batch;
        size_t len[nb];
        size_t steps = 0;
        for (size_t b = 0; b < nb; b++) {
            qr_state_reset(bb.states[b]);
            len[b] = items[i0 + b].n_tokens;
            steps = len[b] > steps ? len[b] : steps;
        }
        memset(sums, 0, nb * m->d * sizeof *sums);
        for (size_t t = 0; t < steps;) {
            size_t na = gather_rows(&bb, nb, len, t, steps, &t);
            for (size_t a = 0; a < na; a++)
                bb.tokens[a] = items[i0 + bb.owner[a]].tokens[bb.step[a]];
            st = qr_forward(r, bb.active, bb.tokens, na, NULL, bb.out, err);
            if (st)
                goto done;
            for (size_t a = 0; a < na; a++) {
                double *s = sums + bb.owner[a] * m->d;
                const float *f = bb.out + a * m->d;
                for (size_t j = 0; j < m->d; j++)
                    s[j] += f[j];
            }
            done += na;
            if (progress)
                progress(progress_ctx, done, total);
        }
        for (size_t b = 0; b < nb; b++) {
            const qr_labelled *it = &items[i0 + b];
            for (size_t j = 0; j < m->d; j++)
                mean[j] = (float)(sums[b * m->d + j] / (double)it->n_tokens);
            qr_classify_head(m, head, mean, cls);
            if (on_class)
                on_class(class_ctx, i0 + b, cls);
            size_t best = 0;
            for (size_t c = 1; c < n_classes; c++)
                if (cls[c] > cls[best])
                    best = c;
            out->correct += best == (size_t)it->label;
            nll += qr_token_nll(cls, n_classes, it->label);
        }
        out->total += nb;
    }
    out->accuracy = (double)out->correct / (double)out->total;
    out->nll_mean = nll / (double)out->total;
done:
    free(sums);
    free(mean);
    free(cls);
    batch_free(&bb);
    return st;
}
