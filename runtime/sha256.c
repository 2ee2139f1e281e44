/* sha256.c: SHA-256 through mbedTLS 2.28 (the *_ret functions; 3.x dropped the suffix). */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <mbedtls/sha256.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (64u << 10)

qr_status qr_sha256_buffer(const void *data, size_t len, const char *name,
                           uint8_t digest[QR_SHA256_BYTES], qr_error *err)
{
    if (mbedtls_sha256_ret(data, len, digest, 0) != 0)
        return qr_fail(err, QR_ERR_IO, "%s: SHA-256 failed", name);
    return QR_OK;
}

/* Reads the open file to its end into the running hash; *bytes counts what was read. What
 * was read is dropped from the page cache as it goes (POSIX_FADV_DONTNEED): hashing a bundle
 * must not leave its files cached and charged to the caller's cgroup, where qslmd would find
 * a memory limit full of them (clean pages: dropping them costs nothing; advice only). */
static qr_status hash_fd(int fd, const char *path, mbedtls_sha256_context *ctx, uint8_t *buf,
                         uint64_t *bytes, qr_error *err)
{
    for (;;) {
        ssize_t got = read(fd, buf, READ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return qr_fail(err, QR_ERR_IO, "%s: read error after %llu bytes: %s", path,
                           (unsigned long long)*bytes, strerror(errno));
        if (got == 0)
            return QR_OK;
        if (mbedtls_sha256_update_ret(ctx, buf, (size_t)got) != 0)
            return qr_fail(err, QR_ERR_IO, "%s: SHA-256 failed", path);
        (void)posix_fadvise(fd, (off_t)*bytes, (off_t)got, POSIX_FADV_DONTNEED);
        *bytes += (uint64_t)got;
    }
}

qr_status qr_sha256_file(const char *path, uint8_t digest[QR_SHA256_BYTES], uint64_t *bytes,
                         qr_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        qr_status s = qr_fail(err, QR_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qr_fail(err, QR_ERR_IO, "%s: not a regular file", path);
    }
    uint8_t *buf = malloc(READ_CHUNK);
    if (!buf) {
        close(fd);
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory for the read buffer", path);
    }
    mbedtls_sha256_context ctx;
    mbedtls_sha256_init(&ctx);
    uint64_t n = 0;
    qr_status s = QR_OK;
    if (mbedtls_sha256_starts_ret(&ctx, 0) != 0)
        s = qr_fail(err, QR_ERR_IO, "%s: SHA-256 failed", path);
    if (s == QR_OK)
        s = hash_fd(fd, path, &ctx, buf, &n, err);
    if (s == QR_OK && mbedtls_sha256_finish_ret(&ctx, digest) != 0)
        s = qr_fail(err, QR_ERR_IO, "%s: SHA-256 failed", path);
    mbedtls_sha256_free(&ctx);
    free(buf);
    close(fd);
    if (s == QR_OK && bytes)
        *bytes = n;
    return s;
}

void qr_sha256_to_hex(const uint8_t digest[QR_SHA256_BYTES], char hex[QR_SHA256_HEX_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < QR_SHA256_BYTES; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[QR_SHA256_HEX_LEN] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool qr_sha256_from_hex(const char *s, uint8_t digest[QR_SHA256_BYTES])
{
    for (size_t i = 0; i < QR_SHA256_HEX_LEN; i++)
        if (hex_value(s[i]) < 0) /* stops at a NUL too: it is not a digit */
            return false;
    if (s[QR_SHA256_HEX_LEN] != '\0')
        return false;
    if (digest)
        for (size_t i = 0; i < QR_SHA256_BYTES; i++)
            digest[i] = (uint8_t)(hex_value(s[2 * i]) << 4 | hex_value(s[2 * i + 1]));
    return true;
}
