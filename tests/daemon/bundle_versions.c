/* bundle_versions.c: versioned bundles, keys and the link for daemon tests (bundle_versions.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "bundle_sign.h"
#include "bundle_versions.h"

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        fail_msg("open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        fail_msg("create %s: %s", to, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
}

/* Every regular file of src into the new directory dst: copied, or hard-linked when link_models
 * and the file is not the manifest or its signature. */
static void fill_dir(const char *src, const char *dst, bool link_models)
{
    if (mkdir(dst, 0755) != 0)
        fail_msg("mkdir %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d)
        fail_msg("opendir %s: %s", src, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        char a[BV_PATH * 2], b[BV_PATH * 2];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        if (stat(a, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        bool own = strcmp(e->d_name, QR_BUNDLE_MANIFEST) == 0 || strcmp(e->d_name, QR_BUNDLE_SIGNATURE) == 0;
        if (own || !link_models || link(a, b) != 0)
            copy_file(a, b);
    }
    closedir(d);
}

void bv_copy_default(const char *dst)
{
    const char *src = getenv("QSLM_SOURCE_DIR");
    assert_non_null(src);
    char from[BV_PATH];
    snprintf(from, sizeof from, "%s/models/bundle", src);
    fill_dir(from, dst, false);
}

void bv_clone(const char *src, const char *dst)
{
    fill_dir(src, dst, true);
}

void bv_keygen(const char *priv, const char *pub, char id[QR_KEY_ID_LEN + 1])
{
    qr_error err;
    if (qr_sign_keygen(priv, pub, &err) != QR_OK || qr_sign_key_id(pub, false, id, &err) != QR_OK)
        fail_msg("keygen: %s", err.msg);
}

void bv_sign(const char *dir, const char *priv)
{
    qr_error err;
    if (qr_bundle_sign(dir, priv, &err) != QR_OK)
        fail_msg("sign %s: %s", dir, err.msg);
}

void bv_unsign(const char *dir)
{
    char p[BV_PATH * 2];
    snprintf(p, sizeof p, "%s/%s", dir, QR_BUNDLE_SIGNATURE);
    if (unlink(p) != 0 && errno != ENOENT)
        fail_msg("unlink %s: %s", p, strerror(errno));
}

void bv_set_created(const char *dir, const char *created)
{
    qr_bundle *b = NULL;
    qr_error err;
    if (qr_bundle_load(dir, &b, &err) != QR_OK)
        fail_msg("%s", err.msg);
    free(b->created);
    b->created = created ? strdup(created) : NULL;
    if (qr_bundle_write(b, dir, &err) != QR_OK)
        fail_msg("%s", err.msg);
    qr_bundle_free(b);
}

void bv_edit_manifest(const char *dir)
{
    qr_bundle *b = NULL;
    qr_error err;
    if (qr_bundle_load(dir, &b, &err) != QR_OK)
        fail_msg("%s", err.msg);
    char *by = malloc(strlen(b->created_by) + 16);
    assert_non_null(by);
    sprintf(by, "%s (edited)", b->created_by);
    free(b->created_by);
    b->created_by = by;
    if (qr_bundle_write(b, dir, &err) != QR_OK)
        fail_msg("%s", err.msg);
    qr_bundle_free(b);
}

void bv_sign_raw(const char *dir, const char *text, const char *priv)
{
    char p[BV_PATH * 2];
    snprintf(p, sizeof p, "%s/%s", dir, QR_BUNDLE_MANIFEST);
    bv_write(p, text);
    uint8_t sig[QR_SIG_FILE_MAX + 1];
    size_t n;
    char id[QR_KEY_ID_LEN + 1];
    qr_error err;
    if (qr_sign_data(priv, text, strlen(text), sig, &n, &err) != QR_OK || qr_sign_key_id(priv, true, id, &err) != QR_OK)
        fail_msg("%s", err.msg);
    n += (size_t)snprintf((char *)sig + n, QR_SIG_KEY_ID_LINE + 1, "key-id %s\n", id);
    snprintf(p, sizeof p, "%s/%s", dir, QR_BUNDLE_SIGNATURE);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(sig, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

void bv_point(const char *link, const char *target)
{
    char tmp[BV_PATH + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", link);
    unlink(tmp);
    if (symlink(target, tmp) != 0)
        fail_msg("symlink %s: %s", tmp, strerror(errno));
    if (rename(tmp, link) != 0) /* atomic: a reader sees the old link or the new one */
        fail_msg("rename %s: %s", tmp, strerror(errno));
}

void bv_write(const char *path, const char *text)
{
    char tmp[BV_PATH * 2 + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

void bv_real(const char *path, char out[BV_PATH])
{
    char buf[PATH_MAX];
    if (!realpath(path, buf))
        fail_msg("realpath %s: %s", path, strerror(errno));
    snprintf(out, BV_PATH, "%.500s", buf);
}
