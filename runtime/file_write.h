/* file_write.h: writing a whole small file so that a crash or a concurrent reader never sees
 * half of it (manifests, signatures, keys). Model files have their own writer (model_writer.h),
 * which streams; these take the bytes in memory. */
#ifndef QR_FILE_WRITE_H
#define QR_FILE_WRITE_H

#include <stddef.h>

#include "error.h"

/* Replaces path with data: written to a temporary file in the same directory, fsynced, given
 * `mode` (exactly, umask aside), renamed over path, and the directory fsynced. Readers see the
 * old content or the new, never a mix. */
qr_status qr_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                               qr_error *err);

/* Creates path with `mode` (less the umask) and data, fsynced; refuses if path exists (QR_ERR_IO
 * naming it) and removes what it created if a write fails. For secrets: the file never exists
 * with a looser mode, and an existing key is never overwritten. */
qr_status qr_write_file_new(const char *path, const void *data, size_t len, unsigned mode,
                            qr_error *err);

#endif
