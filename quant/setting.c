/* setting.c: the type ladder and footprint estimates. */
#include "setting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "footprint.h"
#include "model.h"
#include "tensor_types.h"

static const uint32_t ladder[QQ_RUNGS] = {
    QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_1, QR_TYPE_Q8_0, QR_TYPE_Q6_1, QR_TYPE_Q6_0,
    QR_TYPE_Q5_1, QR_TYPE_Q5_0, QR_TYPE_Q4_1, QR_TYPE_Q4_0, QR_TYPE_Q4_S, QR_TYPE_Q3_1,
    QR_TYPE_Q3_0, QR_TYPE_Q3_S, QR_TYPE_Q2_1, QR_TYPE_Q2_0, QR_TYPE_Q2_S};

uint32_t qq_rung_type(size_t rung)
{
    return ladder[rung < QQ_RUNGS ? rung : QQ_RUNGS - 1];
}

size_t qq_type_rung(uint32_t type)
{
    for (size_t r = 0; r < QQ_RUNGS; r++)
        if (ladder[r] == type)
            return r;
    return QQ_RUNGS;
}

#define ALIGN 64
/* Room for what a variant adds to the metadata: the quant.setting map (per matrix, about its
 * name and a type) and a provenance note. */
#define META_SLACK 512

qr_status qq_costs_new(const qr_model_file *master, size_t serve_batch, qq_costs *out, qr_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = qr_model_file_tensor_count(master);
    qr_model *m = NULL;
    qr_status st = qr_model_bind(master, &m, err);
    if (st)
        return st;
    out->master = master;
    out->n_tensors = n;
    out->tensor_bytes = calloc(n * QQ_RUNGS, sizeof *out->tensor_bytes);
    out->is_matrix = calloc(n ? n : 1, sizeof *out->is_matrix);
    if (!out->tensor_bytes || !out->is_matrix) {
        qr_model_free(m);
        qq_costs_free(out);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the cost table");
    }
    uint64_t data_bytes = 0, meta = 0;
    for (size_t i = 0; i < n; i++) {
        const qr_tensor_info *t = qr_model_file_tensor(master, i);
        data_bytes += (t->size + ALIGN - 1) / ALIGN * ALIGN;
        out->is_matrix[i] = t->n_dims == 2;
        meta += out->is_matrix[i] ? strlen(t->name) + 12 : 0;
        for (size_t r = 0; r < QQ_RUNGS; r++) {
            uint64_t bytes = t->n_elements * sizeof(float);
            if (out->is_matrix[i] && !qr_type_bytes(ladder[r], t->n_elements, &bytes))
                bytes = t->size; /* not a whole number of blocks: the requantizer keeps it */
            out->tensor_bytes[i * QQ_RUNGS + r] = (bytes + ALIGN - 1) / ALIGN * ALIGN;
        }
    }
    qr_footprint fp = qr_footprint_of(m, serve_batch);
    qr_model_free(m);
    uint64_t layout = fp.file_bytes > data_bytes ? fp.file_bytes - data_bytes : 0;
    out->fixed_bytes = layout + META_SLACK + meta + fp.params_bytes + fp.runner_bytes + fp.state_bytes;
    out->f32_footprint = fp.total;
    return QR_OK;
}

void qq_costs_free(qq_costs *c)
{
    free(c->tensor_bytes);
    free(c->is_matrix);
    memset(c, 0, sizeof *c);
}

uint64_t qq_setting_footprint(const qq_costs *c, const uint32_t *types)
{
    uint64_t total = c->fixed_bytes;
    for (size_t i = 0; i < c->n_tensors; i++) {
        size_t r = c->is_matrix[i] ? qq_type_rung(types[i]) : 0;
        total += c->tensor_bytes[i * QQ_RUNGS + (r < QQ_RUNGS ? r : 0)];
    }
    return total;
}

double qq_setting_bits_per_weight(const qq_costs *c, const uint32_t *types)
{
    double bits = 0, weights = 0;
    for (size_t i = 0; i < c->n_tensors; i++) {
        if (!c->is_matrix[i])
            continue;
        const qr_tensor_info *t = qr_model_file_tensor(c->master, i);
        weights += (double)t->n_elements;
        bits += (double)t->n_elements * qr_type_bits_per_weight(types[i]);
    }
    return weights > 0 ? bits / weights : 0.0;
}

char *qq_setting_json(const qr_model_file *master, const uint32_t *types)
{
    json_object *o = json_object_new_object();
    size_t n = qr_model_file_tensor_count(master);
    for (size_t i = 0; i < n; i++) {
        const qr_tensor_info *t = qr_model_file_tensor(master, i);
        if (t->n_dims == 2)
            json_object_object_add(o, t->name, json_object_new_string(qr_type_get(types[i])->name));
    }
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    char *copy = s ? strdup(s) : NULL;
    json_object_put(o);
    return copy;
}
