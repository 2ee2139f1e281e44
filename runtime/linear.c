/* linear.c: threading and batching around the per-type kernels. */
#include "linear.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_types.h"

/* Rows are handed out in tasks of about TASK_BYTES of weights: long enough that the per-task cost
 * (claiming it, the hardware prefetcher locking onto a new stream) stays small — 16-row tasks of
 * a q4_0 matrix ran at half speed on 2 threads — but cut finer in small regions so that each
 * thread gets about TASKS_PER_THREAD of them. */
#define TASK_BYTES 131072
#define MIN_TASK_BYTES 16384
#define TASKS_PER_THREAD 4
#define MIN_ROWS_PER_TASK 4
#define PANEL_ROWS 64      /* rows dequantized at a time for a batched product: the panel is
                              part of every served footprint, so kept small (64 x 1536 floats
                              is 384 KiB for the default model) */
#define WIDE_PANEL_ROWS 512 /* the same for products of WIDE_PANEL_FROM rows or more (chunked
                               evaluation): BLAS packs X once per panel, so 64-row panels of a
                               320-row X spent more time packing X than multiplying */
#define WIDE_PANEL_FROM 128
#define MAX_JOBS 8
#define X8_STACK_GROUPS 64  /* 20 KiB of rounded inputs on the stack: up to 16384 columns */
#define GUARD 128           /* bytes kept clear around what the workers read: a line pair */
#define L1_SLICE_BYTES 8192 /* rows read once for all of a job's vectors: well inside L1 */

typedef struct {
    const qr_matvec_job *jobs;
    size_t n_jobs;
    size_t first_task[MAX_JOBS + 1]; /* job j owns tasks [first_task[j], first_task[j+1]) */
    size_t rows_per_task[MAX_JOBS];
    const qr_x8_group *xq[MAX_JOBS]; /* job j's x rounded to 8-bit blocks, or NULL: f32 x */
} matvec_region;

static size_t job_vectors(const qr_matvec_job *job)
{
    return job->n_x ? job->n_x : 1;
}

static void matvec_task(void *arg, size_t task)
{
    const matvec_region *r = arg;
    size_t j = 0;
    while (task >= r->first_task[j + 1])
        j++;
    const qr_matvec_job *job = &r->jobs[j];
    const qr_matrix *w = job->w;
    size_t rpt = r->rows_per_task[j], row0 = (task - r->first_task[j]) * rpt;
    size_t n = w->rows - row0 < rpt ? w->rows - row0 : rpt;
    const char *rows = (const char *)w->data + row0 * w->row_bytes;
    size_t nx = job_vectors(job), groups = qr_x8_groups(w->cols);
    size_t slice = nx == 1 ? n : L1_SLICE_BYTES / w->row_bytes ? L1_SLICE_BYTES / w->row_bytes : 1;
    for (size_t s0 = 0; s0 < n; s0 += slice) {
        size_t m = n - s0 < slice ? n - s0 : slice;
        const char *part = rows + s0 * w->row_bytes;
        for (size_t b = 0; b < nx; b++) {
            float *y = job->y + b * w->rows + row0 + s0;
            if (r->xq[j])
                w->ops->dot_rows_x8(part, w->row_bytes, m, r->xq[j] + b * groups, w->cols, y);
            else
                w->ops->dot_rows(part, w->row_bytes, m, job->x + b * w->cols, w->cols, y);
        }
    }
}

