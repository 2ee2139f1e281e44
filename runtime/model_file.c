/* model_file.c: mapping and validating a .qslm file.
 *
 * Every read goes through a bounds-checked cursor, every size is checked for overflow before
 * it is added, and nothing is handed out until the whole file has passed. Names and keys are
 * copied (with a NUL) into one allocation; tensor data stays in the mapping. */
#include "model_file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor_types.h"

struct qr_model_file {
    char *path;
    const uint8_t *base;      /* start of the image */
    uint64_t size;
    void *mapping;            /* non-NULL when we own an mmap */
    size_t mapping_size;
    qr_meta_entry *meta;
    size_t meta_count;
    qr_tensor_info *tensors;
    size_t tensor_count;
    const qr_tensor_info **by_name; /* tensors sorted by name, for look-up */
    char *strings;            /* NUL-terminated copies of keys, names and string values */
};

/* ---------------------------------------------------------------- little-endian cursor */

typedef struct {
    const uint8_t *p;
    uint64_t pos, end;        /* pos..end is what this cursor may read */
} cursor;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool take(cursor *c, uint64_t n, const uint8_t **out)
{
    if (n > c->end - c->pos)
        return false;
    *out = c->p + c->pos;
    c->pos += n;
    return true;
}

static bool take_u32(cursor *c, uint32_t *v)
{
    const uint8_t *p;
    if (!take(c, 4, &p))
        return false;
    *v = le32(p);
    return true;
}

static bool take_u64(cursor *c, uint64_t *v)
{
    const uint8_t *p;
    if (!take(c, 8, &p))
        return false;
    *v = le64(p);
    return true;
}

/* ---------------------------------------------------------------- string arena */

typedef struct {
    char *buf;
    size_t used, cap;
} arena;

/* Copies n bytes plus a NUL; returns the offset of the copy (pointers are fixed up at the end,
 * since the buffer may move while it grows). */
static bool arena_add(arena *a, const uint8_t *s, size_t n, size_t *offset)
{
    if (n > SIZE_MAX - a->used - 1)
        return false;
    if (a->used + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->used + n + 1)
            cap *= 2;
        char *nb = realloc(a->buf, cap);
        if (!nb)
            return false;
        a->buf = nb;
        a->cap = cap;
    }
    memcpy(a->buf + a->used, s, n);
    a->buf[a->used + n] = '\0';
    *offset = a->used;
    a->used += n + 1;
    return true;
}

/* ---------------------------------------------------------------- validation */

static bool key_char_ok(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == '-';
}

