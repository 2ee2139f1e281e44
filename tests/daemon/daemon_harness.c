/* daemon_harness.c: see daemon_harness.h. */
#include "daemon_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 20000
#define MAX_ARGS 64

static int fail(dh_daemon *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(dh_daemon *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof h->err, fmt, ap);
    va_end(ap);
    return -1;
}

double dh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void dh_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int dh_init(dh_daemon *h)
{
    memset(h, 0, sizeof *h);
    const char *tmp = getenv("TMPDIR");
    /* a socket path must fit sun_path (108 bytes): keep the directory short */
    if (!tmp || !tmp[0] || strlen(tmp) > 60)
        tmp = "/tmp";
    snprintf(h->dir, sizeof h->dir, "%s/qslmd-test-XXXXXX", tmp);
    if (!mkdtemp(h->dir)) {
        int e = errno;
        h->dir[0] = '\0';
        return fail(h, "mkdtemp: %s", strerror(e));
    }
    snprintf(h->sock, sizeof h->sock, "%s/s.sock", h->dir);
    snprintf(h->root, sizeof h->root, "%s/root", h->dir);
    snprintf(h->log, sizeof h->log, "%s/stderr.log", h->dir);
    if (mkdir(h->root, 0700) != 0)
        return fail(h, "mkdir %s: %s", h->root, strerror(errno));
    return 0;
}

