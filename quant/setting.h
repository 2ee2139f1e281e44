/* setting.h: quantization settings — a storage type per tensor — and what they cost.
 *
 * The candidate types form a ladder ordered by bits per weight, from f32 down to q2_s, so that
 * "one step cheaper" means the next rung. A setting's served footprint is estimated without
 * writing a file (the search tries thousands) from the master's layout and the types' sizes; a
 * built variant's footprint is then measured exactly (runtime/footprint.h). */
#ifndef QQ_SETTING_H
#define QQ_SETTING_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model_file.h"

#define QQ_RUNGS 17

/* Rung r's type code: 0 is f32, QQ_RUNGS-1 is q2_s (fewest bits). */
uint32_t qq_rung_type(size_t rung);
/* The rung of a type code (QQ_RUNGS if the type is not on the ladder). */
size_t qq_type_rung(uint32_t type);

/* What one matrix costs at each rung, and the fixed part of the footprint. */
typedef struct {
    const qr_model_file *master;
    size_t n_tensors;
    uint64_t *tensor_bytes;  /* n_tensors × QQ_RUNGS: stored bytes (rounded to the file's
                                64-byte alignment); vectors cost their f32 size at every rung */
    int *is_matrix;          /* n_tensors */
    uint64_t fixed_bytes;    /* header, metadata, table, f32 parameters, runner, states */
    uint64_t f32_footprint;  /* the all-f32 setting's footprint */
} qq_costs;

/* Costs for serving `serve_batch` sequences at once (as footprint.h counts them). */
qr_status qq_costs_new(const qr_model_file *master, size_t serve_batch, qq_costs *out, qr_error *err);
void qq_costs_free(qq_costs *c);

/* Estimated served footprint of a setting (types per tensor). */
uint64_t qq_setting_footprint(const qq_costs *c, const uint32_t *types);

/* The setting as a JSON object {tensor name: type name} of the matrices, malloc'ed. */
char *qq_setting_json(const qr_model_file *master, const uint32_t *types);

/* Average bits per weight over the matrices. */
double qq_setting_bits_per_weight(const qq_costs *c, const uint32_t *types);

#endif
