/* model_fixture.c: the shared .qslm test image. */
#include "model_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantize.h"
#include "tensor_types.h"

static float emb_data[4 * 8];
static uint16_t key_data[8 * 8];
static float ln_data[8];

float fixture_value(int t, size_t i)
{
    return (float)(t + 1) * 0.5f + (float)i * 0.25f;
}

qr_model_writer *fixture_writer(void)
{
    for (size_t i = 0; i < 32; i++)
        emb_data[i] = fixture_value(0, i);
    for (size_t i = 0; i < 64; i++)
        key_data[i] = (uint16_t)(0x3c00 + i); /* f16 bit patterns near 1.0 */
    for (size_t i = 0; i < 8; i++)
        ln_data[i] = fixture_value(2, i);
    qr_model_writer *w = qr_model_writer_new();
    if (!w)
        return NULL;
    const uint64_t emb_dims[] = {4, 8}, key_dims[] = {8, 8}, ln_dims[] = {8};
    static const char blob[] = {1, 0, 2, 0, 3};
    int bad = qr_model_writer_set_string(w, "general.architecture", "spikegpt", NULL) ||
              qr_model_writer_set_u64(w, "model.n_layer", 1, NULL) ||
              qr_model_writer_set_u64(w, "model.n_embd", 8, NULL) ||
              qr_model_writer_set_u64(w, "model.vocab_size", 4, NULL) ||
              qr_model_writer_set_f64(w, "spike.tau", 2.0, NULL) ||
              qr_model_writer_set_bool(w, "spike.emb", true, NULL) ||
              qr_model_writer_set_i64(w, "test.signed", -7, NULL) ||
              qr_model_writer_set_bytes(w, "test.blob", blob, sizeof blob, NULL) ||
              qr_model_writer_add_tensor(w, "emb.weight", QR_TYPE_F32, 2, emb_dims, emb_data,
                                         sizeof emb_data, NULL) ||
              qr_model_writer_add_tensor(w, "key.weight", QR_TYPE_F16, 2, key_dims, key_data,
                                         sizeof key_data, NULL) ||
              qr_model_writer_add_tensor(w, "ln.weight", QR_TYPE_F32, 1, ln_dims, ln_data,
                                         sizeof ln_data, NULL);
    if (bad) {
        qr_model_writer_free(w);
        return NULL;
    }
    return w;
}

float fixture_quant_value(int t, size_t i)
{
    /* In [-1, 1], periodic over 17 (resp. 5) so no two blocks are alike. */
    return t == 0 ? (float)((3 * i) % 17) / 8.0f - 1.0f : (float)((int)(i % 5) - 1) / 3.0f;
}

static uint8_t quant_a[2 * 2 * 18], quant_b[12];

qr_model_writer *fixture_quantized_writer(void)
{
    float a[128], b[32];
    for (size_t i = 0; i < 128; i++)
        a[i] = fixture_quant_value(0, i);
    for (size_t i = 0; i < 32; i++)
        b[i] = fixture_quant_value(1, i);
    qr_model_writer *w = qr_model_writer_new();
    if (!w || qr_quantize_row(QR_TYPE_Q4_0, a, 128, NULL, quant_a) ||
        qr_quantize_row(QR_TYPE_Q2_1, b, 32, NULL, quant_b)) {
        qr_model_writer_free(w);
        return NULL;
    }
    const uint64_t a_dims[] = {2, 64}, b_dims[] = {32};
    int bad = qr_model_writer_set_string(w, "general.architecture", "spikegpt", NULL) ||
              qr_model_writer_set_u64(w, "model.n_layer", 1, NULL) ||
              qr_model_writer_set_u64(w, "model.n_embd", 32, NULL) ||
              qr_model_writer_set_u64(w, "model.vocab_size", 2, NULL) ||
              qr_model_writer_set_string(w, "quant.setting", "{\"a.weight\":\"q4_0\",\"b\":\"q2_1\"}", NULL) ||
              qr_model_writer_add_tensor(w, "a.weight", QR_TYPE_Q4_0, 2, a_dims, quant_a,
                                         sizeof quant_a, NULL) ||
              qr_model_writer_add_tensor(w, "b", QR_TYPE_Q2_1, 1, b_dims, quant_b, sizeof quant_b,
                                         NULL);
    if (bad) {
        qr_model_writer_free(w);
        return NULL;
    }
    return w;
}

