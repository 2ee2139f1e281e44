/* trust.h: the public keys qslmd trusts to sign the bundles it serves (qslmd.conf's
 * trusted_keys), read from the files and directories the setting names.
 *
 * The setting is "" or "none" (off: every bundle is served, an unsigned one with a warning), or a
 * comma-separated list of paths, each a PEM (or DER) P-256 public key file, or a directory whose
 * `*.pem` files are all such keys (in name order; names starting with '.' are skipped). A path
 * that cannot be read, a file that is not a public key (a private key included), or a list that
 * yields no key at all is an error: a typo must not turn the check off. Checking a bundle against
 * the keys is the runtime's (bundle_trust.h); this module only finds and loads them.
 *
 * A set is built for one bundle open (start, reload) and freed after it: a reload reads the
 * setting and the key files again, so adding or removing a key is a config edit and a reload. */
#ifndef QD_TRUST_H
#define QD_TRUST_H

#include <stdbool.h>
#include <stddef.h>

#include "bundle_trust.h"
#include "error.h"

#define QD_TRUST_MAX_KEYS 64

typedef struct {
    qr_pubkey *keys[QD_TRUST_MAX_KEYS];
    size_t n; /* 0: trusted_keys is off */
} qd_trust;

/* True when spec turns the check off ("" or "none"). */
bool qd_trust_off(const char *spec);

/* Whether spec has the setting's shape (paths separated by commas, none empty, no control
 * characters), without touching the file system: the configuration file's check. On failure
 * err says what is wrong ("has an empty path"). */
qr_status qd_trust_check_spec(const char *spec, qr_error *err);

/* Loads the keys spec names into *t (zeroed first; t->n == 0 when off). Errors name the path
 * and the fault, starting with "trusted_keys: ". On failure *t holds nothing. */
qr_status qd_trust_load(const char *spec, qd_trust *t, qr_error *err);

void qd_trust_free(qd_trust *t);

/* "2 keys: 3f2a9c0d11e2b4f7 (/etc/qslm/keys/build.pem), ..." or "off", for the log. */
void qd_trust_describe(const qd_trust *t, char *buf, size_t cap);

#endif
