/* synthetic_model.h: writes a SpikeGPT-shaped model with random weights, for benchmarks that
 * need a real model's size without a real checkpoint (e.g. SpikeGPT-216M: 18 layers, d 768,
 * vocab 50277). */
#ifndef QSLM_BENCH_SYNTHETIC_MODEL_H
#define QSLM_BENCH_SYNTHETIC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "error.h"
#include "pool.h"

typedef struct {
    size_t n_layer, d, f, vocab;
    uint32_t matrix_type;   /* storage type of every 2-D weight (any type: quantized by
                               qr_quantize_tensor) */
    uint64_t seed;
    size_t n_classes;       /* 0: no classifier head; an unnamed one (head.n_classes only) when
                               n_tasks is 0 */
    const char *tokenizer_json; /* embedded as metadata when not NULL */
    size_t tokenizer_len;
    bool own_edge_types;    /* false: emb and head use matrix_type too */
    uint32_t emb_type, head_type; /* when own_edge_types */
    qr_pool *pool;          /* quantization runs over it when not NULL */
    bool spike_ffn_hidden;  /* LIF hidden units, value matrix stored transposed (f × d); the
                               key weights are doubled so that about 1 in 6 units fires */
    bool no_spikes;         /* RWKV-4: spike.att and spike.ffn off (a smooth function of the
                               weights, for tests that bound numeric differences) */
    const char *tasks[8];   /* named heads instead of n_classes, "NAME=LABEL,LABEL,...", head 0 first */
    size_t n_tasks;
    const char *extra_tensor; /* when not NULL: one more tensor (d f32 values) of this name,
                                 for tests of what a reader refuses */
    /* When not NULL: sees every tensor's f32 values (rows × cols, row-major as stored) before
     * they are written or quantized, and may change them (e.g. to make one block fragile). */
    void (*edit)(void *ctx, const char *name, float *values, size_t rows, size_t cols);
    void *edit_ctx;
} synthetic_shape;

/* Writes the model to path. */
qr_status synthetic_model_write(const synthetic_shape *shape, const char *path, qr_error *err);

#endif
