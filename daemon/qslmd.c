/* qslmd: serves a bundle of quantization variants of one spike-driven language model over a
 * Unix socket, switching between them as the memory and power it may use change. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "config.h"
#include "linear.h"
#include "log.h"
#include "server.h"

#define EXIT_USAGE 2

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qslmd [options]\n"
            "Serves a QSLM variant bundle over a Unix socket (protocol: ipc/PROTOCOL.md); stop it\n"
            "with SIGTERM, reload the bundle with SIGHUP or `qslmctl reload`.\n"
            "\n"
            "  --socket PATH          socket to listen on (default %s)\n"
            "  --bundle DIR           the bundle to serve (default %s)\n"
            "  --threads N            inference threads (default: the CPUs qslmd may run on)\n"
            "  --batch N              sequences per forward call (default 4, as the manifest's footprints assume)\n"
            "  --max-active N         requests computed at once; more wait in the queue (default 32)\n"
            "  --max-line BYTES       longest request line (default 65536)\n"
            "  --max-tokens N         upper bound of generate's max_tokens (default 1024)\n"
            "  --queue-depth N        requests waiting for the model before `busy` (default 64)\n"
            "  --max-in-flight N      unanswered requests per connection before `busy` (default 16)\n"
            "  --max-output SIZE      replies queued to one client before it is dropped as too slow (default 8M)\n"
            "  --memory-budget SIZE   start with this memory budget, as `set-budget` (e.g. 32M)\n"
            "  --power-budget POWER   start with this power budget (e.g. 3.5W)\n"
            "  --telemetry-root DIR   read /proc and /sys under DIR (default /; tests use a fake tree)\n"
            "  --policy-interval SEC  how often telemetry is read and the policy re-run (default 1)\n"
            "  --up-delay SEC         headroom must last this long before switching to a better variant (default 10)\n"
            "  --reserve SIZE         MemAvailable kept for others (default 64M)\n"
            "  --psi-threshold PCT    memory PSI avg10 that counts as pressure; 0 turns it off (default 10)\n"
            "  --mlock                lock the served variant in memory\n"
            "  --log-level LEVEL      error, warning, notice, info or debug (default info)\n"
            "  -h, --help             this text\n"
            "  --version              the version\n",
            QD_DEFAULT_SOCKET, QSLM_BUNDLE_DIR);
}

/* A positive integer option, or exit 2 naming it. */
static unsigned long long parse_count(const char *opt, const char *v, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n < 1 || n > max) {
        fprintf(stderr, "qslmd: --%s: '%s' is not an integer in 1..%llu\n", opt, v, max);
        exit(EXIT_USAGE);
    }
    return n;
}

static double parse_seconds(const char *opt, const char *v, double min)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < min || x > 86400) {
        fprintf(stderr, "qslmd: --%s: '%s' is not a number in %g..86400\n", opt, v, min);
        exit(EXIT_USAGE);
    }
    return x;
}

static uint64_t parse_size_opt(const char *opt, const char *v)
{
    uint64_t bytes;
    qi_error e;
    if (qi_parse_memory(v, strlen(v), opt, &bytes, &e) != QI_OK) {
        fprintf(stderr, "qslmd: --%s: %s\n", opt, e.msg);
        exit(EXIT_USAGE);
    }
    return bytes;
}

static int cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}

