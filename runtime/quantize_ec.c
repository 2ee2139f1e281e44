/* quantize_ec.c: error-compensating rounding (GPTQ: Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", 2022), written for our blocks.
 *
 * A row's output error on inputs x is (w − ŵ)·x, so its mean square over calibration inputs is
 * (w − ŵ) H (w − ŵ)ᵀ with H = E[x xᵀ]. Rounding the columns in order, each column's rounding
 * error is pushed onto the columns not yet rounded along the row of the upper Cholesky factor U
 * of H⁻¹ (Hinv = UᵀU), which is the least-squares compensation given H. Rows are independent, so
 * they are spread over the pool in slices; within a slice the columns go in lazy batches of
 * EC_BATCH (the corrections within a batch one column at a time, the rest of the row by one
 * sgemm per batch). A block's header is fitted to its 32 weights as they stand when the block
 * is reached (corrections from the earlier columns included), weighted by H's diagonal, and
 * then its codes are chosen one column at a time. */
#include "quantize.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "quantize_block.h"
#include "tensor_types.h"

/* LAPACK (OpenBLAS ships it): Cholesky factorisation and inverse of a symmetric positive
 * definite matrix, column-major. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda, double *b,
                    const int *ldb, int *info);

#define EC_BATCH 128 /* columns per lazy batch: a multiple of the 32-weight block */
#define EC_SLICE 64  /* rows per pool task: each batch's sgemm packs its U block once per slice */
#define EC_TRIES 6   /* dampening raised tenfold per failed factorisation */

/* U (row-major, upper triangle) with H⁻¹ = UᵀU, from H with damp·mean(diag H) added to its
 * diagonal. Column-major LAPACK sees a row-major symmetric matrix unchanged: the lower Cholesky
 * factor L of H, then H⁻¹ in the lower triangle, then its lower factor L₂ (H⁻¹ = L₂L₂ᵀ), which
 * row-major reads as L₂ᵀ = U in the upper triangle. */
static qr_status inverse_factor(const float *h, size_t n, double damp, float *u)
{
    double *a = malloc(n * n * sizeof *a);
    if (!a)
        return QR_ERR_NOMEM;
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += h[i * n + i];
    mean = mean > 0.0 ? mean / (double)n : 1.0;
    if (damp == 0.0)
        damp = 1e-9; /* so that the retries below can raise it */
    int nn = (int)n, info = 1;
    for (int t = 0; t < EC_TRIES && info != 0; t++, damp *= 10.0) {
        for (size_t i = 0; i < n * n; i++)
            a[i] = h[i];
        for (size_t i = 0; i < n; i++)
            a[i * n + i] += damp * mean;
        dpotrf_("L", &nn, a, &nn, &info);
        if (info == 0)
            dpotri_("L", &nn, a, &nn, &info);
        if (info == 0)
            dpotrf_("L", &nn, a, &nn, &info);
    }
    if (info == 0)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                u[i * n + j] = j >= i ? (float)a[i * n + j] : 0.0f;
    free(a);
    return info == 0 ? QR_OK : QR_ERR_INVALID;
}

/* w -= a·u over n floats: the corrections inside a batch, where quantization spends its time on
 * large matrices (restrict lets the compiler vectorise it). */
static void subtract_scaled(float *restrict w, const float *restrict u, float a, size_t n)
{
    for (size_t k = 0; k < n; k++)
        w[k] -= a * u[k];
}

typedef struct {
    const qr_type_info *t;
    const float *src, *u, *diag;
    size_t rows, cols, row_bytes;
    uint8_t *dst;
    int failed;
} ec_job;

/* One slice of rows through every column. */
static void ec_task(void *arg, size_t task)
{
    ec_job *j = arg;
    const size_t n = j->cols, r0 = task * EC_SLICE;
    const size_t R = r0 + EC_SLICE < j->rows ? EC_SLICE : j->rows - r0;
    const size_t hdr = qr_block_header_bytes(j->t);
    float *w = malloc(R * n * sizeof *w), *e = malloc(R * EC_BATCH * sizeof *e);
    if (!w || !e) {
        free(w);
        free(e);
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    memcpy(w, j->src + r0 * n, R * n * sizeof *w);
    qr_block_grid grid[EC_SLICE];
    uint8_t codes[EC_SLICE][QR_QK];
    for (size_t c0 = 0; c0 < n; c0 += EC_BATCH) {
        const size_t c1 = c0 + EC_BATCH < n ? c0 + EC_BATCH : n;
        for (size_t c = c0; c < c1; c++) {
            const size_t in_block = c % QR_QK, blk = c / QR_QK;
            if (in_block == 0)
                for (size_t r = 0; r < R; r++)
                    qr_block_fit(j->t, w + r * n + c, j->diag + c,
                                 j->dst + (r0 + r) * j->row_bytes + blk * j->t->block_bytes, &grid[r]);
            const float *urow = j->u + c * n;
            const float inv = 1.0f / urow[c];
            for (size_t r = 0; r < R; r++) {
                float *wr = w + r * n;
                uint8_t q = qr_block_code(&grid[r], wr[c]);
                codes[r][in_block] = q;
                float err = (wr[c] - qr_block_value(&grid[r], q)) * inv;
                e[r * EC_BATCH + (c - c0)] = err;
                subtract_scaled(wr + c + 1, urow + c + 1, err, c1 - c - 1);
            }
            if (in_block == QR_QK - 1)
                for (size_t r = 0; r < R; r++)
                    qr_pack_codes((int)j->t->bits,
                                  j->dst + (r0 + r) * j->row_bytes + blk * j->t->block_bytes + hdr, codes[r]);
        }
        if (c1 < n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)(n - c1), (int)(c1 - c0), -1.0f, e,
                        EC_BATCH, j->u + c0 * n + c1, (int)n, 1.0f, w + c1, (int)n);
    }
    free(w);
    free(e);
}

