/* target_bundle_signature.c: fuzz the manifest's signature check (runtime/bundle_trust.h) on the
 * path qslmd takes with trusted_keys: split the signature file, verify it over the manifest's
 * bytes against two trusted keys, and parse those same bytes when it is good.
 *
 * Input: byte 0 is n, the signature file's length (cut to what follows); then n bytes of
 * manifest.json.sig; the rest is manifest.json. Any input must give one of the verdicts, with
 * QR_OK exactly for "good" (then the key id is the verifying key's), and a refusal worded
 * "fuzz: signature refused (<verdict>; key <id|none>): ..." naming a 16-hex-digit key or none.
 * It does not touch the file system. The seeds (corpus/bundle_signature) come from
 * gen_signature_seeds.sh, whose key A is trusted here (B is trusted too, C is not). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "bundle_trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* gen_signature_seeds.sh's keys A (id 365a1b3e026042c5) and B (a5edc55ccbc5fd64). */
static const char key_a[] = "-----BEGIN PUBLIC KEY-----\n"
                            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEllWC2CE4n1BFDC9v2lIuV50IA3BM\n"
                            "rlIdtTo/HURgz9YB/jFdcSswVE6lGrnnug4pXvIZqBe8wgxCKzRVkX+/mw==\n"
                            "-----END PUBLIC KEY-----\n";
static const char key_b[] = "-----BEGIN PUBLIC KEY-----\n"
                            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQgW4zhdV0JXWOdMFJfY/MAk26hEL\n"
                            "iTyY12O/09QMb1eB84QAt5g32g5F0oVcFWRuR29kCNfzHe9Cvh1N3PoJZA==\n"
                            "-----END PUBLIC KEY-----\n";

static qr_pubkey *keys[2]; /* parsed once: the fuzzer calls this function millions of times */

static bool is_key_id(const char *s)
{
    if (strlen(s) != QR_KEY_ID_LEN)
        return false;
    for (size_t i = 0; i < QR_KEY_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_error err;
    if (!keys[0] && (qr_pubkey_parse(key_a, sizeof key_a - 1, "a.pub", &keys[0], &err) != QR_OK ||
                     qr_pubkey_parse(key_b, sizeof key_b - 1, "b.pub", &keys[1], &err) != QR_OK ||
                     strcmp(qr_pubkey_id(keys[0]), "365a1b3e026042c5") != 0))
        abort();
    if (size == 0)
        return 0;
    size_t n = data[0] < size - 1 ? data[0] : size - 1;
    const uint8_t *sig = data + 1, *manifest = data + 1 + n;
    size_t len = size - 1 - n;

    size_t der_len;
    char named[QR_KEY_ID_LEN + 1];
    if (qr_sig_split(sig, n, "fuzz", &der_len, named, &err) == QR_OK) {
        if (der_len > n || der_len > QR_SIG_MAX_BYTES || (named[0] && !is_key_id(named)))
            abort();
    } else if (err.status != QR_ERR_FORMAT || strncmp(err.msg, "fuzz: ", 6) != 0) {
        abort();
    }

    qr_sig_result res;
    qr_status st = qr_sig_check(keys, 2, manifest, len, sig, n, "fuzz", &res, &err);
    if ((st == QR_OK) != (res.verdict == QR_SIG_GOOD))
        abort();
    if (st != QR_OK) {
        if (st != QR_ERR_FORMAT || (res.verdict != QR_SIG_BAD && res.verdict != QR_SIG_UNKNOWN_KEY) ||
            strncmp(err.msg, "fuzz: signature refused (", 25) != 0 || (res.key_id[0] && !is_key_id(res.key_id)))
            abort();
        return 0;
    }
    if (res.key_index > 1 || strcmp(res.key_id, qr_pubkey_id(keys[res.key_index])) != 0)
        abort();
    qr_bundle *b = NULL; /* what qslmd would serve: the bytes just verified */
    if (qr_bundle_parse((const char *)manifest, len, "fuzz", &b, &err) == QR_OK) {
        if (!b || b->n_variants == 0)
            abort();
    } else if (b) {
        abort();
    }
    qr_bundle_free(b);
    return 0;
}
