/* test_model_file.c: the .qslm writer and reader — round trips, look-ups, and every malformed
 * file in model_corruptions.c refused with an error naming the file and the fault. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model_file.h"
#include "model_fixture.h"
#include "model_writer.h"
#include "tensor_types.h"

static void test_round_trip_memory(void **state)
{
    (void)state;
    model_fixture fx;
    assert_int_equal(fixture_build(&fx), 0);
    qr_model_file *mf = NULL;
    qr_error err = {0};
    assert_int_equal(qr_model_file_from_memory(fx.buf, fx.size, "fixture", &mf, &err), QR_OK);
    assert_int_equal(qr_model_file_tensor_count(mf), 3);
    assert_int_equal(qr_model_file_meta_count(mf), 8);

    const qr_tensor_info *emb = qr_model_file_find_tensor(mf, "emb.weight");
    assert_non_null(emb);
    assert_int_equal(emb->type, QR_TYPE_F32);
    assert_int_equal(emb->n_dims, 2);
    assert_int_equal(emb->dims[0], 4);
    assert_int_equal(emb->dims[1], 8);
    assert_int_equal(emb->n_elements, 32);
    assert_int_equal(emb->size, 128);
    const float *f = emb->data;
    for (size_t i = 0; i < 32; i++)
        assert_true(f[i] == fixture_value(0, i));
    const qr_tensor_info *key = qr_model_file_find_tensor(mf, "key.weight");
    assert_non_null(key);
    assert_int_equal(key->type, QR_TYPE_F16);
    assert_int_equal(key->size, 128);
    assert_int_equal(((const uint16_t *)key->data)[5], 0x3c05);
    assert_null(qr_model_file_find_tensor(mf, "nope"));
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(qr_model_file_tensor(mf, i)->offset % QR_FILE_ALIGN, 0);

    uint64_t u;
    double d;
    bool b;
    const char *s;
    uint64_t len;
    assert_int_equal(qr_model_file_get_u64(mf, "model.n_embd", 0, &u, &err), QR_OK);
    assert_int_equal(u, 8);
    assert_int_equal(qr_model_file_get_u64(mf, "model.n_ffn", 32, &u, &err), QR_OK);
    assert_int_equal(u, 32); /* absent: default */
    assert_int_equal(qr_model_file_get_f64(mf, "spike.tau", 0, &d, &err), QR_OK);
    assert_true(d == 2.0);
    assert_int_equal(qr_model_file_get_bool(mf, "spike.emb", false, &b, &err), QR_OK);
    assert_true(b);
    assert_int_equal(qr_model_file_meta(mf, "test.signed")->num.i64, -7);
    assert_int_equal(qr_model_file_get_blob(mf, "general.architecture", &s, &len, &err), QR_OK);
    assert_string_equal(s, "spikegpt");
    assert_int_equal(len, 8);
    assert_int_equal(qr_model_file_get_blob(mf, "test.blob", &s, &len, &err), QR_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "\1\0\2\0\3", 5);
    /* Present with the wrong type: an error naming the key, not a silent default. */
    assert_int_equal(qr_model_file_get_u64(mf, "spike.tau", 0, &u, &err), QR_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "spike.tau"));
    assert_int_equal(qr_model_file_get_bool(mf, "model.n_embd", false, &b, &err), QR_ERR_FORMAT);
    qr_model_file_close(mf);
    fixture_free(&fx);
}

/* Reads back tensor `name` of type `type`, (rows, cols), as f32 with the reference kernels and
 * checks it against fixture_quant_value(t, i) within `tol`. */
