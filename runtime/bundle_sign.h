/* bundle_sign.h: ECDSA P-256 signatures over a bundle's manifest (mbedTLS).
 *
 * The signature covers the SHA-256 of the exact bytes of manifest.json, and lives beside it in
 * `manifest.json.sig` as raw DER (an ASN.1 ECDSA-Sig-Value, at most 72 bytes; not base64), so
 * `openssl dgst -sha256 -verify pub.pem -signature manifest.json.sig manifest.json` checks it
 * too. The manifest pins every model file's hash, so one signature covers the whole bundle.
 * Keys are PEM files: the private key as SEC1 ("EC PRIVATE KEY", file mode 0600), the public
 * key as SubjectPublicKeyInfo ("PUBLIC KEY"). Every call seeds its own DRBG from the system's
 * entropy and frees it before returning: there is no global state. */
#ifndef QR_BUNDLE_SIGN_H
#define QR_BUNDLE_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "error.h"

#define QR_BUNDLE_SIGNATURE QR_BUNDLE_MANIFEST ".sig"
#define QR_SIG_MAX_BYTES 72 /* a DER ECDSA P-256 signature: SEQUENCE of two INTEGERs <= 33 bytes */
#define QR_KEY_FILE_MAX ((size_t)64 << 10)

/* Generates a P-256 key pair into two new PEM files: private_path (mode 0600) and public_path
 * (mode 0644). Refuses to overwrite either (QR_ERR_IO naming it); on failure neither is left. */
qr_status qr_sign_keygen(const char *private_path, const char *public_path, qr_error *err);

/* Signs len bytes with the private key in the PEM (or DER) file private_path: the DER signature
 * goes to sig (QR_SIG_MAX_BYTES), its length to *sig_len. A key file that is missing is
 * QR_ERR_IO; one that is not a P-256 private key is QR_ERR_FORMAT naming it. */
qr_status qr_sign_data(const char *private_path, const void *data, size_t len,
                       uint8_t sig[QR_SIG_MAX_BYTES], size_t *sig_len, qr_error *err);

/* QR_OK only if sig is a valid signature of the len bytes under the public key in public_path.
 * A signature that does not match, or is not DER, is QR_ERR_FORMAT; the message starts with
 * `what` (the signed file's name). Key file errors as for qr_sign_data. */
qr_status qr_sign_verify_data(const char *public_path, const void *data, size_t len,
                              const uint8_t *sig, size_t sig_len, const char *what, qr_error *err);

/* Signs DIR/manifest.json (which must parse as a manifest) into DIR/manifest.json.sig, written
 * atomically. */
qr_status qr_bundle_sign(const char *dir, const char *private_path, qr_error *err);

/* Checks DIR/manifest.json against DIR/manifest.json.sig. QR_ERR_NOT_FOUND when there is no
 * signature file, QR_ERR_FORMAT when it does not match. */
qr_status qr_bundle_verify_signature(const char *dir, const char *public_path, qr_error *err);

/* Reads DIR/manifest.json once, checks its signature, then parses those same bytes: what is
 * served is what was verified. Errors as qr_bundle_verify_signature, then qr_bundle_load. */
qr_status qr_bundle_load_verified(const char *dir, const char *public_path, qr_bundle **out,
                                  qr_error *err);

#endif
