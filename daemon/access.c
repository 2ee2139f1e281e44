/* access.c: see access.h. */
#include "access.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define MAX_PEER_GROUPS 256

void qd_admin_resolve(qd_admin *a, const char *name, const char **why)
{
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    if (why)
        *why = NULL;
    if (!name[0]) {
        if (why)
            *why = "no admin group is configured: control ops are for root only";
        return;
    }
    struct group gr, *res = NULL;
    char buf[16384];
    int rc = getgrnam_r(name, &gr, buf, sizeof buf, &res);
    if (rc != 0 || !res) {
        if (why)
            *why = "the admin group does not exist: control ops are for root only";
        return;
    }
    a->has_group = true;
    a->group = gr.gr_gid;
}

bool qd_admin_allows(const qd_admin *a, int fd, uid_t uid, gid_t gid)
{
    if (uid == 0 || uid == getuid())
        return true;
    if (!a->has_group)
        return false;
    if (gid == a->group)
        return true;
    gid_t groups[MAX_PEER_GROUPS];
    socklen_t len = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0)
        return false; /* ERANGE (more groups than we read) or an old kernel: refuse */
    for (size_t i = 0; i < len / sizeof *groups; i++)
        if (groups[i] == a->group)
            return true;
    return false;
}
