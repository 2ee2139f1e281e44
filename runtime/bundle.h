/* bundle.h: a bundle of variants — a directory holding one model file per variant and
 * `manifest.json`, which lists them (schema in runtime/BUNDLE.md).
 *
 * QSLM writes bundles and qslmd serves them, so both go through this one reader and writer. The
 * reader is strict: every field has one type and one meaning, unknown keys are refused, and an
 * error names the manifest and the JSON path of the fault (`variants[2].sha256`). Reading does
 * not touch the model files; qr_bundle_verify_variant hashes one when its turn comes. Signing
 * the manifest is in bundle_sign.h. */
#ifndef QR_BUNDLE_H
#define QR_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sha256.h"

#define QR_BUNDLE_FORMAT "qslm-bundle"
#define QR_BUNDLE_VERSION 1
#define QR_BUNDLE_MANIFEST "manifest.json"
#define QR_BUNDLE_MANIFEST_MAX ((size_t)4 << 20) /* bytes: a larger manifest is refused */
#define QR_BUNDLE_NAME_MAX 64                    /* bytes of a variant name */
#define QR_BUNDLE_FILE_MAX 255                   /* bytes of a file name */
#define QR_BUNDLE_MAX_VARIANTS 1024
#define QR_BUNDLE_MAX_INFEASIBLE 1024
#define QR_BUNDLE_CREATED_LEN 20                 /* "2026-12-05T10:00:00Z" */

/* A measured figure, or none (JSON null: not measured). */
typedef struct {
    bool known;
    double value;
} qr_bundle_metric;

/* One tensor of a quantization setting. */
typedef struct {
    char *tensor;    /* tensor name, as in the model file */
    uint32_t type;   /* storage type code (tensor_types.h); written as its name */
} qr_bundle_setting;

/* One classifier head's accuracy (metrics.accuracy_by_task). */
typedef struct {
    char *task;                       /* the head's task name: 1..32 of a-z 0-9 _ - */
    qr_bundle_metric accuracy;        /* 0..1, or unknown (JSON null) */
} qr_bundle_task_metric;

typedef struct {
    char *name;                       /* unique in the bundle, [A-Za-z0-9._-], 1..64 bytes */
    char *file;                       /* model file name inside the bundle directory */
    char sha256[QR_SHA256_HEX_SIZE];  /* of the file, lowercase hex */
    uint64_t file_bytes;              /* the file's size */
    uint64_t footprint_bytes;         /* resident while served (footprint.h), >= file_bytes */
    bool has_budget;                  /* false: built for no particular budget (JSON null) */
    uint64_t budget_bytes;            /* the memory budget it was built for, when has_budget */
    double bits_per_weight;           /* average over the weights, headers included */
    qr_bundle_setting *setting;       /* n_setting entries, in manifest order */
    size_t n_setting;
    struct {
        qr_bundle_metric ppl_test, ppl_valid; /* perplexity, >= 1 */
        qr_bundle_metric accuracy;            /* classification accuracy, 0..1 */
        qr_bundle_metric tokens_per_s;        /* decode speed, >= 0 */
        qr_bundle_metric energy_pj_per_token; /* energy.h's estimate, >= 0 */
        qr_bundle_task_metric *by_task;       /* accuracy_by_task, n_by_task entries in manifest
                                                 order (optional: 0 when absent) */
        size_t n_by_task;
    } metrics;
} qr_bundle_variant;

/* A budget point for which no variant met the constraints, and why. */
typedef struct {
    uint64_t budget_bytes;
    char *reason;
} qr_bundle_infeasible;

/* A manifest in memory. Every string and array is malloc'ed and owned by the struct:
 * qr_bundle_free releases them all. A bundle built by hand for qr_bundle_to_json may borrow its
 * strings instead, as long as its builder frees it. */
typedef struct {
    char *model_name;                        /* the model's human name */
    char *source_file;                       /* file name of the f32 master the variants come from */
    char source_sha256[QR_SHA256_HEX_SIZE];  /* its SHA-256 */
    char *created_by;                        /* the tool and version that wrote the bundle */
    char *created;                           /* when it was built, "YYYY-MM-DDTHH:MM:SSZ" (UTC);
                                                optional: NULL when the manifest has none */
    qr_bundle_variant *variants;             /* n_variants >= 1, in manifest order */
    size_t n_variants;
    qr_bundle_infeasible *infeasible;        /* may be empty */
    size_t n_infeasible;
} qr_bundle;

/* Parses and validates a manifest of len bytes; `name` (a path, or any label) starts every error
 * message. On failure *out is NULL and err says what is wrong and where (QR_ERR_FORMAT). */
qr_status qr_bundle_parse(const char *json, size_t len, const char *name, qr_bundle **out,
                          qr_error *err);

/* Reads DIR/manifest.json (at most QR_BUNDLE_MANIFEST_MAX bytes) and parses it. */
qr_status qr_bundle_load(const char *dir, qr_bundle **out, qr_error *err);

void qr_bundle_free(qr_bundle *b);

/* The manifest as pretty-printed JSON (2-space indent, keys in schema order, a final newline),
 * malloc'ed and NUL-terminated; *len excludes the NUL. The text is parsed back before it is
 * returned, so a bundle the reader would refuse is refused here (QR_ERR_INVALID, same message). */
qr_status qr_bundle_to_json(const qr_bundle *b, char **json, size_t *len, qr_error *err);

/* Writes DIR/manifest.json atomically (temporary file, fsync, rename), mode 0644. A signature
 * already beside it no longer matches: sign again (bundle_sign.h). */
qr_status qr_bundle_write(const qr_bundle *b, const char *dir, qr_error *err);

/* Checks variant `index`'s file, DIR/FILE: its size must be file_bytes and its SHA-256 the
 * manifest's. QR_ERR_IO if it cannot be read (missing, not a regular file), QR_ERR_FORMAT naming
 * the file and the expected and actual size or hash if it differs, QR_ERR_INVALID for an index
 * out of range. */
qr_status qr_bundle_verify_variant(const qr_bundle *b, const char *dir, size_t index,
                                   qr_error *err);

/* The index of the variant called name; false if there is none. */
bool qr_bundle_find_variant(const qr_bundle *b, const char *name, size_t *index);

/* True when a and b hold the same manifest (every field, in the same order). */
bool qr_bundle_equal(const qr_bundle *a, const qr_bundle *b);

/* Whether s is a `created` time as the manifest holds it: "YYYY-MM-DDTHH:MM:SSZ", a real UTC
 * date and time (no leap second). */
bool qr_bundle_created_valid(const char *s);

/* "DIR/NAME", malloc'ed (NULL when out of memory); DIR may end with '/'. */
char *qr_bundle_path(const char *dir, const char *name);

#endif