static int cmp_meta_key(const void *a, const void *b)
{
    return strcmp((*(const qr_meta_entry *const *)a)->key, (*(const qr_meta_entry *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const qr_tensor_info *const *)a)->name,
                  (*(const qr_tensor_info *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    uint64_t x = (*(const qr_tensor_info *const *)a)->offset;
    uint64_t y = (*(const qr_tensor_info *const *)b)->offset;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t file_size, meta_offset, meta_size, table_offset, table_size, data_offset;
    uint32_t version, tensor_count, meta_count;
} header;

static qr_status parse_header(qr_model_file *mf, header *h, qr_error *err)
{
    const char *path = mf->path;
    if (mf->size < QR_FILE_HEADER_SIZE)
        return qr_fail(err, QR_ERR_FORMAT, "%s: file is %llu bytes, shorter than the %u-byte header",
                       path, (unsigned long long)mf->size, QR_FILE_HEADER_SIZE);
    const uint8_t *p = mf->base;
    if (memcmp(p, QR_FILE_MAGIC, 4) != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: bad magic (not a .qslm model file)", path);
    h->version = le32(p + 4);
    h->file_size = le64(p + 8);
    h->meta_offset = le64(p + 16);
    h->meta_size = le64(p + 24);
    h->table_offset = le64(p + 32);
    h->table_size = le64(p + 40);
    h->data_offset = le64(p + 48);
    h->tensor_count = le32(p + 56);
    h->meta_count = le32(p + 60);

    if (h->version != QR_FILE_VERSION)
        return qr_fail(err, QR_ERR_FORMAT, "%s: unsupported format version %u (this build reads %u)",
                       path, h->version, QR_FILE_VERSION);
    if (h->file_size != mf->size)
        return qr_fail(err, QR_ERR_FORMAT,
                       "%s: header says the file is %llu bytes but it is %llu (truncated or padded)",
                       path, (unsigned long long)h->file_size, (unsigned long long)mf->size);
    if (h->meta_offset != QR_FILE_HEADER_SIZE)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata offset %llu, expected %u", path,
                       (unsigned long long)h->meta_offset, QR_FILE_HEADER_SIZE);
    if (h->meta_size > mf->size - h->meta_offset)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata section (%llu bytes) runs past the end of the file",
                       path, (unsigned long long)h->meta_size);
    if (h->table_offset != h->meta_offset + h->meta_size)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor table offset %llu does not follow the metadata (%llu)",
                       path, (unsigned long long)h->table_offset,
                       (unsigned long long)(h->meta_offset + h->meta_size));
    if (h->table_size > mf->size - h->table_offset)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor table (%llu bytes) runs past the end of the file",
                       path, (unsigned long long)h->table_size);
    uint64_t table_end = h->table_offset + h->table_size;
    if (h->data_offset % QR_FILE_ALIGN != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: data offset %llu is not a multiple of %u", path,
                       (unsigned long long)h->data_offset, QR_FILE_ALIGN);
    if (h->data_offset < table_end || h->data_offset - table_end >= QR_FILE_ALIGN)
        return qr_fail(err, QR_ERR_FORMAT, "%s: data offset %llu does not follow the tensor table (ends at %llu)",
                       path, (unsigned long long)h->data_offset, (unsigned long long)table_end);
    if (h->data_offset > mf->size)
        return qr_fail(err, QR_ERR_FORMAT, "%s: data offset %llu is past the end of the file", path,
                       (unsigned long long)h->data_offset);
    for (uint64_t i = table_end; i < h->data_offset; i++)
        if (mf->base[i] != 0)
            return qr_fail(err, QR_ERR_FORMAT, "%s: non-zero byte in the padding at offset %llu", path,
                           (unsigned long long)i);
    if (h->tensor_count > QR_MAX_TENSORS)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor count %u exceeds the limit %u", path,
                       h->tensor_count, QR_MAX_TENSORS);
    if (h->meta_count > QR_MAX_META)
        return qr_fail(err, QR_ERR_FORMAT, "%s: metadata count %u exceeds the limit %u", path,
                       h->meta_count, QR_MAX_META);
    /* Every entry takes at least 9 bytes: a count that cannot fit is refused before allocating. */
    if ((uint64_t)h->meta_count * 9 > h->meta_size)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %u metadata entries cannot fit in %llu bytes", path,
                       h->meta_count, (unsigned long long)h->meta_size);
    if ((uint64_t)h->tensor_count * 37 > h->table_size)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %u tensor entries cannot fit in %llu bytes", path,
                       h->tensor_count, (unsigned long long)h->table_size);
    return QR_OK;
}

/* Reads a length-prefixed name (u32 length, bytes) and copies it into the arena. `what` names
 * the entry for errors. */
static qr_status read_name(qr_model_file *mf, cursor *c, arena *a, bool key_rules, const char *what,
                           uint32_t index, size_t *offset, qr_error *err)
{
    uint32_t len;
    const uint8_t *s;
    uint64_t at = c->pos;
    if (!take_u32(c, &len))
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s %u truncated at offset %llu (name length)",
                       mf->path, what, index, (unsigned long long)at);
    if (len == 0 || len > QR_MAX_NAME_LEN)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s %u has a name of %u bytes (must be 1..%u)",
                       mf->path, what, index, len, QR_MAX_NAME_LEN);
    if (!take(c, len, &s))
        return qr_fail(err, QR_ERR_FORMAT, "%s: %s %u truncated at offset %llu (name)", mf->path,
                       what, index, (unsigned long long)c->pos);
    for (uint32_t i = 0; i < len; i++) {
        if (s[i] == 0)
            return qr_fail(err, QR_ERR_FORMAT, "%s: %s %u has a NUL byte in its name", mf->path,
                           what, index);
        if (key_rules && !key_char_ok(s[i]))
            return qr_fail(err, QR_ERR_FORMAT, "%s: %s %u: key has a character outside [a-z0-9._-]",
                           mf->path, what, index);
    }
    if (!arena_add(a, s, len, offset))
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory reading names", mf->path);
    return QR_OK;
}