static void check_quantized(const qr_model_file *mf, const char *name, uint32_t type, int t,
                            size_t rows, size_t cols, float tol)
{
    const qr_tensor_info *ti = qr_model_file_find_tensor(mf, name);
    assert_non_null(ti);
    assert_int_equal(ti->type, type);
    assert_int_equal(ti->dims[ti->n_dims - 1], cols);
    assert_int_equal(ti->n_elements, rows * cols);
    uint64_t bytes;
    assert_true(qr_type_bytes(type, rows * cols, &bytes));
    assert_int_equal(ti->size, bytes);
    assert_int_equal(ti->offset % QR_FILE_ALIGN, 0);
    float out[128];
    assert_true(rows * cols <= 128);
    qr_kernels_ref(type)->to_float(ti->data, out, rows * cols);
    for (size_t i = 0; i < rows * cols; i++)
        if (!(fabsf(out[i] - fixture_quant_value(t, i)) <= tol))
            fail_msg("%s[%zu] = %g, written from %g (tolerance %g)", name, i, out[i],
                     fixture_quant_value(t, i), tol);
}

/* The fixtures with quantized tensors (fuzz seeds valid_quantized and valid_all_types) are read
 * back with the types, sizes and values written. */
static void test_quantized_round_trip(void **state)
{
    (void)state;
    qr_model_writer *w = fixture_quantized_writer();
    assert_non_null(w);
    uint8_t *buf;
    size_t size;
    assert_int_equal(fixture_emit(w, &buf, &size), 0);
    qr_model_writer_free(w);
    qr_model_file *mf = NULL;
    qr_error err = {0};
    assert_int_equal(qr_model_file_from_memory(buf, size, "quantized", &mf, &err), QR_OK);
    assert_int_equal(qr_model_file_tensor_count(mf), 2);
    check_quantized(mf, "a.weight", QR_TYPE_Q4_0, 0, 2, 64, 1.0f / 8);
    check_quantized(mf, "b", QR_TYPE_Q2_1, 1, 1, 32, 1.0f / 3);
    assert_string_equal(qr_model_file_meta(mf, "quant.setting")->str, "{\"a.weight\":\"q4_0\",\"b\":\"q2_1\"}");
    qr_model_file_close(mf);
    free(buf);

    w = fixture_all_types_writer();
    assert_non_null(w);
    assert_int_equal(fixture_emit(w, &buf, &size), 0);
    qr_model_writer_free(w);
    assert_int_equal(qr_model_file_from_memory(buf, size, "all types", &mf, &err), QR_OK);
    assert_int_equal(qr_model_file_tensor_count(mf), FIXTURE_ALL_TYPES);
    uint32_t seen = 0;
    for (size_t i = 0; i < FIXTURE_ALL_TYPES; i++) {
        const qr_tensor_info *t = qr_model_file_tensor(mf, i);
        const qr_type_info *ti = qr_type_get(t->type);
        assert_non_null(ti);
        char name[32];
        snprintf(name, sizeof name, "t.%s", ti->name);
        /* Values span [-1, 1]: within a step of the type's grid (f32 exact, f16 to rounding). */
        float tol = t->type == QR_TYPE_F32 ? 0.0f : ti->bits ? 2.0f / (float)((1u << ti->bits) - 1) : 1e-3f;
        check_quantized(mf, name, t->type, 0, 2, 32, tol);
        seen |= UINT32_C(1) << (t->type < QR_TYPE_FIRST_QUANT ? t->type : t->type - QR_TYPE_FIRST_QUANT + 2);
    }
    assert_int_equal(seen, (UINT32_C(1) << FIXTURE_ALL_TYPES) - 1); /* each type once */
    qr_model_file_close(mf);
    free(buf);
}