char *dh_read_log(const dh_daemon *h)
{
    FILE *f = fopen(h->log, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        if (n + 1024 + 1 > cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, 1024, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

bool dh_log_wait(const dh_daemon *h, const char *needle, int timeout_ms)
{
    double end = dh_now_ms() + timeout_ms;
    for (;;) {
        char *log = dh_read_log(h);
        bool found = log && strstr(log, needle);
        free(log);
        if (found)
            return true;
        if (dh_now_ms() > end)
            return false;
        dh_sleep_ms(10);
    }
}

/* The tail of the daemon's stderr into h->err after a prefix. */
static int fail_with_log(dh_daemon *h, const char *what)
{
    char *log = dh_read_log(h);
    const char *tail = log ? log : "(no stderr)";
    size_t n = strlen(tail);
    if (n > 3000)
        tail += n - 3000;
    fail(h, "%s; qslmd's stderr:\n%s", what, tail);
    free(log);
    return -1;
}

int dh_spawn(dh_daemon *h, const char *const *extra)
{
    if (h->pid > 0)
        return fail(h, "dh_spawn: a daemon is already running (pid %ld)", (long)h->pid);
    const char *exe = getenv("QSLMD");
    const char *src = getenv("QSLM_SOURCE_DIR");
    if (!exe || !exe[0])
        return fail(h, "QSLMD is not set: the path of the qslmd to test");
    if (!src || !src[0])
        return fail(h, "QSLM_SOURCE_DIR is not set");
    char bundle[1024];
    if (h->bundle[0])
        snprintf(bundle, sizeof bundle, "%s", h->bundle);
    else
        snprintf(bundle, sizeof bundle, "%s/models/bundle", src);

    const char *argv[MAX_ARGS];
    size_t n = 0;
    /* QSLMD_WRAPPER: a command in front of qslmd (valgrind ...), its words split at spaces */
    char wrapper[1024];
    const char *wrap = getenv("QSLMD_WRAPPER");
    snprintf(wrapper, sizeof wrapper, "%s", wrap ? wrap : "");
    char *save = NULL;
    for (char *w = strtok_r(wrapper, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (n + 1 >= MAX_ARGS / 2)
            return fail(h, "dh_start: QSLMD_WRAPPER has too many words");
        argv[n++] = w;
    }
    const char *prog = n ? argv[0] : exe;
    const char *std[] = {exe, "--socket", h->sock, "--bundle", bundle, "--threads", "1", "--telemetry-root",
                         h->root, "--policy-interval", "0.05", "--up-delay", "0.2"};
    for (size_t i = 0; i < sizeof std / sizeof *std; i++)
        argv[n++] = std[i];
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= MAX_ARGS)
            return fail(h, "dh_start: too many arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;

    int logfd = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return fail(h, "open %s: %s", h->log, strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(logfd);
        return fail(h, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* the child: dies with the test process; stderr (and stdout) into the log */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        signal(SIGPIPE, SIG_DFL);
        if (h->child_setup)
            h->child_setup(h->child_ctx);
        execvp(prog, (char *const *)argv);
        dprintf(2, "harness: exec %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    close(logfd);
    h->pid = pid;
    return 0;
}

int dh_start(dh_daemon *h, const char *const *extra)
{
    if (dh_spawn(h, extra) != 0)
        return -1;
    pid_t pid = h->pid;
    const char *wrap = getenv("QSLMD_WRAPPER");
    int timeout_ms = wrap && wrap[0] ? 180000 : START_TIMEOUT_MS;
    double end = dh_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            h->pid = 0;
            char what[128];
            if (WIFEXITED(status))
                snprintf(what, sizeof what, "qslmd exited with status %d before accepting", WEXITSTATUS(status));
            else
                snprintf(what, sizeof what, "qslmd died of signal %d before accepting", WTERMSIG(status));
            return fail_with_log(h, what);
        }
        qi_client *c = NULL;
        if (qi_client_connect(h->sock, &c, NULL) == QI_OK) {
            qi_client_close(c);
            return 0;
        }
        if (dh_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            h->pid = 0;
            return fail_with_log(h, "qslmd did not accept in time");
        }
        dh_sleep_ms(10);
    }
}

int dh_signal(dh_daemon *h, int sig)
{
    if (h->pid <= 0)
        return fail(h, "dh_signal: no daemon");
    if (kill(h->pid, sig) != 0)
        return fail(h, "kill %ld: %s", (long)h->pid, strerror(errno));
    return 0;
}

int dh_wait_exit(dh_daemon *h, int timeout_ms, int *status)
{
    if (h->pid <= 0)
        return fail(h, "dh_wait_exit: no daemon");
    double end = dh_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(h->pid, status, WNOHANG);
        if (r == h->pid) {
            h->pid = 0;
            return 0;
        }
        if (r < 0)
            return fail(h, "waitpid: %s", strerror(errno));
        if (dh_now_ms() > end)
            return fail_with_log(h, "qslmd did not exit in time");
        dh_sleep_ms(5);
    }
}

int dh_stop(dh_daemon *h)
{
    int status;
    if (dh_signal(h, SIGTERM) != 0)
        return -1;
    if (dh_wait_exit(h, 20000, &status) != 0) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, &status, 0);
        h->pid = 0;
        return -1;
    }
    return status;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void dh_teardown(dh_daemon *h)
{
    if (h->pid > 0) {
        int status;
        kill(h->pid, SIGKILL);
        waitpid(h->pid, &status, 0);
        h->pid = 0;
    }
    if (h->dir[0]) {
        if (getenv("QSLM_KEEP_TEST_DIR"))
            fprintf(stderr, "harness: keeping %s\n", h->dir);
        else
            nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        h->dir[0] = '\0';
    }
}

qi_client *dh_connect(dh_daemon *h)
{
    qi_client *c = NULL;
    qi_error e;
    if (qi_client_connect(h->sock, &c, &e) != QI_OK) {
        fail(h, "connect %s: %s", h->sock, e.msg);
        return NULL;
    }
    return c;
}

static int mkdirs(dh_daemon *h, char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0700);
        int e = errno;
        *p = '/';
        if (r != 0 && e != EEXIST)
            return fail(h, "mkdir %s: %s", path, strerror(e));
    }
    return 0;
}

int dh_write_root_file(dh_daemon *h, const char *rel, const char *content)
{
    char path[2 * DH_PATH_MAX], tmp[2 * DH_PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", h->root, rel);
    if (mkdirs(h, path) != 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return fail(h, "fopen %s: %s", tmp, strerror(errno));
    size_t n = strlen(content);
    bool ok = fwrite(content, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        return fail(h, "writing %s failed", path);
    return 0;
}
