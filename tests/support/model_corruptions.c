/* model_corruptions.c: the table of malformed .qslm files, each one field broken. Used by the
 * unit test (every entry must be refused with the expected message) and by the fuzz seed
 * generator (every entry becomes a corpus file). */
#include <string.h>

#include "model_fixture.h"
#include "tensor_types.h"

/* Position of the first occurrence of a metadata key's bytes; the fixture's keys are unique. */
static size_t key_pos(const model_fixture *fx, const char *key)
{
    const uint8_t *p = memmem(fx->buf, fx->size, key, strlen(key));
    return p ? (size_t)(p - fx->buf) : 0;
}

/* Position of the value-type field of a metadata entry. */
static size_t meta_type_pos(const model_fixture *fx, const char *key)
{
    return key_pos(fx, key) + strlen(key);
}

static void empty_file(model_fixture *fx) { fx->size = 0; }
static void short_header(model_fixture *fx) { fx->size = 63; }
static void bad_magic(model_fixture *fx) { fx->buf[0] = 'X'; }
static void bad_version(model_fixture *fx) { fixture_put32(fx->buf + 4, 2); }
static void truncated_data(model_fixture *fx) { fx->size -= 1; }
static void truncated_in_table(model_fixture *fx)
{
    fx->size = fx->size_pos[1];
    fixture_put64(fx->buf + 8, fx->size);
}
static void truncated_in_meta(model_fixture *fx)
{
    fx->size = key_pos(fx, "spike.tau");
    fixture_put64(fx->buf + 8, fx->size);
}
static void huge_tensor_count(model_fixture *fx) { fixture_put32(fx->buf + 56, 0xffffffffu); }
static void huge_meta_count(model_fixture *fx) { fixture_put32(fx->buf + 60, 60000); }
static void negative_meta_size(model_fixture *fx) { fixture_put64(fx->buf + 24, (uint64_t)-16); }
static void negative_table_size(model_fixture *fx) { fixture_put64(fx->buf + 40, (uint64_t)-64); }
static void unaligned_data_offset(model_fixture *fx)
{
    fixture_put64(fx->buf + 48, fixture_get64(fx->buf + 48) + 8);
}
static void table_offset_gap(model_fixture *fx)
{
    fixture_put64(fx->buf + 32, fixture_get64(fx->buf + 32) + 4);
}
static void zero_dim(model_fixture *fx) { fixture_put64(fx->buf + fx->dims_pos[0], 0); }
static void overflow_dims(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->dims_pos[0], UINT64_C(1) << 40);
    fixture_put64(fx->buf + fx->dims_pos[0] + 8, UINT64_C(1) << 40);
}
static void overlapping(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->offset_pos[2], fixture_get64(fx->buf + fx->offset_pos[1]));
}
static void unaligned_tensor(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->offset_pos[2], fixture_get64(fx->buf + fx->offset_pos[2]) + 4);
}
static void tensor_past_end(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->offset_pos[2], (fixture_get64(fx->buf + 8) + 63) / 64 * 64);
}
static void tensor_huge_offset(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->offset_pos[1], UINT64_MAX - 63);
}
static void tensor_in_table(model_fixture *fx) { fixture_put64(fx->buf + fx->offset_pos[0], 0); }
/* "key.weight" and "emb.weight" have the same length, so one can be renamed to the other in place. */
static void duplicate_name(model_fixture *fx) { memcpy(fx->buf + fx->name_pos[1], "emb.weight", 10); }
static void unknown_type(model_fixture *fx) { fixture_put32(fx->buf + fx->type_pos[0], 63); }
static void out_of_range_type(model_fixture *fx) { fixture_put32(fx->buf + fx->type_pos[0], 0x80000000u); }
static void wrong_size(model_fixture *fx)
{
    fixture_put64(fx->buf + fx->size_pos[0], fixture_get64(fx->buf + fx->size_pos[0]) - 4);
}
/* key.weight (8, 8) retyped q4_0: a row of 8 weights is not a whole block of 32. */
static void partial_block(model_fixture *fx) { fixture_put32(fx->buf + fx->type_pos[1], QR_TYPE_Q4_0); }
/* key.weight retyped q8_0 and reshaped (2, 32): whole blocks, but 2 × 34 bytes, not the 128 recorded. */
static void quant_wrong_size(model_fixture *fx)
{
    fixture_put32(fx->buf + fx->type_pos[1], QR_TYPE_Q8_0);
    fixture_put64(fx->buf + fx->dims_pos[1], 2);
    fixture_put64(fx->buf + fx->dims_pos[1] + 8, 32);
}
static void zero_ndims(model_fixture *fx) { fixture_put32(fx->buf + fx->ndims_pos[0], 0); }
static void many_ndims(model_fixture *fx) { fixture_put32(fx->buf + fx->ndims_pos[0], 5); }
static void nul_in_name(model_fixture *fx) { fx->buf[fx->name_pos[0] + 2] = 0; }
static void zero_name_len(model_fixture *fx) { fixture_put32(fx->buf + fx->name_len_pos[0], 0); }
static void huge_name_len(model_fixture *fx) { fixture_put32(fx->buf + fx->name_len_pos[0], 0xfffffff0u); }
static void nonzero_padding(model_fixture *fx)
{
    fx->buf[fixture_get64(fx->buf + 48) - 1] = 0xAA;
}
static void missing_required(model_fixture *fx)
{
    fx->buf[key_pos(fx, "model.n_layer") + 12] = 'z';
}
static void required_wrong_type(model_fixture *fx)
{
    fixture_put32(fx->buf + meta_type_pos(fx, "model.n_embd"), 2);
}
static void required_zero(model_fixture *fx)
{
    fixture_put64(fx->buf + meta_type_pos(fx, "model.vocab_size") + 4, 0);
}
static void unknown_arch(model_fixture *fx) { fx->buf[key_pos(fx, "spikegpt") + 7] = 'X'; }
static void duplicate_key(model_fixture *fx) { memcpy(fx->buf + key_pos(fx, "spike.emb"), "spike.tau", 9); }
static void bad_bool(model_fixture *fx) { fx->buf[meta_type_pos(fx, "spike.emb") + 4] = 2; }
static void unknown_meta_type(model_fixture *fx)
{
    fixture_put32(fx->buf + meta_type_pos(fx, "test.signed"), 9);
}
static void bad_key_char(model_fixture *fx) { fx->buf[key_pos(fx, "test.signed")] = 'T'; }
static void huge_string(model_fixture *fx)
{
    fixture_put64(fx->buf + meta_type_pos(fx, "general.architecture") + 4, UINT64_MAX - 3);
}
static void nan_f64(model_fixture *fx)
{
    fixture_put64(fx->buf + meta_type_pos(fx, "spike.tau") + 4, UINT64_C(0x7ff8000000000000));
}

