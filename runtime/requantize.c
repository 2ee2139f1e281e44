/* requantize.c: one model file to another at a new quantization setting (see requantize.h).
 * Tensors are converted one at a time through a transient f32 buffer; the converted tensors are
 * held until the writer writes them (the writer borrows its data), so peak memory is the output
 * model plus one tensor in f32. */
#include "requantize.h"

#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model_writer.h"
#include "quantize.h"
#include "tensor_types.h"

typedef struct {
    void **blocks;
    size_t n, cap;
} owned_list;

/* Keeps p until the end of qr_requantize; NULL (and frees p) when out of memory. */
static void *own(owned_list *o, void *p)
{
    if (!p)
        return NULL;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        void **nb = realloc(o->blocks, cap * sizeof *nb);
        if (!nb) {
            free(p);
            return NULL;
        }
        o->blocks = nb;
        o->cap = cap;
    }
    o->blocks[o->n++] = p;
    return p;
}

static const qr_importance_entry *find_importance(const qr_importance *imp, const char *name)
{
    for (size_t i = 0; imp && i < imp->count; i++)
        if (strcmp(imp->entries[i].name, name) == 0)
            return &imp->entries[i];
    return NULL;
}

/* Copies one metadata entry, except the two this conversion rewrites. */
static qr_status copy_meta(qr_model_writer *w, const qr_meta_entry *e, qr_error *err)
{
    switch (e->type) {
    case QR_META_U64: return qr_model_writer_set_u64(w, e->key, e->num.u64, err);
    case QR_META_I64: return qr_model_writer_set_i64(w, e->key, e->num.i64, err);
    case QR_META_F64: return qr_model_writer_set_f64(w, e->key, e->num.f64, err);
    case QR_META_BOOL: return qr_model_writer_set_bool(w, e->key, e->num.b, err);
    case QR_META_STRING: return qr_model_writer_set_string(w, e->key, e->str, err);
    case QR_META_BYTES: return qr_model_writer_set_bytes(w, e->key, e->str, e->len, err);
    }
    return qr_fail(err, QR_ERR_FORMAT, "metadata '%s' has unknown type %d", e->key, (int)e->type);
}

/* The output type of tensor t: the chooser's for a matrix (or its input type when the chooser's
 * block does not fit the rows), f32 for everything else. */
static qr_status pick_type(const qr_model_file *in, const qr_tensor_info *t, qr_type_chooser choose,
                           void *ctx, uint32_t *type, qr_error *err)
{
    if (t->n_dims != 2) {
        *type = QR_TYPE_F32;
        return QR_OK;
    }
    uint32_t want = choose(ctx, t->name, t->n_dims, t->dims);
    const qr_type_info *ti = qr_type_get(want);
    if (!ti)
        return qr_fail(err, QR_ERR_INVALID, "%s: tensor '%s': no storage type has code %u",
                       qr_model_file_path(in), t->name, want);
    if (t->dims[1] % ti->block_weights != 0)
        want = qr_type_is_quantized(t->type) ? QR_TYPE_F16 : t->type;
    *type = want;
    return QR_OK;
}

/* Converts one tensor into a buffer kept in `o` (the writer borrows it). Same type: *data is the
 * mapping itself, no copy. */
