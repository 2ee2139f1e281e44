/* footprint.h: the memory a variant takes while it is served.
 *
 * One number shared by QSLM (a variant meets a memory budget) and qslmd (a variant fits what it
 * may use), so both mean the same thing. It counts the whole model file (mapped; every tensor is
 * read for each token, so all of it becomes resident), the 1-D parameters converted to f32, the
 * runner's scratch and one sequence state per sequence of the batch served at once. The runner
 * serves two kinds of call: batches of up to `batch` sequences' next tokens, and chunks of up to
 * `chunk` consecutive known tokens of one sequence (a prompt, a text to classify: rows of one
 * state), so it is made for max(batch, chunk) rows. Not counted: the tokenizer and the process
 * itself, which do not change with the variant. */
#ifndef QR_FOOTPRINT_H
#define QR_FOOTPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    uint64_t file_bytes;   /* the mapped model file */
    uint64_t params_bytes; /* 1-D parameters as f32 */
    uint64_t runner_bytes; /* forward-pass scratch for max(batch, chunk) rows */
    uint64_t state_bytes;  /* batch sequence states (a chunk's rows share one) */
    uint64_t total;
} qr_footprint;

/* The chunk qslmd reads prompts and texts in by default (qslmd.conf's prefill_chunk), which
 * qslm-generate reads a prompt in too: both then run a prompt through the same rows and compute
 * the same bits. Below 2 x QR_PART_MIN_ROWS (forward.h), so a runner made for it keeps no
 * per-thread copies of itself, which a chunk (rows of one state) could not use. 20 rows: the
 * most with which each variant of the default bundle stays within the footprint its manifest
 * states (longer chunks read faster: 16 rows 11,600 tokens/s, 20 rows 13,000, 32 rows 15,300 on
 * its 8M variant here, against 4,500 one token at a time). */
#define QR_PREFILL_CHUNK 20

/* The footprint of serving batches of up to `batch` sequences and chunks of up to `chunk`
 * tokens. */
qr_footprint qr_footprint_serving(const qr_model *m, size_t batch, size_t chunk);

/* qr_footprint_serving(m, max_batch, QR_PREFILL_CHUNK): qslmd's footprint with its default
 * chunk, which QSLM's budgets count. */
qr_footprint qr_footprint_of(const qr_model *m, size_t max_batch);

/* Bytes of one sequence's state for this model (state.h's layout). */
uint64_t qr_state_bytes_for(const qr_model *m);

#endif