qr_status qr_ec_factor_compute(const float *hessian, size_t n, double damp, float *u, float *diag)
{
    if (n == 0 || n > 65536 || !(damp >= 0.0))
        return QR_ERR_INVALID;
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(hessian[i]))
            return QR_ERR_INVALID;
    double mean = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (hessian[i * n + i] < 0.0f)
            return QR_ERR_INVALID;
        mean += hessian[i * n + i];
    }
    mean /= (double)n;
    qr_status st = inverse_factor(hessian, n, damp, u);
    if (st)
        return st;
    /* The headers' fit weights: H's diagonal (each column's mean square input), with a floor so
     * that a column never seen active still counts a little. */
    for (size_t i = 0; i < n; i++)
        diag[i] = (float)(hessian[i * n + i] + 1e-3 * mean + 1e-12);
    return QR_OK;
}

qr_status qr_quantize_tensor_ec(uint32_t type, const float *src, size_t rows, size_t cols, const qr_ec_factor *f,
                                void *dst, qr_pool *pool)
{
    const qr_type_info *t = qr_type_get(type);
    uint64_t row_bytes;
    if (!t || !qr_type_is_quantized(type) || !qr_type_bytes(type, cols, &row_bytes) || f->n != cols)
        return QR_ERR_INVALID;
    for (size_t i = 0; i < rows * cols; i++)
        if (!isfinite(src[i]))
            return QR_ERR_INVALID;
    ec_job j = {t, src, f->u, f->diag, rows, cols, (size_t)row_bytes, dst, 0};
    qr_pool_run(pool, (rows + EC_SLICE - 1) / EC_SLICE, ec_task, &j);
    return j.failed ? QR_ERR_NOMEM : QR_OK;
}

qr_status qr_ec_drift_target(const float *w, size_t rows, size_t cols, const float *h, const float *c,
                             double ridge, double mix, float *out)
{
    const size_t n = cols;
    if (n == 0 || n > 65536 || !(ridge > 0.0) || !(mix >= 0.0 && mix <= 1.0))
        return QR_ERR_INVALID;
    for (size_t i = 0; i < n * n; i++)
        if (!isfinite(h[i]) || !isfinite(c[i]))
            return QR_ERR_INVALID;
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += h[i * n + i];
    mean = mean > 0.0 ? mean / (double)n : 1.0;
    const double lambda = ridge * mean;
    double *a = malloc(n * n * sizeof *a), *b = malloc(n * n * sizeof *b);
    float *m = malloc(n * n * sizeof *m);
    if (!a || !b || !m) {
        free(a);
        free(b);
        free(m);
        return QR_ERR_NOMEM;
    }
    /* Mᵀ = (H + λI)⁻¹ (C + λI)ᵀ, solved column-major: H is symmetric, so its row-major floats are
     * its column-major ones, and C's row-major floats read column-major are Cᵀ. The solution's
     * column-major floats, read row-major, are M. */
    for (size_t i = 0; i < n * n; i++) {
        a[i] = h[i];
        b[i] = c[i];
    }
    for (size_t i = 0; i < n; i++) {
        a[i * n + i] += lambda;
        b[i * n + i] += lambda;
    }
    int nn = (int)n, info = 0;
    dpotrf_("L", &nn, a, &nn, &info);
    if (info == 0)
        dpotrs_("L", &nn, &nn, a, &nn, b, &nn, &info);
    if (info == 0) {
        /* W* = W·(mix·M + (1 − mix)·I) */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                m[i * n + j] = (float)(mix * b[i * n + j] + (i == j ? 1.0 - mix : 0.0));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, w, (int)n, m, (int)n,
                    0.0f, out, (int)n);
    }
    free(a);
    free(b);
    free(m);
    if (info != 0)
        return QR_ERR_INVALID;
    for (size_t i = 0; i < rows * n; i++)
        if (!isfinite(out[i]))
            return QR_ERR_INVALID;
    return QR_OK;
}
