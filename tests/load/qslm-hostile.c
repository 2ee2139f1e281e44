/* qslm-hostile: hostile clients against a qslmd it starts itself, with the bounds they must not
 * break asserted (issue 16).
 *
 *   qslm-hostile --mode storm|silent --socket PATH --notify PATH [--connections N] [--requests N]
 *                [--hold SEC] [--probe-max SEC] [--hwm-max MB] [--watchdog-max SEC]
 *                [--log FILE] -- QSLMD [qslmd args...]
 *
 * It binds PATH as $NOTIFY_SOCKET (a Unix datagram socket, as systemd does) and starts QSLMD with
 * WATCHDOG_USEC=2000000 (WatchdogSec=2), recording when each WATCHDOG=1 arrives; once READY=1
 * came, it floods the daemon:
 *   - storm: N connections each pipeline --requests `status` requests and read the replies
 *     (every one must come back);
 *   - silent: N connections each pipeline --requests `variants` requests and never read; they
 *     write what the socket takes for --hold seconds, then close.
 * Meanwhile a probe every 0.25 s opens a fresh connection and times one `status`. At the end:
 * the slowest probe must be under --probe-max s, the daemon's VmHWM (/proc/PID/status) under
 * --hwm-max MB, and no two watchdog pings (from READY=1 to the end of the flood) more than
 * --watchdog-max s apart; qslmd must then stop with exit 0 on SIGTERM. Prints the figures; exits
 * 0 when every bound held, 1 when one did not, 2 on a usage or set-up error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PINGS 100000
#define MAX_PROBES 10000

typedef struct {
    bool storm;            /* else silent */
    const char *socket, *notify, *log;
    unsigned connections;
    unsigned requests;
    double hold;           /* silent: seconds the non-readers keep their connections */
    double probe_max, hwm_max_mb, watchdog_max;
} options;

static options opt = {.connections = 10, .requests = 6000, .hold = 10, .probe_max = 5, .hwm_max_mb = 100,
                      .watchdog_max = 2.0};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- the service manager's side */

static int notify_fd = -1;
static pthread_mutex_t ping_lock = PTHREAD_MUTEX_INITIALIZER;
static double pings[MAX_PINGS];
static size_t n_pings;
static atomic_bool ready, stop_notify;

/* Records WATCHDOG=1 times and READY=1 until told to stop. */
static void *notify_main(void *arg)
{
    (void)arg;
    char buf[4096];
    while (!atomic_load(&stop_notify)) {
        struct pollfd p = {notify_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(notify_fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        double t = now_s();
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (strcmp(l, "WATCHDOG=1") == 0) {
                pthread_mutex_lock(&ping_lock);
                if (n_pings < MAX_PINGS)
                    pings[n_pings++] = t;
                pthread_mutex_unlock(&ping_lock);
            } else if (strcmp(l, "READY=1") == 0) {
                atomic_store(&ready, true);
            }
        }
    }
    return NULL;
}

static bool bind_notify(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path)
        return false;
    memcpy(a.sun_path, path, strlen(path) + 1);
    unlink(path);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return notify_fd >= 0 && bind(notify_fd, (struct sockaddr *)&a, sizeof a) == 0;
}

