/* linear.h: y = W·x for the forward pass, whatever W's storage type.
 *
 * One token (decode): rows are split into chunks over the worker pool, and several independent
 * products (k, v and r of a time-mix) share one parallel region. For quantized weights each x is
 * first rounded to 8-bit blocks (kernels.h, prepare_x), once per product, on the calling thread. Many tokens (batched
 * evaluation): one matrix-matrix product through OpenBLAS sgemm, dequantizing row panels first
 * for types other than f32. */
#ifndef QR_LINEAR_H
#define QR_LINEAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "pool.h"

typedef struct {
    const void *data;   /* rows × cols weights in `type`, row-major */
    uint32_t type;
    size_t rows;        /* output features */
    size_t cols;        /* input features */
    size_t row_bytes;
    const qr_kernel_ops *ops;
} qr_matrix;

typedef struct {
    const qr_matrix *w;
    const float *x;     /* cols; n_x × cols with n_x > 1 */
    float *y;           /* rows; n_x × rows with n_x > 1 */
    size_t n_x;         /* vectors (a few sequences decoded together); 0 means 1 */
} qr_matvec_job;

/* Runs every job (each y = W·x, for each of its n_x vectors) in one parallel region. With
 * several vectors each thread reads a slice of rows once for all of them (in slices small enough
 * to stay in L1), and every vector gets exactly the bits it would get alone. */
void qr_matvec_multi(qr_pool *pool, const qr_matvec_job *jobs, size_t n_jobs);

/* Makes OpenBLAS run every product on the calling thread. The batched products here are small
 * (quantized weights go through panels of 64 rows) and OpenBLAS's hand-offs between its threads
 * cost more than they gain: the default model's 5M variant on the SOTU test split took 36 s with
 * one thread against 72 s with two (this machine, 2 cores). Process-wide, so it is for a tool's
 * start-up to call, not for the library to decide. */
void qr_blas_use_one_thread(void);
/* OpenBLAS's kernel family ("SkylakeX", "Haswell", "Prescott", ...). */
const char *qr_blas_core(void);
/* For a tool's first lines: when OpenBLAS fell back to generic kernels on a CPU it does not know
 * (blas_core.c) and OPENBLAS_CORETYPE is unset, sets it to what the CPU supports and runs the
 * program again (execv of /proc/self/exe with argv); returns only when nothing is to be done or
 * the exec failed. */
void qr_blas_use_capable_core(char **argv);

/* Y (B × rows) = X (B × cols) · Wᵀ on the calling thread, quantized rows dequantized to panels
 * for sgemm: the batched path before the integer gemm, kept as the benchmarks' yardstick and the
 * tests' second opinion. `panel` is scratch of qr_matmul_panel_floats(w->cols, B') floats for
 * some B' >= B. */
void qr_matmul(const qr_matrix *w, const float *X, size_t B, float *Y, float *panel);
size_t qr_matmul_panel_floats(size_t cols, size_t max_rows);

/* The products of a chunk (B rows of x, B > 1) for every job, spread over the pool: the
 * quantized types round each row of x to 8-bit blocks once (as decode does) and run the integer
 * gemm on slices of weight rows (kernels/gemm_x8.h); f32 runs sgemm on slices of rows; f16 runs
 * its decode kernels, each slice of rows read once for all B rows (qr_matvec_multi). xq is
 * scratch for the rounded rows: Σ qr_matmul_x8_groups(cols, B) over the quantized jobs. */
void qr_matmul_multi(qr_pool *pool, const qr_matvec_job *jobs, size_t n_jobs, size_t B, qr_x8_group *xq);
size_t qr_matmul_x8_groups(size_t cols, size_t rows);

#endif
