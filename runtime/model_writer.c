/* model_writer.c: laying out and writing a .qslm file.
 *
 * Layout is computed in one pass (metadata size, table size, aligned data offsets), then the
 * header, sections and data are written in file order, so any stream works, pipes included. */
#include "model_writer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_file.h"
#include "tensor_types.h"

typedef struct {
    char *key;
    qr_meta_type type;
    uint64_t num;        /* u64/i64/f64 bits/bool */
    uint8_t *bytes;      /* string/bytes */
    uint64_t len;
} w_meta;

typedef struct {
    char *name;
    uint32_t type, n_dims;
    uint64_t dims[QR_MAX_DIMS];
    const void *data;
    uint64_t size;
} w_tensor;

struct qr_model_writer {
    w_meta *meta;
    size_t meta_count, meta_cap;
    w_tensor *tensors;
    size_t tensor_count, tensor_cap;
};

qr_model_writer *qr_model_writer_new(void)
{
    return calloc(1, sizeof(qr_model_writer));
}

void qr_model_writer_free(qr_model_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].bytes);
    }
    for (size_t i = 0; i < w->tensor_count; i++)
        free(w->tensors[i].name);
    free(w->meta);
    free(w->tensors);
    free(w);
}

static bool valid_key(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > QR_MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Finds or appends the entry for key, releasing any previous value. */
static qr_status meta_slot(qr_model_writer *w, const char *key, w_meta **out, qr_error *err)
{
    if (!valid_key(key))
        return qr_fail(err, QR_ERR_INVALID, "metadata key '%s' is empty, too long or has a character outside [a-z0-9._-]", key);
    for (size_t i = 0; i < w->meta_count; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].bytes);
            w->meta[i].bytes = NULL;
            w->meta[i].len = 0;
            *out = &w->meta[i];
            return QR_OK;
        }
    }
    if (w->meta_count >= QR_MAX_META)
        return qr_fail(err, QR_ERR_INVALID, "too many metadata entries (limit %u)", QR_MAX_META);
    if (w->meta_count == w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap * 2 : 16;
        w_meta *nm = realloc(w->meta, cap * sizeof *nm);
        if (!nm)
            return qr_fail(err, QR_ERR_NOMEM, "out of memory adding metadata '%s'", key);
        w->meta = nm;
        w->meta_cap = cap;
    }
    w_meta *m = &w->meta[w->meta_count];
    memset(m, 0, sizeof *m);
    m->key = strdup(key);
    if (!m->key)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory adding metadata '%s'", key);
    w->meta_count++;
    *out = m;
    return QR_OK;
}

static qr_status set_num(qr_model_writer *w, const char *key, qr_meta_type type, uint64_t bits,
                         qr_error *err)
{
    w_meta *m;
    qr_status st = meta_slot(w, key, &m, err);
    if (st)
        return st;
    m->type = type;
    m->num = bits;
    return QR_OK;
}

qr_status qr_model_writer_set_u64(qr_model_writer *w, const char *key, uint64_t v, qr_error *err)
{
    return set_num(w, key, QR_META_U64, v, err);
}

qr_status qr_model_writer_set_i64(qr_model_writer *w, const char *key, int64_t v, qr_error *err)
{
    return set_num(w, key, QR_META_I64, (uint64_t)v, err);
}

qr_status qr_model_writer_set_f64(qr_model_writer *w, const char *key, double v, qr_error *err)
{
    if (!isfinite(v))
        return qr_fail(err, QR_ERR_INVALID, "metadata '%s': value is not finite", key);
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return set_num(w, key, QR_META_F64, bits, err);
}

qr_status qr_model_writer_set_bool(qr_model_writer *w, const char *key, bool v, qr_error *err)
{
    return set_num(w, key, QR_META_BOOL, v ? 1 : 0, err);
}