int main(int argc, char **argv)
{
    enum {
        O_SOCKET = 256, O_BUNDLE, O_THREADS, O_BATCH, O_MAX_ACTIVE, O_MAX_LINE, O_MAX_TOKENS, O_QUEUE, O_IN_FLIGHT,
        O_MAX_OUTPUT, O_MEMORY, O_POWER, O_ROOT, O_INTERVAL, O_UP_DELAY, O_RESERVE, O_PSI, O_MLOCK, O_LOG, O_VERSION
    };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, O_SOCKET}, {"bundle", required_argument, NULL, O_BUNDLE},
        {"threads", required_argument, NULL, O_THREADS}, {"batch", required_argument, NULL, O_BATCH},
        {"max-active", required_argument, NULL, O_MAX_ACTIVE}, {"max-line", required_argument, NULL, O_MAX_LINE},
        {"max-tokens", required_argument, NULL, O_MAX_TOKENS}, {"queue-depth", required_argument, NULL, O_QUEUE},
        {"max-in-flight", required_argument, NULL, O_IN_FLIGHT}, {"max-output", required_argument, NULL, O_MAX_OUTPUT},
        {"memory-budget", required_argument, NULL, O_MEMORY}, {"power-budget", required_argument, NULL, O_POWER},
        {"telemetry-root", required_argument, NULL, O_ROOT}, {"policy-interval", required_argument, NULL, O_INTERVAL},
        {"up-delay", required_argument, NULL, O_UP_DELAY}, {"reserve", required_argument, NULL, O_RESERVE},
        {"psi-threshold", required_argument, NULL, O_PSI}, {"mlock", no_argument, NULL, O_MLOCK},
        {"log-level", required_argument, NULL, O_LOG}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION}, {NULL, 0, NULL, 0},
    };
    qd_config cfg;
    qd_config_init(&cfg);
    uint64_t power_uw = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET: cfg.socket_path = optarg; break;
        case O_BUNDLE: cfg.bundle_dir = optarg; break;
        case O_THREADS: cfg.threads = (int)parse_count("threads", optarg, 256); break;
        case O_BATCH: cfg.batch = parse_count("batch", optarg, 1024); break;
        case O_MAX_ACTIVE: cfg.max_active = parse_count("max-active", optarg, 4096); break;
        case O_MAX_LINE: cfg.limits.max_line = parse_count("max-line", optarg, 64u << 20); break;
        case O_MAX_TOKENS: cfg.limits.max_tokens = (uint32_t)parse_count("max-tokens", optarg, 1u << 20); break;
        case O_QUEUE: cfg.limits.queue_depth = (uint32_t)parse_count("queue-depth", optarg, 1u << 20); break;
        case O_IN_FLIGHT: cfg.limits.max_in_flight = (uint32_t)parse_count("max-in-flight", optarg, 1u << 20); break;
        case O_MAX_OUTPUT: cfg.max_output = (size_t)parse_size_opt("max-output", optarg); break;
        case O_MEMORY:
            cfg.initial_budget.memory_bytes = parse_size_opt("memory-budget", optarg);
            cfg.initial_budget.has_memory = true;
            break;
        case O_POWER: {
            qi_error e;
            if (qi_parse_power(optarg, strlen(optarg), "power-budget", &power_uw, &e) != QI_OK) {
                fprintf(stderr, "qslmd: --power-budget: %s\n", e.msg);
                return EXIT_USAGE;
            }
            cfg.initial_budget.has_power = true;
            cfg.initial_budget.power_w = (double)power_uw / 1e6;
            break;
        }
        case O_ROOT: cfg.telemetry_root = optarg; break;
        case O_INTERVAL: cfg.policy_interval_s = parse_seconds("policy-interval", optarg, 0.01); break;
        case O_UP_DELAY: cfg.policy.up_delay_s = parse_seconds("up-delay", optarg, 0); break;
        case O_RESERVE: cfg.policy.reserve_bytes = parse_size_opt("reserve", optarg); break;
        case O_PSI: cfg.policy.psi_threshold = parse_seconds("psi-threshold", optarg, 0); break;
        case O_MLOCK: cfg.lock_memory = true; break;
        case O_LOG: {
            static const char *names[] = {"error", "warning", "notice", "info", "debug"};
            int level = -1;
            for (int i = 0; i < 5; i++)
                if (strcmp(optarg, names[i]) == 0)
                    level = QD_LOG_ERR + i;
            if (level < 0) {
                fprintf(stderr, "qslmd: --log-level: '%s' is not error, warning, notice, info or debug\n", optarg);
                return EXIT_USAGE;
            }
            cfg.log_level = level;
            break;
        }
        case O_VERSION: printf("qslmd %s\n", QSLM_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "qslmd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (cfg.threads == 0)
        cfg.threads = cpus_allowed();
    qd_log_setup(cfg.log_level, getenv("JOURNAL_STREAM") != NULL);
    signal(SIGPIPE, SIG_IGN);
    qr_blas_use_one_thread(); /* batches above 8 rows go to BLAS; the pool already has the cores */

    qd_server *srv;
    qr_error err;
    if (qd_server_new(&cfg, &srv, &err) != QR_OK) {
        qd_log(QD_LOG_ERR, "%s", err.msg);
        return 1;
    }
    int rc = qd_server_run(srv);
    qd_server_free(srv);
    return rc;
}
