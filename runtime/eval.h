/* eval.h: perplexity and classification accuracy over a data set, on the batched path.
 *
 * Used by qslm-eval and by QSLM's sensitivity analysis and search, so both measure the same
 * thing. Sequences advance together, B at a time. A runner made for more rows than B takes
 * several steps of every sequence per forward call (step-major, forward.h), so each weight is
 * read (and, for a quantized type, dequantized) once per chunk of steps instead of once per
 * token: qr_eval_rows says how many rows to make it for. */
#ifndef QR_EVAL_H
#define QR_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "forward.h"

/* The output rows of one forward call (rows × vocab floats with an LM head) stay under this. */
#define QR_EVAL_OUT_BYTES ((size_t)64 << 20)
#define QR_EVAL_ROWS_MAX 1024

/* The rows to make an evaluation runner for: `batch` sequences times as many steps (at most
 * `window`) as keep one call's outputs under QR_EVAL_OUT_BYTES, and at most QR_EVAL_ROWS_MAX. */
size_t qr_eval_rows(const qr_model *m, size_t batch, size_t window);

/* How many windows of `window` tokens qr_eval_perplexity cuts n_tokens into (n_tokens ≥ 2): a last
 * window of one token scores nothing and is left out. Window w runs its tokens but the last,
 * min(window, n_tokens - w·window) - 1 steps. */
size_t qr_eval_windows(size_t n_tokens, size_t window);

/* Called after each batch step with work done and total (tokens). May be NULL. */
typedef void (*qr_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct {
    double nll_sum;       /* sum of -ln p(target) in nats */
    uint64_t predictions; /* tokens scored */
    double ppl;           /* exp(nll_sum / predictions) */
    double hook_sum;      /* sum of the score hook's values (qr_eval_perplexity_with), else 0 */
} qr_ppl_result;

/* Splits tokens into consecutive windows of `window` tokens (the last may be shorter); each
 * window starts from a fresh state and scores its tokens 2..n given the ones before. Runs up to
 * `batch` windows at once (the runner must take that batch), as many steps of them per call as
 * the runner's rows allow.
 *
 * After each forward call the rows are scored on the runner's pool (qr_runner_pool), each task a
 * contiguous range of rows writing per-row values; the sums then add them up in row order, so
 * nll_sum and hook_sum are the same bit for bit whatever the pool's thread count. */
qr_status qr_eval_perplexity(qr_runner *r, const int32_t *tokens, size_t n_tokens, size_t window,
                             size_t batch, qr_progress_fn progress, void *progress_ctx,
                             qr_ppl_result *out, qr_error *err);

/* Scores one prediction beside its NLL, for measures such as QSLM's KL divergence from the f32
 * model's outputs. `target_pos` is the index in tokens of the token predicted (unique per
 * prediction), `logits` its vocab floats and `log_sum_exp` their qr_log_sum_exp, computed once
 * for the NLL and the hook. Returns a value the evaluator adds to hook_sum.
 *
 * Called on the pool's threads, several rows at once and in no particular order: it may read
 * anything the caller does not change during the evaluation, but write only memory that belongs
 * to target_pos (QSLM's reference run fills its row `target_pos` of the kept outputs). */
typedef double (*qr_logits_score_fn)(void *ctx, size_t target_pos, const float *logits,
                                     double log_sum_exp);

/* qr_eval_perplexity, calling score (may be NULL) for each prediction; out->hook_sum is the sum
 * of what it returned, added in the same order as nll_sum. */
qr_status qr_eval_perplexity_with(qr_runner *r, const int32_t *tokens, size_t n_tokens,
                                  size_t window, size_t batch, qr_logits_score_fn score,
                                  void *score_ctx, qr_progress_fn progress, void *progress_ctx,
                                  qr_ppl_result *out, qr_error *err);

typedef struct {
    const int32_t *tokens;
    size_t n_tokens;      /* >= 1 */
    int label;            /* 0 .. n_classes-1 */
} qr_labelled;

typedef struct {
    uint64_t correct, total;
    double accuracy;      /* correct / total */
    double nll_mean;      /* mean -ln p(label) of the classifier */
} qr_acc_result;

/* Classifies every item: mean of ln_out(x) over its tokens, then the classifier head. */
qr_status qr_eval_accuracy(qr_runner *r, const qr_labelled *items, size_t n_items, size_t batch,
                           qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                           qr_error *err);

/* Sees each item's classifier logits (n_classes floats). */
typedef void (*qr_class_fn)(void *ctx, size_t item, const float *class_logits);

/* qr_eval_accuracy, calling on_class (may be NULL) for each item. */
qr_status qr_eval_accuracy_with(qr_runner *r, const qr_labelled *items, size_t n_items,
                                size_t batch, qr_class_fn on_class, void *class_ctx,
                                qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                                qr_error *err);

/* qr_eval_accuracy_with for classifier head `head` (m->head_info.heads[head]); items' labels are
 * that head's class indices. */
qr_status qr_eval_accuracy_head(qr_runner *r, size_t head, const qr_labelled *items, size_t n_items,
                                size_t batch, qr_class_fn on_class, void *class_ctx,
                                qr_progress_fn progress, void *progress_ctx, qr_acc_result *out,
                                qr_error *err);

/* ln Σ exp(logits) (n >= 1), the log-softmax's normaliser: shifted by the largest logit, each
 * term by vexp.h's float exponential (within QR_VEXP_REL_ERR = 1e-7 of exp) and the sum in
 * double, so within about 1e-7 (absolute) of the exact log-sum-exp of the float differences
 * logits[i] - max. */
double qr_log_sum_exp(const float *logits, size_t n);

/* -ln softmax(logits)[target]: qr_log_sum_exp - logits[target], in double. */
double qr_token_nll(const float *logits, size_t n, int32_t target);

#endif
