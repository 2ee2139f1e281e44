/* variants.c: opening a bundle (manifest + every hash + the tokenizer) and loading one variant
 * into a read-only anonymous image. See variants.h for why an image and not a file mapping. */
#include "variants.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "footprint.h"
#include "sha256.h"

#define READ_CHUNK (256u << 10) /* read, then dropped from the page cache */

static void bundle_free(qd_bundle *b)
{
    if (!b)
        return;
    qr_tokenizer_free(b->tokenizer);
    for (size_t i = 0; b->heads && i < b->manifest->n_variants; i++)
        qr_heads_free(&b->heads[i]);
    free(b->heads);
    free(b->footprint);
    qr_bundle_free(b->manifest);
    free(b->usable);
    free(b->refusal);
    free(b->dir);
    free(b->source);
    free(b);
}

/* Drops what the kernel caches of the file at path: qslmd serves from anonymous images, so
 * cached file pages would only sit in its cgroup's memory.current (advice; errors ignored). */
static void drop_page_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* The classifier heads named in the variant file at path (the variants op lists them), and its
 * footprint served with batches of batch sequences and chunks of chunk tokens (footprint.h). */
static qr_status load_facts(const char *path, size_t batch, size_t chunk, qr_heads *heads, uint64_t *footprint,
                            qr_error *err)
{
    qr_model_file *mf = NULL;
    *footprint = 0;
    qr_status s = qr_model_file_open(path, &mf, err);
    if (s)
        return s;
    s = qr_heads_read(mf, heads, err);
    if (s == QR_OK) {
        qr_model *m = NULL;
        s = qr_model_bind(mf, &m, err);
        if (s == QR_OK)
            *footprint = qr_footprint_serving(m, batch, chunk).total;
        qr_model_free(m);
        if (s)
            qr_heads_free(heads);
    }
    qr_model_file_close(mf);
    drop_page_cache(path);
    return s;
}

/* The tokenizer embedded in the variant file at path. */
static qr_status load_tokenizer(const char *path, qr_tokenizer **out, qr_error *err)
{
    qr_model_file *mf = NULL;
    qr_status s = qr_model_file_open(path, &mf, err);
    if (s)
        return s;
    const char *json = NULL;
    uint64_t len = 0;
    s = qr_model_file_get_blob(mf, "tokenizer.json", &json, &len, err);
    if (s == QR_OK && !json)
        s = qr_fail(err, QR_ERR_FORMAT, "%s: embeds no tokenizer (tokenizer.json)", path);
    if (s == QR_OK)
        s = qr_tokenizer_load_hf_json(json, (size_t)len, path, out, err);
    qr_model_file_close(mf);
    drop_page_cache(path);
    return s;
}

