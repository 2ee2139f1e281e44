/* bundle_trust.c: public keys a reader trusts, a signature file's two parts, and the verdict of
 * a signature against a set of keys (bundle_trust.h), with mbedTLS 2.28.
 *
 * Not here: making keys and signatures (bundle_sign.c), the manifest's schema (bundle.c), the
 * model files' hashes (bundle_verify.c). Nothing is printed; every refusal is one message. */
#include "bundle_trust.h"

#include <errno.h>
#include <stdarg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_sign_internal.h"
#include "dataset.h"

struct qr_pubkey {
    mbedtls_pk_context pk; /* mbedTLS caches tables in it while verifying: one thread at a time */
    char id[QR_KEY_ID_LEN + 1];
    char *path;
};

/* ---------------------------------------------------------------- keys */

/* Both entries end here: a key read from a file and one given in memory (the fuzz target). */
static qr_status pubkey_from(const char *text, size_t len, const char *name, qr_pubkey **out, qr_error *err)
{
    *out = NULL;
    qr_pubkey *k = calloc(1, sizeof *k);
    if (!k)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    mbedtls_pk_init(&k->pk);
    qr_status st = qr_sign_parse_key(text, len, name, false, &k->pk, err);
    if (st == QR_OK)
        st = qr_sign_pk_id(&k->pk, name, k->id, err);
    if (st == QR_OK && !(k->path = strdup(name)))
        st = qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    if (st != QR_OK) {
        qr_pubkey_free(k);
        return st;
    }
    *out = k;
    return QR_OK;
}

qr_status qr_pubkey_load(const char *path, qr_pubkey **out, qr_error *err)
{
    *out = NULL;
    char *text;
    size_t len;
    qr_status st = qr_read_file(path, QR_KEY_FILE_MAX, &text, &len, err);
    if (st == QR_ERR_INVALID)
        return qr_fail(err, QR_ERR_FORMAT, "%s: not a key file (larger than %zu bytes)", path, QR_KEY_FILE_MAX);
    if (st != QR_OK)
        return st;
    st = pubkey_from(text, len, path, out, err);
    free(text);
    return st;
}

qr_status qr_pubkey_parse(const void *data, size_t len, const char *name, qr_pubkey **out, qr_error *err)
{
    *out = NULL;
    char *text = malloc(len + 1);
    if (!text)
        return qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", name);
    memcpy(text, data, len);
    text[len] = '\0';
    qr_status st = pubkey_from(text, len, name, out, err);
    free(text);
    return st;
}

void qr_pubkey_free(qr_pubkey *k)
{
    if (!k)
        return;
    mbedtls_pk_free(&k->pk);
    free(k->path);
    free(k);
}

const char *qr_pubkey_id(const qr_pubkey *k)
{
    return k->id;
}

const char *qr_pubkey_path(const qr_pubkey *k)
{
    return k->path;
}

const char *qr_sig_verdict_name(qr_sig_verdict v)
{
    switch (v) {
    case QR_SIG_UNCHECKED: return "not checked";
    case QR_SIG_GOOD: return "good";
    case QR_SIG_UNSIGNED: return "unsigned";
    case QR_SIG_UNKNOWN_KEY: return "unknown key";
    case QR_SIG_BAD: return "bad signature";
    }
    return "?";
}

/* ---------------------------------------------------------------- the signature file */

