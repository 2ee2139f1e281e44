/* cmd_sign.c: `qslm-quant keygen | sign DIR | verify DIR` — ECDSA P-256 over the manifest. */
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
    printf("wrote %s (private, mode 0600) and %s (public)\n", o->key, o->pubkey);
    return 0;
}

int qq_cmd_sign(const qq_options *o)
{
    if (!o->key) {
        fprintf(stderr, "qslm-quant: sign needs --key PRIV.pem\n");
        return EXIT_USAGE;
    }
    qr_error err;
    if (qr_bundle_sign(o->rest[0], o->key, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("signed %s/%s into %s/%s\n", o->rest[0], QR_BUNDLE_MANIFEST, o->rest[0], QR_BUNDLE_SIGNATURE);
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
    if (qr_bundle_load_verified(o->rest[0], o->pubkey, &b, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_FAIL;
    }
    printf("%s/%s: signature good\n", o->rest[0], QR_BUNDLE_MANIFEST);
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
