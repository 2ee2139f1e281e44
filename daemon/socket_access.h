/* socket_access.h: the permission bits and group of the socket qslmd creates itself.
 *
 * For runs by hand (qslmd --socket-mode 0660 --socket-group qslm, or socket_mode and
 * socket_group in qslmd.conf): without them the socket's mode is what the umask leaves, and who
 * may connect depends on the shell that started qslmd. Under systemd the socket is qslmd.socket's,
 * and its SocketMode= and SocketGroup= decide; this module is not used for it. */
#ifndef QD_SOCKET_ACCESS_H
#define QD_SOCKET_ACCESS_H

#include "error.h"

/* Gives the socket file at path the group `group` (a name, or a number when no group has that
 * name; "" leaves the group alone), then the mode `mode` (0..0777; -1 leaves it alone). Call it
 * between bind and listen, so nobody connects before the socket has its final access. Errors:
 * QR_ERR_NOT_FOUND for an unknown group, QR_ERR_IO naming path and the system's reason (a
 * chown to a group qslmd is not a member of needs root). */
qr_status qd_socket_set_access(const char *path, int mode, const char *group, qr_error *err);

#endif