static uint8_t all_types_data[FIXTURE_ALL_TYPES][2 * 32 * 4];

qr_model_writer *fixture_all_types_writer(void)
{
    static const uint32_t types[FIXTURE_ALL_TYPES] = {
        QR_TYPE_F32,  QR_TYPE_F16,  QR_TYPE_Q8_0, QR_TYPE_Q6_0, QR_TYPE_Q5_0,
        QR_TYPE_Q4_0, QR_TYPE_Q3_0, QR_TYPE_Q2_0, QR_TYPE_Q8_1, QR_TYPE_Q6_1,
        QR_TYPE_Q5_1, QR_TYPE_Q4_1, QR_TYPE_Q3_1, QR_TYPE_Q2_1, QR_TYPE_Q4_S,
        QR_TYPE_Q3_S, QR_TYPE_Q2_S};
    float src[64];
    for (size_t i = 0; i < 64; i++)
        src[i] = fixture_quant_value(0, i);
    qr_model_writer *w = qr_model_writer_new();
    int bad = !w || qr_model_writer_set_string(w, "general.architecture", "rwkv4", NULL) ||
              qr_model_writer_set_u64(w, "model.n_layer", 1, NULL) ||
              qr_model_writer_set_u64(w, "model.n_embd", 32, NULL) ||
              qr_model_writer_set_u64(w, "model.vocab_size", 2, NULL);
    const uint64_t dims[] = {2, 32};
    for (size_t t = 0; t < FIXTURE_ALL_TYPES && !bad; t++) {
        uint64_t bytes;
        char name[32];
        snprintf(name, sizeof name, "t.%s", qr_type_get(types[t])->name);
        bad = !qr_type_bytes(types[t], 64, &bytes) ||
              qr_quantize_tensor(types[t], src, 2, 32, NULL, all_types_data[t], NULL) ||
              qr_model_writer_add_tensor(w, name, types[t], 2, dims, all_types_data[t], bytes, NULL);
    }
    if (bad) {
        qr_model_writer_free(w);
        return NULL;
    }
    return w;
}

int fixture_emit(const qr_model_writer *w, uint8_t **buf, size_t *size)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    if (!f)
        return -1;
    qr_status st = qr_model_writer_emit(w, f, "fixture", NULL);
    fclose(f);
    if (st != QR_OK) {
        free(mem);
        return -1;
    }
    *buf = (uint8_t *)mem;
    *size = len;
    return 0;
}

uint32_t fixture_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t fixture_get64(const uint8_t *p)
{
    return (uint64_t)fixture_get32(p) | (uint64_t)fixture_get32(p + 4) << 32;
}

void fixture_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fixture_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int fixture_build(model_fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    qr_model_writer *w = fixture_writer();
    if (!w)
        return -1;
    int rc = fixture_emit(w, &fx->buf, &fx->size);
    qr_model_writer_free(w);
    if (rc)
        return rc;
    size_t pos = (size_t)fixture_get64(fx->buf + 32); /* table_offset */
    for (int t = 0; t < FIXTURE_TENSORS; t++) {
        fx->name_len_pos[t] = pos;
        uint32_t nlen = fixture_get32(fx->buf + pos);
        fx->name_pos[t] = pos + 4;
        fx->type_pos[t] = pos + 4 + nlen;
        fx->ndims_pos[t] = fx->type_pos[t] + 4;
        uint32_t nd = fixture_get32(fx->buf + fx->ndims_pos[t]);
        fx->dims_pos[t] = fx->ndims_pos[t] + 4;
        fx->offset_pos[t] = fx->dims_pos[t] + 8 * nd;
        fx->size_pos[t] = fx->offset_pos[t] + 8;
        pos = fx->size_pos[t] + 8;
    }
    return 0;
}

void fixture_free(model_fixture *fx)
{
    free(fx->buf);
    fx->buf = NULL;
}
