/* model_fixture.h: a small valid .qslm image built in memory, and the field positions inside it,
 * so tests and the fuzz seed generator can break one field at a time. */
#ifndef QSLM_TEST_MODEL_FIXTURE_H
#define QSLM_TEST_MODEL_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "model_writer.h"

#define FIXTURE_TENSORS 3

typedef struct {
    uint8_t *buf;
    size_t size;
    /* Byte positions of each tensor entry's fields in buf. */
    size_t name_len_pos[FIXTURE_TENSORS], name_pos[FIXTURE_TENSORS], type_pos[FIXTURE_TENSORS],
        ndims_pos[FIXTURE_TENSORS], dims_pos[FIXTURE_TENSORS], offset_pos[FIXTURE_TENSORS],
        size_pos[FIXTURE_TENSORS];
} model_fixture;

/* Values the fixture's tensors hold: tensor t, element i. */
float fixture_value(int t, size_t i);

/* A writer holding the fixture's metadata and tensors (the tensor data lives in static storage). */
qr_model_writer *fixture_writer(void);

/* Matrices of group-quantized types, for the reader's block rules and the fuzz corpus:
 * "a.weight" (2, 64) in q4_0 and "b" (32) in q2_1, quantized from fixture_quant_value(0, i) and
 * (1, i), with quant.setting naming them. Data in static storage, as above. */
qr_model_writer *fixture_quantized_writer(void);
float fixture_quant_value(int t, size_t i);

/* Every storage type once: a (2, 32) matrix "t.<type name>" of each (f32, f16, q8_0 .. q2_1,
 * q4_s .. q2_s), quantized from fixture_quant_value(0, i). */
qr_model_writer *fixture_all_types_writer(void);
#define FIXTURE_ALL_TYPES 17

/* Serialises a writer into a malloc'd image. Returns 0 on success. */
int fixture_emit(const qr_model_writer *w, uint8_t **buf, size_t *size);

/* Builds the fixture image and locates its table fields. Returns 0 on success. */
int fixture_build(model_fixture *fx);
void fixture_free(model_fixture *fx);

uint32_t fixture_get32(const uint8_t *p);
uint64_t fixture_get64(const uint8_t *p);
void fixture_put32(uint8_t *p, uint32_t v);
void fixture_put64(uint8_t *p, uint64_t v);

#endif

/* One way to break the fixture: `apply` edits fx (buf and/or size); a reader must refuse the
 * result with a format error whose message contains `expect`. */
typedef struct {
    const char *name;
    const char *expect;
    void (*apply)(model_fixture *fx);
} fixture_corruption;

extern const fixture_corruption fixture_corruptions[];
extern const size_t fixture_corruption_count;
