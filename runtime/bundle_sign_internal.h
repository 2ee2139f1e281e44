/* bundle_sign_internal.h: the mbedTLS key handling bundle_sign.c and bundle_trust.c share. Not
 * part of the runtime's API: only those two files include it. */
#ifndef QR_BUNDLE_SIGN_INTERNAL_H
#define QR_BUNDLE_SIGN_INTERNAL_H

#include <mbedtls/pk.h>
#include <stdbool.h>

#include "bundle_sign.h"
#include "error.h"

/* Parses a key from text (len bytes, then a NUL) into pk (mbedtls_pk_init'ed by the caller):
 * P-256 only; name stands for it in messages. */
qr_status qr_sign_parse_key(const char *text, size_t len, const char *name, bool private_key, mbedtls_pk_context *pk,
                            qr_error *err);

/* Reads and parses a key file into pk (mbedtls_pk_init'ed by the caller): P-256 only. */
qr_status qr_sign_load_key(const char *path, bool private_key, mbedtls_pk_context *pk, qr_error *err);

/* The id of pk's public half (bundle_trust.h); what names the key in a message. */
qr_status qr_sign_pk_id(mbedtls_pk_context *pk, const char *what, char id[QR_KEY_ID_LEN + 1], qr_error *err);

#endif
