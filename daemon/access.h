/* access.h: who may use the control ops (set-budget, pin, unpin, reload).
 *
 * Root, the daemon's own user (it could do anything the daemon does anyway), and members of the
 * configured admin group: the peer's primary group from SO_PEERCRED, or a supplementary group
 * from SO_PEERGROUPS (Linux 4.13; both are the credentials at connect time, so a later setgid by
 * the client changes nothing). Inference and reading ops are for anyone who can open the
 * socket: its mode and group decide that. */
#ifndef QD_ACCESS_H
#define QD_ACCESS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    bool has_group;     /* the admin group exists */
    gid_t group;
    char name[128];     /* as configured ("" : root only) */
} qd_admin;

/* Resolves the group name (getgrnam_r). An empty name, or one that does not exist, leaves
 * has_group false; *why (may be NULL) then says which, for the log. */
void qd_admin_resolve(qd_admin *a, const char *name, const char **why);

/* True when the peer on fd (uid/gid from SO_PEERCRED) may use control ops. */
bool qd_admin_allows(const qd_admin *a, int fd, uid_t uid, gid_t gid);

#endif
