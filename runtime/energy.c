/* energy.c: operation counts per matrix, priced by a per-operation table.
 *
 * A dense product W·x of an (r × c) matrix does r·c multiply-accumulates, in the arithmetic its
 * storage type is computed in (kernels/):
 *   f32   r·c f32 multiplies and adds;
 *   f16   r·c f16 multiplies and adds (the precision of the storage: on hardware with native
 *         f16 arithmetic; the AVX2 kernel here widens to f32);
 *   qB_*  x is rounded to 8 bits per block of 32, so each weight is one 8 × 8-bit integer
 *         multiply and one 32-bit integer add; then per block of 32, in f32,
 *         `sum += d·dx·isum` (2 multiplies, 1 add), and for qB_1 `sum += m·s` (1 more of each);
 *         qB_s counts as qB_0: its 8-bit scale is one multiply per block like an f16 one, and
 *         its offset, 2^(B−1) − ½, is taken out per block as qB_0's is.
 * A spike-driven product (spike.ffn_hidden's value matrix, stored transposed) adds the rows of
 * the units that fired: rate·r·c f32 adds and rate of the matrix's bytes read. Decoding those
 * rows costs, for qB_0 and qB_s, one f32 multiply per weight, d·(q − off), and for qB_1 a
 * multiply and an add, d·q + m: spike_linear.c does exactly that, so it is counted; f32 and f16
 * rows are added as read (the f16 → f32 conversion is not an arithmetic operation of the table). */
#include "energy.h"

#include <stdio.h>

#include "kernels/blocks.h"
#include "tensor_types.h"

qr_energy_table qr_energy_table_45nm(void)
{
    /* M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
     * pp. 10-14: 45 nm, 0.9 V. DRAM: 1.3-2.6 nJ per 64-bit access; we take the low end. */
    return (qr_energy_table){
        .i8_add = 0.03, .i32_add = 0.1, .i8_mul = 0.2, .i32_mul = 3.1,
        .f16_add = 0.4, .f16_mul = 1.1, .f32_add = 0.9, .f32_mul = 3.7,
        .dram_64bit = 1300.0,
    };
}

/* Adds one dense product's operations and bytes. */
static qr_status count_dense(const qr_matrix *w, const char *what, qr_energy *e, qr_error *err)
{
    double n = (double)w->rows * (double)w->cols;
    e->macs += n;
    e->dram_bytes += (double)w->rows * (double)w->row_bytes;
    if (w->type == QR_TYPE_F32) {
        e->f32_mul += n;
        e->f32_add += n;
    } else if (w->type == QR_TYPE_F16) {
        e->f16_mul += n;
        e->f16_add += n;
    } else if (qr_type_is_quantized(w->type)) {
        double blocks = n / QR_QK;
        bool has_min = qr_type_get(w->type)->has_min;
        e->i8_mul += n;
        e->i32_add += n;
        e->f32_mul += blocks * (has_min ? 3 : 2);
        e->f32_add += blocks * (has_min ? 2 : 1);
    } else {
        return qr_fail(err, QR_ERR_INVALID, "%s: no energy model for storage type %u", what, w->type);
    }
    return QR_OK;
}

/* Adds one spike-driven product: the rows of the units that fire, rate of them. */
static qr_status count_spike(const qr_matrix *w, double rate, const char *what, qr_energy *e, qr_error *err)
{
    double n = rate * (double)w->rows * (double)w->cols;
    e->acs += n;
    e->f32_add += n;
    e->dram_bytes += rate * (double)w->rows * (double)w->row_bytes;
    if (qr_type_is_quantized(w->type)) {
        e->f32_mul += n;
        if (qr_type_get(w->type)->has_min)
            e->f32_add += n;
    } else if (w->type != QR_TYPE_F32 && w->type != QR_TYPE_F16) {
        return qr_fail(err, QR_ERR_INVALID, "%s: no energy model for storage type %u", what, w->type);
    }
    return QR_OK;
}

qr_status qr_energy_per_token(const qr_model *m, const qr_energy_options *opt, qr_energy *out,
                              qr_error *err)
{
    *out = (qr_energy){0};
    qr_energy_table dflt = qr_energy_table_45nm();
    const qr_energy_table *t = opt->table ? opt->table : &dflt;
    double rate = opt->firing_rate;
    if (m->spike_ffn_hidden && !(rate >= 0.0 && rate <= 1.0))
        return qr_fail(err, QR_ERR_INVALID, "firing rate %g is not in [0, 1]", rate);
    qr_energy e = {0};
    e.dram_bytes = (double)m->emb.row_bytes; /* one embedding row, looked up, not multiplied */
    qr_status st = QR_OK;
    static const char *const names[] = {"att.key", "att.value", "att.receptance", "att.output",
                                        "ffn.key", "ffn.receptance", "ffn.value"};
    char what[64];
    for (size_t i = 0; i < m->n_layer && st == QR_OK; i++) {
        const qr_layer *l = &m->layers[i];
        const qr_matrix *mats[] = {&l->att_key, &l->att_value, &l->att_receptance, &l->att_output,
                                   &l->ffn_key, &l->ffn_receptance, &l->ffn_value};
        for (size_t j = 0; j < sizeof mats / sizeof mats[0] && st == QR_OK; j++) {
            snprintf(what, sizeof what, "blocks.%zu.%s.weight", i, names[j]);
            bool spike = j == 6 && m->spike_ffn_hidden;
            st = spike ? count_spike(mats[j], rate, what, &e, err) : count_dense(mats[j], what, &e, err);
        }
    }
    if (st == QR_OK && opt->with_head && m->has_lm_head)
        st = count_dense(&m->head, "head.weight", &e, err);
    if (st != QR_OK)
        return st;
    e.pj_compute = e.f32_mul * t->f32_mul + e.f32_add * t->f32_add + e.f16_mul * t->f16_mul +
                   e.f16_add * t->f16_add + e.i8_mul * t->i8_mul + e.i32_add * t->i32_add;
    e.pj_dram = e.dram_bytes / 8.0 * t->dram_64bit;
    e.pj_total = e.pj_compute + e.pj_dram;
    *out = e;
    return QR_OK;
}
