/* refine.c: sequential error compensation of one setting (refine.h). Does not decide when a
 * refined setting is worth keeping: the search measures it and decides (search.c). */
#include "refine.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "quantize.h"
#include "tensor_types.h"

#define REFINE_ROWS 512                      /* input rows per matrix held before they are summed */
#define REFINE_PASS_BYTES ((uint64_t)160 << 20) /* sums and held rows of one pass's matrices */
#define REFINE_MAX_BITS 4                    /* a setting with a matrix at this or fewer code bits */

/* One matrix being refined: its sums over the pass, and the rows of the chunk under way from the
 * master's run (xf) and the setting's (xq), which must pair up row for row. */
typedef struct {
    size_t tensor, cols;
    float *h, *c;   /* cols × cols: Σ x_q x_qᵀ (upper triangle until the pass ends), Σ x_f x_qᵀ */
    float *xf, *xq; /* REFINE_ROWS × cols */
    size_t nf, nq;  /* rows held */
    uint64_t rows;  /* rows summed */
} target;

typedef struct {
    const qq_measurer *q;
    target *t;
    size_t n_t;
    size_t *of_tensor; /* per master tensor: its target, or n_t */
    bool master_run;   /* which of the two runs is under way */
    bool overflow;     /* a chunk gave more rows than REFINE_ROWS (a bug: the chunk is sized for it) */
} recorder;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Both runs' product observer: a matrix's input rows into its target's chunk buffer. */
static void observe(void *arg, const qr_matrix *w, const float *x, size_t B)
{
    recorder *r = arg;
    size_t i = qq_measurer_tensor_of(r->q, w);
    size_t k = i < qr_model_file_tensor_count(qq_measurer_master(r->q)) ? r->of_tensor[i] : r->n_t;
    if (k == r->n_t)
        return;
    target *t = &r->t[k];
    size_t *held = r->master_run ? &t->nf : &t->nq;
    float *buf = r->master_run ? t->xf : t->xq;
    if (*held + B > REFINE_ROWS) {
        r->overflow = true;
        return;
    }
    memcpy(buf + *held * t->cols, x, B * t->cols * sizeof *x);
    *held += B;
}

/* Adds the chunk's rows to the sums. */
static void sum_chunk(target *t)
{
    int c = (int)t->cols, n = (int)t->nq;
    if (n) {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, c, n, 1.0f, t->xq, c, 1.0f, t->h, c);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, c, n, 1.0f, t->xf, c, t->xq, c, 1.0f, t->c, c);
    }
    t->rows += (uint64_t)n;
    t->nf = t->nq = 0;
}

static void target_free(target *t)
{
    free(t->h);
    free(t->c);
    free(t->xf);
    free(t->xq);
    memset(t, 0, sizeof *t);
}

bool qq_refine_applies(const qq_measurer *q, const uint32_t *types)
{
    const qr_model_file *master = qq_measurer_master(q);
    for (size_t i = 0; i < qr_model_file_tensor_count(master); i++) {
        const qr_type_info *ti = qr_type_get(types[i]);
        if (qr_model_file_tensor(master, i)->n_dims == 2 && qr_type_is_quantized(types[i]) && ti &&
            ti->bits <= REFINE_MAX_BITS)
            return true;
    }
    return false;
}

/* Runs the master and then the setting (already applied to the view) over the text, chunk by
 * chunk of whole windows, summing each target's products. */
static qr_status run_pass(qq_measurer *q, qr_runner *master_runner, recorder *rec, const int32_t *tokens,
                          size_t n_tokens, qr_error *err)
{
    size_t window = qq_measurer_window(q), batch = qq_measurer_batch(q);
    size_t per_chunk = REFINE_ROWS / (window - 1);
    per_chunk = (per_chunk ? per_chunk : 1) * window;
    qr_runner *runners[2] = {master_runner, qq_measurer_runner(q)};
    qr_status st = QR_OK;
    for (size_t at = 0; at + 2 <= n_tokens && st == QR_OK; at += per_chunk) {
        size_t len = n_tokens - at < per_chunk ? n_tokens - at : per_chunk;
        for (int k = 0; k < 2 && st == QR_OK; k++) {
            qr_ppl_result ppl;
            rec->master_run = k == 0;
            qr_runner_set_observer(runners[k], observe, rec);
            st = qr_eval_perplexity_with(runners[k], tokens + at, len, window, batch, NULL, NULL, NULL, NULL, &ppl,
                                         err);
            qr_runner_set_observer(runners[k], NULL, NULL);
        }
        if (st)
            break;
        if (rec->overflow)
            return qr_fail(err, QR_ERR_INVALID, "refinement: a chunk of %zu tokens gave more than %d rows", len,
                           REFINE_ROWS);
        for (size_t k = 0; k < rec->n_t; k++) {
            if (rec->t[k].nf != rec->t[k].nq)
                return qr_fail(err, QR_ERR_INVALID,
                               "refinement: the master's run and the setting's gave '%s' different inputs (%zu and "
                               "%zu rows)",
                               qr_model_file_tensor(qq_measurer_master(q), rec->t[k].tensor)->name, rec->t[k].nf,
                               rec->t[k].nq);
            sum_chunk(&rec->t[k]);
        }
    }
    return st;
}

/* The target's matrix quantized to `type` again from its sums (turned into means in place):
 * towards the drift-corrected weights, compensating errors under the setting's own inputs. */
