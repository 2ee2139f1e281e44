/* qslmd: serves a bundle of quantization variants of one spike-driven language model over a
 * Unix socket, switching between them as the memory and power it may use change. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_file.h"
#include "footprint.h"
#include "linear.h"
#include "log.h"
#include "sd_glue.h"
#include "server.h"
#include "trust.h"

#define EXIT_USAGE 2

/* The installed configuration file; a missing one means the defaults. */
#define DEFAULT_CONFIG QSLM_SYSCONFDIR "/qslm/qslmd.conf"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qslmd [options]\n"
            "Serves a QSLM variant bundle over a Unix socket (protocol: ipc/PROTOCOL.md); stop it\n"
            "with SIGTERM, reload the bundle and the configuration with SIGHUP or `qslmctl reload`.\n"
            "Settings come from the configuration file (qslmd.conf(5)), then these options.\n"
            "\n"
            "  --config FILE          the configuration file (default %s; that one may be absent)\n"
            "  --check-config         load and check the configuration, print FILE: ok or the error, exit\n"
            "  --socket PATH          socket to listen on (default %s)\n"
            "  --socket-mode MODE     its permission bits in octal, e.g. 0660 (default umask: what the\n"
            "                         umask leaves); not for a socket systemd passes (SocketMode=)\n"
            "  --socket-group GROUP   its group, a name or number (default none: qslmd's own group);\n"
            "                         not for a socket systemd passes (SocketGroup=)\n"
            "  --bundle DIR           the bundle to serve (default %s)\n"
            "  --trusted-keys LIST    serve only bundles signed by one of these public keys: files or\n"
            "                         directories of *.pem, separated by commas (default none: not checked)\n"
            "  --threads N            inference threads (default 0: the CPUs qslmd may run on)\n"
            "  --batch N              generation steps per forward call (default 4)\n"
            "  --max-active N         requests computed at once; more wait in the queue (default 32)\n"
            "  --max-active-per-conn N  of those, at most N from one connection; the rest of its requests\n"
            "                         wait (default 4)\n"
            "  --round-tokens N       generation steps computed per round, split fairly across connections\n"
            "                         (default 16)\n"
            "  --prefill-chunk N      prompt and text tokens read at once, as rows of one sequence (1..63,\n"
            "                         default %d); footprints count a runner for the larger of the two\n"
            "  --round-ms MS          a round aims at this many milliseconds: its chunks of prompts and\n"
            "                         texts fill what its generation steps leave (default 5)\n"
            "  --share-by-uid         connections of one peer uid share one share of the model\n"
            "  --mlock                lock the served variant in memory\n"
            "  --log-level LEVEL      error, warning, notice, info or debug (default info)\n"
            "  --admin-group GROUP    who besides root may use set-budget, pin, unpin, reload (default %s)\n"
            "  --metrics-file PATH    write the metrics (qslmctl metrics) to PATH, an absolute path ending\n"
            "                         in .prom, for node_exporter's textfile collector (default none)\n"
            "  --metrics-interval SEC how often the metrics file is written (default %g)\n"
            "  --max-line SIZE        longest request line (default 64K)\n"
            "  --max-tokens N         upper bound of generate's max_tokens (default 1024)\n"
            "  --queue-depth N        requests waiting for the model before `busy` (default 64)\n"
            "  --max-in-flight N      unanswered requests per connection before `busy` (default 16)\n"
            "  --max-output SIZE      replies queued to one client before it is dropped as too slow (default 8M)\n"
            "  --max-connections N    connections open at once; more get too_many_connections\n"
            "                         (default 0: the file descriptor limit less 32)\n"
            "  --idle-timeout SEC     close a connection without a request or anything in flight\n"
            "                         for this long, with idle_timeout; 0: never (default 300)\n"
            "  --policy-interval SEC  how often telemetry is read and the policy re-run (default 1)\n"
            "  --up-delay SEC         headroom must last this long before switching to a better variant (default 10)\n"
            "  --up-headroom PCT      percent of the budget to spare before switching up (default 5)\n"
            "  --reserve SIZE         MemAvailable kept for others (default 64M)\n"
            "  --cgroup-reserve SIZE  kept free under the cgroup's memory.max and memory.high (default 1M)\n"
            "  --psi-threshold PCT    memory PSI avg10 that counts as pressure; 0 turns it off (default 10)\n"
            "  --psi-hold SEC         after a step down for pressure, the next waits this long (default 10)\n"
            "  --power-budget POWER   the default power budget, in force while set-budget gives none\n"
            "                         (e.g. 3.5W; default none)\n"
            "  --memory-budget SIZE   start with this memory budget, as `set-budget` (e.g. 32M; default auto)\n"
            "  --telemetry-root DIR   read /proc and /sys under DIR (default /; tests use a fake tree)\n"
            "  -h, --help             this text\n"
            "  --version              the version\n",
            DEFAULT_CONFIG, QD_DEFAULT_SOCKET, QSLM_BUNDLE_DIR, QR_PREFILL_CHUNK, QD_DEFAULT_ADMIN_GROUP,
            QD_DEFAULT_METRICS_INTERVAL_S);
}

