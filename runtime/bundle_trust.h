/* bundle_trust.h: which public keys a reader trusts, and what a bundle's signature says about
 * them: signed by one of them, unsigned, by a key not among them, or a bad signature.
 *
 * A key's id is the first 16 hex digits of the SHA-256 of its DER SubjectPublicKeyInfo, so
 *   openssl pkey -pubin -in KEY.pub -outform DER | sha256sum | cut -c1-16
 * prints it too. A signature file (runtime/BUNDLE.md, "Signature") is the DER ECDSA signature,
 * then, from `qslm-quant sign` on, the line "key-id <16 hex>\n" naming the key that made it; a
 * signature made by openssl (or before key ids) has no such line and is still read. The line is
 * not signed: it only words a refusal. Acceptance never depends on it: a signature is good when
 * a trusted key verifies it, whatever the line says.
 *
 * qr_bundle_load_trusted reads manifest.json once, checks the signature on those bytes and
 * parses the same bytes, so what a caller serves is exactly what was verified; the model files
 * are bound to it by the hashes the manifest pins (qr_bundle_verify_variant).
 *
 * Keys are loaded by the caller and passed in: there is no key store and no global state. A
 * qr_pubkey is used by one thread at a time (mbedTLS caches tables in it while verifying). */
#ifndef QR_BUNDLE_TRUST_H
#define QR_BUNDLE_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "bundle_sign.h"
#include "error.h"
#include "sha256.h"

typedef struct qr_pubkey qr_pubkey; /* a P-256 public key and its id */

/* Reads a public key file (PEM or DER SubjectPublicKeyInfo, P-256 only). Errors name the file:
 * QR_ERR_IO when it cannot be read, QR_ERR_FORMAT when it is not a P-256 public key (a private
 * key is refused: a reader needs the public half only). */
qr_status qr_pubkey_load(const char *path, qr_pubkey **out, qr_error *err);
/* The same from len bytes in memory; name stands for the file in messages and as its path. */
qr_status qr_pubkey_parse(const void *data, size_t len, const char *name, qr_pubkey **out, qr_error *err);
void qr_pubkey_free(qr_pubkey *k);

const char *qr_pubkey_id(const qr_pubkey *k);   /* QR_KEY_ID_LEN lowercase hex digits */
const char *qr_pubkey_path(const qr_pubkey *k); /* the file it was read from */

typedef enum {
    QR_SIG_UNCHECKED,   /* no keys were given: a signature is there, nobody checked it */
    QR_SIG_GOOD,        /* a trusted key verifies it */
    QR_SIG_UNSIGNED,    /* there is no signature */
    QR_SIG_UNKNOWN_KEY, /* it names a key that is not trusted; or it names none, and no trusted key
                           verifies it */
    QR_SIG_BAD,         /* it names a trusted key that does not verify it (the manifest changed
                           after signing, or the signature is damaged), or it is not a signature */
} qr_sig_verdict;

/* "not checked", "good", "unsigned", "unknown key", "bad signature". */
const char *qr_sig_verdict_name(qr_sig_verdict v);

typedef struct {
    qr_sig_verdict verdict;
    char key_id[QR_KEY_ID_LEN + 1]; /* GOOD: the trusted key that verified it; otherwise the key
                                       the signature names ("" when it names none) */
    size_t key_index;               /* GOOD: that key's index in keys[] */
    char manifest_sha256[QR_SHA256_HEX_SIZE]; /* qr_bundle_load_trusted: of the bytes it read
                                                 and parsed ("" otherwise) */
} qr_sig_result;

/* Splits a signature file's bytes into the DER signature and the key id its "key-id" line
 * names (key_id "" when there is no line). QR_ERR_FORMAT, starting with what, when the bytes are
 * neither a DER SEQUENCE of at most QR_SIG_MAX_BYTES nor one followed by exactly that line. */
qr_status qr_sig_split(const uint8_t *file, size_t len, const char *what, size_t *der_len,
                       char key_id[QR_KEY_ID_LEN + 1], qr_error *err);

/* Checks a signature file's bytes (sig, sig_len) over data against the n_keys trusted keys
 * (n_keys >= 1), without touching the file system. QR_OK with res->verdict GOOD; otherwise
 * QR_ERR_FORMAT with the verdict UNKNOWN_KEY or BAD in res and err's message reading
 *   "<what>: signature refused (<verdict>; key <id>): <why>"
 * (<id> is the key named, or "none"). */
qr_status qr_sig_check(qr_pubkey *const *keys, size_t n_keys, const void *data, size_t len,
                       const uint8_t *sig, size_t sig_len, const char *what, qr_sig_result *res,
                       qr_error *err);

/* Reads DIR/manifest.json and DIR/manifest.json.sig once each; with keys (n_keys >= 1) requires
 * a signature by one of them; then parses the manifest bytes that were checked into *out.
 * res says what the signature is: with no keys, UNSIGNED or UNCHECKED (and QR_OK); with keys,
 * GOOD, or the refusal: UNSIGNED is QR_ERR_NOT_FOUND ("<manifest>: signature refused (unsigned;
 * key none): no <sig file>"), UNKNOWN_KEY and BAD are QR_ERR_FORMAT as qr_sig_check. Reading
 * errors are QR_ERR_IO, manifest errors qr_bundle_parse's. On failure *out is NULL. */
qr_status qr_bundle_load_trusted(const char *dir, qr_pubkey *const *keys, size_t n_keys,
                                 qr_bundle **out, qr_sig_result *res, qr_error *err);

#endif
