/* state.c: allocating and resetting sequence state. */
#include "state.h"

#include <stdlib.h>
#include <string.h>

qr_status qr_state_new(const qr_model *m, qr_state **out, qr_error *err)
{
    *out = NULL;
    qr_state *s = calloc(1, sizeof *s);
    if (!s)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for a sequence state");
    s->n_layer = m->n_layer;
    s->d = m->d;
    s->n_hidden = m->spike_ffn_hidden ? m->f : 0;
    s->layer_floats = QR_STATE_VECTORS * s->d + s->n_hidden;
    s->data = malloc(s->n_layer * s->layer_floats * sizeof(float));
    if (!s->data) {
        free(s);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for a sequence state");
    }
    qr_state_reset(s);
    *out = s;
    return QR_OK;
}

void qr_state_free(qr_state *s)
{
    if (!s)
        return;
    free(s->data);
    free(s);
}

void qr_state_reset(qr_state *s)
{
    memset(s->data, 0, qr_state_bytes(s));
    for (size_t l = 0; l < s->n_layer; l++) {
        float *pp = qr_state_vec(s, l, QR_STATE_PP);
        for (size_t i = 0; i < s->d; i++)
            pp[i] = -1e30f;
    }
}

void qr_state_copy(qr_state *dst, const qr_state *src)
{
    memcpy(dst->data, src->data, qr_state_bytes(src));
}

size_t qr_state_bytes(const qr_state *s)
{
    return s->n_layer * s->layer_floats * sizeof(float);
}
