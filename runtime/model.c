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

static qr_status bind_layer(binder *b, size_t i)
{
    qr_model *m = b->m;
    qr_layer *l = &m->layers[i];
    size_t d = m->d, f = m->f;
    qr_status st;
    if ((st = bind_vector(b, &l->ln1_w, d, "blocks.%zu.ln1.weight", i)) ||
        (st = bind_vector(b, &l->ln1_b, d, "blocks.%zu.ln1.bias", i)) ||
        (st = bind_vector(b, &l->ln2_w, d, "blocks.%zu.ln2.weight", i)) ||
        (st = bind_vector(b, &l->ln2_b, d, "blocks.%zu.ln2.bias", i)) ||
        (st = bind_vector(b, &l->att_decay, d, "blocks.%zu.att.time_decay", i)) ||
        (st = bind_vector(b, &l->att_first, d, "blocks.%zu.att.time_first", i)) ||
        (st = bind_vector(b, &l->att_mix_k, d, "blocks.%zu.att.time_mix_k", i)) ||
        (st = bind_vector(b, &l->att_mix_v, d, "blocks.%zu.att.time_mix_v", i)) ||
        (st = bind_vector(b, &l->att_mix_r, d, "blocks.%zu.att.time_mix_r", i)) ||
        (st = bind_matrix(b, &l->att_key, d, d, "blocks.%zu.att.key.weight", i)) ||
        (st = bind_matrix(b, &l->att_value, d, d, "blocks.%zu.att.value.weight", i)) ||
        (st = bind_matrix(b, &l->att_receptance, d, d, "blocks.%zu.att.receptance.weight", i)) ||
        (st = bind_matrix(b, &l->att_output, d, d, "blocks.%zu.att.output.weight", i)) ||
        (st = bind_vector(b, &l->ffn_mix_k, d, "blocks.%zu.ffn.time_mix_k", i)) ||
        (st = bind_vector(b, &l->ffn_mix_r, d, "blocks.%zu.ffn.time_mix_r", i)) ||
        (st = bind_matrix(b, &l->ffn_key, f, d, "blocks.%zu.ffn.key.weight", i)) ||
        (st = bind_matrix(b, &l->ffn_receptance, d, d, "blocks.%zu.ffn.receptance.weight", i)) ||
        /* With spike.ffn_hidden the value matrix reads {0,1} inputs and is stored transposed
         * (FORMAT.md): row j is what hidden unit j adds when it fires. */
        (st = b->m->spike_ffn_hidden
                  ? bind_matrix(b, &l->ffn_value, f, d, "blocks.%zu.ffn.value.weight", i)
                  : bind_matrix(b, &l->ffn_value, d, f, "blocks.%zu.ffn.value.weight", i)))
        return st;
    /* w = -exp(time_decay), computed once here rather than per token. */
    float *decay = (float *)l->att_decay;
    for (size_t j = 0; j < d; j++)
        decay[j] = -expf(decay[j]);
    l->out_scale = m->rescale_layer ? ldexpf(1.0f, -(int)(i / m->rescale_layer)) : 1.0f;
    return QR_OK;
}

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
    size_t n_params = (11 * m->n_layer + 4) * m->d;
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
    if ((st = bind_matrix(&b, &m->emb, m->vocab, m->d, "emb.weight")) ||
        (st = bind_vector(&b, &m->ln0_w, m->d, "blocks.0.ln0.weight")) ||
        (st = bind_vector(&b, &m->ln0_b, m->d, "blocks.0.ln0.bias")) ||
        (st = bind_vector(&b, &m->ln_out_w, m->d, "ln_out.weight")) ||
        (st = bind_vector(&b, &m->ln_out_b, m->d, "ln_out.bias")))
        goto fail;
    for (size_t i = 0; i < m->n_layer; i++)
        if ((st = bind_layer(&b, i)))
            goto fail;
    if (m->has_lm_head && (st = bind_matrix(&b, &m->head, m->vocab, m->d, "head.weight")))
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
    if (strcmp(name, "emb.weight") == 0)
        return &m->emb;
    if (strcmp(name, "head.weight") == 0)
        return m->has_lm_head ? &m->head : NULL;
    bool bias;
    int h = qr_head_tensor_index(name, &bias);
    if (h >= 0)
        return !bias && (size_t)h < m->head_info.n ? &m->cls[h].w : NULL;
    unsigned long i;
    int used = 0;
    if (sscanf(name, "blocks.%lu.%n", &i, &used) != 1 || used == 0 || i >= m->n_layer)
        return NULL;
    qr_layer *l = &m->layers[i];
    static const struct {
        const char *suffix;
        size_t offset;
    } fields[] = {
        {"att.key.weight", offsetof(qr_layer, att_key)},
        {"att.value.weight", offsetof(qr_layer, att_value)},
        {"att.receptance.weight", offsetof(qr_layer, att_receptance)},
        {"att.output.weight", offsetof(qr_layer, att_output)},
        {"ffn.key.weight", offsetof(qr_layer, ffn_key)},
        {"ffn.receptance.weight", offsetof(qr_layer, ffn_receptance)},
        {"ffn.value.weight", offsetof(qr_layer, ffn_value)},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        if (strcmp(name + used, fields[f].suffix) == 0)
            return (qr_matrix *)((char *)l + fields[f].offset);
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
        const qr_matrix *mats[] = {&l->att_key, &l->att_value, &l->att_receptance, &l->att_output,
                                   &l->ffn_key, &l->ffn_receptance, &l->ffn_value};
        for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++)
            bytes += (uint64_t)mats[j]->rows * mats[j]->row_bytes;
    }
    if (with_head && m->has_lm_head)
        bytes += (uint64_t)m->head.rows * m->head.row_bytes;
    return bytes;
}