const fixture_corruption fixture_corruptions[] = {
    {"empty_file", "shorter than", empty_file},
    {"short_header", "shorter than", short_header},
    {"bad_magic", "bad magic", bad_magic},
    {"bad_version", "version 2", bad_version},
    {"truncated_data", "truncated or padded", truncated_data},
    {"truncated_in_table", "runs past the end", truncated_in_table},
    {"truncated_in_meta", "runs past the end", truncated_in_meta},
    {"huge_tensor_count", "exceeds the limit", huge_tensor_count},
    {"huge_meta_count", "cannot fit", huge_meta_count},
    {"negative_meta_size", "metadata section", negative_meta_size},
    {"negative_table_size", "tensor table", negative_table_size},
    {"unaligned_data_offset", "not a multiple of 64", unaligned_data_offset},
    {"table_offset_gap", "does not follow the metadata", table_offset_gap},
    {"zero_dim", "zero dimension", zero_dim},
    {"overflow_dims", "overflows", overflow_dims},
    {"overlapping", "overlap", overlapping},
    {"unaligned_tensor", "not 64-byte aligned", unaligned_tensor},
    {"tensor_past_end", "outside the data section", tensor_past_end},
    {"tensor_huge_offset", "outside the data section", tensor_huge_offset},
    {"tensor_in_table", "outside the data section", tensor_in_table},
    {"duplicate_name", "appears twice", duplicate_name},
    {"unknown_type", "unknown storage type 63", unknown_type},
    {"out_of_range_type", "unknown storage type", out_of_range_type},
    {"wrong_size", "records", wrong_size},
    {"partial_block", "last dimension 8 is not a multiple of q4_0's block of 32", partial_block},
    {"quant_wrong_size", "records 128 bytes, its shape and type need 68", quant_wrong_size},
    {"zero_ndims", "0 dimensions", zero_ndims},
    {"many_ndims", "5 dimensions", many_ndims},
    {"nul_in_name", "NUL byte", nul_in_name},
    {"zero_name_len", "name of 0 bytes", zero_name_len},
    {"huge_name_len", "must be 1..255", huge_name_len},
    {"nonzero_padding", "padding", nonzero_padding},
    {"missing_required", "'model.n_layer' is missing", missing_required},
    {"required_wrong_type", "'model.n_embd' has value type", required_wrong_type},
    {"required_zero", "'model.vocab_size' is zero", required_zero},
    {"unknown_arch", "unknown architecture", unknown_arch},
    {"duplicate_key", "'spike.tau' appears twice", duplicate_key},
    {"bad_bool", "is a bool but holds 2", bad_bool},
    {"unknown_meta_type", "unknown value type 9", unknown_meta_type},
    {"bad_key_char", "outside [a-z0-9._-]", bad_key_char},
    {"huge_string", "only", huge_string},
    {"nan_f64", "not a finite number", nan_f64},
};
const size_t fixture_corruption_count = sizeof fixture_corruptions / sizeof fixture_corruptions[0];
