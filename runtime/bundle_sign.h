/* bundle_sign.h: ECDSA P-256 signatures over a bundle's manifest (mbedTLS).
 *
 * The signature covers the SHA-256 of the exact bytes of manifest.json, and lives beside it in
 * `manifest.json.sig`: the raw DER signature (an ASN.1 ECDSA-Sig-Value, at most 72 bytes; not
 * base64), then the 24-byte line "key-id <16 hex digits>\n" naming the signing key (its id:
 * bundle_trust.h). A file of the DER alone (made by openssl, or before key ids) is read too.
 * `head -c -24 manifest.json.sig > sig.der` gives what `openssl dgst -sha256 -verify pub.pem
 * -signature sig.der manifest.json` checks. The manifest pins every model file's hash, so one
 * signature covers the whole bundle. Keys are PEM files: the private key as SEC1 ("EC PRIVATE
 * KEY", file mode 0600), the public key as SubjectPublicKeyInfo ("PUBLIC KEY"). Every call seeds
 * its own DRBG from the system's entropy and frees it before returning: there is no global
 * state. Checking a signature against a set of trusted keys is bundle_trust.h. */
#ifndef QR_BUNDLE_SIGN_H
#define QR_BUNDLE_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "error.h"

#define QR_BUNDLE_SIGNATURE QR_BUNDLE_MANIFEST ".sig"
#define QR_SIG_MAX_BYTES 72 /* a DER ECDSA P-256 signature: SEQUENCE of two INTEGERs <= 33 bytes */
#define QR_KEY_FILE_MAX ((size_t)64 << 10)
#define QR_KEY_ID_LEN 16 /* hex digits of a key id: SHA-256 of the DER SubjectPublicKeyInfo */
#define QR_SIG_KEY_ID_PREFIX "key-id "
#define QR_SIG_KEY_ID_LINE (sizeof QR_SIG_KEY_ID_PREFIX - 1 + QR_KEY_ID_LEN + 1) /* 24 bytes */
#define QR_SIG_FILE_MAX (QR_SIG_MAX_BYTES + QR_SIG_KEY_ID_LINE)

/* Generates a P-256 key pair into two new PEM files: private_path (mode 0600) and public_path
 * (mode 0644). Refuses to overwrite either (QR_ERR_IO naming it); on failure neither is left. */
qr_status qr_sign_keygen(const char *private_path, const char *public_path, qr_error *err);

/* The id of the key in key_path (a public key file, or a private one when private_key: its
 * public half), QR_KEY_ID_LEN lowercase hex digits and a NUL. Key file errors as below. */
qr_status qr_sign_key_id(const char *key_path, bool private_key, char id[QR_KEY_ID_LEN + 1], qr_error *err);

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

/* Signs DIR/manifest.json (which must parse as a manifest) into DIR/manifest.json.sig (the DER
 * signature and its key-id line), written atomically. */
qr_status qr_bundle_sign(const char *dir, const char *private_path, qr_error *err);

/* Checks DIR/manifest.json against DIR/manifest.json.sig under the one public key in
 * public_path (qr_bundle_load_trusted with that key). QR_ERR_NOT_FOUND when there is no
 * signature file, QR_ERR_FORMAT when it does not match, is by another key, or is no signature. */
qr_status qr_bundle_verify_signature(const char *dir, const char *public_path, qr_error *err);

/* Reads DIR/manifest.json once, checks its signature, then parses those same bytes: what is
 * served is what was verified. Errors as qr_bundle_verify_signature, then qr_bundle_load. When
 * key_id is not NULL it receives the key's id. */
qr_status qr_bundle_load_verified(const char *dir, const char *public_path, qr_bundle **out,
                                  char key_id[QR_KEY_ID_LEN + 1], qr_error *err);

#endif
