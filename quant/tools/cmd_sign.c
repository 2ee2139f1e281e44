/* cmd_sign.c: `qslm-quant keygen | sign DIR | verify DIR` — ECDSA P-256 over the manifest. Each
 * names the key by its id (bundle_trust.h), the one qslmd logs and `qslmctl status` shows. */
#include <stdio.h>

#include "bundle.h"
#include "bundle_sign.h"
#include "cli.h"

int qq_cmd_keygen(const qq_options *o)
{
    if (!o->key || !o->pubkey) {
        fprintf(stderr, "qslm-quant: keygen needs --key PRIV.pem and --pubkey PUB.pem\n");
        return EXIT_USAGE;
    }
    qr_error err;
    if (qr_sign_keygen(o->key, o->pubkey, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    char id[QR_KEY_ID_LEN + 1];
    if (qr_sign_key_id(o->pubkey, false, id, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("wrote %s (private, mode 0600) and %s (public); key id %s\n", o->key, o->pubkey, id);
    return 0;
}

int qq_cmd_sign(const qq_options *o)
{
    if (!o->key) {
        fprintf(stderr, "qslm-quant: sign needs --key PRIV.pem\n");
        return EXIT_USAGE;
    }
    qr_error err;
    char id[QR_KEY_ID_LEN + 1];
    if (qr_bundle_sign(o->rest[0], o->key, &err) || qr_sign_key_id(o->key, true, id, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("signed %s/%s into %s/%s with key %s\n", o->rest[0], QR_BUNDLE_MANIFEST, o->rest[0], QR_BUNDLE_SIGNATURE,
           id);
    return 0;
}

/* The signature, then every variant's file against the manifest's size and hash. */
int qq_cmd_verify(const qq_options *o)
{
    if (!o->pubkey) {
        fprintf(stderr, "qslm-quant: verify needs --pubkey PUB.pem\n");
        return EXIT_USAGE;
    }
    qr_error err;
    qr_bundle *b;
    char id[QR_KEY_ID_LEN + 1];
    if (qr_bundle_load_verified(o->rest[0], o->pubkey, &b, id, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("%s/%s: signature good, key %s\n", o->rest[0], QR_BUNDLE_MANIFEST, id);
    int rc = 0;
    for (size_t i = 0; i < b->n_variants; i++) {
        if (qr_bundle_verify_variant(b, o->rest[0], i, &err)) {
            printf("%s: BAD: %s\n", b->variants[i].name, err.msg);
            rc = EXIT_FAIL;
        } else {
            printf("%s: %s ok (sha256 %.16s...)\n", b->variants[i].name, b->variants[i].file, b->variants[i].sha256);
        }
    }
    qr_bundle_free(b);
    return rc;
}