void qd_bundle_refusals(const qd_bundle *b, char *buf, size_t size)
{
    size_t used = 0;
    if (size)
        buf[0] = '\0';
    for (size_t i = 0; i < b->manifest->n_variants && used < size; i++) {
        if (b->usable[i])
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", b->refusal[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

void qd_bundle_where(const qd_bundle *b, char *buf, size_t size)
{
    if (strcmp(b->source, b->dir) == 0)
        snprintf(buf, size, "%s", b->dir);
    else
        snprintf(buf, size, "%s -> %s", b->source, b->dir);
}

/* The manifest, read once from the resolved directory and, with keys, checked before it is
 * parsed (runtime/bundle_trust.h); the signer's word for status. */
static qr_status open_manifest(qd_bundle *b, const qd_trust *trust, qr_error *err)
{
    qr_sig_result res;
    qr_status s = qr_bundle_load_trusted(b->dir, trust ? (qr_pubkey *const *)trust->keys : NULL, trust ? trust->n : 0,
                                         &b->manifest, &res, err);
    if (s)
        return s;
    b->signature = res.verdict;
    memcpy(b->manifest_sha256, res.manifest_sha256, sizeof b->manifest_sha256);
    snprintf(b->signer, sizeof b->signer, "%s",
             res.verdict == QR_SIG_GOOD ? res.key_id : qr_sig_verdict_name(res.verdict));
    return QR_OK;
}

qr_status qd_bundle_open(const char *dir, const qd_trust *trust, size_t batch, size_t chunk, qd_bundle **out,
                         qr_error *err)
{
    *out = NULL;
    qd_bundle *b = calloc(1, sizeof *b);
    if (!b || !(b->source = strdup(dir))) {
        free(b);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    }
    atomic_init(&b->refs, 1);
    /* Once: a link moved after this point is the next reload's business. */
    if (!(b->dir = realpath(dir, NULL))) {
        qr_status s = qr_fail(err, errno == ENOMEM ? QR_ERR_NOMEM : QR_ERR_IO, "bundle %s: cannot resolve: %s", dir,
                              strerror(errno));
        bundle_free(b);
        return s;
    }
    qr_error e;
    qr_status s = open_manifest(b, trust, &e);
    if (s) {
        char where[QD_BUNDLE_WHERE_MAX];
        qd_bundle_where(b, where, sizeof where);
        qr_fail(err, s, "bundle %s: %s", where, e.msg);
        bundle_free(b);
        return s;
    }
    size_t n = b->manifest->n_variants;
    b->usable = calloc(n, sizeof *b->usable);
    b->refusal = calloc(n, sizeof *b->refusal);
    b->heads = calloc(n, sizeof *b->heads);
    b->footprint = calloc(n, sizeof *b->footprint);
    if (!b->usable || !b->refusal || !b->heads || !b->footprint) {
        bundle_free(b);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (size_t i = 0; i < n; i++) {
        e = (qr_error){0};
        char *path = NULL;
        if (qr_bundle_verify_variant(b->manifest, b->dir, i, &e) == QR_OK &&
            (path = qr_bundle_path(b->dir, b->manifest->variants[i].file)) &&
            load_facts(path, batch, chunk, &b->heads[i], &b->footprint[i], &e) == QR_OK) {
            b->usable[i] = true;
            b->n_usable++;
        } else {
            snprintf(b->refusal[i], QD_REFUSAL_MAX, "%s", path || e.msg[0] ? e.msg : "out of memory");
        }
        free(path);
    }
    /* The tokenizer of the first variant that passed (they all embed the model's own). */
    for (size_t i = 0; i < n && !b->tokenizer; i++) {
        if (!b->usable[i])
            continue;
        char *path = qr_bundle_path(b->dir, b->manifest->variants[i].file);
        if (!path || load_tokenizer(path, &b->tokenizer, &e)) {
            snprintf(b->refusal[i], QD_REFUSAL_MAX, "%s", path ? e.msg : "out of memory");
            b->usable[i] = false;
            b->footprint[i] = 0;
            b->n_usable--;
        }
        free(path);
    }
    if (b->n_usable == 0) {
        char why[2048], where[QD_BUNDLE_WHERE_MAX];
        qd_bundle_refusals(b, why, sizeof why);
        qd_bundle_where(b, where, sizeof where);
        qr_fail(err, QR_ERR_FORMAT, "bundle %s: no variant can be served: %s", where, why);
        bundle_free(b);
        return QR_ERR_FORMAT;
    }
    b->eot = qr_tokenizer_token_id(b->tokenizer, "<|endoftext|>");
    *out = b;
    return QR_OK;
}

void qd_bundle_ref(qd_bundle *b)
{
    atomic_fetch_add(&b->refs, 1);
}

void qd_bundle_unref(qd_bundle *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        bundle_free(b);
}

/* Reads the whole file into a fresh anonymous mapping of exactly `bytes` bytes; a file of
 * another size is refused before anything is read. Each chunk read is dropped from the page
 * cache at once, so a load never holds the variant twice (image + cache) against the cgroup's
 * limit: with a switch that unloads first, the peak is the new image alone. */
static qr_status read_image(const char *path, const char *name, uint64_t bytes, void **image,
                            qr_error *err)
{
    *image = NULL;
    if (bytes == 0 || bytes > SIZE_MAX / 2)
        return qr_fail(err, QR_ERR_FORMAT, "%s: variant '%s': the manifest's size %llu cannot be served",
                       path, name, (unsigned long long)bytes);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "%s: variant '%s': cannot open: %s", path, name, strerror(errno));
    struct stat st;
    qr_status s = QR_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = qr_fail(err, QR_ERR_IO, "%s: variant '%s': not a regular file", path, name);
    else if ((uint64_t)st.st_size != bytes)
        s = qr_fail(err, QR_ERR_FORMAT, "%s: variant '%s': %llu bytes, the manifest says %llu", path, name,
                    (unsigned long long)st.st_size, (unsigned long long)bytes);
    void *p = MAP_FAILED;
    if (s == QR_OK) {
        p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            s = qr_fail(err, QR_ERR_NOMEM, "%s: variant '%s': cannot map %llu bytes: %s", path, name,
                        (unsigned long long)bytes, strerror(errno));
    }
    for (size_t done = 0; s == QR_OK && done < bytes;) {
        size_t want = (size_t)bytes - done < READ_CHUNK ? (size_t)bytes - done : READ_CHUNK;
        ssize_t r = read(fd, (char *)p + done, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            s = qr_fail(err, QR_ERR_IO, "%s: variant '%s': %s after %zu of %llu bytes", path, name,
                        r < 0 ? strerror(errno) : "ends", done, (unsigned long long)bytes);
        } else {
            (void)posix_fadvise(fd, (off_t)done, (off_t)r, POSIX_FADV_DONTNEED);
            done += (size_t)r;
        }
    }
    close(fd);
    if (s) {
        if (p != MAP_FAILED)
            munmap(p, (size_t)bytes);
        return s;
    }
    *image = p;
    return QR_OK;
}

qr_status qd_variant_load(qd_bundle *b, size_t index, qr_pool *pool, size_t max_batch, bool lock,
                          qd_loaded **out, qr_error *err)
{
    *out = NULL;
    if (index >= b->manifest->n_variants || !b->usable[index])
        return qr_fail(err, QR_ERR_INVALID, "%s: variant %zu is not servable", b->dir, index);
    const qr_bundle_variant *mv = &b->manifest->variants[index];
    qd_loaded *v = calloc(1, sizeof *v);
    char *path = qr_bundle_path(b->dir, mv->file);
    if (!v || !path) {
        free(v);
        free(path);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", b->dir);
    }
    qd_bundle_ref(b);
    v->bundle = b;
    v->index = index;
    v->image_bytes = (size_t)mv->file_bytes;
    qr_status s = read_image(path, mv->name, mv->file_bytes, &v->image, err);
    if (s == QR_OK) {
        uint8_t digest[QR_SHA256_BYTES];
        char hex[QR_SHA256_HEX_SIZE];
        s = qr_sha256_buffer(v->image, v->image_bytes, path, digest, err);
        if (s == QR_OK) {
            qr_sha256_to_hex(digest, hex);
            if (strcmp(hex, mv->sha256) != 0)
                s = qr_fail(err, QR_ERR_FORMAT, "%s: variant '%s': SHA-256 %s, the manifest says %s (changed on disk?)",
                            path, mv->name, hex, mv->sha256);
        }
    }
    if (s == QR_OK && mprotect(v->image, v->image_bytes, PROT_READ) != 0)
        s = qr_fail(err, QR_ERR_IO, "%s: cannot make the image read-only: %s", path, strerror(errno));
    if (s == QR_OK && lock)
        v->locked = mlock(v->image, v->image_bytes) == 0;
    if (s == QR_OK)
        s = qr_model_file_from_memory(v->image, v->image_bytes, path, &v->file, err);
    if (s == QR_OK)
        s = qr_model_bind(v->file, &v->model, err);
    if (s == QR_OK)
        s = qr_runner_new(v->model, pool, max_batch, &v->runner, err);
    free(path);
    if (s) {
        qd_variant_unload(v);
        return s;
    }
    *out = v;
    return QR_OK;
}

void qd_variant_unload(qd_loaded *v)
{
    if (!v)
        return;
    qr_runner_free(v->runner);
    qr_model_free(v->model);
    qr_model_file_close(v->file);
    if (v->image) {
        if (v->locked)
            munlock(v->image, v->image_bytes);
        munmap(v->image, v->image_bytes);
    }
    qd_bundle_unref(v->bundle);
    free(v);
}