static qr_status requantize_target(qq_measurer *q, target *t, uint32_t type, double damp, void **out,
                                   qr_error *err)
{
    const qr_model_file *master = qq_measurer_master(q);
    const char *name = qr_model_file_tensor(master, t->tensor)->name;
    const qr_matrix *w = qq_measurer_master_matrix(q, t->tensor);
    size_t n = t->cols, rows = w->rows;
    float scale = 1.0f / (float)t->rows;
    for (size_t r = 0; r < n; r++)
        for (size_t k = r; k < n; k++)
            t->h[k * n + r] = t->h[r * n + k] = t->h[r * n + k] * scale;
    for (size_t i = 0; i < n * n; i++)
        t->c[i] *= scale;
    uint64_t row_bytes = 0;
    qr_type_bytes(type, n, &row_bytes);
    float *goal = malloc(rows * n * sizeof *goal), *factor = malloc((n * n + n) * sizeof *factor);
    void *bytes = malloc(rows * (size_t)row_bytes);
    qr_status st = goal && factor && bytes ? QR_OK : QR_ERR_NOMEM;
    if (st == QR_OK)
        st = qr_ec_drift_target(w->data, rows, n, t->h, t->c, damp, QQ_REFINE_MIX, goal);
    if (st == QR_OK)
        st = qr_ec_factor_compute(t->h, n, damp, factor, factor + n * n);
    qr_ec_factor f = {n, factor, factor + n * n};
    if (st == QR_OK)
        st = qr_quantize_tensor_ec(type, goal, rows, n, &f, bytes, qq_measurer_pool(q));
    free(goal);
    free(factor);
    if (st) {
        free(bytes);
        return qr_fail(err, st, "refinement: '%s' cannot be quantized to %s again%s", name, qr_type_get(type)->name,
                       st == QR_ERR_NOMEM ? ": out of memory" : " (its inputs' sums cannot be factorised)");
    }
    *out = bytes;
    return QR_OK;
}

qr_status qq_refine_setting(qq_measurer *q, const uint32_t *types, qq_refine_stats *stats, qr_error *err)
{
    double t0 = now();
    qq_refine_stats local = {0};
    stats = stats ? stats : &local;
    *stats = (qq_refine_stats){0};
    const qr_model_file *master = qq_measurer_master(q);
    size_t n = qr_model_file_tensor_count(master);
    const int32_t *tokens;
    size_t n_tokens;
    double damp;
    if (!qq_measurer_ec_text(q, &tokens, &n_tokens, &damp))
        return qr_fail(err, QR_ERR_INVALID, "refinement needs error-compensating rounding (--ec-tokens above 0)");
    qq_measurer_drop_refined(q);
    if (!qq_refine_applies(q, types))
        return QR_OK;
    qr_status st = qq_measurer_apply(q, types, err);
    if (st)
        return st;
    qr_runner *master_runner = NULL;
    void **copies = calloc(n ? n : 1, sizeof *copies);
    target *t = calloc(n ? n : 1, sizeof *t);
    size_t *of_tensor = malloc((n ? n : 1) * sizeof *of_tensor);
    if (!copies || !t || !of_tensor) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the refinement");
        goto out;
    }
    if ((st = qr_runner_new(qq_measurer_base(q), qq_measurer_pool(q), qr_runner_max_batch(qq_measurer_runner(q)), &master_runner,
                            err)))
        goto out;
    /* The matrices the text multiplies, in passes whose sums fit REFINE_PASS_BYTES. */
    for (size_t i0 = 0; i0 < n && st == QR_OK;) {
        recorder rec = {q, t, 0, of_tensor, false, false};
        uint64_t bytes = 0;
        size_t i1 = i0;
        for (; i1 < n; i1++) {
            of_tensor[i1] = SIZE_MAX;
            const qr_tensor_info *ti = qr_model_file_tensor(master, i1);
            if (ti->n_dims != 2 || !qr_type_is_quantized(types[i1]) || !qq_measurer_ec_factor(q, i1) ||
                strcmp(ti->name, "emb.weight") == 0)
                continue;
            size_t c = (size_t)ti->dims[1];
            uint64_t need = ((uint64_t)2 * c * c + (uint64_t)2 * REFINE_ROWS * c) * sizeof(float);
            if (bytes && bytes + need > REFINE_PASS_BYTES)
                break;
            target *x = &t[rec.n_t];
            *x = (target){.tensor = i1, .cols = c};
            x->h = calloc(c * c, sizeof *x->h);
            x->c = calloc(c * c, sizeof *x->c);
            x->xf = malloc(REFINE_ROWS * c * sizeof *x->xf);
            x->xq = malloc(REFINE_ROWS * c * sizeof *x->xq);
            if (!x->h || !x->c || !x->xf || !x->xq) {
                st = qr_fail(err, QR_ERR_NOMEM, "out of memory for the refinement's sums of '%s'", ti->name);
                break;
            }
            of_tensor[i1] = rec.n_t++;
            bytes += need;
        }
        for (size_t i = 0; i < n; i++) /* the targets of this pass only */
            if (i < i0 || i >= i1 || of_tensor[i] == SIZE_MAX)
                of_tensor[i] = rec.n_t;
        if (st == QR_OK && rec.n_t) {
            st = run_pass(q, master_runner, &rec, tokens, n_tokens, err);
            stats->passes++;
        }
        for (size_t k = 0; k < rec.n_t; k++) {
            if (st == QR_OK && t[k].rows)
                st = requantize_target(q, &t[k], types[t[k].tensor], damp, &copies[t[k].tensor], err);
            stats->matrices += st == QR_OK && t[k].rows;
            target_free(&t[k]);
        }
        i0 = i1 > i0 ? i1 : i0 + 1;
    }
    if (st == QR_OK)
        st = qq_measurer_set_refined(q, types, copies, err);
out:
    for (size_t i = 0; copies && i < n; i++)
        free(copies[i]);
    free(copies);
    free(t);
    free(of_tensor);
    qr_runner_free(master_runner);
    stats->seconds = now() - t0;
    return st;
}
