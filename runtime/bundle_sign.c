/* bundle_sign.c: P-256 keys, ECDSA over SHA-256, and the manifest's detached signature, with
 * mbedTLS 2.28.
 *
 * Debian's mbedTLS is built with MBEDTLS_ECDSA_DETERMINISTIC, so mbedtls_pk_sign derives the
 * nonce from the key and the hash (RFC 6979) and uses the DRBG only to blind the computation;
 * a weak DRBG cannot leak the key through a repeated nonce. Secrets read from files are wiped
 * before their buffers are freed. */
#include "bundle_sign.h"

#include <errno.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_sign_internal.h"
#include "bundle_trust.h"
#include "dataset.h"
#include "file_write.h"
#include "sha256.h"

#define PEM_MAX 4096

/* mbedTLS's description of ret ("PK - Invalid key tag or value"), for messages. */
static const char *mbed_msg(int ret, char *buf, size_t cap)
{
    mbedtls_strerror(ret, buf, cap);
    return buf;
}

/* ---------------------------------------------------------------- randomness */

/* One DRBG per call, seeded from the OS; the personalisation string separates our streams. */
typedef struct {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
} rng;

static qr_status rng_init(rng *r, const char *what, qr_error *err)
{
    static const char pers[] = "qslm bundle_sign";
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    int ret = mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                                    (const unsigned char *)pers, sizeof pers - 1);
    if (ret != 0) {
        char m[128];
        return qr_fail(err, QR_ERR_IO, "%s: cannot seed the random generator: %s", what,
                       mbed_msg(ret, m, sizeof m));
    }
    return QR_OK;
}

static void rng_free(rng *r)
{
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
}

/* ---------------------------------------------------------------- keys */

/* True when pk is an EC key on P-256: the one curve we sign and verify with. */
static bool is_p256(mbedtls_pk_context *pk)
{
    return mbedtls_pk_can_do(pk, MBEDTLS_PK_ECDSA) && mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* PEM must be given to mbedTLS with its terminating NUL counted; DER without. */
qr_status qr_sign_parse_key(const char *text, size_t len, const char *name, bool private_key, mbedtls_pk_context *pk,
                            qr_error *err)
{
    const unsigned char *k = (const unsigned char *)text;
    size_t klen = strstr(text, "-----BEGIN ") ? len + 1 : len;
    int ret = private_key ? mbedtls_pk_parse_key(pk, k, klen, NULL, 0) : mbedtls_pk_parse_public_key(pk, k, klen);
    char m[128];
    if (ret != 0)
        return qr_fail(err, QR_ERR_FORMAT, "%s: not a %s key file in PEM or DER: %s", name,
                       private_key ? "private" : "public", mbed_msg(ret, m, sizeof m));
    if (!is_p256(pk))
        return qr_fail(err, QR_ERR_FORMAT, "%s: not an EC P-256 (secp256r1) key", name);
    return QR_OK;
}

/* The file's bytes are wiped before they are freed (they may be a secret). */
qr_status qr_sign_load_key(const char *path, bool private_key, mbedtls_pk_context *pk, qr_error *err)
{
    char *text;
    size_t len;
    qr_status st = qr_read_file(path, QR_KEY_FILE_MAX, &text, &len, err);
    if (st == QR_ERR_INVALID)
        return qr_fail(err, QR_ERR_FORMAT, "%s: not a key file (larger than %zu bytes)", path, QR_KEY_FILE_MAX);
    if (st != QR_OK)
        return st;
    st = qr_sign_parse_key(text, len, path, private_key, pk, err);
    mbedtls_platform_zeroize(text, len);
    free(text);
    return st;
}

/* The SubjectPublicKeyInfo is what `openssl pkey -pubin -outform DER` prints, so the id can be
 * recomputed without us; mbedTLS writes the DER at the end of the buffer. */
qr_status qr_sign_pk_id(mbedtls_pk_context *pk, const char *what, char id[QR_KEY_ID_LEN + 1], qr_error *err)
{
    unsigned char der[PEM_MAX];
    int n = mbedtls_pk_write_pubkey_der(pk, der, sizeof der);
    if (n <= 0) {
        char m[128];
        return qr_fail(err, QR_ERR_FORMAT, "%s: cannot encode the public key: %s", what, mbed_msg(n, m, sizeof m));
    }
    uint8_t hash[QR_SHA256_BYTES];
    qr_status st = qr_sha256_buffer(der + sizeof der - (size_t)n, (size_t)n, what, hash, err);
    if (st != QR_OK)
        return st;
    char hex[QR_SHA256_HEX_SIZE];
    qr_sha256_to_hex(hash, hex);
    memcpy(id, hex, QR_KEY_ID_LEN);
    id[QR_KEY_ID_LEN] = '\0';
    return QR_OK;
}

qr_status qr_sign_key_id(const char *key_path, bool private_key, char id[QR_KEY_ID_LEN + 1], qr_error *err)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    qr_status st = qr_sign_load_key(key_path, private_key, &pk, err);
    if (st == QR_OK)
        st = qr_sign_pk_id(&pk, key_path, id, err);
    mbedtls_pk_free(&pk);
    return st;
}