static void test_round_trip_file_is_mapped_and_aligned(void **state)
{
    (void)state;
    char path[] = "/tmp/qslm-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    qr_model_writer *w = fixture_writer();
    assert_non_null(w);
    qr_error err = {0};
    assert_int_equal(qr_model_writer_write(w, path, &err), QR_OK);
    qr_model_writer_free(w);
    char tmp[sizeof path + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_not_equal(access(tmp, F_OK), 0); /* the temporary is gone */

    qr_model_file *mf = NULL;
    assert_int_equal(qr_model_file_open(path, &mf, &err), QR_OK);
    for (size_t i = 0; i < qr_model_file_tensor_count(mf); i++) {
        const qr_tensor_info *t = qr_model_file_tensor(mf, i);
        assert_int_equal((uintptr_t)t->data % QR_FILE_ALIGN, 0);
    }
    const float *ln = qr_model_file_find_tensor(mf, "ln.weight")->data;
    assert_true(ln[7] == fixture_value(2, 7));
    assert_string_equal(qr_model_file_path(mf), path);
    qr_model_file_close(mf);
    unlink(path);
}

static void test_open_missing_file(void **state)
{
    (void)state;
    qr_model_file *mf = (qr_model_file *)1;
    qr_error err = {0};
    assert_int_equal(qr_model_file_open("/nonexistent/dir/model.qslm", &mf, &err), QR_ERR_IO);
    assert_null(mf);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/model.qslm"));
    assert_non_null(strstr(err.msg, "No such file"));
    assert_int_equal(qr_model_file_open("/tmp", &mf, &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* Every row of the corruption table: refused, with a message naming the file and the fault. */
static void test_corruptions_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < fixture_corruption_count; i++) {
        const fixture_corruption *c = &fixture_corruptions[i];
        model_fixture fx;
        assert_int_equal(fixture_build(&fx), 0);
        c->apply(&fx);
        /* An exact-size copy so ASan catches any read past the end. */
        uint8_t *copy = malloc(fx.size ? fx.size : 1);
        memcpy(copy, fx.buf, fx.size);
        qr_model_file *mf = NULL;
        qr_error err = {0};
        qr_status st = qr_model_file_from_memory(copy, fx.size, "broken.qslm", &mf, &err);
        if (st != QR_ERR_FORMAT || !strstr(err.msg, "broken.qslm") || !strstr(err.msg, c->expect))
            fail_msg("corruption '%s': status %d, message '%s', expected to contain '%s'", c->name,
                     (int)st, err.msg, c->expect);
        assert_null(mf);
        free(copy);
        fixture_free(&fx);
    }
    assert_true(fixture_corruption_count >= 15);
}

/* Truncation at every byte: each prefix must be refused, never read past. */
static void test_every_truncation_refused(void **state)
{
    (void)state;
    model_fixture fx;
    assert_int_equal(fixture_build(&fx), 0);
    for (size_t n = 0; n < fx.size; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, fx.buf, n);
        /* Also make the header agree with the truncated size, so the parser must find the fault
         * in the sections themselves. */
        for (int agree = 0; agree < 2; agree++) {
            if (agree && n >= 16)
                fixture_put64(copy + 8, n);
            qr_model_file *mf = NULL;
            qr_error err = {0};
            qr_status st = qr_model_file_from_memory(copy, n, "cut.qslm", &mf, &err);
            if (st != QR_ERR_FORMAT)
                fail_msg("truncated to %zu bytes (header agrees: %d): status %d", n, agree, (int)st);
            assert_non_null(strstr(err.msg, "cut.qslm"));
        }
        free(copy);
    }
    fixture_free(&fx);
}

/* Every single-bit flip in the header and table is either refused or yields a consistent file. */
static void test_bit_flips_never_crash(void **state)
{
    (void)state;
    model_fixture fx;
    assert_int_equal(fixture_build(&fx), 0);
    size_t limit = (size_t)fixture_get64(fx.buf + 48); /* header, metadata, table */
    int refused = 0;
    for (size_t byte = 0; byte < limit; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(fx.size);
            memcpy(copy, fx.buf, fx.size);
            copy[byte] ^= (uint8_t)(1u << bit);
            qr_model_file *mf = NULL;
            qr_error err = {0};
            if (qr_model_file_from_memory(copy, fx.size, "flip.qslm", &mf, &err) == QR_OK) {
                for (size_t t = 0; t < qr_model_file_tensor_count(mf); t++) {
                    const qr_tensor_info *ti = qr_model_file_tensor(mf, t);
                    assert_true(ti->offset + ti->size <= fx.size);
                }
                qr_model_file_close(mf);
            } else {
                refused++;
            }
            free(copy);
        }
    }
    assert_true(refused > 0);
    fixture_free(&fx);
}