/* String offsets into the arena, kept while parsing and turned into pointers at the end. */
typedef struct {
    size_t key, str;
    bool has_str;
} meta_offsets;

static qr_status parse_meta(qr_model_file *mf, const header *h, arena *a, meta_offsets *offs,
                            qr_error *err)
{
    cursor c = {mf->base, h->meta_offset, h->meta_offset + h->meta_size};
    for (uint32_t i = 0; i < h->meta_count; i++) {
        qr_meta_entry *e = &mf->meta[i];
        qr_status st = read_name(mf, &c, a, true, "metadata entry", i, &offs[i].key, err);
        if (st)
            return st;
        uint32_t type;
        if (!take_u32(&c, &type))
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata entry %u truncated (value type)",
                           mf->path, i);
        const char *key = a->buf + offs[i].key;
        e->type = (qr_meta_type)type;
        const uint8_t *v;
        switch (type) {
        case QR_META_U64:
        case QR_META_I64:
        case QR_META_F64:
            if (!take(&c, 8, &v))
                return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' truncated (value)", mf->path, key);
            e->num.u64 = le64(v);
            if (type == QR_META_F64) {
                double d;
                memcpy(&d, &e->num.u64, sizeof d);
                if (!isfinite(d))
                    return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' is not a finite number",
                                   mf->path, key);
                e->num.f64 = d;
            }
            break;
        case QR_META_BOOL:
            if (!take(&c, 1, &v))
                return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' truncated (value)", mf->path, key);
            if (v[0] > 1)
                return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' is a bool but holds %u",
                               mf->path, key, v[0]);
            e->num.b = v[0] == 1;
            break;
        case QR_META_STRING:
        case QR_META_BYTES: {
            uint64_t len;
            if (!take_u64(&c, &len))
                return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' truncated (length)", mf->path, key);
            if (!take(&c, len, &v))
                return qr_fail(err, QR_ERR_FORMAT,
                               "%s: metadata '%s' says %llu bytes but only %llu remain in the section",
                               mf->path, key, (unsigned long long)len,
                               (unsigned long long)(c.end - c.pos));
            e->len = len;
            if (type == QR_META_STRING) {
                if (memchr(v, 0, len))
                    return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' has a NUL byte in its string",
                                   mf->path, key);
                if (!arena_add(a, v, len, &offs[i].str))
                    return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory reading metadata", mf->path);
                offs[i].has_str = true;
            } else {
                e->str = (const char *)v;
            }
            break;
        }
        default:
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' has unknown value type %u",
                           mf->path, key, type);
        }
    }
    if (c.pos != c.end)
        return qr_fail(err, QR_ERR_FORMAT, "%s: %llu stray bytes after the last metadata entry",
                       mf->path, (unsigned long long)(c.end - c.pos));
    return QR_OK;
}

