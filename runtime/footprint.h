/* footprint.h: the memory a variant takes while it is served.
 *
 * One number shared by QSLM (a variant meets a memory budget) and qslmd (a variant fits what it
 * may use), so both mean the same thing. It counts the whole model file (mapped; every tensor is
 * read for each token, so all of it becomes resident), the 1-D parameters converted to f32, the
 * runner's scratch for the batch served at once, and one sequence state per sequence of that
 * batch. Not counted: the tokenizer and the process itself, which do not change with the variant. */
#ifndef QR_FOOTPRINT_H
#define QR_FOOTPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    uint64_t file_bytes;   /* the mapped model file */
    uint64_t params_bytes; /* 1-D parameters as f32 */
    uint64_t runner_bytes; /* forward-pass scratch for max_batch sequences */
    uint64_t state_bytes;  /* max_batch sequence states */
    uint64_t total;
} qr_footprint;

qr_footprint qr_footprint_of(const qr_model *m, size_t max_batch);

/* The chunk qslmd reads prompts and texts in by default (qslmd.conf's prefill_chunk), which
 * qslm-generate reads a prompt in too: both then run a prompt through the same rows and compute
 * the same bits. */
#define QR_PREFILL_CHUNK 4

/* What reading prompts and texts in chunks adds to qr_footprint_of(m, batch): qslmd runs a
 * sequence's known tokens `chunk` at a time as rows of one state, so its runner is made for
 * max(batch, chunk) rows instead of batch. No state is added (a chunk's rows share one). 0 when
 * chunk <= batch. Chunks stay below 2 x QR_PART_MIN_ROWS rows (forward.h), so the runner keeps
 * no per-thread copies for them. */
uint64_t qr_footprint_chunk_bytes(const qr_model *m, size_t batch, size_t chunk);

/* Bytes of one sequence's state for this model (state.h's layout). */
uint64_t qr_state_bytes_for(const qr_model *m);

#endif
