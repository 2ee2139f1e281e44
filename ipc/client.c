/* client.c: connect, write whole lines, read lines through a line reader. */
#include "client.h"

#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "line_reader.h"

#define READ_CHUNK 65536

struct qi_client {
    int fd;
    qi_line_reader *reader;
    char buf[READ_CHUNK]; /* bytes read from the socket; buf[pos..end) not yet framed */
    size_t pos, end;
};

qi_code qi_client_from_fd(int fd, size_t max_reply, qi_client **out, qi_error *err)
{
    *out = NULL;
    qi_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
    }
    qi_code code = qi_line_reader_new(max_reply ? max_reply : QI_CLIENT_MAX_REPLY, &c->reader, err);
    if (code) {
        close(fd);
        free(c);
        return code;
    }
    c->fd = fd;
    *out = c;
    return QI_OK;
}

/* Why connect(path) was refused, from what this user can see of the socket: a directory on
 * the way it may not enter, a socket whose mode lets only its owner connect (qslmd run by hand
 * under a umask of 022), or a socket for its group's members. The old hint ("is this user in
 * the service's group?") was wrong in the first two cases. */
static void access_hint(const char *path, char *buf, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(buf, cap, "a directory on the way is not searchable by this user");
        return;
    }
    char group[64];
    struct group gr, *res = NULL;
    char grbuf[4096];
    if (getgrgid_r(st.st_gid, &gr, grbuf, sizeof grbuf, &res) == 0 && res)
        snprintf(group, sizeof group, "'%s'", gr.gr_name);
    else
        snprintf(group, sizeof group, "%lu", (unsigned long)st.st_gid);
    unsigned mode = (unsigned)st.st_mode & 0777;
    if (mode & 0020)
        snprintf(buf, cap, "the socket is mode %04o, group %s: is this user in group %s? "
                 "(after usermod -aG, log in again)", mode, group, group);
    else
        snprintf(buf, cap, "the socket is mode %04o, group %s: only its owner (uid %lu) may connect "
                 "(see qslmd --socket-mode and --socket-group)", mode, group, (unsigned long)st.st_uid);
}

qi_code qi_client_connect(const char *path, qi_client **out, qi_error *err)
{
    *out = NULL;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof addr.sun_path)
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, NULL,
                       "socket path must be 1..%zu bytes long", sizeof addr.sun_path - 1);
    memcpy(addr.sun_path, path, n);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return qi_fail(err, QI_ERR_IO, NULL, "socket: %s", strerror(errno));
    int r;
    do
        r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(fd);
        switch (e) {
        case ENOENT:
        case ENOTDIR:
            return qi_fail(err, QI_ERR_NO_SOCKET, NULL, "%s: no such socket (is qslmd running?)",
                           path);
        case EACCES:
        case EPERM: {
            char hint[256];
            access_hint(path, hint, sizeof hint);
            return qi_fail(err, QI_ERR_ACCESS, NULL, "%s: permission denied: %s", path, hint);
        }
        case ECONNREFUSED:
            return qi_fail(err, QI_ERR_REFUSED, NULL,
                           "%s: connection refused (nothing listens there: a stale socket?)",
                           path);
        default:
            return qi_fail(err, QI_ERR_IO, NULL, "%s: connect: %s", path, strerror(e));
        }
    }
    return qi_client_from_fd(fd, 0, out, err);
}

void qi_client_close(qi_client *c)
{
    if (!c)
        return;
    close(c->fd);
    qi_line_reader_free(c->reader);
    free(c);
}

int qi_client_fd(const qi_client *c)
{
    return c->fd;
}

/* Writes the line's body and its newline, through short writes and EINTR, in one sendmsg
 * when the socket takes it all: no gap between body and newline in which a server that
 * already refused the line could hang up. MSG_NOSIGNAL so a vanished server is an error
 * return, not a SIGPIPE that kills the caller. */