static qr_status parse_tensor(qr_model_file *mf, const header *h, cursor *c, arena *a, uint32_t i,
                              size_t *name_offset, qr_error *err)
{
    qr_tensor_info *t = &mf->tensors[i];
    qr_status st = read_name(mf, c, a, false, "tensor", i, name_offset, err);
    if (st)
        return st;
    const char *name = a->buf + *name_offset;
    if (!take_u32(c, &t->type) || !take_u32(c, &t->n_dims))
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' truncated (type, dims)", mf->path, name);
    const qr_type_info *ti = qr_type_get(t->type);
    if (!ti)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' has unknown storage type %u", mf->path,
                       name, t->type);
    if (t->n_dims < 1 || t->n_dims > QR_MAX_DIMS)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (must be 1..%d)",
                       mf->path, name, t->n_dims, QR_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!take_u64(c, &t->dims[d]))
            return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' truncated (dims)", mf->path, name);
        if (t->dims[d] == 0)
            return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' has a zero dimension", mf->path, name);
        if (t->dims[d] > (UINT64_C(1) << 62) / n)
            return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' has an element count that overflows",
                           mf->path, name);
        n *= t->dims[d];
    }
    t->n_elements = n;
    if (t->dims[t->n_dims - 1] % ti->block_weights != 0)
        return qr_fail(err, QR_ERR_FORMAT,
                       "%s: tensor '%s': last dimension %llu is not a multiple of %s's block of %u",
                       mf->path, name, (unsigned long long)t->dims[t->n_dims - 1], ti->name,
                       ti->block_weights);
    if (!take_u64(c, &t->offset) || !take_u64(c, &t->size))
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' truncated (offset, size)", mf->path, name);
    uint64_t expect;
    if (!qr_type_bytes(t->type, n, &expect))
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' size overflows", mf->path, name);
    if (t->size != expect)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' records %llu bytes, its shape and type need %llu",
                       mf->path, name, (unsigned long long)t->size, (unsigned long long)expect);
    if (t->offset % QR_FILE_ALIGN != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' at offset %llu is not %u-byte aligned",
                       mf->path, name, (unsigned long long)t->offset, QR_FILE_ALIGN);
    if (t->offset < h->data_offset || t->offset > mf->size || t->size > mf->size - t->offset)
        return qr_fail(err, QR_ERR_FORMAT,
                       "%s: tensor '%s' (offset %llu, %llu bytes) lies outside the data section (%llu..%llu)",
                       mf->path, name, (unsigned long long)t->offset, (unsigned long long)t->size,
                       (unsigned long long)h->data_offset, (unsigned long long)mf->size);
    t->data = mf->base + t->offset;
    return QR_OK;
}

static qr_status check_required_meta(qr_model_file *mf, qr_error *err)
{
    static const struct {
        const char *key;
        qr_meta_type type;
    } required[] = {
        {"general.architecture", QR_META_STRING},
        {"model.n_layer", QR_META_U64},
        {"model.n_embd", QR_META_U64},
        {"model.vocab_size", QR_META_U64},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const qr_meta_entry *e = qr_model_file_meta(mf, required[i].key);
        if (!e)
            return qr_fail(err, QR_ERR_FORMAT, "%s: required metadata '%s' is missing", mf->path,
                           required[i].key);
        if (e->type != required[i].type)
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' has value type %d, expected %d",
                           mf->path, required[i].key, (int)e->type, (int)required[i].type);
        if (e->type == QR_META_U64 && e->num.u64 == 0)
            return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' is zero", mf->path, required[i].key);
    }
    const char *arch = qr_model_file_meta(mf, "general.architecture")->str;
    if (strcmp(arch, "spikegpt") != 0 && strcmp(arch, "rwkv4") != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: unknown architecture '%s' (expected spikegpt or rwkv4)",
                       mf->path, arch);
    return QR_OK;
}