static bool lower_hex(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* A P-256 signature's DER is short: one length byte (< 0x80), at most 72 bytes in all. Only the
 * SEQUENCE's extent is read here; mbedTLS parses its INTEGERs when it verifies. */
qr_status qr_sig_split(const uint8_t *file, size_t len, const char *what, size_t *der_len,
                       char key_id[QR_KEY_ID_LEN + 1], qr_error *err)
{
    static const char prefix[] = QR_SIG_KEY_ID_PREFIX;
    key_id[0] = '\0';
    *der_len = 0;
    size_t d = len >= 2 && file[0] == 0x30 && file[1] < 0x80 ? (size_t)file[1] + 2 : 0;
    bool ok = d > 2 && d <= QR_SIG_MAX_BYTES && d <= len;
    if (ok && len > d) /* the key-id line, exactly */
        ok = len - d == QR_SIG_KEY_ID_LINE && memcmp(file + d, prefix, sizeof prefix - 1) == 0 &&
             lower_hex(file + d + sizeof prefix - 1, QR_KEY_ID_LEN) && file[len - 1] == '\n';
    if (!ok)
        return qr_fail(err, QR_ERR_FORMAT, "%s: not a DER ECDSA P-256 signature (optionally followed by a "
                       "\"" QR_SIG_KEY_ID_PREFIX "<16 hex digits>\" line)", what);
    if (len > d) {
        memcpy(key_id, file + d + sizeof prefix - 1, QR_KEY_ID_LEN);
        key_id[QR_KEY_ID_LEN] = '\0';
    }
    *der_len = d;
    return QR_OK;
}

/* ---------------------------------------------------------------- the verdict */

/* "a1b2..., c3d4..." (at most four, then how many more): the trusted keys, for a refusal. */
static void list_ids(qr_pubkey *const *keys, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < 4 && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", keys[i]->id);
    if (n > 4 && o < cap)
        snprintf(buf + o, cap - o, " and %zu more", n - 4);
}

/* Records a refusal: the verdict and key in res, the message in err (the one shape every
 * refusal has, so a log line can be searched for the verdict and the key). */
__attribute__((format(printf, 5, 6)))
static qr_status refuse(qr_sig_result *res, qr_sig_verdict v, const char *what, qr_error *err, const char *fmt, ...)
{
    char why[QR_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    res->verdict = v;
    return qr_fail(err, v == QR_SIG_UNSIGNED ? QR_ERR_NOT_FOUND : QR_ERR_FORMAT,
                   "%s: signature refused (%s; key %s): %s", what, qr_sig_verdict_name(v),
                   res->key_id[0] ? res->key_id : "none", why);
}

qr_status qr_sig_check(qr_pubkey *const *keys, size_t n_keys, const void *data, size_t len,
                       const uint8_t *sig, size_t sig_len, const char *what, qr_sig_result *res,
                       qr_error *err)
{
    memset(res, 0, sizeof *res);
    res->verdict = QR_SIG_BAD;
    if (n_keys == 0)
        return qr_fail(err, QR_ERR_INVALID, "%s: no trusted key to check the signature with", what);
    size_t der_len;
    qr_error e;
    if (qr_sig_split(sig, sig_len, QR_BUNDLE_SIGNATURE, &der_len, res->key_id, &e) != QR_OK)
        return refuse(res, QR_SIG_BAD, what, err, "%s", e.msg);
    uint8_t hash[QR_SHA256_BYTES];
    qr_status st = qr_sha256_buffer(data, len, what, hash, err);
    if (st != QR_OK)
        return st;
    size_t named = n_keys; /* the key the line names, tried first */
    for (size_t i = 0; i < n_keys && named == n_keys; i++)
        if (res->key_id[0] && strcmp(keys[i]->id, res->key_id) == 0)
            named = i;
    for (size_t t = 0; t < n_keys; t++) {
        size_t i = named < n_keys ? (t == 0 ? named : t <= named ? t - 1 : t) : t;
        int ret = mbedtls_pk_verify(&keys[i]->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, der_len);
        if (ret == 0) { /* whatever the line said: this key signed these bytes */
            res->verdict = QR_SIG_GOOD;
            res->key_index = i;
            memcpy(res->key_id, keys[i]->id, sizeof res->key_id);
            return QR_OK;
        }
        if (ret != MBEDTLS_ERR_ECP_VERIFY_FAILED) /* its INTEGERs do not parse: no key will do */
            return refuse(res, QR_SIG_BAD, what, err, "%s: not a DER ECDSA P-256 signature", QR_BUNDLE_SIGNATURE);
    }
    char trusted[5 * (QR_KEY_ID_LEN + 2) + 32];
    list_ids(keys, n_keys, trusted, sizeof trusted);
    if (named < n_keys)
        return refuse(res, QR_SIG_BAD, what, err,
                      "trusted key %s (%s) does not verify it: the manifest changed after it was signed, or "
                      "the signature is damaged", res->key_id, keys[named]->path);
    if (res->key_id[0])
        return refuse(res, QR_SIG_UNKNOWN_KEY, what, err, "signed by key %s, which is not trusted (trusted: %s)",
                      res->key_id, trusted);
    return refuse(res, QR_SIG_UNKNOWN_KEY, what, err,
                  "no trusted key (%s) verifies it, and it names no key (made by openssl or an older "
                  "qslm-quant): signed by another key, or the manifest changed since", trusted);
}

/* ---------------------------------------------------------------- the bundle */

/* DIR/manifest.json.sig's bytes (at most QR_SIG_FILE_MAX + 1: one more is caught as too long);
 * *present false when there is none. */
static qr_status read_signature(const char *sig_path, uint8_t *buf, size_t *n, bool *present, qr_error *err)
{
    *n = 0;
    *present = false;
    FILE *f = fopen(sig_path, "rb");
    if (!f)
        return errno == ENOENT ? QR_OK : qr_fail(err, QR_ERR_IO, "%s: cannot open: %s", sig_path, strerror(errno));
    *present = true;
    *n = fread(buf, 1, QR_SIG_FILE_MAX + 1, f);
    bool bad = ferror(f);
    fclose(f);
    return bad ? qr_fail(err, QR_ERR_IO, "%s: read error", sig_path) : QR_OK;
}

qr_status qr_bundle_load_trusted(const char *dir, qr_pubkey *const *keys, size_t n_keys,
                                 qr_bundle **out, qr_sig_result *res, qr_error *err)
{
    *out = NULL;
    memset(res, 0, sizeof *res);
    char *path = qr_bundle_path(dir, QR_BUNDLE_MANIFEST), *sig_path = qr_bundle_path(dir, QR_BUNDLE_SIGNATURE);
    char *text = NULL;
    size_t len = 0, sig_len = 0;
    uint8_t sig[QR_SIG_FILE_MAX + 1];
    bool signed_ = false;
    qr_status st = path && sig_path ? QR_OK : qr_fail(err, QR_ERR_NOMEM, "%s: out of memory", dir);
    if (st == QR_OK && (st = qr_read_file(path, QR_BUNDLE_MANIFEST_MAX, &text, &len, err)) == QR_ERR_INVALID)
        st = qr_fail(err, QR_ERR_FORMAT, "%s: larger than the %zu-byte limit of a manifest", path,
                     QR_BUNDLE_MANIFEST_MAX);
    if (st == QR_OK) {
        uint8_t digest[QR_SHA256_BYTES];
        st = qr_sha256_buffer(text, len, path, digest, err);
        if (st == QR_OK)
            qr_sha256_to_hex(digest, res->manifest_sha256);
    }
    if (st == QR_OK && n_keys == 0) { /* nothing to check against: say what is there, never fail on it */
        size_t der_len;
        qr_error ignored;
        if (read_signature(sig_path, sig, &sig_len, &signed_, &ignored) != QR_OK) {
            signed_ = true; /* there, but unreadable: still "not checked" */
            sig_len = 0;
        }
        res->verdict = signed_ ? QR_SIG_UNCHECKED : QR_SIG_UNSIGNED;
        if (signed_)
            (void)qr_sig_split(sig, sig_len, sig_path, &der_len, res->key_id, &ignored);
    } else if (st == QR_OK) { /* an unreadable signature is an error here: keys must check it */
        st = read_signature(sig_path, sig, &sig_len, &signed_, err);
        if (st == QR_OK && !signed_) {
            st = refuse(res, QR_SIG_UNSIGNED, path, err, "there is no %s", sig_path);
        } else if (st == QR_OK) {
            char sha[QR_SHA256_HEX_SIZE];
            memcpy(sha, res->manifest_sha256, sizeof sha);
            st = qr_sig_check(keys, n_keys, text, len, sig, sig_len, path, res, err);
            memcpy(res->manifest_sha256, sha, sizeof sha);
        }
    }
    if (st == QR_OK) /* the very bytes that were hashed and checked */
        st = qr_bundle_parse(text, len, path, out, err);
    free(text);
    free(sig_path);
    free(path);
    return st;
}
