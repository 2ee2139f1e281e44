/* tensor_types.c: the table of storage types. The block sizes of the quantized types are the
 * sizes of the structs in kernels/blocks.h, checked here by the compiler. */
#include "tensor_types.h"

#include <string.h>

#include "kernels/blocks.h"

static const qr_type_info type_table[QR_TYPE_CODE_LIMIT] = {
    [QR_TYPE_F32] = {"f32", 1, 4, 0, false},
    [QR_TYPE_F16] = {"f16", 1, 2, 0, false},
    [QR_TYPE_Q8_0] = {"q8_0", QR_QK, sizeof(qr_block_q8_0), 8, false},
    [QR_TYPE_Q6_0] = {"q6_0", QR_QK, sizeof(qr_block_q6_0), 6, false},
    [QR_TYPE_Q5_0] = {"q5_0", QR_QK, sizeof(qr_block_q5_0), 5, false},
    [QR_TYPE_Q4_0] = {"q4_0", QR_QK, sizeof(qr_block_q4_0), 4, false},
    [QR_TYPE_Q3_0] = {"q3_0", QR_QK, sizeof(qr_block_q3_0), 3, false},
    [QR_TYPE_Q2_0] = {"q2_0", QR_QK, sizeof(qr_block_q2_0), 2, false},
    [QR_TYPE_Q8_1] = {"q8_1", QR_QK, sizeof(qr_block_q8_1), 8, true},
    [QR_TYPE_Q6_1] = {"q6_1", QR_QK, sizeof(qr_block_q6_1), 6, true},
    [QR_TYPE_Q5_1] = {"q5_1", QR_QK, sizeof(qr_block_q5_1), 5, true},
    [QR_TYPE_Q4_1] = {"q4_1", QR_QK, sizeof(qr_block_q4_1), 4, true},
    [QR_TYPE_Q3_1] = {"q3_1", QR_QK, sizeof(qr_block_q3_1), 3, true},
    [QR_TYPE_Q2_1] = {"q2_1", QR_QK, sizeof(qr_block_q2_1), 2, true},
    [QR_TYPE_Q4_S] = {"q4_s", QR_QK, sizeof(qr_block_q4_s), 4, false, true},
    [QR_TYPE_Q3_S] = {"q3_s", QR_QK, sizeof(qr_block_q3_s), 3, false, true},
    [QR_TYPE_Q2_S] = {"q2_s", QR_QK, sizeof(qr_block_q2_s), 2, false, true},
};

const qr_type_info *qr_type_get(uint32_t code)
{
    if (code >= QR_TYPE_CODE_LIMIT || type_table[code].name == NULL)
        return NULL;
    return &type_table[code];
}

bool qr_type_from_name(const char *name, uint32_t *code)
{
    for (uint32_t c = 0; c < QR_TYPE_CODE_LIMIT; c++) {
        if (type_table[c].name && strcmp(type_table[c].name, name) == 0) {
            *code = c;
            return true;
        }
    }
    return false;
}

bool qr_type_is_quantized(uint32_t code)
{
    return code >= QR_TYPE_Q8_0 && code <= QR_TYPE_LAST_QUANT;
}

double qr_type_bits_per_weight(uint32_t code)
{
    const qr_type_info *t = qr_type_get(code);
    return t ? 8.0 * t->block_bytes / t->block_weights : 0.0;
}

bool qr_type_bytes(uint32_t code, uint64_t n_weights, uint64_t *bytes)
{
    const qr_type_info *t = qr_type_get(code);
    if (!t || n_weights % t->block_weights != 0)
        return false;
    uint64_t blocks = n_weights / t->block_weights;
    if (blocks > UINT64_MAX / t->block_bytes)
        return false;
    *bytes = blocks * t->block_bytes;
    return true;
}
