/* footprint.c: the served footprint's parts, from the same sizes the allocators use. */
#include "footprint.h"

#include "forward.h"
#include "state.h"

uint64_t qr_state_bytes_for(const qr_model *m)
{
    uint64_t hidden = m->spike_ffn_hidden ? m->f : 0;
    return (uint64_t)m->n_layer * ((uint64_t)QR_STATE_VECTORS * m->d + hidden) * sizeof(float);
}

qr_footprint qr_footprint_of(const qr_model *m, size_t max_batch)
{
    qr_footprint fp = {
        .file_bytes = qr_model_file_size(m->file),
        .params_bytes = m->params_bytes,
        .runner_bytes = qr_runner_bytes(m, max_batch),
        .state_bytes = (uint64_t)max_batch * qr_state_bytes_for(m),
    };
    fp.total = fp.file_bytes + fp.params_bytes + fp.runner_bytes + fp.state_bytes;
    return fp;
}

uint64_t qr_footprint_chunk_bytes(const qr_model *m, size_t batch, size_t chunk)
{
    uint64_t wide = chunk > batch ? qr_runner_bytes(m, chunk) : 0, narrow = qr_runner_bytes(m, batch);
    return wide > narrow ? wide - narrow : 0;
}