void qr_matvec_multi(qr_pool *pool, const qr_matvec_job *jobs, size_t n_jobs)
{
    /* More jobs than a region holds: run them in groups. */
    while (n_jobs > MAX_JOBS) {
        qr_matvec_multi(pool, jobs, MAX_JOBS);
        jobs += MAX_JOBS;
        n_jobs -= MAX_JOBS;
    }
    /* The workers read the region and the rounded x throughout the region while this thread
     * keeps writing its own stack just below them. A precaution (cheap; not the cause of any
     * slowdown we measured): they share no cache line, nor 128-byte line pair (the L2
     * prefetchers of AMD and Intel fetch pairs), with anything written meanwhile. */
    _Alignas(GUARD) struct {
        matvec_region r;
        char pad[GUARD];
        qr_x8_group xq[X8_STACK_GROUPS];
        char guard[GUARD];
    } local;
    matvec_region *r = &local.r;
    *r = (matvec_region){jobs, n_jobs, {0}, {0}, {NULL}};
    size_t bytes = 0;
    for (size_t j = 0; j < n_jobs; j++)
        bytes += jobs[j].w->rows * jobs[j].w->row_bytes;
    size_t task_bytes = bytes / ((size_t)qr_pool_threads(pool) * TASKS_PER_THREAD);
    task_bytes = task_bytes > TASK_BYTES ? TASK_BYTES : task_bytes < MIN_TASK_BYTES ? MIN_TASK_BYTES : task_bytes;
    for (size_t j = 0; j < n_jobs; j++) {
        size_t rpt = task_bytes / jobs[j].w->row_bytes;
        rpt = rpt < MIN_ROWS_PER_TASK ? MIN_ROWS_PER_TASK : rpt;
        r->rows_per_task[j] = rpt;
        r->first_task[j + 1] = r->first_task[j] + (jobs[j].w->rows + rpt - 1) / rpt;
    }
    /* Quantized weights read x as 8-bit blocks: round each x once here, before the region,
     * rather than once per task. Wide inputs go to the heap, guarded the same way; if that
     * fails, the kernels' own dot_rows rounds x per task (slower; the same x bytes, so the same
     * result to float rounding). */
    size_t groups = 0;
    for (size_t j = 0; j < n_jobs; j++)
        if (jobs[j].w->ops->prepare_x)
            groups += qr_x8_groups(jobs[j].w->cols) * job_vectors(&jobs[j]);
    qr_x8_group *heap = NULL, *xq = local.xq;
    if (groups > X8_STACK_GROUPS) {
        size_t size = (groups * sizeof *xq + 2 * GUARD + GUARD - 1) / GUARD * GUARD;
        heap = aligned_alloc(GUARD, size);
        xq = heap ? (qr_x8_group *)((char *)heap + GUARD) : NULL;
    }
    if (xq) {
        qr_x8_group *next = xq;
        for (size_t j = 0; j < n_jobs; j++) {
            const qr_matrix *w = jobs[j].w;
            if (!w->ops->prepare_x)
                continue;
            r->xq[j] = next;
            for (size_t b = 0; b < job_vectors(&jobs[j]); b++) {
                w->ops->prepare_x(jobs[j].x + b * w->cols, w->cols, next);
                next += qr_x8_groups(w->cols);
            }
        }
    }
    qr_pool_run(pool, r->first_task[n_jobs], matvec_task, r);
    free(heap);
}

void qr_blas_use_one_thread(void)
{
    openblas_set_num_threads(1);
}

static size_t panel_rows(size_t B)
{
    return B >= WIDE_PANEL_FROM ? WIDE_PANEL_ROWS : PANEL_ROWS;
}

size_t qr_matmul_panel_floats(size_t cols, size_t max_rows)
{
    return panel_rows(max_rows) * cols;
}

void qr_matmul(const qr_matrix *w, const float *X, size_t B, float *Y, float *panel)
{
    const int m = (int)B, k = (int)w->cols, ldc = (int)w->rows;
    if (w->type == QR_TYPE_F32) { /* straight from the mapping */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)w->rows, k, 1.0f, X, k,
                    (const float *)w->data, k, 0.0f, Y, ldc);
        return;
    }
    size_t step = panel_rows(B);
    for (size_t r0 = 0; r0 < w->rows; r0 += step) {
        size_t n = w->rows - r0 < step ? w->rows - r0 : step;
        for (size_t r = 0; r < n; r++)
            w->ops->to_float((const char *)w->data + (r0 + r) * w->row_bytes, panel + r * w->cols,
                             w->cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, k, 1.0f, X, k, panel, k,
                    0.0f, Y + r0, ldc);
    }
}

/* ---------------------------------------------------------------- chunk products */

/* Rows of x rounded per prepare task, and the smallest slice of weight rows a gemm task takes (a
 * multiple of the kernels' tile of 4 rows). */
#define PREPARE_ROWS 16
#define MIN_GEMM_ROWS 16
/* sgemm packs all of x again for every slice of W: slices of f32 rows stay large enough for
 * that to be a small part of the work. */
#define MIN_SGEMM_ROWS 256

size_t qr_matmul_x8_groups(size_t cols, size_t rows)
{
    return rows * qr_x8_groups(cols);
}

typedef struct {
    const qr_matvec_job *jobs;
    size_t n_jobs, B;
    const qr_x8_group *xq[MAX_JOBS];  /* job j's rows of x rounded, or NULL: not an integer job */
    size_t first_task[MAX_JOBS + 1];  /* job j owns tasks [first_task[j], first_task[j+1]) */
    size_t rows_per_task[MAX_JOBS];   /* prepare: rows of x; gemm: rows of W */
} gemm_region;

static size_t region_job(const gemm_region *g, size_t task)
{
    size_t j = 0;
    while (task >= g->first_task[j + 1])
        j++;
    return j;
}

