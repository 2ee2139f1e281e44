/* sd_glue.c: see sd_glue.h. */
#include "sd_glue.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

int qd_sd_listen_socket(char *path_out, size_t cap, qr_error *err)
{
    if (path_out && cap)
        path_out[0] = '\0';
    int n = sd_listen_fds(1);
    if (n < 0) {
        qr_fail(err, QR_ERR_INVALID, "socket activation: %s", strerror(-n));
        return -2;
    }
    if (n == 0)
        return -1;
    if (n > 1) {
        for (int i = 0; i < n; i++)
            close(SD_LISTEN_FDS_START + i);
        qr_fail(err, QR_ERR_INVALID, "socket activation passed %d sockets; qslmd serves exactly one", n);
        return -2;
    }
    int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
        close(fd);
        qr_fail(err, QR_ERR_INVALID,
                "socket activation passed fd %d, which is not a listening Unix stream socket "
                "(check ListenStream= in qslmd.socket)", fd);
        return -2;
    }
    if (path_out && cap) {
        struct sockaddr_un a;
        socklen_t len = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &len) == 0 && len > offsetof(struct sockaddr_un, sun_path) &&
            a.sun_path[0])
            snprintf(path_out, cap, "%.*s", (int)(len - offsetof(struct sockaddr_un, sun_path)), a.sun_path);
    }
    return fd;
}

void qd_sd_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "");
}

void qd_sd_status(const char *status)
{
    sd_notifyf(0, "STATUS=%s", status ? status : "");
}

void qd_sd_extend_timeout(uint64_t usec)
{
    sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

void qd_sd_reloading(void)
{
    sd_notify(0, "RELOADING=1");
}

void qd_sd_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

uint64_t qd_sd_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

void qd_sd_watchdog_ping(void)
{
    sd_notify(0, "WATCHDOG=1");
}

bool qd_sd_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}