static qr_status convert(const qr_model_file *in, const qr_tensor_info *t, uint32_t type,
                         const qr_importance *imp, qr_pool *pool, owned_list *o, const void **data,
                         uint64_t *size, qr_error *err)
{
    const char *path = qr_model_file_path(in);
    if (type == t->type) {
        *data = t->data;
        *size = t->size;
        return QR_OK;
    }
    const qr_kernel_ops *src_ops = qr_kernels_best(t->type);
    if (!src_ops)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s': cannot read type %u", path, t->name, t->type);
    uint64_t bytes;
    if (!qr_type_bytes(type, t->n_elements, &bytes) || t->n_elements > SIZE_MAX / sizeof(float))
        return qr_fail(err, QR_ERR_INVALID, "%s: tensor '%s' does not fit type %s", path, t->name,
                       qr_type_get(type)->name);
    size_t cols = (size_t)t->dims[t->n_dims - 1], rows = (size_t)(t->n_elements / cols);
    const qr_importance_entry *ie = t->n_dims == 2 ? find_importance(imp, t->name) : NULL;
    if (ie && ie->n != cols)
        return qr_fail(err, QR_ERR_INVALID, "importance of '%s' has %zu values, the tensor has %zu columns",
                       t->name, ie->n, cols);
    if (ie && ie->quantized && ie->quantized_type == type) {
        *data = ie->quantized;
        *size = bytes;
        if (imp->done)
            imp->done(imp->done_ctx, ie);
        return QR_OK;
    }
    float *f = malloc((size_t)t->n_elements * sizeof(float));
    void *out = own(o, malloc(bytes ? (size_t)bytes : 1));
    if (!f || !out) {
        free(f);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory converting '%s'", t->name);
    }
    src_ops->to_float(t->data, f, (size_t)t->n_elements);
    qr_model_file_release(in, t->data, t->size); /* read once: the input need not stay resident */
    qr_status st = ie && ie->ec && qr_type_is_quantized(type)
                       ? qr_quantize_tensor_ec(type, f, rows, cols, ie->ec, out, pool)
                       : qr_quantize_tensor(type, f, rows, cols, ie ? ie->values : NULL, out, pool);
    free(f);
    if (ie && imp->done)
        imp->done(imp->done_ctx, ie);
    if (st == QR_ERR_NOMEM)
        return qr_fail(err, st, "out of memory quantizing '%s'", t->name);
    if (st)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' has a non-finite weight or a bad importance (cannot quantize)",
                       path, t->name);
    *data = out;
    *size = bytes;
    return QR_OK;
}

qr_status qr_requantize(const qr_model_file *in, const char *out_path, qr_type_chooser choose,
                        void *ctx, const qr_importance *imp, qr_pool *pool, qr_error *err)
{
    qr_model_writer *w = qr_model_writer_new();
    json_object *setting = json_object_new_object();
    owned_list o = {0};
    size_t counts[QR_TYPE_CODE_LIMIT] = {0};
    char *provenance = NULL;
    qr_status st = QR_OK;
    if (!w || !setting) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < qr_model_file_meta_count(in); i++) {
        const qr_meta_entry *e = qr_model_file_meta_at(in, i);
        if (strcmp(e->key, "quant.setting") && strcmp(e->key, "general.provenance") &&
            (st = copy_meta(w, e, err)))
            goto out;
    }
    for (size_t i = 0; i < qr_model_file_tensor_count(in); i++) {
        const qr_tensor_info *t = qr_model_file_tensor(in, i);
        uint32_t type = QR_TYPE_F32;
        const void *data = NULL;
        uint64_t size = 0;
        if ((st = pick_type(in, t, choose, ctx, &type, err)) ||
            (st = convert(in, t, type, imp, pool, &o, &data, &size, err)) ||
            (st = qr_model_writer_add_tensor(w, t->name, type, t->n_dims, t->dims, data, size, err)))
            goto out;
        counts[type]++;
        if (t->n_dims == 2 &&
            json_object_object_add(setting, t->name, json_object_new_string(qr_type_get(type)->name))) {
            st = qr_fail(err, QR_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    if ((st = qr_model_writer_set_string(
             w, "quant.setting", json_object_to_json_string_ext(setting, JSON_C_TO_STRING_PLAIN), err)))
        goto out;
    /* general.provenance: the input's, then what this conversion did. */
    const char *old = NULL;
    uint64_t old_len = 0;
    if ((st = qr_model_file_get_blob(in, "general.provenance", &old, &old_len, err)))
        goto out;
    size_t cap = (size_t)old_len + 128 + 24 * QR_TYPE_CODE_LIMIT;
    provenance = malloc(cap);
    if (!provenance) {
        st = qr_fail(err, QR_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *base = strrchr(qr_model_file_path(in), '/');
    size_t len = (size_t)snprintf(provenance, cap, "%.*s%srequantized from %s by qslm (tensors:",
                                  (int)old_len, old ? old : "", old_len ? "; " : "",
                                  base ? base + 1 : qr_model_file_path(in));
    for (uint32_t c = 0; c < QR_TYPE_CODE_LIMIT; c++)
        if (counts[c] && len < cap)
            len += (size_t)snprintf(provenance + len, cap - len, " %zu %s", counts[c], qr_type_get(c)->name);
    if (len < cap)
        snprintf(provenance + len, cap - len, ")");
    if ((st = qr_model_writer_set_string(w, "general.provenance", provenance, err)))
        goto out;
    st = qr_model_writer_write(w, out_path, err);
out:
    free(provenance);
    json_object_put(setting);
    qr_model_writer_free(w);
    for (size_t i = 0; i < o.n; i++)
        free(o.blocks[i]);
    free(o.blocks);
    return st;
}