qr_status qr_sign_keygen(const char *private_path, const char *public_path, qr_error *err)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    rng r;
    unsigned char priv[PEM_MAX], pub[PEM_MAX];
    char m[128];
    int ret;
    qr_status st = rng_init(&r, private_path, err);
    if (st == QR_OK && (ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0)
        st = qr_fail(err, QR_ERR_NOMEM, "%s: cannot set up a key: %s", private_path, mbed_msg(ret, m, sizeof m));
    if (st == QR_OK &&
        (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), mbedtls_ctr_drbg_random, &r.drbg)) != 0)
        st = qr_fail(err, QR_ERR_IO, "%s: key generation failed: %s", private_path, mbed_msg(ret, m, sizeof m));
    if (st == QR_OK && ((ret = mbedtls_pk_write_key_pem(&pk, priv, sizeof priv)) != 0 ||
                        (ret = mbedtls_pk_write_pubkey_pem(&pk, pub, sizeof pub)) != 0))
        st = qr_fail(err, QR_ERR_NOMEM, "%s: cannot encode the key as PEM: %s", private_path,
                     mbed_msg(ret, m, sizeof m));
    if (st == QR_OK)
        st = qr_write_file_new(private_path, priv, strlen((char *)priv), 0600, err);
    if (st == QR_OK && (st = qr_write_file_new(public_path, pub, strlen((char *)pub), 0644, err)) != QR_OK)
        remove(private_path); /* no half pair: the public key could not be written */
    mbedtls_platform_zeroize(priv, sizeof priv);
    mbedtls_pk_free(&pk);
    rng_free(&r);
    return st;
}

/* ---------------------------------------------------------------- sign and verify */

qr_status qr_sign_data(const char *private_path, const void *data, size_t len,
                       uint8_t sig[QR_SIG_MAX_BYTES], size_t *sig_len, qr_error *err)
{
    *sig_len = 0;
    uint8_t hash[QR_SHA256_BYTES];
    qr_status st = qr_sha256_buffer(data, len, private_path, hash, err);
    if (st != QR_OK)
        return st;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    rng r;
    st = rng_init(&r, private_path, err);
    if (st == QR_OK)
        st = qr_sign_load_key(private_path, true, &pk, err);
    unsigned char buf[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t n = 0;
    if (st == QR_OK) {
        int ret = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, sizeof hash, buf, &n,
                                  mbedtls_ctr_drbg_random, &r.drbg);
        char m[128];
        if (ret != 0)
            st = qr_fail(err, QR_ERR_IO, "%s: signing failed: %s", private_path, mbed_msg(ret, m, sizeof m));
        else if (n > QR_SIG_MAX_BYTES)
            st = qr_fail(err, QR_ERR_FORMAT, "%s: signature of %zu bytes, longer than P-256's", private_path, n);
    }
    if (st == QR_OK) {
        memcpy(sig, buf, n);
        *sig_len = n;
    }
    mbedtls_pk_free(&pk);
    rng_free(&r);
    return st;
}

