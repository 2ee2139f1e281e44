/* model.c: binding a model file's tensors to the SpikeGPT structure. */
#include "model.h"

#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_types.h"

typedef struct {
    const qr_model_file *file;
    qr_model *m;
    float *next_param;        /* where the next 1-D parameter goes in m->params */
    qr_error *err;
} binder;

/* Formats a tensor name and finds it; a missing tensor is an error naming the file and tensor. */
static qr_status lookup(binder *b, const qr_tensor_info **t, char *name, size_t cap,
                        const char *fmt, va_list ap)
{
    vsnprintf(name, cap, fmt, ap);
    *t = qr_model_file_find_tensor(b->file, name);
    if (!*t)
        return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s' is missing",
                       qr_model_file_path(b->file), name);
    return QR_OK;
}

/* Binds a matrix of exactly rows × cols. */
static qr_status bind_matrix(binder *b, qr_matrix *out, size_t rows, size_t cols,
                             const char *fmt, ...)
{
    char name[256];
    const qr_tensor_info *t;
    va_list ap;
    va_start(ap, fmt);
    qr_status st = lookup(b, &t, name, sizeof name, fmt, ap);
    va_end(ap);
    if (st)
        return st;
    const char *path = qr_model_file_path(b->file);
    if (t->n_dims != 2 || t->dims[0] != rows || t->dims[1] != cols)
        return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s' must be %zu x %zu", path, name, rows,
                       cols);
    const qr_kernel_ops *ops = qr_kernels_best(t->type);
    if (!ops)
        return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s': no kernel for type %s", path, name,
                       qr_type_get(t->type)->name);
    out->data = t->data;
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = (size_t)(t->size / rows);
    out->ops = ops;
    b->m->weight_bytes += t->size;
    return QR_OK;
}

/* Binds a vector of n values (any shape with n elements, e.g. SpikeGPT's (1,1,d) time_mix),
 * converting it to f32 into the owned parameter block. */
static qr_status bind_vector(binder *b, const float **out, size_t n, const char *fmt, ...)
{
    char name[256];
    const qr_tensor_info *t;
    va_list ap;
    va_start(ap, fmt);
    qr_status st = lookup(b, &t, name, sizeof name, fmt, ap);
    va_end(ap);
    if (st)
        return st;
    const char *path = qr_model_file_path(b->file);
    if (t->n_elements != n)
        return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s' has %llu elements, expected %zu",
                       path, name, (unsigned long long)t->n_elements, n);
    const qr_kernel_ops *ops = qr_kernels_ref(t->type);
    if (!ops)
        return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s': no kernel for type %s", path, name,
                       qr_type_get(t->type)->name);
    float *dst = b->next_param;
    ops->to_float(t->data, dst, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return qr_fail(b->err, QR_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value at %zu",
                           path, name, i);
    b->next_param += n;
    b->m->weight_bytes += t->size;
    *out = dst;
    return QR_OK;
}

/* A string key, or `fallback` when the file does not have it. */
static qr_status get_string_or(const qr_model_file *file, const char *key, const char *fallback,
                               const char **out, uint64_t *len, qr_error *err)
{
    qr_status st = qr_model_file_get_blob(file, key, out, len, err);
    if (st == QR_OK && !*out) {
        *out = fallback;
        *len = strlen(fallback);
    }
    return st;
}

