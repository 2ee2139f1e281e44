/* sha256.h: SHA-256 digests (mbedTLS) of buffers and files, and their hex form.
 *
 * Used to pin a bundle's model files (bundle.h) and to sign its manifest (bundle_sign.h). A file
 * is hashed as a stream of fixed-size reads, so a model of any size costs 64 KiB of memory.
 * Hex digests are always lowercase, 64 digits and a NUL. */
#ifndef QR_SHA256_H
#define QR_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define QR_SHA256_BYTES 32
#define QR_SHA256_HEX_LEN 64               /* hex digits, without the NUL */
#define QR_SHA256_HEX_SIZE (QR_SHA256_HEX_LEN + 1)

/* The digest of len bytes at data. Fails only if mbedTLS does (never with its software
 * implementation); `name` is used in the message. */
qr_status qr_sha256_buffer(const void *data, size_t len, const char *name,
                           uint8_t digest[QR_SHA256_BYTES], qr_error *err);

/* The digest of the regular file at path, and its size in bytes (bytes may be NULL). Errors
 * name the path: cannot open, not a regular file, read error. */
qr_status qr_sha256_file(const char *path, uint8_t digest[QR_SHA256_BYTES], uint64_t *bytes,
                         qr_error *err);

/* The lowercase hex form of a digest. */
void qr_sha256_to_hex(const uint8_t digest[QR_SHA256_BYTES], char hex[QR_SHA256_HEX_SIZE]);

/* True if s is exactly 64 lowercase hex digits (then NUL); fills digest when it is not NULL. */
bool qr_sha256_from_hex(const char *s, uint8_t digest[QR_SHA256_BYTES]);

#endif