static qi_code write_line(int fd, const char *body, size_t len, qi_error *err)
{
    struct iovec iov[2] = {{(void *)body, len}, {"\n", 1}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    while (msg.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                return qi_fail(err, QI_ERR_CLOSED, NULL, "the server closed the connection");
            return qi_fail(err, QI_ERR_IO, NULL, "send: %s", strerror(errno));
        }
        size_t done = (size_t)w; /* drop the iovecs sent whole, trim the one sent in part */
        while (msg.msg_iovlen > 0 && done >= msg.msg_iov->iov_len) {
            done -= msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + done;
            msg.msg_iov->iov_len -= done;
        }
    }
    return QI_OK;
}

qi_code qi_client_send_line(qi_client *c, const char *line, size_t len, qi_error *err)
{
    bool has_nl = len > 0 && line[len - 1] == '\n';
    size_t body = has_nl ? len - 1 : len;
    if (memchr(line, '\n', body))
        return qi_fail(err, QI_ERR_INVALID_ARGUMENT, NULL,
                       "a request line must not hold a newline");
    return write_line(c->fd, line, body, err);
}

qi_code qi_client_send(qi_client *c, const qi_request *req, qi_error *err)
{
    char *line;
    size_t len;
    qi_code code = qi_request_build(req, &line, &len, err);
    if (code)
        return code;
    code = qi_client_send_line(c, line, len, err);
    free(line);
    return code;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the socket is readable or the deadline (< 0: none) passes. */
/* Waits until fd is readable or the deadline (-1: none) passes. A deadline already past still
 * polls once, so a timeout of 0 reads what has arrived. EINTR is retried. */
static qi_code wait_readable(int fd, long long deadline, qi_error *err)
{
    for (;;) {
        int timeout = -1;
        bool last = false;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0) {
                left = 0;
                last = true;
            }
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout);
        if (r > 0)
            return QI_OK;
        if (r < 0 && errno != EINTR)
            return qi_fail(err, QI_ERR_IO, NULL, "poll: %s", strerror(errno));
        if (r == 0 && last)
            return qi_fail(err, QI_ERR_TIMEOUT, NULL, "no reply in time");
    }
}

bool qi_client_has_buffered(const qi_client *c)
{
    return c->pos < c->end;
}

qi_code qi_client_read_line(qi_client *c, int timeout_ms, const char **line, size_t *len,
                            qi_error *err)
{
    long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        while (c->pos < c->end) {
            size_t used;
            qi_line_event ev = qi_line_reader_feed(c->reader, c->buf + c->pos, c->end - c->pos,
                                                   &used, line, len);
            c->pos += used;
            if (ev == QI_LINE_READY)
                return QI_OK;
            if (ev == QI_LINE_TOO_LARGE)
                return qi_fail(err, QI_ERR_PROTOCOL, NULL, "a reply line is longer than %zu bytes",
                               qi_line_reader_max_line(c->reader));
            if (ev == QI_LINE_NOMEM)
                return qi_fail(err, QI_ERR_NOMEM, NULL, "out of memory");
        }
        qi_code code = wait_readable(c->fd, deadline, err);
        if (code)
            return code;
        ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == ECONNRESET)
                return qi_fail(err, QI_ERR_CLOSED, NULL, "the server reset the connection");
            return qi_fail(err, QI_ERR_IO, NULL, "recv: %s", strerror(errno));
        }
        if (r == 0)
            return qi_fail(err, QI_ERR_CLOSED, NULL, "%s",
                           qi_line_reader_pending(c->reader)
                               ? "the server closed the connection in the middle of a reply"
                               : "the server closed the connection");
        c->pos = 0;
        c->end = (size_t)r;
    }
}

qi_code qi_client_read_reply(qi_client *c, int timeout_ms, qi_reply *out, qi_error *err)
{
    const char *line;
    size_t len;
    memset(out, 0, sizeof *out);
    qi_code code = qi_client_read_line(c, timeout_ms, &line, &len, err);
    if (code)
        return code;
    return qi_reply_parse(line, len, out, err);
}
