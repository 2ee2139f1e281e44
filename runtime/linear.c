/* linear.c: threading and batching around the per-type kernels. */
#include "linear.h"

#include <cblas.h>

#include "tensor_types.h"

#define ROWS_PER_TASK 16   /* small enough to balance 2..8 threads on a d=512 matrix */
#define PANEL_ROWS 256     /* rows dequantized at a time for a batched product */
#define MAX_JOBS 8

typedef struct {
    const qr_matvec_job *jobs;
    size_t n_jobs;
    size_t first_task[MAX_JOBS + 1]; /* job j owns tasks [first_task[j], first_task[j+1]) */
} matvec_region;

static void matvec_task(void *arg, size_t task)
{
    const matvec_region *r = arg;
    size_t j = 0;
    while (task >= r->first_task[j + 1])
        j++;
    const qr_matvec_job *job = &r->jobs[j];
    const qr_matrix *w = job->w;
    size_t row0 = (task - r->first_task[j]) * ROWS_PER_TASK;
    size_t n = w->rows - row0 < ROWS_PER_TASK ? w->rows - row0 : ROWS_PER_TASK;
    w->ops->dot_rows((const char *)w->data + row0 * w->row_bytes, w->row_bytes, n, job->x,
                     w->cols, job->y + row0);
}

void qr_matvec_multi(qr_pool *pool, const qr_matvec_job *jobs, size_t n_jobs)
{
    /* More jobs than a region holds: run them in groups. */
    while (n_jobs > MAX_JOBS) {
        qr_matvec_multi(pool, jobs, MAX_JOBS);
        jobs += MAX_JOBS;
        n_jobs -= MAX_JOBS;
    }
    matvec_region r = {jobs, n_jobs, {0}};
    for (size_t j = 0; j < n_jobs; j++)
        r.first_task[j + 1] = r.first_task[j] + (jobs[j].w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    qr_pool_run(pool, r.first_task[n_jobs], matvec_task, &r);
}

size_t qr_matmul_panel_floats(size_t cols)
{
    return PANEL_ROWS * cols;
}

void qr_matmul(const qr_matrix *w, const float *X, size_t B, float *Y, float *panel)
{
    const int m = (int)B, k = (int)w->cols, ldc = (int)w->rows;
    if (w->type == QR_TYPE_F32) { /* straight from the mapping */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)w->rows, k, 1.0f, X, k,
                    (const float *)w->data, k, 0.0f, Y, ldc);
        return;
    }
    for (size_t r0 = 0; r0 < w->rows; r0 += PANEL_ROWS) {
        size_t n = w->rows - r0 < PANEL_ROWS ? w->rows - r0 : PANEL_ROWS;
        for (size_t r = 0; r < n; r++)
            w->ops->to_float((const char *)w->data + (r0 + r) * w->row_bytes, panel + r * w->cols,
                             w->cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, k, 1.0f, X, k, panel, k,
                    0.0f, Y + r0, ldc);
    }
}