static void test_writer_rejects_bad_input(void **state)
{
    (void)state;
    qr_model_writer *w = qr_model_writer_new();
    qr_error err = {0};
    float data[8] = {0};
    const uint64_t dims[] = {2, 4}, zero[] = {0, 4};
    assert_int_equal(qr_model_writer_set_u64(w, "Bad Key", 1, &err), QR_ERR_INVALID);
    assert_int_equal(qr_model_writer_set_u64(w, "", 1, &err), QR_ERR_INVALID);
    assert_int_equal(qr_model_writer_set_f64(w, "x.nan", 0.0 / 0.0, &err), QR_ERR_INVALID);
    assert_int_equal(qr_model_writer_add_tensor(w, "t", 99, 2, dims, data, 32, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "unknown type"));
    assert_int_equal(qr_model_writer_add_tensor(w, "t", QR_TYPE_F32, 2, zero, data, 0, &err), QR_ERR_INVALID);
    assert_int_equal(qr_model_writer_add_tensor(w, "t", QR_TYPE_F32, 2, dims, data, 31, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "need 32"));
    assert_int_equal(qr_model_writer_add_tensor(w, "t", QR_TYPE_F32, 0, dims, data, 32, &err), QR_ERR_INVALID);
    assert_int_equal(qr_model_writer_add_tensor(w, "t", QR_TYPE_F32, 2, dims, data, 32, &err), QR_OK);
    assert_int_equal(qr_model_writer_add_tensor(w, "t", QR_TYPE_F32, 2, dims, data, 32, &err), QR_ERR_INVALID);
    assert_non_null(strstr(err.msg, "added twice"));
    /* Setting a key twice keeps the last value. */
    assert_int_equal(qr_model_writer_set_string(w, "general.architecture", "x", &err), QR_OK);
    assert_int_equal(qr_model_writer_set_string(w, "general.architecture", "rwkv4", &err), QR_OK);
    assert_int_equal(qr_model_writer_set_u64(w, "model.n_layer", 1, &err), QR_OK);
    assert_int_equal(qr_model_writer_set_u64(w, "model.n_embd", 4, &err), QR_OK);
    assert_int_equal(qr_model_writer_set_u64(w, "model.vocab_size", 2, &err), QR_OK);
    uint8_t *buf;
    size_t size;
    assert_int_equal(fixture_emit(w, &buf, &size), 0);
    qr_model_file *mf = NULL;
    assert_int_equal(qr_model_file_from_memory(buf, size, "w", &mf, &err), QR_OK);
    assert_string_equal(qr_model_file_meta(mf, "general.architecture")->str, "rwkv4");
    assert_int_equal(qr_model_file_meta_count(mf), 4);
    qr_model_file_close(mf);
    free(buf);
    qr_model_writer_free(w);
}

static void test_write_to_missing_directory_fails(void **state)
{
    (void)state;
    qr_model_writer *w = fixture_writer();
    qr_error err = {0};
    assert_int_equal(qr_model_writer_write(w, "/nonexistent/dir/out.qslm", &err), QR_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/out.qslm"));
    qr_model_writer_free(w);
}

static void test_type_table(void **state)
{
    (void)state;
    uint64_t bytes;
    assert_true(qr_type_bytes(QR_TYPE_F16, 10, &bytes));
    assert_int_equal(bytes, 20);
    assert_false(qr_type_bytes(77, 10, &bytes));
    assert_null(qr_type_get(QR_TYPE_CODE_LIMIT));
    assert_null(qr_type_get(UINT32_MAX));
    uint32_t code;
    assert_true(qr_type_from_name("f32", &code));
    assert_int_equal(code, QR_TYPE_F32);
    assert_false(qr_type_from_name("q9", &code));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_memory),
        cmocka_unit_test(test_quantized_round_trip),
        cmocka_unit_test(test_round_trip_file_is_mapped_and_aligned),
        cmocka_unit_test(test_open_missing_file),
        cmocka_unit_test(test_corruptions_refused),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_bit_flips_never_crash),
        cmocka_unit_test(test_writer_rejects_bad_input),
        cmocka_unit_test(test_write_to_missing_directory_fails),
        cmocka_unit_test(test_type_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