/* QSLMD with systemd's environment for a notify service with WatchdogSec=2. */
static pid_t spawn_daemon(char **argv)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    char buf[32];
    setenv("NOTIFY_SOCKET", opt.notify, 1);
    setenv("WATCHDOG_USEC", "2000000", 1);
    snprintf(buf, sizeof buf, "%ld", (long)getpid());
    setenv("WATCHDOG_PID", buf, 1);
    if (opt.log) {
        int fd = open(opt.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "qslm-hostile: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* The longest time between two pings from t0 to t1 (the edges count as pings: a silence that
 * began before t0 or lasts past t1 is counted from t0 or up to t1). */
static double max_ping_gap(double t0, double t1)
{
    pthread_mutex_lock(&ping_lock);
    double last = t0, gap = 0;
    for (size_t i = 0; i < n_pings; i++) {
        if (pings[i] <= t0 || pings[i] > t1)
            continue;
        gap = pings[i] - last > gap ? pings[i] - last : gap;
        last = pings[i];
    }
    gap = t1 - last > gap ? t1 - last : gap;
    pthread_mutex_unlock(&ping_lock);
    return gap;
}

static long vm_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* ---------------------------------------------------------------- clients */

static int connect_daemon(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(opt.socket) >= sizeof a.sun_path)
        return -1;
    memcpy(a.sun_path, opt.socket, strlen(opt.socket) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

typedef struct {
    pthread_t th;
    uint64_t sent;                  /* whole request lines written */
    atomic_uint_fast64_t replies;   /* reply lines read (the main thread watches it) */
    atomic_bool broken;             /* the connection failed (refused, reset, closed by the daemon) */
} flooder;

static atomic_bool end_flood;

/* Every request of one connection, one after the other, in one buffer (large writes: each small
 * write would cost the kernel's socket buffer far more than its bytes). */
static char *request_lines(const char *op, size_t *len)
{
    char *buf = malloc((size_t)opt.requests * 48 + 1);
    *len = 0;
    for (unsigned i = 0; buf && i < opt.requests; i++)
        *len += (size_t)snprintf(buf + *len, 48, "{\"id\":%u,\"op\":\"%s\"}\n", i, op);
    return buf;
}

/* storm: writes and reads at once until every reply came; silent: writes only, until --hold
 * ends (the main thread sets end_flood). */
static void *flood_main(void *arg)
{
    flooder *fl = arg;
    size_t len, off = 0;
    char *req = request_lines(opt.storm ? "status" : "variants", &len);
    int fd = connect_daemon();
    if (!req || fd < 0) {
        atomic_store(&fl->broken, true);
        free(req);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    char sink[1 << 16]; /* replies are counted, not kept */
    while (!atomic_load(&end_flood)) {
        if (opt.storm && atomic_load(&fl->replies) >= opt.requests)
            break;
        struct pollfd p = {fd, (short)((off < len ? POLLOUT : 0) | (opt.storm ? POLLIN : 0)), 0};
        if (p.events == 0) /* silent, everything written: hold the connection */
            p.events = POLLRDHUP;
        if (poll(&p, 1, 100) < 0 || ((p.revents & (POLLERR | POLLHUP | POLLRDHUP)) && !(p.revents & POLLIN))) {
            atomic_store(&fl->broken, true); /* the daemon closed it (replies left: read them first) */
            break;
        }
        if (p.revents & POLLOUT) {
            ssize_t n = write(fd, req + off, len - off > 65536 ? 65536 : len - off);
            if (n > 0) {
                for (ssize_t i = 0; i < n; i++)
                    fl->sent += req[off + (size_t)i] == '\n';
                off += (size_t)n;
            } else if (n < 0 && errno != EAGAIN) {
                atomic_store(&fl->broken, true);
                break;
            }
        }
        if (p.revents & POLLIN) {
            ssize_t n = read(fd, sink, sizeof sink);
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                atomic_store(&fl->broken, true);
                break;
            }
            uint64_t lines = 0;
            for (ssize_t i = 0; i < n; i++)
                lines += sink[i] == '\n';
            atomic_fetch_add(&fl->replies, lines);
        }
    }
    close(fd);
    free(req);
    return NULL;
}

/* One status from a fresh connection: seconds from connect to the whole reply, or -1 when none
 * came within 60 s. */
static double probe(void)
{
    double t0 = now_s();
    int fd = connect_daemon();
    if (fd < 0)
        return -1;
    const char *req = "{\"id\":\"probe\",\"op\":\"status\"}\n";
    double took = -1;
    if (write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
        char buf[8192];
        while (now_s() - t0 < 60) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 1000) < 0)
                break;
            if (!(p.revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                break;
            if (memchr(buf, '\n', (size_t)n)) {
                took = now_s() - t0;
                break;
            }
        }
    }
    close(fd);
    return took;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: qslm-hostile --mode storm|silent --socket PATH --notify PATH [--connections N]\n"
               "         [--requests N] [--hold SEC] [--probe-max SEC] [--hwm-max MB] [--watchdog-max SEC]\n"
               "         [--log FILE] -- QSLMD [args...]\n");
}

