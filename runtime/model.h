/* model.h: a SpikeGPT / RWKV-4 model bound to the tensors of an open model file.
 *
 * Binding checks every tensor the architecture needs (present, right shape, a type the
 * kernels run) and reads the hyperparameters from the metadata, so the forward pass never
 * meets a surprise. Matrices stay in the file's mapping; the small 1-D parameters (layer norms,
 * time-mix vectors) are converted to f32 into one owned block, with time_decay already turned
 * into w = -exp(time_decay). */
#ifndef QR_MODEL_H
#define QR_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "heads.h"
#include "linear.h"
#include "model_file.h"

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;             /* (d) */
    const float *att_decay;   /* (d) w = -exp(time_decay) */
    const float *att_first;   /* (d) u = time_first */
    const float *att_mix_k, *att_mix_v, *att_mix_r;         /* (d) */
    qr_matrix att_key, att_value, att_receptance, att_output; /* (d, d) */
    const float *ffn_mix_k, *ffn_mix_r;                     /* (d) */
    qr_matrix ffn_key;        /* (f, d) */
    qr_matrix ffn_receptance; /* (d, d) */
    qr_matrix ffn_value;      /* (d, f); (f, d), transposed, with spike.ffn_hidden */
    float out_scale;          /* 2^-(layer / rescale_layer), or 1 */
} qr_layer;

/* One classification head: logits = w · mean_t(ln_out(x_t)) + b. */
typedef struct {
    qr_matrix w;              /* (n_classes, d) */
    const float *b;           /* (n_classes) */
    size_t n_classes;
} qr_cls_head;

typedef struct {
    /* hyperparameters */
    size_t n_layer, d, f, vocab;
    size_t n_classes;         /* classes of head 0 (0: no classifier) */
    size_t rescale_layer;     /* 0: off */
    bool spike_att, spike_ffn, spike_emb, spike_ffn_hidden;
    float tau, threshold;
    bool has_lm_head;

    qr_matrix emb;            /* (vocab, d) rows read one at a time */
    const float *ln0_w, *ln0_b;       /* (d) */
    qr_layer *layers;         /* n_layer */
    const float *ln_out_w, *ln_out_b; /* (d) */
    qr_matrix head;           /* (vocab, d) when has_lm_head */
    qr_heads head_info;       /* owned: task names and labels, head_info.n heads */
    qr_cls_head *cls;         /* head_info.n classifier heads, in the file's order */

    const qr_model_file *file;
    float *params;            /* owned: every 1-D parameter, as f32 */
    uint64_t params_bytes;    /* its size */
    uint64_t weight_bytes;    /* bytes of every tensor the model reads */
} qr_model;

/* Binds a model to an open file, which must outlive it. Errors name the file and the tensor. */
qr_status qr_model_bind(const qr_model_file *file, qr_model **out, qr_error *err);
void qr_model_free(qr_model *m);

/* The index of the head for a task name; NULL or "" picks head 0. -1 when there is no such task. */
int qr_model_task(const qr_model *m, const char *task);

/* The bound matrix of a tensor name ("blocks.2.ffn.key.weight", "head.weight", ...), or NULL if
 * the model has no such matrix. QSLM points it at other storage to try a setting in memory. */
qr_matrix *qr_model_matrix(qr_model *m, const char *name);

/* Bytes read from weights for one decoded token (all matrices once, one embedding row,
 * the LM head if `with_head`): the numerator of the decode roofline. With spike.ffn_hidden the
 * value matrices are counted whole, an upper bound: only the rows of units that fire are read. */
uint64_t qr_model_bytes_per_token(const qr_model *m, bool with_head);

#endif