/* Prints the configuration's verdict for --check-config; 0 or 1. The trusted keys are read too:
 * a key file that would fail the start fails the check. */
static int check_config(const qd_config_source *src)
{
    qd_config cfg;
    qd_trust trust;
    qr_error err;
    const char *name = src->path ? src->path : "(no file)";
    if (qd_config_load(src, &cfg, &err) != QR_OK || qd_trust_load(cfg.trusted_keys, &trust, &err) != QR_OK) {
        fprintf(stderr, "qslmd: %s\n", err.msg);
        return 1;
    }
    char keys[64] = "";
    if (trust.n)
        snprintf(keys, sizeof keys, "; trusted_keys: %zu key%s", trust.n, trust.n == 1 ? "" : "s");
    qd_trust_free(&trust);
    if (src->path && src->missing_ok && access(src->path, F_OK) != 0)
        printf("%s: ok (absent: the defaults)%s\n", name, keys);
    else
        printf("%s: ok%s\n", name, keys);
    return 0;
}

int main(int argc, char **argv)
{
    /* Options that set a configuration key have val = O_KEY + the key. */
    enum { O_CONFIG = 256, O_CHECK, O_VERSION, O_KEY };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"check-config", no_argument, NULL, O_CHECK},
        {"socket", required_argument, NULL, O_KEY + QD_KEY_SOCKET},
        {"socket-mode", required_argument, NULL, O_KEY + QD_KEY_SOCKET_MODE},
        {"socket-group", required_argument, NULL, O_KEY + QD_KEY_SOCKET_GROUP},
        {"bundle", required_argument, NULL, O_KEY + QD_KEY_BUNDLE},
        {"trusted-keys", required_argument, NULL, O_KEY + QD_KEY_TRUSTED_KEYS},
        {"threads", required_argument, NULL, O_KEY + QD_KEY_THREADS},
        {"batch", required_argument, NULL, O_KEY + QD_KEY_BATCH},
        {"max-active", required_argument, NULL, O_KEY + QD_KEY_MAX_ACTIVE},
        {"max-active-per-conn", required_argument, NULL, O_KEY + QD_KEY_MAX_ACTIVE_PER_CONN},
        {"round-tokens", required_argument, NULL, O_KEY + QD_KEY_ROUND_TOKENS},
        {"prefill-chunk", required_argument, NULL, O_KEY + QD_KEY_PREFILL_CHUNK},
        {"round-ms", required_argument, NULL, O_KEY + QD_KEY_ROUND_MS},
        {"share-by-uid", no_argument, NULL, O_KEY + QD_KEY_SHARE_BY_UID},
        {"mlock", no_argument, NULL, O_KEY + QD_KEY_MLOCK},
        {"log-level", required_argument, NULL, O_KEY + QD_KEY_LOG_LEVEL},
        {"admin-group", required_argument, NULL, O_KEY + QD_KEY_ADMIN_GROUP},
        {"metrics-file", required_argument, NULL, O_KEY + QD_KEY_METRICS_FILE},
        {"metrics-interval", required_argument, NULL, O_KEY + QD_KEY_METRICS_INTERVAL},
        {"max-line", required_argument, NULL, O_KEY + QD_KEY_MAX_LINE},
        {"max-tokens", required_argument, NULL, O_KEY + QD_KEY_MAX_TOKENS},
        {"queue-depth", required_argument, NULL, O_KEY + QD_KEY_QUEUE_DEPTH},
        {"max-in-flight", required_argument, NULL, O_KEY + QD_KEY_MAX_IN_FLIGHT},
        {"max-output", required_argument, NULL, O_KEY + QD_KEY_MAX_OUTPUT},
        {"max-connections", required_argument, NULL, O_KEY + QD_KEY_MAX_CONNECTIONS},
        {"idle-timeout", required_argument, NULL, O_KEY + QD_KEY_IDLE_TIMEOUT},
        {"policy-interval", required_argument, NULL, O_KEY + QD_KEY_INTERVAL},
        {"up-delay", required_argument, NULL, O_KEY + QD_KEY_UP_DELAY},
        {"up-headroom", required_argument, NULL, O_KEY + QD_KEY_UP_HEADROOM},
        {"reserve", required_argument, NULL, O_KEY + QD_KEY_RESERVE},
        {"cgroup-reserve", required_argument, NULL, O_KEY + QD_KEY_CGROUP_RESERVE},
        {"psi-threshold", required_argument, NULL, O_KEY + QD_KEY_PSI_THRESHOLD},
        {"psi-hold", required_argument, NULL, O_KEY + QD_KEY_PSI_HOLD},
        {"power-budget", required_argument, NULL, O_KEY + QD_KEY_POWER_BUDGET},
        {"memory-budget", required_argument, NULL, O_KEY + QD_KEY_MEMORY_BUDGET},
        {"telemetry-root", required_argument, NULL, O_KEY + QD_KEY_TELEMETRY_ROOT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    /* First record: the file, then each flag's value (checked at once, so a bad flag is a usage
     * error); then build: defaults, file, flags. The daemon keeps the source for reloads. */
    qd_config_source src;
    qd_config_source_init(&src);
    src.path = DEFAULT_CONFIG;
    src.missing_ok = true;
    bool check_only = false;
    int c, index;
    while ((c = getopt_long(argc, argv, "h", opts, &index)) != -1) {
        if (c >= O_KEY && c < O_KEY + QD_KEY_COUNT) {
            qr_error e;
            const char *value = optarg ? optarg : "true"; /* --mlock */
            if (qd_config_source_set(&src, (qd_config_key)(c - O_KEY), value, &e) != QR_OK) {
                fprintf(stderr, "qslmd: --%s: %s\n", opts[index].name, e.msg);
                return EXIT_USAGE;
            }
            continue;
        }
        switch (c) {
        case O_CONFIG:
            src.path = optarg;
            src.missing_ok = false;
            break;
        case O_CHECK: check_only = true; break;
        case O_VERSION: printf("qslmd %s\n", QSLM_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "qslmd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (check_only)
        return check_config(&src);

    bool journal = qd_sd_stderr_is_journal();
    qd_log_setup(QD_LOG_INFO, journal);
    qd_config cfg;
    qr_error err;
    if (qd_config_load(&src, &cfg, &err) != QR_OK) {
        qd_log(QD_LOG_ERR, "%s", err.msg);
        return 1;
    }
    qd_log_setup(cfg.log_level, journal);
    signal(SIGPIPE, SIG_IGN);
    qr_blas_use_one_thread(); /* f32 chunk products call sgemm on the pool's threads, which have the cores */

    qd_server *srv;
    if (qd_server_new(&cfg, &srv, &err) != QR_OK) {
        qd_log(QD_LOG_ERR, "%s", err.msg);
        return 1;
    }
    qd_server_set_source(srv, &src);
    int rc = qd_server_run(srv);
    qd_server_free(srv);
    return rc;
}
