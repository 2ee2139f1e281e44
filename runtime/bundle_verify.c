/* bundle_verify.c: does a variant's file hold the bytes its manifest pins?
 *
 * The size is checked first, from stat, so a truncated or replaced file fails at once without
 * hashing gigabytes; then the whole file is hashed and both are checked again on what was
 * read. Not here: mapping the file afterwards (a caller that must rule out a change between
 * the check and the use can hash the mapped image itself with qr_sha256_buffer). */
#include "bundle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

qr_status qr_bundle_verify_variant(const qr_bundle *b, const char *dir, size_t index,
                                   qr_error *err)
{
    if (index >= b->n_variants)
        return qr_fail(err, QR_ERR_INVALID, "%s: no variant %zu (the bundle has %zu)", dir, index,
                       b->n_variants);
    const qr_bundle_variant *v = &b->variants[index];
    char *path = qr_bundle_path(dir, v->file);
    if (!path)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    struct stat st;
    uint8_t digest[QR_SHA256_BYTES] = {0};
    uint64_t bytes = 0;
    qr_status s = QR_OK;
    if (stat(path, &st) != 0)
        s = qr_fail(err, QR_ERR_IO, "%s: variant '%s': cannot open: %s", path, v->name, strerror(errno));
    else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size != v->file_bytes)
        bytes = (uint64_t)st.st_size;
    else
        s = qr_sha256_file(path, digest, &bytes, err);
    if (s == QR_OK && bytes != v->file_bytes)
        s = qr_fail(err, QR_ERR_FORMAT, "%s: variant '%s': %llu bytes, the manifest says %llu (%s)",
                    path, v->name, (unsigned long long)bytes, (unsigned long long)v->file_bytes,
                    bytes < v->file_bytes ? "truncated?" : "replaced or appended to?");
    if (s == QR_OK) {
        char hex[QR_SHA256_HEX_SIZE];
        qr_sha256_to_hex(digest, hex);
        if (strcmp(hex, v->sha256) != 0)
            s = qr_fail(err, QR_ERR_FORMAT, "%s: variant '%s': SHA-256 mismatch: the manifest says %s, the file has %s",
                        path, v->name, v->sha256, hex);
    }
    free(path);
    return s;
}
