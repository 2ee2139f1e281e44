/* spike_linear.c: sums of selected weight rows, split over the pool by output columns. */
#include "spike_linear.h"

#include <string.h>

#include "tensor_types.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#define SLICE_FLOATS 256   /* decoded weights per step: one L1-resident scratch */
#define TASKS_PER_THREAD 2

typedef struct {
    const qr_matrix *wt;
    const uint32_t *active;
    size_t n_active;
    float *y;
    size_t cols_per_task; /* a whole number of blocks */
} spike_region;

/* y[c] += w[c] for n floats. Kept apart so the compiler vectorises it; on aarch64 written out
 * in NEON, since gcc -O2 leaves this loop scalar there (the same adds, so the same bits). */
static void add_floats(float *restrict y, const float *restrict w, size_t n)
{
    size_t c = 0;
#if defined(__aarch64__)
    for (; c + 8 <= n; c += 8) {
        vst1q_f32(y + c, vaddq_f32(vld1q_f32(y + c), vld1q_f32(w + c)));
        vst1q_f32(y + c + 4, vaddq_f32(vld1q_f32(y + c + 4), vld1q_f32(w + c + 4)));
    }
#endif
    for (; c < n; c++)
        y[c] += w[c];
}

/* One task: output columns [c0, c0 + n) summed over every active row. f32 rows are added where
 * they lie; other types are decoded a slice at a time into scratch first (their scale × code
 * is the storage's decoding, the input itself is never multiplied). */
static void spike_task(void *arg, size_t task)
{
    const spike_region *r = arg;
    const qr_matrix *w = r->wt;
    size_t c0 = task * r->cols_per_task;
    size_t n = w->cols - c0 < r->cols_per_task ? w->cols - c0 : r->cols_per_task;
    const qr_type_info *info = qr_type_get(w->type);
    float *y = r->y + c0;
    memset(y, 0, n * sizeof(float));
    if (w->type == QR_TYPE_F32) {
        for (size_t a = 0; a < r->n_active; a++)
            add_floats(y, (const float *)((const char *)w->data + r->active[a] * w->row_bytes) + c0, n);
        return;
    }
    float scratch[SLICE_FLOATS];
    size_t offset = c0 / info->block_weights * info->block_bytes;
    for (size_t a = 0; a < r->n_active; a++) {
        const char *row = (const char *)w->data + r->active[a] * w->row_bytes + offset;
        for (size_t s = 0; s < n; s += SLICE_FLOATS) {
            size_t len = n - s < SLICE_FLOATS ? n - s : SLICE_FLOATS;
            w->ops->to_float(row + s / info->block_weights * info->block_bytes, scratch, len);
            add_floats(y + s, scratch, len);
        }
    }
}

void qr_spike_matvec(qr_pool *pool, const qr_matrix *wt, const uint32_t *active, size_t n_active,
                     float *y)
{
    /* SLICE_FLOATS is a multiple of every block size (1 or 32), so slices stay block-aligned. */
    size_t block = qr_type_get(wt->type)->block_weights;
    size_t blocks = wt->cols / block;
    size_t tasks = (size_t)qr_pool_threads(pool) * TASKS_PER_THREAD;
    if (tasks > blocks)
        tasks = blocks;
    size_t blocks_per_task = (blocks + tasks - 1) / tasks;
    spike_region r = {wt, active, n_active, y, blocks_per_task * block};
    qr_pool_run(pool, (wt->cols + r.cols_per_task - 1) / r.cols_per_task, spike_task, &r);
}

size_t qr_spike_positions(const float *s, size_t n, uint32_t *active)
{
    size_t count = 0;
    for (size_t j = 0; j < n; j++)
        if (s[j] != 0.0f)
            active[count++] = (uint32_t)j;
    return count;
}