/* Parses everything after the mapping exists; on failure the caller frees mf. */
static qr_status parse_all(qr_model_file *mf, qr_error *err)
{
    header h = {0};
    qr_status st = parse_header(mf, &h, err);
    if (st)
        return st;

    arena a = {0};
    meta_offsets *moffs = calloc(h.meta_count ? h.meta_count : 1, sizeof *moffs);
    size_t *toffs = calloc(h.tensor_count ? h.tensor_count : 1, sizeof *toffs);
    mf->meta = calloc(h.meta_count ? h.meta_count : 1, sizeof *mf->meta);
    mf->tensors = calloc(h.tensor_count ? h.tensor_count : 1, sizeof *mf->tensors);
    mf->by_name = calloc(h.tensor_count ? h.tensor_count : 1, sizeof *mf->by_name);
    const void **sorted = calloc(h.tensor_count + h.meta_count + 1, sizeof *sorted);
    if (!moffs || !toffs || !mf->meta || !mf->tensors || !mf->by_name || !sorted) {
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory for %u tensors", mf->path, h.tensor_count);
        goto out;
    }
    mf->meta_count = h.meta_count;
    mf->tensor_count = h.tensor_count;

    st = parse_meta(mf, &h, &a, moffs, err);
    if (st)
        goto out;
    cursor c = {mf->base, h.table_offset, h.table_offset + h.table_size};
    for (uint32_t i = 0; i < h.tensor_count; i++) {
        st = parse_tensor(mf, &h, &c, &a, i, &toffs[i], err);
        if (st)
            goto out;
    }
    if (c.pos != c.end) {
        st = qr_fail(err, QR_ERR_FORMAT, "%s: %llu stray bytes after the last tensor entry", mf->path,
                     (unsigned long long)(c.end - c.pos));
        goto out;
    }

    /* The arena is complete: turn offsets into pointers. */
    mf->strings = a.buf;
    a.buf = NULL;
    for (size_t i = 0; i < mf->meta_count; i++) {
        mf->meta[i].key = mf->strings + moffs[i].key;
        if (moffs[i].has_str)
            mf->meta[i].str = mf->strings + moffs[i].str;
    }
    for (size_t i = 0; i < mf->tensor_count; i++)
        mf->tensors[i].name = mf->strings + toffs[i];

    /* Unique keys. */
    for (size_t i = 0; i < mf->meta_count; i++)
        sorted[i] = &mf->meta[i];
    qsort(sorted, mf->meta_count, sizeof *sorted, cmp_meta_key);
    for (size_t i = 1; i < mf->meta_count; i++) {
        if (cmp_meta_key(&sorted[i - 1], &sorted[i]) == 0) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: metadata key '%s' appears twice", mf->path,
                         ((const qr_meta_entry *)sorted[i])->key);
            goto out;
        }
    }
    /* Unique names; by_name stays sorted for binary-search look-ups. */
    for (size_t i = 0; i < mf->tensor_count; i++)
        mf->by_name[i] = &mf->tensors[i];
    qsort(mf->by_name, mf->tensor_count, sizeof *mf->by_name, cmp_tensor_name);
    for (size_t i = 1; i < mf->tensor_count; i++) {
        if (strcmp(mf->by_name[i - 1]->name, mf->by_name[i]->name) == 0) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: tensor name '%s' appears twice", mf->path,
                         mf->by_name[i]->name);
            goto out;
        }
    }
    /* No overlaps: sorted by offset, each must end before the next begins. */
    for (size_t i = 0; i < mf->tensor_count; i++)
        sorted[i] = &mf->tensors[i];
    qsort(sorted, mf->tensor_count, sizeof *sorted, cmp_tensor_offset);
    for (size_t i = 1; i < mf->tensor_count; i++) {
        const qr_tensor_info *prev = sorted[i - 1], *cur = sorted[i];
        if (prev->offset + prev->size > cur->offset) {
            st = qr_fail(err, QR_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", mf->path,
                         prev->name, cur->name);
            goto out;
        }
    }
    st = check_required_meta(mf, err);
out:
    free(a.buf);
    free(moffs);
    free(toffs);
    free(sorted);
    return st;
}

/* ---------------------------------------------------------------- open / close */

static qr_model_file *new_model_file(const char *name)
{
    qr_model_file *mf = calloc(1, sizeof *mf);
    if (!mf)
        return NULL;
    mf->path = strdup(name ? name : "(memory)");
    if (!mf->path) {
        free(mf);
        return NULL;
    }
    return mf;
}

qr_status qr_model_file_from_memory(const void *data, size_t size, const char *name,
                                    qr_model_file **out, qr_error *err)
{
    *out = NULL;
    qr_model_file *mf = new_model_file(name);
    if (!mf)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name ? name : "(memory)");
    mf->base = data;
    mf->size = size;
    qr_status st = parse_all(mf, err);
    if (st) {
        qr_model_file_close(mf);
        return st;
    }
    *out = mf;
    return QR_OK;
}

qr_status qr_model_file_open(const char *path, qr_model_file **out, qr_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return qr_fail(err, QR_ERR_IO, "%s: not a regular file%s%s", path, e ? ": " : "",
                       e ? strerror(e) : "");
    }
    qr_model_file *mf = new_model_file(path);
    if (!mf) {
        close(fd);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    }
    mf->size = (uint64_t)st.st_size;
    if (st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            qr_model_file_close(mf);
            return qr_fail(err, QR_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        mf->mapping = map;
        mf->mapping_size = (size_t)st.st_size;
        mf->base = map;
    } else {
        mf->base = (const uint8_t *)"";
    }
    close(fd);
    qr_status s = parse_all(mf, err);
    if (s) {
        qr_model_file_close(mf);
        return s;
    }
    *out = mf;
    return QR_OK;
}

