/* bundle_versions.h: versioned bundle directories, signing keys and the `current` link, for the
 * tests of trusted keys and rollouts (test_daemon_trust, test_daemon_rollout).
 *
 * Everything is real: copies of $QSLM_SOURCE_DIR/models/bundle (its model files hard-linked
 * into further versions when the file system allows, copied otherwise), keys made by the
 * project's own keygen (runtime/bundle_sign.h), signatures by qr_bundle_sign, and the link moved
 * the way README's "Rolling out a bundle" says: a new link beside it, renamed over it.
 *
 * The helpers assert with cmocka: the test's main thread only. Include after <cmocka.h>. */
#ifndef BUNDLE_VERSIONS_H
#define BUNDLE_VERSIONS_H

#include "bundle_sign.h"

#define BV_PATH 512

/* A new directory dst holding the regular files of $QSLM_SOURCE_DIR/models/bundle (copies). */
void bv_copy_default(const char *dst);

/* A new version dst from src: manifest.json and manifest.json.sig copied (when there), every
 * other regular file hard-linked (copied when it cannot be). */
void bv_clone(const char *src, const char *dst);

/* A new key pair with the project's keygen; the key's id into id. */
void bv_keygen(const char *priv, const char *pub, char id[QR_KEY_ID_LEN + 1]);

/* Signs dir/manifest.json with priv (qr_bundle_sign, as `qslm-quant sign`). */
void bv_sign(const char *dir, const char *priv);

/* Removes dir/manifest.json.sig. */
void bv_unsign(const char *dir);

/* Rewrites dir/manifest.json with `created` set (its signature no longer matches). */
void bv_set_created(const char *dir, const char *created);

/* Edits dir/manifest.json after signing: a valid manifest still, whose created_by differs. */
void bv_edit_manifest(const char *dir);

/* Writes text to dir/manifest.json and signs those bytes with priv, key-id line included,
 * bypassing qr_bundle_sign's own parse: a signed manifest the reader must still refuse. */
void bv_sign_raw(const char *dir, const char *text, const char *priv);

/* link now points at target: `ln -s target link.tmp && mv -T link.tmp link`, in C. */
void bv_point(const char *link, const char *target);

/* Writes text to path (replaced atomically). */
void bv_write(const char *path, const char *text);

/* realpath(path), into out. */
void bv_real(const char *path, char out[BV_PATH]);

#endif