static bool parse_options(int argc, char **argv)
{
    static const struct option longs[] = {
        {"mode", required_argument, NULL, 'm'},       {"socket", required_argument, NULL, 's'},
        {"notify", required_argument, NULL, 'n'},     {"connections", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'r'},   {"hold", required_argument, NULL, 'H'},
        {"probe-max", required_argument, NULL, 'p'},  {"hwm-max", required_argument, NULL, 'M'},
        {"watchdog-max", required_argument, NULL, 'w'}, {"log", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    const char *mode = NULL;
    for (int o; (o = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
        switch (o) {
        case 'm': mode = optarg; break;
        case 's': opt.socket = optarg; break;
        case 'n': opt.notify = optarg; break;
        case 'c': opt.connections = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': opt.requests = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'H': opt.hold = strtod(optarg, NULL); break;
        case 'p': opt.probe_max = strtod(optarg, NULL); break;
        case 'M': opt.hwm_max_mb = strtod(optarg, NULL); break;
        case 'w': opt.watchdog_max = strtod(optarg, NULL); break;
        case 'l': opt.log = optarg; break;
        default: return false;
        }
    }
    if (!mode || (strcmp(mode, "storm") != 0 && strcmp(mode, "silent") != 0) || !opt.socket || !opt.notify ||
        optind >= argc || opt.connections < 1 || opt.connections > 1000 || opt.requests < 1 ||
        opt.requests > 1000000)
        return false;
    opt.storm = strcmp(mode, "storm") == 0;
    return true;
}

/* SIGTERM and up to 30 s for exit 0. */
static bool stop_daemon(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return false;
}

int main(int argc, char **argv)
{
    if (!parse_options(argc, argv)) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!bind_notify(opt.notify)) {
        fprintf(stderr, "qslm-hostile: cannot bind %s: %s\n", opt.notify, strerror(errno));
        return 2;
    }
    pthread_t nt;
    pthread_create(&nt, NULL, notify_main, NULL);
    pid_t pid = spawn_daemon(argv + optind);
    if (pid < 0)
        return 2;
    double t_start = now_s();
    while (!atomic_load(&ready) && now_s() - t_start < 120 && waitpid(pid, NULL, WNOHANG) == 0)
        usleep(20000);
    if (!atomic_load(&ready)) {
        fprintf(stderr, "qslm-hostile: qslmd sent no READY=1 within 120 s\n");
        kill(pid, SIGKILL);
        return 2;
    }
    double t_ready = now_s();
    double idle_probe = probe();

    flooder *fl = calloc(opt.connections, sizeof *fl);
    static double probes[MAX_PROBES];
    size_t n_probes = 0, lost_probes = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < opt.connections; i++)
        pthread_create(&fl[i].th, NULL, flood_main, &fl[i]);
    /* probes until the storm's replies are all in, or the silent clients' hold ends */
    for (;;) {
        usleep(250000);
        double p = probe();
        if (n_probes < MAX_PROBES)
            probes[n_probes++] = p;
        lost_probes += p < 0;
        if (!opt.storm && now_s() - t0 >= opt.hold)
            break;
        if (opt.storm) {
            bool all = true;
            for (unsigned i = 0; i < opt.connections; i++)
                all = all && (atomic_load(&fl[i].replies) >= opt.requests || atomic_load(&fl[i].broken));
            if (all || now_s() - t0 > 600)
                break;
        }
    }
    double t1 = now_s();
    long hwm = vm_hwm_kb(pid);
    atomic_store(&end_flood, true);
    uint64_t sent = 0, replies = 0;
    unsigned broken = 0;
    for (unsigned i = 0; i < opt.connections; i++) {
        pthread_join(fl[i].th, NULL);
        sent += fl[i].sent;
        replies += atomic_load(&fl[i].replies);
        broken += atomic_load(&fl[i].broken);
    }
    double after = probe();
    double gap = max_ping_gap(t_ready, now_s());
    bool stopped = stop_daemon(pid);
    atomic_store(&stop_notify, true);
    pthread_join(nt, NULL);

    double worst = 0;
    for (size_t i = 0; i < n_probes; i++)
        worst = probes[i] > worst ? probes[i] : worst;
    printf("%s: %u connections x %u %s: %.1f s; %llu requests written, %llu replies read, %u connections "
           "broken\n",
           opt.storm ? "status storm" : "non-reading pipeliners", opt.connections, opt.requests,
           opt.storm ? "status (read)" : "variants (never read)", t1 - t0, (unsigned long long)sent,
           (unsigned long long)replies, broken);
    printf("probe status from a fresh connection: %.3f s idle, %zu during the flood (slowest %.3f s, %zu "
           "unanswered within 60 s), %.3f s after\n",
           idle_probe, n_probes, worst, lost_probes, after);
    printf("qslmd VmHWM %.1f MB; watchdog (WatchdogSec=2): %zu pings, longest gap %.2f s; stopped with exit 0: %s\n",
           hwm / 1024.0, n_pings, gap, stopped ? "yes" : "no");

    int rc = 0;
    if (lost_probes || worst > opt.probe_max || after < 0) {
        printf("FAIL: a probe took longer than %.1f s (or got no answer)\n", opt.probe_max);
        rc = 1;
    }
    if (hwm < 0 || hwm / 1024.0 > opt.hwm_max_mb) {
        printf("FAIL: VmHWM over %.0f MB\n", opt.hwm_max_mb);
        rc = 1;
    }
    if (gap > opt.watchdog_max) {
        printf("FAIL: a watchdog gap over %.1f s: systemd would have killed qslmd\n", opt.watchdog_max);
        rc = 1;
    }
    if (opt.storm && (replies != (uint64_t)opt.requests * opt.connections || broken)) {
        printf("FAIL: the storm's clients did not get every reply\n");
        rc = 1;
    }
    if (!opt.storm && broken) {
        printf("FAIL: %u non-reading connections were dropped (backpressure should only pause them)\n", broken);
        rc = 1;
    }
    if (!stopped) {
        printf("FAIL: qslmd did not stop with exit 0 on SIGTERM\n");
        rc = 1;
    }
    free(fl);
    unlink(opt.notify);
    return rc;
}
