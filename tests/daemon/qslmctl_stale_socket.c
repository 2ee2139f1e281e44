/* qslmctl_stale_socket.c: leaves a socket file that nobody listens on, for test_qslmctl.sh.
 *
 * Binds an AF_UNIX stream socket at argv[1] and exits without listen(): the file stays, and a
 * connect() to it is refused, like the socket a crashed daemon leaves behind. A helper because
 * a shell cannot bind a socket and python or socat may be missing; not a server of any kind. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (argc != 2 || strlen(argv[1]) >= sizeof addr.sun_path) {
        fprintf(stderr, "usage: qslmctl_stale_socket PATH (at most %zu bytes)\n",
                sizeof addr.sun_path - 1);
        return 2;
    }
    memcpy(addr.sun_path, argv[1], strlen(argv[1]));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror(argv[1]);
        return 1;
    }
    close(fd);
    return 0;
}
