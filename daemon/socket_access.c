/* socket_access.c: see socket_access.h. */
#include "socket_access.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The gid of group: its name first (getgrnam_r), then its number, as systemd's SocketGroup=. */
static qr_status group_id(const char *group, gid_t *gid, qr_error *err)
{
    struct group gr, *res = NULL;
    char buf[16384];
    if (getgrnam_r(group, &gr, buf, sizeof buf, &res) == 0 && res) {
        *gid = gr.gr_gid;
        return QR_OK;
    }
    if (group[0] && strspn(group, "0123456789") == strlen(group) && strlen(group) <= 9) {
        *gid = (gid_t)strtoul(group, NULL, 10);
        return QR_OK;
    }
    return qr_fail(err, QR_ERR_NOT_FOUND, "socket group '%s': no such group", group);
}

qr_status qd_socket_set_access(const char *path, int mode, const char *group, qr_error *err)
{
    if (group[0]) {
        gid_t gid;
        qr_status st = group_id(group, &gid, err);
        if (st)
            return st;
        if (chown(path, (uid_t)-1, gid) != 0)
            return qr_fail(err, QR_ERR_IO, "%s: cannot give the socket group '%s': %s%s", path, group,
                           strerror(errno), errno == EPERM ? " (qslmd must be root or a member of it)" : "");
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) != 0)
        return qr_fail(err, QR_ERR_IO, "%s: cannot set the socket's mode to %04o: %s", path, (unsigned)mode,
                       strerror(errno));
    return QR_OK;
}
