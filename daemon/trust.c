/* trust.c: trusted_keys, from its text to a set of loaded public keys (trust.h). Not here:
 * what a signature says about them (runtime/bundle_trust.c), when they are used (variants.c). */
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"

bool qd_trust_off(const char *spec)
{
    return spec[0] == '\0' || strcmp(spec, "none") == 0;
}

/* The next path of the list at *p (trimmed of spaces and tabs) into buf; *p moves past its comma.
 * False at the end of the list. */
static bool next_path(const char **p, char *buf, size_t cap, bool *empty, bool *too_long)
{
    if (!**p)
        return false;
    const char *s = *p, *comma = strchr(s, ','), *e = comma ? comma : s + strlen(s);
    *p = comma ? comma + 1 : e;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - s);
    *empty = n == 0;
    *too_long = n >= cap;
    if (!*too_long) {
        memcpy(buf, s, n);
        buf[n] = '\0';
    }
    return true;
}

qr_status qd_trust_check_spec(const char *spec, qr_error *err)
{
    if (qd_trust_off(spec))
        return QR_OK;
    for (const char *c = spec; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return qr_fail(err, QR_ERR_INVALID, "holds a control character");
    char path[QD_PATH_MAX];
    bool empty, too_long;
    const char *p = spec;
    bool trailing_comma = spec[strlen(spec) - 1] == ',';
    while (next_path(&p, path, sizeof path, &empty, &too_long))
        if (empty || too_long)
            return qr_fail(err, QR_ERR_INVALID, empty ? "has an empty path" : "has a path too long");
    if (trailing_comma)
        return qr_fail(err, QR_ERR_INVALID, "has an empty path");
    return QR_OK;
}

static qr_status add_key(qd_trust *t, const char *path, qr_error *err)
{
    if (t->n == QD_TRUST_MAX_KEYS)
        return qr_fail(err, QR_ERR_INVALID, "trusted_keys: more than %d keys (at %s)", QD_TRUST_MAX_KEYS, path);
    qr_error e;
    if (qr_pubkey_load(path, &t->keys[t->n], &e) != QR_OK)
        return qr_fail(err, e.status, "trusted_keys: %s", e.msg);
    t->n++;
    return QR_OK;
}

/* scandir's filter: the names a shell's *.pem would match (no dot files), so a key set aside as
 * .old.pem or a README beside the keys is not read. */
static int pem_name(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 4 && strcmp(d->d_name + n - 4, ".pem") == 0;
}

/* Every *.pem of dir, in name order (scandir's alphasort), so the set and its log line are the
 * same at every load. */
static qr_status add_dir(qd_trust *t, const char *dir, qr_error *err)
{
    struct dirent **names;
    int n = scandir(dir, &names, pem_name, alphasort);
    if (n < 0)
        return qr_fail(err, QR_ERR_IO, "trusted_keys: %s: cannot list: %s", dir, strerror(errno));
    qr_status st = n == 0 ? qr_fail(err, QR_ERR_NOT_FOUND, "trusted_keys: %s: holds no *.pem key file", dir) : QR_OK;
    for (int i = 0; i < n; i++) {
        char path[QD_PATH_MAX];
        int len = snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]->d_name);
        if (st == QR_OK && (len < 0 || (size_t)len >= sizeof path))
            st = qr_fail(err, QR_ERR_INVALID, "trusted_keys: %s: a path too long", dir);
        if (st == QR_OK)
            st = add_key(t, path, err);
        free(names[i]);
    }
    free(names);
    return st;
}

qr_status qd_trust_load(const char *spec, qd_trust *t, qr_error *err)
{
    memset(t, 0, sizeof *t);
    if (qd_trust_off(spec))
        return QR_OK;
    qr_error e;
    if (qd_trust_check_spec(spec, &e) != QR_OK)
        return qr_fail(err, QR_ERR_INVALID, "trusted_keys: the list %s", e.msg);
    char path[QD_PATH_MAX];
    bool empty, too_long;
    const char *p = spec;
    qr_status st = QR_OK;
    while (st == QR_OK && next_path(&p, path, sizeof path, &empty, &too_long)) {
        struct stat sb;
        if (stat(path, &sb) != 0)
            st = qr_fail(err, errno == ENOENT ? QR_ERR_NOT_FOUND : QR_ERR_IO, "trusted_keys: %s: %s", path,
                         strerror(errno));
        else
            st = S_ISDIR(sb.st_mode) ? add_dir(t, path, err) : add_key(t, path, err);
    }
    if (st != QR_OK)
        qd_trust_free(t);
    return st;
}

void qd_trust_free(qd_trust *t)
{
    for (size_t i = 0; i < t->n; i++)
        qr_pubkey_free(t->keys[i]);
    memset(t, 0, sizeof *t);
}

void qd_trust_describe(const qd_trust *t, char *buf, size_t cap)
{
    if (t->n == 0) {
        snprintf(buf, cap, "off");
        return;
    }
    size_t o = (size_t)snprintf(buf, cap, "%zu key%s:", t->n, t->n == 1 ? "" : "s");
    for (size_t i = 0; i < t->n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s %s (%s)", i ? "," : "", qr_pubkey_id(t->keys[i]),
                              qr_pubkey_path(t->keys[i]));
}