static void prepare_task(void *arg, size_t task)
{
    const gemm_region *g = arg;
    size_t j = region_job(g, task), rpt = g->rows_per_task[j];
    const qr_matvec_job *job = &g->jobs[j];
    size_t b0 = (task - g->first_task[j]) * rpt, n = g->B - b0 < rpt ? g->B - b0 : rpt;
    size_t cols = job->w->cols, groups = qr_x8_groups(cols);
    qr_x8_group *xq = (qr_x8_group *)g->xq[j];
    for (size_t b = b0; b < b0 + n; b++)
        job->w->ops->prepare_x_gemm(job->x + b * cols, cols, xq + b * groups);
}

static void gemm_task(void *arg, size_t task)
{
    const gemm_region *g = arg;
    size_t j = region_job(g, task), rpt = g->rows_per_task[j];
    const qr_matvec_job *job = &g->jobs[j];
    const qr_matrix *w = job->w;
    if (!g->xq[j]) { /* f32 (straight from the mapping): sgemm on a slice of rows */
        size_t r0 = (task - g->first_task[j]) * rpt, n = w->rows - r0 < rpt ? w->rows - r0 : rpt;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->B, (int)n, (int)w->cols, 1.0f, job->x,
                    (int)w->cols, (const float *)w->data + r0 * w->cols, (int)w->cols, 0.0f, job->y + r0,
                    (int)w->rows);
        return;
    }
    size_t r0 = (task - g->first_task[j]) * rpt, n = w->rows - r0 < rpt ? w->rows - r0 : rpt;
    w->ops->gemm_x8((const char *)w->data + r0 * w->row_bytes, w->row_bytes, n, g->xq[j], g->B, w->cols,
                    job->y + r0, w->rows);
}

/* Splits each job's rows (or rows of x, when preparing) into about GEMM_TASKS tasks over all
 * jobs, each a multiple of 4 rows and at least PREPARE_ROWS, MIN_GEMM_ROWS or MIN_SGEMM_ROWS.
 * The cut does not depend on the pool's size: sgemm on a slice of rows may round differently
 * from sgemm on another slice, and a result must not depend on the thread count. */
#define GEMM_TASKS 32

static void plan_tasks(gemm_region *g, bool rows_of_x)
{
    size_t total = 0;
    for (size_t j = 0; j < g->n_jobs; j++)
        total += rows_of_x ? g->B : g->jobs[j].w->rows;
    size_t per = (total / GEMM_TASKS + 3) / 4 * 4;
    for (size_t j = 0; j < g->n_jobs; j++) {
        size_t n = rows_of_x ? g->B : g->jobs[j].w->rows;
        size_t least = rows_of_x ? PREPARE_ROWS : g->xq[j] ? MIN_GEMM_ROWS : MIN_SGEMM_ROWS;
        bool skip = rows_of_x && !g->xq[j];
        g->rows_per_task[j] = per < least ? least : per;
        g->first_task[j + 1] = g->first_task[j] + (skip ? 0 : (n + g->rows_per_task[j] - 1) / g->rows_per_task[j]);
    }
}

void qr_matmul_multi(qr_pool *pool, const qr_matvec_job *jobs, size_t n_jobs, size_t B, qr_x8_group *xq)
{
    while (n_jobs > MAX_JOBS) {
        qr_matmul_multi(pool, jobs, MAX_JOBS, B, xq);
        jobs += MAX_JOBS;
        n_jobs -= MAX_JOBS;
    }
    gemm_region g;
    memset(&g, 0, sizeof g);
    g.jobs = jobs;
    g.B = B;
    qr_matvec_job pooled[MAX_JOBS];
    bool any_int = false;
    for (size_t j = 0; j < n_jobs; j++) {
        const qr_matrix *w = jobs[j].w;
        if (w->ops->gemm_x8) {
            g.xq[g.n_jobs] = xq;
            xq += qr_matmul_x8_groups(w->cols, B);
            any_int = true;
        } else if (w->type != QR_TYPE_F32) { /* f16: the decode kernels, weights read once for all rows */
            qr_matvec_job multi = {w, jobs[j].x, jobs[j].y, B};
            qr_matvec_multi(pool, &multi, 1);
            continue;
        }
        pooled[g.n_jobs++] = jobs[j];
    }
    if (g.n_jobs == 0)
        return;
    g.jobs = pooled;
    if (any_int) {
        plan_tasks(&g, true);
        qr_pool_run(pool, g.first_task[g.n_jobs], prepare_task, &g);
    }
    plan_tasks(&g, false);
    qr_pool_run(pool, g.first_task[g.n_jobs], gemm_task, &g);
}