void qr_model_file_release(const qr_model_file *mf, const void *data, uint64_t bytes)
{
    if (!mf->mapping || !data || bytes == 0)
        return;
    uintptr_t lo = (uintptr_t)data, hi = lo + (uintptr_t)bytes, map = (uintptr_t)mf->mapping;
    if (lo < map || hi > map + mf->mapping_size)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + page - 1) / page * page;
    hi = hi / page * page;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: a failure costs only memory */
}

void qr_model_file_close(qr_model_file *mf)
{
    if (!mf)
        return;
    if (mf->mapping)
        munmap(mf->mapping, mf->mapping_size);
    free(mf->meta);
    free(mf->tensors);
    free(mf->by_name);
    free(mf->strings);
    free(mf->path);
    free(mf);
}

/* ---------------------------------------------------------------- look-ups */

const char *qr_model_file_path(const qr_model_file *mf) { return mf->path; }
uint64_t qr_model_file_size(const qr_model_file *mf) { return mf->size; }
size_t qr_model_file_tensor_count(const qr_model_file *mf) { return mf->tensor_count; }
size_t qr_model_file_meta_count(const qr_model_file *mf) { return mf->meta_count; }

const qr_tensor_info *qr_model_file_tensor(const qr_model_file *mf, size_t index)
{
    return index < mf->tensor_count ? &mf->tensors[index] : NULL;
}

const qr_meta_entry *qr_model_file_meta_at(const qr_model_file *mf, size_t index)
{
    return index < mf->meta_count ? &mf->meta[index] : NULL;
}

const qr_tensor_info *qr_model_file_find_tensor(const qr_model_file *mf, const char *name)
{
    size_t lo = 0, hi = mf->tensor_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(mf->by_name[mid]->name, name);
        if (c == 0)
            return mf->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Metadata is a handful of entries: a linear scan is simplest and fast enough. */
const qr_meta_entry *qr_model_file_meta(const qr_model_file *mf, const char *key)
{
    for (size_t i = 0; i < mf->meta_count; i++)
        if (mf->meta[i].key && strcmp(mf->meta[i].key, key) == 0)
            return &mf->meta[i];
    return NULL;
}

static qr_status wrong_type(const qr_model_file *mf, const char *key, const char *want, qr_error *err)
{
    return qr_fail(err, QR_ERR_FORMAT, "%s: metadata '%s' must be a %s", mf->path, key, want);
}

qr_status qr_model_file_get_u64(const qr_model_file *mf, const char *key, uint64_t dflt,
                                uint64_t *out, qr_error *err)
{
    const qr_meta_entry *e = qr_model_file_meta(mf, key);
    if (!e) {
        *out = dflt;
        return QR_OK;
    }
    if (e->type != QR_META_U64)
        return wrong_type(mf, key, "u64", err);
    *out = e->num.u64;
    return QR_OK;
}

qr_status qr_model_file_get_f64(const qr_model_file *mf, const char *key, double dflt,
                                double *out, qr_error *err)
{
    const qr_meta_entry *e = qr_model_file_meta(mf, key);
    if (!e) {
        *out = dflt;
        return QR_OK;
    }
    if (e->type != QR_META_F64)
        return wrong_type(mf, key, "f64", err);
    *out = e->num.f64;
    return QR_OK;
}

qr_status qr_model_file_get_bool(const qr_model_file *mf, const char *key, bool dflt, bool *out,
                                 qr_error *err)
{
    const qr_meta_entry *e = qr_model_file_meta(mf, key);
    if (!e) {
        *out = dflt;
        return QR_OK;
    }
    if (e->type != QR_META_BOOL)
        return wrong_type(mf, key, "bool", err);
    *out = e->num.b;
    return QR_OK;
}

qr_status qr_model_file_get_blob(const qr_model_file *mf, const char *key, const char **out,
                                 uint64_t *len, qr_error *err)
{
    const qr_meta_entry *e = qr_model_file_meta(mf, key);
    *out = NULL;
    *len = 0;
    if (!e)
        return QR_OK;
    if (e->type != QR_META_STRING && e->type != QR_META_BYTES)
        return wrong_type(mf, key, "string or bytes", err);
    *out = e->str;
    *len = e->len;
    return QR_OK;
}