static qr_status read_hparams(const qr_model_file *file, qr_model *m, qr_error *err)
{
    const char *path = qr_model_file_path(file);
    uint64_t n_layer, d, vocab, f, rescale;
    const char *arch;
    uint64_t arch_len;
    double tau, threshold;
    qr_status st;
    if ((st = qr_model_file_get_u64(file, "model.n_layer", 0, &n_layer, err)) ||
        (st = qr_model_file_get_u64(file, "model.n_embd", 0, &d, err)) ||
        (st = qr_model_file_get_u64(file, "model.vocab_size", 0, &vocab, err)) ||
        (st = qr_model_file_get_u64(file, "model.n_ffn", 4 * d, &f, err)) ||
        (st = qr_model_file_get_u64(file, "model.rescale_layer", 0, &rescale, err)) ||
        (st = qr_model_file_get_blob(file, "general.architecture", &arch, &arch_len, err)))
        return st;
    bool spiking = strcmp(arch, "spikegpt") == 0;
    if ((st = qr_model_file_get_f64(file, "spike.tau", 2.0, &tau, err)) ||
        (st = qr_model_file_get_f64(file, "spike.threshold", 1.0, &threshold, err)) ||
        (st = qr_model_file_get_bool(file, "spike.att", spiking, &m->spike_att, err)) ||
        (st = qr_model_file_get_bool(file, "spike.ffn", spiking, &m->spike_ffn, err)) ||
        (st = qr_model_file_get_bool(file, "spike.emb", false, &m->spike_emb, err)) ||
        (st = qr_model_file_get_bool(file, "spike.ffn_hidden", false, &m->spike_ffn_hidden, err)) ||
        (st = qr_model_file_get_bool(file, "head.lm",
                                     qr_model_file_find_tensor(file, "head.weight") != NULL,
                                     &m->has_lm_head, err)))
        return st;
    /* Keys that name a transform the runtime has exactly one of: refuse anything else rather
     * than compute something different from what the file's producer meant. */
    const char *reset, *decay;
    uint64_t reset_len, decay_len;
    if ((st = get_string_or(file, "spike.reset", "hard", &reset, &reset_len, err)) ||
        (st = get_string_or(file, "model.time_decay", "neg_exp", &decay, &decay_len, err)))
        return st;
    if (strcmp(reset, "hard") != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: spike.reset '%s' is not supported (only 'hard': to 0)",
                       path, reset);
    if (strcmp(decay, "neg_exp") != 0)
        return qr_fail(err, QR_ERR_FORMAT,
                       "%s: model.time_decay '%s' is not supported (only 'neg_exp': w = -exp(time_decay))",
                       path, decay);
    if (!spiking && (m->spike_att || m->spike_ffn || m->spike_emb || m->spike_ffn_hidden))
        return qr_fail(err, QR_ERR_FORMAT, "%s: architecture rwkv4 cannot have spikes turned on", path);
    /* Limits that keep every size_t product and int BLAS dimension in range (heads.c bounds the
     * classes). */
    if (n_layer > 4096 || d > 65536 || f > 262144 || vocab > 4000000)
        return qr_fail(err, QR_ERR_FORMAT, "%s: dimensions out of range (layers %llu, d %llu, ffn %llu, vocab %llu)",
                       path, (unsigned long long)n_layer, (unsigned long long)d, (unsigned long long)f,
                       (unsigned long long)vocab);
    if ((st = qr_heads_read(file, &m->head_info, err)))
        return st;
    size_t classes = m->head_info.n ? m->head_info.heads[0].n_classes : 0;
    if (f == 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.n_ffn is zero", path);
    if (!(tau >= 1.0) || !(threshold > 0.0))
        return qr_fail(err, QR_ERR_FORMAT, "%s: spike.tau must be >= 1 and spike.threshold > 0", path);
    if (!m->has_lm_head && classes == 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: the model has neither an LM head nor a classifier", path);
    m->n_layer = n_layer;
    m->d = d;
    m->f = f;
    m->vocab = vocab;
    m->n_classes = classes;
    m->rescale_layer = rescale;
    m->tau = (float)tau;
    m->threshold = (float)threshold;
    return QR_OK;
}

/* The table's kinds (tensor_names.def): a vector becomes f32 in the parameter block; a matrix
 * is bound where it lies; MAT_SPIKE_IN is stored transposed with spike.ffn_hidden (FORMAT.md):
 * row j is what hidden unit j adds when it fires. */
#define bind_VEC(b, out, rows, cols, ...) bind_vector(b, out, rows, __VA_ARGS__)
#define bind_MAT(b, out, rows, cols, ...) bind_matrix(b, out, rows, cols, __VA_ARGS__)
#define bind_MAT_SPIKE_IN(b, out, rows, cols, ...)                                          \
    ((b)->m->spike_ffn_hidden ? bind_matrix(b, out, cols, rows, __VA_ARGS__)                \
                              : bind_matrix(b, out, rows, cols, __VA_ARGS__))
#define DIM_D (m->d)
#define DIM_F (m->f)
#define DIM_V (m->vocab)
#define DIM_1 ((size_t)1)

static qr_status bind_layer(binder *b, size_t i)
{
    qr_model *m = b->m;
    qr_layer *l = &m->layers[i];
    qr_status st = QR_OK;
#define QR_TENSOR(where, name, kind, rows, cols, field, group) BIND_##where(name, kind, rows, cols, field)
#define BIND_INPUT(name, kind, rows, cols, field)
#define BIND_FIRST(name, kind, rows, cols, field)
#define BIND_OUTPUT(name, kind, rows, cols, field)
#define BIND_LM_HEAD(name, kind, rows, cols, field)
#define BIND_LAYER(name, kind, rows, cols, field)                                               \
    if ((st = bind_##kind(b, &l->field, DIM_##rows, DIM_##cols, "blocks.%zu." name, i)))    \
        return st;
#include "tensor_names.def"
#undef QR_TENSOR
#undef BIND_INPUT
#undef BIND_FIRST
#undef BIND_OUTPUT
#undef BIND_LM_HEAD
#undef BIND_LAYER
    /* w = -exp(time_decay) (model.time_decay 'neg_exp'), computed once here, not per token. */
    float *decay = (float *)l->att_decay;
    for (size_t j = 0; j < m->d; j++)
        decay[j] = -expf(decay[j]);
    l->out_scale = m->rescale_layer ? ldexpf(1.0f, -(int)(i / m->rescale_layer)) : 1.0f;
    return QR_OK;
}

/* The tensors outside the blocks: INPUT, FIRST (block 0's ln0), OUTPUT, and LM_HEAD when the
 * model has an LM head. */
static qr_status bind_globals(binder *b)
{
    qr_model *m = b->m;
    qr_status st = QR_OK;
#define QR_TENSOR(where, name, kind, rows, cols, field, group) BIND_##where(name, kind, rows, cols, field)
#define BIND_ONE(name, kind, rows, cols, field)                                                 \
    if ((st = bind_##kind(b, &m->field, DIM_##rows, DIM_##cols, name)))                       \
        return st;
#define BIND_INPUT BIND_ONE
#define BIND_OUTPUT BIND_ONE
#define BIND_FIRST(name, kind, rows, cols, field) BIND_ONE("blocks.0." name, kind, rows, cols, field)
#define BIND_LM_HEAD(name, kind, rows, cols, field)                                             \
    if (m->has_lm_head) {                                                                       \
        BIND_ONE(name, kind, rows, cols, field)                                                 \
    }
#define BIND_LAYER(name, kind, rows, cols, field)
#include "tensor_names.def"
#undef QR_TENSOR
#undef BIND_ONE
#undef BIND_INPUT
#undef BIND_OUTPUT
#undef BIND_FIRST
#undef BIND_LM_HEAD
#undef BIND_LAYER
    return st;
}

/* Vectors (all of d values) per block and outside the blocks, counted from the table. */
#define QR_TENSOR(where, name, kind, rows, cols, field, group) +(IS_VEC_##kind && IS_LAYER_##where)
#define IS_VEC_VEC 1
#define IS_VEC_MAT 0
#define IS_VEC_MAT_SPIKE_IN 0
#define IS_LAYER_LAYER 1
#define IS_LAYER_INPUT 0
#define IS_LAYER_FIRST 0
#define IS_LAYER_OUTPUT 0
#define IS_LAYER_LM_HEAD 0
enum { LAYER_VECTORS = 0
#include "tensor_names.def"
};
#undef QR_TENSOR
#define QR_TENSOR(where, name, kind, rows, cols, field, group) +(IS_VEC_##kind && !IS_LAYER_##where)
enum { GLOBAL_VECTORS = 0
#include "tensor_names.def"
};
#undef QR_TENSOR

qr_status qr_model_bind(const qr_model_file *file, qr_model **out, qr_error *err)
{
    *out = NULL;
    qr_model *m = calloc(1, sizeof *m);
    if (!m)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", qr_model_file_path(file));
    m->file = file;
    qr_status st = read_hparams(file, m, err);
    if (st)
        goto fail;
    size_t n_params = (LAYER_VECTORS * m->n_layer + GLOBAL_VECTORS) * m->d;
    for (size_t h = 0; h < m->head_info.n; h++)
        n_params += m->head_info.heads[h].n_classes;
    m->params = malloc(n_params * sizeof(float));
    m->params_bytes = n_params * sizeof(float);
    m->layers = calloc(m->n_layer, sizeof *m->layers);
    m->cls = calloc(m->head_info.n ? m->head_info.n : 1, sizeof *m->cls);
    if (!m->params || !m->layers || !m->cls) {
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", qr_model_file_path(file));
        goto fail;
    }
    binder b = {file, m, m->params, err};
    if ((st = bind_globals(&b)))
        goto fail;
    for (size_t i = 0; i < m->n_layer; i++)
        if ((st = bind_layer(&b, i)))
            goto fail;
    for (size_t h = 0; h < m->head_info.n; h++) {
        qr_cls_head *c = &m->cls[h];
        char wname[32], bname[32];
        c->n_classes = m->head_info.heads[h].n_classes;
        if ((st = bind_matrix(&b, &c->w, c->n_classes, m->d, "%s", qr_head_tensor_name(h, false, wname, sizeof wname))) ||
            (st = bind_vector(&b, &c->b, c->n_classes, "%s", qr_head_tensor_name(h, true, bname, sizeof bname))))
            goto fail;
    }
    *out = m;
    return QR_OK;
fail:
    qr_model_free(m);
    return st;
}

void qr_model_free(qr_model *m)
{
    if (!m)
        return;
    free(m->params);
    free(m->layers);
    free(m->cls);
    qr_heads_free(&m->head_info);
    free(m);
}

qr_matrix *qr_model_matrix(qr_model *m, const char *name)
{
#define QR_TENSOR(where, tname, kind, rows, cols, field, group) GLOBAL_MAT_##where(tname, kind, field)
#define GLOBAL_MAT_INPUT(tname, kind, field) GLOBAL_MAT_##kind(tname, field)
#define GLOBAL_MAT_LM_HEAD(tname, kind, field)                                                  \
    if (!m->has_lm_head && strcmp(name, tname) == 0)                                            \
        return NULL;                                                                            \
    GLOBAL_MAT_##kind(tname, field)
#define GLOBAL_MAT_OUTPUT GLOBAL_MAT_INPUT
#define GLOBAL_MAT_FIRST(tname, kind, field)
#define GLOBAL_MAT_LAYER(tname, kind, field)
#define GLOBAL_MAT_MAT(tname, field)                                                            \
    if (strcmp(name, tname) == 0)                                                               \
        return &m->field;
#define GLOBAL_MAT_VEC(tname, field)
#include "tensor_names.def"
#undef QR_TENSOR
    bool bias;
    int h = qr_head_tensor_index(name, &bias);
    if (h >= 0)
        return !bias && (size_t)h < m->head_info.n ? &m->cls[h].w : NULL;
    unsigned long i;
    int used = 0;
    if (sscanf(name, "blocks.%lu.%n", &i, &used) != 1 || used == 0 || i >= m->n_layer)
        return NULL;
    qr_layer *l = &m->layers[i];
#define QR_TENSOR(where, tname, kind, rows, cols, field, group) LAYER_MAT_##where(tname, kind, field)
#define LAYER_MAT_LAYER(tname, kind, field) LAYER_MAT_##kind(tname, field)
#define LAYER_MAT_INPUT(tname, kind, field)
#define LAYER_MAT_FIRST(tname, kind, field)
#define LAYER_MAT_OUTPUT(tname, kind, field)
#define LAYER_MAT_LM_HEAD(tname, kind, field)
#define LAYER_MAT_MAT(tname, field)                                                             \
    if (strcmp(name + used, tname) == 0)                                                        \
        return &l->field;
#define LAYER_MAT_MAT_SPIKE_IN LAYER_MAT_MAT
#define LAYER_MAT_VEC(tname, field)
#include "tensor_names.def"
#undef QR_TENSOR
    return NULL;
}

int qr_model_task(const qr_model *m, const char *task)
{
    if (!task || !task[0])
        return m->head_info.n ? 0 : -1;
    return qr_heads_find(&m->head_info, task);
}

uint64_t qr_model_bytes_per_token(const qr_model *m, bool with_head)
{
    uint64_t bytes = m->emb.row_bytes;
    for (size_t i = 0; i < m->n_layer; i++) {
        const qr_layer *l = &m->layers[i];
#define QR_TENSOR(where, name, kind, rows, cols, field, group) LAYER_MAT_##where(name, kind, field)
#undef LAYER_MAT_MAT
#define LAYER_MAT_MAT(name, field) bytes += (uint64_t)l->field.rows * l->field.row_bytes;
#include "tensor_names.def"
#undef QR_TENSOR
    }
    if (with_head && m->has_lm_head)
        bytes += (uint64_t)m->head.rows * m->head.row_bytes;
    return bytes;
}
