/* tensor_types.c: the table of storage types. */
#include "tensor_types.h"

#include <string.h>

static const qr_type_info type_table[QR_TYPE_CODE_LIMIT] = {
    [QR_TYPE_F32] = {"f32", 1, 4},
    [QR_TYPE_F16] = {"f16", 1, 2},
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
