/* synthetic_model.c: random SpikeGPT weights in the real layout and names. */
#include "synthetic_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
#include "model_writer.h"
#include "quantize.h"
#include "tensor_types.h"

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform in [-scale, scale). */
static void fill(float *p, size_t n, float scale, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = ((float)(next(s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

typedef struct {
    void **blocks;
    size_t n, cap;
} owned;

static void *keep(owned *o, void *p)
{
    if (!p)
        return NULL;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 256;
        void **nb = realloc(o->blocks, o->cap * sizeof *nb);
        if (!nb) {
            free(p);
            return NULL;
        }
        o->blocks = nb;
    }
    o->blocks[o->n++] = p;
    return p;
}

static qr_status add(qr_model_writer *w, owned *o, const synthetic_shape *sh, const char *name, size_t rows,
                     size_t cols, uint32_t type, float scale, float offset, uint64_t *seed, qr_pool *pool,
                     qr_error *err)
{
    size_t n = rows * cols;
    float *v = keep(o, malloc(n * sizeof(float)));
    if (!v)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for %s", name);
    fill(v, n, scale, seed);
    for (size_t i = 0; i < n; i++)
        v[i] += offset;
    if (sh->edit)
        sh->edit(sh->edit_ctx, name, v, rows, cols);
    const void *data = v;
    uint64_t bytes = n * sizeof(float);
    if (type != QR_TYPE_F32) {
        if (!qr_type_bytes(type, cols, &bytes))
            return qr_fail(err, QR_ERR_INVALID, "%s: %zu columns do not fit type %u", name, cols, type);
        bytes *= rows;
        void *q = keep(o, malloc((size_t)bytes));
        if (!q)
            return qr_fail(err, QR_ERR_NOMEM, "out of memory for %s", name);
        if (qr_quantize_tensor(type, v, rows, cols, NULL, q, pool))
            return qr_fail(err, QR_ERR_INVALID, "cannot quantize %s to type %u", name, type);
        /* The f32 copy is not needed any more: give its memory back now (216M weights). */
        free(v);
        o->blocks[o->n - 2] = NULL;
        data = q;
    }
    uint64_t dims[2] = {rows, cols};
    return qr_model_writer_add_tensor(w, name, type, rows == 1 ? 1 : 2, rows == 1 ? dims + 1 : dims,
                                      data, bytes, err);
}

/* The heads of sh->tasks ("NAME=A,B,C"): FORMAT.md's head.n_tasks, head.task.N.{name,labels}
 * and one random weight and bias per head, named by qr_head_tensor_name. */
static qr_status add_named_heads(qr_model_writer *w, owned *o, const synthetic_shape *sh, uint32_t type,
                                 float ws, uint64_t *seed, qr_pool *pool, qr_error *err)
{
    qr_status st;
    if ((st = qr_model_writer_set_u64(w, "head.n_tasks", sh->n_tasks, err)))
        return st;
    for (size_t i = 0; i < sh->n_tasks; i++) {
        const char *eq = strchr(sh->tasks[i], '=');
        if (!eq)
            return qr_fail(err, QR_ERR_INVALID, "task '%s' is not NAME=LABEL,...", sh->tasks[i]);
        char key[64], name[QR_TASK_NAME_MAX + 1], labels[1024], wname[32], bname[32];
        snprintf(name, sizeof name, "%.*s", (int)(eq - sh->tasks[i]), sh->tasks[i]);
        snprintf(labels, sizeof labels, "%s", eq + 1);
        size_t classes = 1;
        for (char *c = labels; *c; c++)
            if (*c == ',') {
                *c = '\n';
                classes++;
            }
        snprintf(key, sizeof key, "head.task.%zu.name", i);
        if ((st = qr_model_writer_set_string(w, key, name, err)))
            return st;
        snprintf(key, sizeof key, "head.task.%zu.labels", i);
        if ((st = qr_model_writer_set_string(w, key, labels, err)))
            return st;
        if (i == 0 && (st = qr_model_writer_set_u64(w, "head.n_classes", classes, err)))
            return st;
        if ((st = add(w, o, sh, qr_head_tensor_name(i, false, wname, sizeof wname), classes, sh->d, type, ws, 0.0f,
                      seed, pool, err)) ||
            (st = add(w, o, sh, qr_head_tensor_name(i, true, bname, sizeof bname), 1, classes, QR_TYPE_F32, 0.1f,
                      0.0f, seed, NULL, err)))
            return st;
    }
    return QR_OK;
}

qr_status synthetic_model_write(const synthetic_shape *sh, const char *path, qr_error *err)
{
    qr_model_writer *w = qr_model_writer_new();
    owned o = {0};
    uint64_t seed = sh->seed | 1;
    size_t d = sh->d, f = sh->f;
    uint32_t mt = sh->matrix_type;
    uint32_t et = sh->own_edge_types ? sh->emb_type : mt, ht = sh->own_edge_types ? sh->head_type : mt;
    qr_pool *pool = sh->pool;
    char name[128];
    qr_status st = QR_OK;
    if (!w)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory");
#define TRY(x) do { if ((st = (x)) != QR_OK) goto out; } while (0)
    TRY(qr_model_writer_set_string(w, "general.architecture", "spikegpt", err));
    TRY(qr_model_writer_set_string(w, "general.name", "synthetic", err));
    TRY(qr_model_writer_set_string(w, "general.provenance", "tests/bench/synthetic_model.c: random weights", err));
    TRY(qr_model_writer_set_u64(w, "model.n_layer", sh->n_layer, err));
    TRY(qr_model_writer_set_u64(w, "model.n_embd", d, err));
    TRY(qr_model_writer_set_u64(w, "model.n_ffn", f, err));
    TRY(qr_model_writer_set_u64(w, "model.vocab_size", sh->vocab, err));
    TRY(qr_model_writer_set_bool(w, "spike.ffn_hidden", sh->spike_ffn_hidden, err));
    if (sh->no_spikes) {
        TRY(qr_model_writer_set_bool(w, "spike.att", false, err));
        TRY(qr_model_writer_set_bool(w, "spike.ffn", false, err));
    }
    float ws = 1.0f / sqrtf((float)d);
    TRY(add(w, &o, sh, "emb.weight", sh->vocab, d, et, 1.0f, 0.0f, &seed, pool, err));
    TRY(add(w, &o, sh, "blocks.0.ln0.weight", 1, d, QR_TYPE_F32, 0.1f, 1.0f, &seed, NULL, err));
    TRY(add(w, &o, sh, "blocks.0.ln0.bias", 1, d, QR_TYPE_F32, 0.1f, 0.0f, &seed, NULL, err));
    for (size_t i = 0; i < sh->n_layer; i++) {
        static const char *vecs[] = {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_decay",
                                     "att.time_first", "att.time_mix_k", "att.time_mix_v", "att.time_mix_r",
                                     "ffn.time_mix_k", "ffn.time_mix_r"};
        static const float offs[] = {1.0f, 0.0f, 1.0f, 0.0f, -1.0f, -1.2f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
        for (size_t v = 0; v < sizeof vecs / sizeof vecs[0]; v++) {
            snprintf(name, sizeof name, "blocks.%zu.%s", i, vecs[v]);
            TRY(add(w, &o, sh, name, 1, d, QR_TYPE_F32, v < 4 ? 0.1f : 0.4f, offs[v], &seed, NULL, err));
        }
        static const char *sq[] = {"att.key", "att.value", "att.receptance", "att.output", "ffn.receptance"};
        for (size_t m = 0; m < 5; m++) {
            snprintf(name, sizeof name, "blocks.%zu.%s.weight", i, sq[m]);
            TRY(add(w, &o, sh, name, d, d, mt, ws * (m == 3 ? 3.0f : 1.0f), 0.0f, &seed, pool, err));
        }
        snprintf(name, sizeof name, "blocks.%zu.ffn.key.weight", i);
        TRY(add(w, &o, sh, name, f, d, mt, sh->spike_ffn_hidden ? 2.0f * ws : ws, 0.0f, &seed, pool, err));
        snprintf(name, sizeof name, "blocks.%zu.ffn.value.weight", i);
        if (sh->spike_ffn_hidden)
            TRY(add(w, &o, sh, name, f, d, mt, 3.0f / sqrtf((float)f), 0.0f, &seed, pool, err));
        else
            TRY(add(w, &o, sh, name, d, f, mt, 3.0f / sqrtf((float)f), 0.0f, &seed, pool, err));
    }
    TRY(add(w, &o, sh, "ln_out.weight", 1, d, QR_TYPE_F32, 0.1f, 1.0f, &seed, NULL, err));
    TRY(add(w, &o, sh, "ln_out.bias", 1, d, QR_TYPE_F32, 0.1f, 0.0f, &seed, NULL, err));
    TRY(add(w, &o, sh, "head.weight", sh->vocab, d, ht, ws, 0.0f, &seed, pool, err));
    if (sh->n_tasks)
        TRY(add_named_heads(w, &o, sh, ht, ws, &seed, pool, err));
    else if (sh->n_classes) {
        TRY(qr_model_writer_set_u64(w, "head.n_classes", sh->n_classes, err));
        TRY(add(w, &o, sh, "cls.weight", sh->n_classes, d, ht, ws, 0.0f, &seed, pool, err));
        TRY(add(w, &o, sh, "cls.bias", 1, sh->n_classes, QR_TYPE_F32, 0.1f, 0.0f, &seed, NULL, err));
    }
    if (sh->extra_tensor)
        TRY(add(w, &o, sh, sh->extra_tensor, 1, d, QR_TYPE_F32, 0.1f, 0.0f, &seed, NULL, err));
    if (sh->tokenizer_json)
        TRY(qr_model_writer_set_bytes(w, "tokenizer.json", sh->tokenizer_json, sh->tokenizer_len, err));
    st = qr_model_writer_write(w, path, err);
#undef TRY
out:
    qr_model_writer_free(w);
    for (size_t i = 0; i < o.n; i++)
        free(o.blocks[i]);
    free(o.blocks);
    return st;
}