qr_status qr_sign_verify_data(const char *public_path, const void *data, size_t len,
                              const uint8_t *sig, size_t sig_len, const char *what, qr_error *err)
{
    uint8_t hash[QR_SHA256_BYTES];
    qr_status st = qr_sha256_buffer(data, len, what, hash, err);
    if (st != QR_OK)
        return st;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    st = qr_sign_load_key(public_path, false, &pk, err);
    if (st == QR_OK) {
        int ret = sig_len > QR_SIG_MAX_BYTES ? MBEDTLS_ERR_PK_SIG_LEN_MISMATCH
                                             : mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sig_len);
        if (ret == MBEDTLS_ERR_ECP_VERIFY_FAILED)
            st = qr_fail(err, QR_ERR_FORMAT, "%s: the signature does not match the public key %s "
                         "(signed with another key, or the file changed since)", what, public_path);
        else if (ret != 0)
            st = qr_fail(err, QR_ERR_FORMAT, "%s: the signature is not a DER ECDSA P-256 signature", what);
    }
    mbedtls_pk_free(&pk);
    return st;
}

/* ---------------------------------------------------------------- the manifest's signature */

/* DIR/manifest.json's bytes and path (both malloc'ed). */
static qr_status read_manifest(const char *dir, char **path, char **text, size_t *len, qr_error *err)
{
    *text = NULL;
    if (!(*path = qr_bundle_path(dir, QR_BUNDLE_MANIFEST)))
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    qr_status st = qr_read_file(*path, QR_BUNDLE_MANIFEST_MAX, text, len, err);
    if (st == QR_ERR_INVALID)
        st = qr_fail(err, QR_ERR_FORMAT, "%s: larger than the %zu-byte limit of a manifest", *path,
                     QR_BUNDLE_MANIFEST_MAX);
    return st;
}

qr_status qr_bundle_sign(const char *dir, const char *private_path, qr_error *err)
{
    char *path, *text, *sig_path = NULL;
    size_t len, sig_len;
    uint8_t sig[QR_SIG_FILE_MAX + 1]; /* + the NUL snprintf writes after the key-id line */
    char id[QR_KEY_ID_LEN + 1];
    qr_bundle *b = NULL;
    qr_status st = read_manifest(dir, &path, &text, &len, err);
    if (st == QR_OK)
        st = qr_bundle_parse(text, len, path, &b, err); /* never sign what a reader refuses */
    qr_bundle_free(b);
    if (st == QR_OK)
        st = qr_sign_data(private_path, text, len, sig, &sig_len, err);
    if (st == QR_OK)
        st = qr_sign_key_id(private_path, true, id, err);
    if (st == QR_OK) { /* the key-id line: lets a reader word a refusal (bundle_trust.h) */
        int n = snprintf((char *)sig + sig_len, QR_SIG_KEY_ID_LINE + 1, QR_SIG_KEY_ID_PREFIX "%s\n", id);
        sig_len += (size_t)n;
    }
    if (st == QR_OK && !(sig_path = qr_bundle_path(dir, QR_BUNDLE_SIGNATURE)))
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    if (st == QR_OK)
        st = qr_write_file_atomic(sig_path, sig, sig_len, 0644, err);
    free(sig_path);
    free(text);
    free(path);
    return st;
}

qr_status qr_bundle_verify_signature(const char *dir, const char *public_path, qr_error *err)
{
    qr_bundle *b = NULL;
    qr_status st = qr_bundle_load_verified(dir, public_path, &b, NULL, err);
    qr_bundle_free(b);
    return st;
}

qr_status qr_bundle_load_verified(const char *dir, const char *public_path, qr_bundle **out,
                                  char key_id[QR_KEY_ID_LEN + 1], qr_error *err)
{
    *out = NULL;
    qr_pubkey *k = NULL;
    qr_sig_result res;
    qr_status st = qr_pubkey_load(public_path, &k, err);
    if (st == QR_OK) {
        qr_pubkey *keys[1] = {k};
        st = qr_bundle_load_trusted(dir, keys, 1, out, &res, err);
    }
    if (st == QR_OK && key_id)
        memcpy(key_id, res.key_id, sizeof res.key_id);
    qr_pubkey_free(k);
    return st;
}
