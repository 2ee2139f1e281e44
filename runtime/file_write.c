/* file_write.c: temp + fsync + rename, and exclusive creation. */
#include "file_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* write(2) until every byte is out (short writes and EINTR); errno is set on failure. */
static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Makes the rename durable: the directory entry is on disk too. Best effort — some file
 * systems refuse fsync on a directory, and the data itself is already synced. */
static void sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

qr_status qr_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                               qr_error *err)
{
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        qr_status st = qr_fail(err, QR_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                               path, strerror(errno));
        free(tmp);
        return st;
    }
    qr_status st = QR_OK;
    if (!write_all(fd, data, len))
        st = qr_fail(err, QR_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    else if (fchmod(fd, (mode_t)mode) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: chmod failed: %s", tmp, strerror(errno));
    else if (fsync(fd) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == QR_OK)
        st = qr_fail(err, QR_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == QR_OK && rename(tmp, path) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != QR_OK)
        unlink(tmp);
    else
        sync_parent(path);
    free(tmp);
    return st;
}

qr_status qr_write_file_new(const char *path, const void *data, size_t len, unsigned mode,
                            qr_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    qr_status st = QR_OK;
    if (!write_all(fd, data, len))
        st = qr_fail(err, QR_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    else if (fsync(fd) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && st == QR_OK)
        st = qr_fail(err, QR_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st != QR_OK)
        unlink(path);
    else
        sync_parent(path);
    return st;
}