static qr_status set_blob(qr_model_writer *w, const char *key, qr_meta_type type, const void *v,
                          uint64_t len, qr_error *err)
{
    if (len > SIZE_MAX - 1)
        return qr_fail(err, QR_ERR_INVALID, "metadata '%s': value too large", key);
    uint8_t *copy = malloc(len ? (size_t)len : 1);
    if (!copy)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for metadata '%s'", key);
    if (len)
        memcpy(copy, v, (size_t)len);
    w_meta *m;
    qr_status st = meta_slot(w, key, &m, err);
    if (st) {
        free(copy);
        return st;
    }
    m->type = type;
    m->bytes = copy;
    m->len = len;
    return QR_OK;
}

qr_status qr_model_writer_set_string(qr_model_writer *w, const char *key, const char *v,
                                     qr_error *err)
{
    return set_blob(w, key, QR_META_STRING, v, strlen(v), err);
}

qr_status qr_model_writer_set_bytes(qr_model_writer *w, const char *key, const void *v,
                                    uint64_t len, qr_error *err)
{
    return set_blob(w, key, QR_META_BYTES, v, len, err);
}

qr_status qr_model_writer_add_tensor(qr_model_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *dims, const void *data,
                                     uint64_t size, qr_error *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > QR_MAX_NAME_LEN)
        return qr_fail(err, QR_ERR_INVALID, "tensor name '%s' must be 1..%u bytes", name, QR_MAX_NAME_LEN);
    const qr_type_info *ti = qr_type_get(type);
    if (!ti)
        return qr_fail(err, QR_ERR_INVALID, "tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > QR_MAX_DIMS)
        return qr_fail(err, QR_ERR_INVALID, "tensor '%s': %u dimensions (must be 1..%d)", name, n_dims, QR_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (dims[d] == 0 || dims[d] > (UINT64_C(1) << 62) / n)
            return qr_fail(err, QR_ERR_INVALID, "tensor '%s': dimension %u is zero or the shape overflows", name, d);
        n *= dims[d];
    }
    uint64_t expect;
    if (dims[n_dims - 1] % ti->block_weights != 0 || !qr_type_bytes(type, n, &expect))
        return qr_fail(err, QR_ERR_INVALID, "tensor '%s': last dimension %llu is not a multiple of %s's block of %u",
                       name, (unsigned long long)dims[n_dims - 1], ti->name, ti->block_weights);
    if (size != expect)
        return qr_fail(err, QR_ERR_INVALID, "tensor '%s': %llu bytes given, shape and type need %llu",
                       name, (unsigned long long)size, (unsigned long long)expect);
    for (size_t i = 0; i < w->tensor_count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return qr_fail(err, QR_ERR_INVALID, "tensor '%s' added twice", name);
    if (w->tensor_count >= QR_MAX_TENSORS)
        return qr_fail(err, QR_ERR_INVALID, "too many tensors (limit %u)", QR_MAX_TENSORS);
    if (w->tensor_count == w->tensor_cap) {
        size_t cap = w->tensor_cap ? w->tensor_cap * 2 : 64;
        w_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt)
            return qr_fail(err, QR_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        w->tensors = nt;
        w->tensor_cap = cap;
    }
    w_tensor *t = &w->tensors[w->tensor_count];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory adding tensor '%s'", name);
    t->type = type;
    t->n_dims = n_dims;
    memcpy(t->dims, dims, n_dims * sizeof *dims);
    t->data = data;
    t->size = size;
    w->tensor_count++;
    return QR_OK;
}

/* ---------------------------------------------------------------- emitting */

static uint64_t align_up(uint64_t v)
{
    return (v + QR_FILE_ALIGN - 1) / QR_FILE_ALIGN * QR_FILE_ALIGN;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool write_all(FILE *f, const void *p, uint64_t n)
{
    return n == 0 || fwrite(p, 1, (size_t)n, f) == (size_t)n;
}

static bool write_u32(FILE *f, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    return write_all(f, b, 4);
}

static bool write_u64(FILE *f, uint64_t v)
{
    uint8_t b[8];
    put64(b, v);
    return write_all(f, b, 8);
}

static bool write_zeros(FILE *f, uint64_t n)
{
    static const uint8_t zeros[QR_FILE_ALIGN];
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        if (!write_all(f, zeros, k))
            return false;
        n -= k;
    }
    return true;
}

static uint64_t meta_entry_size(const w_meta *m)
{
    uint64_t n = 4 + strlen(m->key) + 4;
    switch (m->type) {
    case QR_META_BOOL: return n + 1;
    case QR_META_STRING:
    case QR_META_BYTES: return n + 8 + m->len;
    default: return n + 8;
    }
}

qr_status qr_model_writer_emit(const qr_model_writer *w, FILE *f, const char *name, qr_error *err)
{
    uint64_t meta_size = 0, table_size = 0;
    for (size_t i = 0; i < w->meta_count; i++)
        meta_size += meta_entry_size(&w->meta[i]);
    for (size_t i = 0; i < w->tensor_count; i++)
        table_size += 4 + strlen(w->tensors[i].name) + 4 + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 16;
    uint64_t table_offset = QR_FILE_HEADER_SIZE + meta_size;
    uint64_t data_offset = align_up(table_offset + table_size);
    uint64_t end = data_offset;
    for (size_t i = 0; i < w->tensor_count; i++)
        end = align_up(end) + w->tensors[i].size;
    uint64_t file_size = end;

    uint8_t h[QR_FILE_HEADER_SIZE] = {0};
    memcpy(h, QR_FILE_MAGIC, 4);
    put32(h + 4, QR_FILE_VERSION);
    put64(h + 8, file_size);
    put64(h + 16, QR_FILE_HEADER_SIZE);
    put64(h + 24, meta_size);
    put64(h + 32, table_offset);
    put64(h + 40, table_size);
    put64(h + 48, data_offset);
    put32(h + 56, (uint32_t)w->tensor_count);
    put32(h + 60, (uint32_t)w->meta_count);
    bool ok = write_all(f, h, sizeof h);

    for (size_t i = 0; ok && i < w->meta_count; i++) {
        const w_meta *m = &w->meta[i];
        uint32_t klen = (uint32_t)strlen(m->key);
        ok = write_u32(f, klen) && write_all(f, m->key, klen) && write_u32(f, m->type);
        if (!ok)
            break;
        if (m->type == QR_META_BOOL) {
            uint8_t b = (uint8_t)m->num;
            ok = write_all(f, &b, 1);
        } else if (m->type == QR_META_STRING || m->type == QR_META_BYTES) {
            ok = write_u64(f, m->len) && write_all(f, m->bytes, m->len);
        } else {
            ok = write_u64(f, m->num);
        }
    }
    uint64_t offset = data_offset;
    for (size_t i = 0; ok && i < w->tensor_count; i++) {
        const w_tensor *t = &w->tensors[i];
        uint32_t nlen = (uint32_t)strlen(t->name);
        offset = align_up(offset);
        ok = write_u32(f, nlen) && write_all(f, t->name, nlen) && write_u32(f, t->type) &&
             write_u32(f, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++)
            ok = write_u64(f, t->dims[d]);
        ok = ok && write_u64(f, offset) && write_u64(f, t->size);
        offset += t->size;
    }
    ok = ok && write_zeros(f, data_offset - (table_offset + table_size));
    offset = data_offset;
    for (size_t i = 0; ok && i < w->tensor_count; i++) {
        uint64_t aligned = align_up(offset);
        ok = write_zeros(f, aligned - offset) && write_all(f, w->tensors[i].data, w->tensors[i].size);
        offset = aligned + w->tensors[i].size;
    }
    if (!ok || fflush(f) != 0)
        return qr_fail(err, QR_ERR_IO, "%s: write failed: %s", name, strerror(errno));
    return QR_OK;
}

qr_status qr_model_writer_write(const qr_model_writer *w, const char *path, qr_error *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        qr_status st = qr_fail(err, QR_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    qr_status st = qr_model_writer_emit(w, f, path, err);
    if (st == QR_OK && fsync(fileno(f)) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == QR_OK)
        st = qr_fail(err, QR_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == QR_OK && rename(tmp, path) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != QR_OK)
        unlink(tmp);
    free(tmp);
    return st;
}
