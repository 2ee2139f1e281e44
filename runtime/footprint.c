/* footprint.c: the served footprint's parts, from the same sizes the allocators use. */
#include "footprint.h"

#include "forward.h"
#include "state.h"

uint64_t qr_state_bytes_for(const qr_model *m)
{
    uint64_t hidden = m->spike_ffn_hidden ? m->f : 0;
    return (uint64_t)m->n_layer * ((uint64_t)QR_STATE_VECTORS * m->d + hidden) * sizeof(float);
}

qr_footprint qr_footprint_serving(const qr_model *m, size_t batch, size_t chunk)
{
    size_t rows = chunk > batch ? chunk : batch;
    qr_footprint fp = {
        .file_bytes = qr_model_file_size(m->file),
        .params_bytes = m->params_bytes,
        .runner_bytes = qr_runner_bytes(m, rows),
        .state_bytes = (uint64_t)batch * qr_state_bytes_for(m),
    };
    fp.total = fp.file_bytes + fp.params_bytes + fp.runner_bytes + fp.state_bytes;
    return fp;
}

qr_footprint qr_footprint_of(const qr_model *m, size_t max_batch)
{
    return qr_footprint_serving(m, max_batch, QR_PREFILL_CHUNK);
}
