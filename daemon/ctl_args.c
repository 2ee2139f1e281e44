/* ctl_args.c: qslmctl's command line to one validated request, and its --help text.
 *
 * Options may come before or after the op (`qslmctl status --json`); `--` ends them, so a
 * prompt may start with '-'. An argument like "-1" or "-.5" is a value, not an option, so
 * `set-budget -1` is refused as a bad size rather than as an unknown option. Every value whose
 * range the protocol fixes is checked here (usage error, exit 2, nothing sent); what depends on
 * the server's configuration (the max_tokens limit, the vocabulary) is left to the server. */
#include "ctl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the option table */

typedef enum {
    OPT_SOCKET, OPT_JSON, OPT_TIMEOUT, OPT_HELP, OPT_VERSION,
    OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P, OPT_REPETITION_PENALTY,
    OPT_SEED, OPT_STOP, OPT_NO_STREAM, OPT_POWER, OPT_TASK,
} opt_id;

typedef struct {
    const char *name; /* without the leading "--" */
    opt_id id;
    bool has_value;
    int op;           /* the op it belongs to, or -1 for every op */
} opt_def;

static const opt_def opts[] = {
    {"socket", OPT_SOCKET, true, -1},
    {"json", OPT_JSON, false, -1},
    {"timeout", OPT_TIMEOUT, true, -1},
    {"help", OPT_HELP, false, -1},
    {"version", OPT_VERSION, false, -1},
    {"max-tokens", OPT_MAX_TOKENS, true, QI_OP_GENERATE},
    {"temperature", OPT_TEMPERATURE, true, QI_OP_GENERATE},
    {"top-k", OPT_TOP_K, true, QI_OP_GENERATE},
    {"top-p", OPT_TOP_P, true, QI_OP_GENERATE},
    {"repetition-penalty", OPT_REPETITION_PENALTY, true, QI_OP_GENERATE},
    {"seed", OPT_SEED, true, QI_OP_GENERATE},
    {"stop", OPT_STOP, true, QI_OP_GENERATE},
    {"no-stream", OPT_NO_STREAM, false, QI_OP_GENERATE},
    {"power", OPT_POWER, true, QI_OP_SET_BUDGET},
    {"task", OPT_TASK, true, QI_OP_CLASSIFY},
};

/* One synopsis line per op, shared by --help and the hint after a usage error. */
static const struct {
    qi_op op;
    const char *synopsis;
} synopses[] = {
    {QI_OP_GENERATE, "generate [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
                     "         [--repetition-penalty R] [--seed S] [--stop STR]... [--no-stream] TEXT"},
    {QI_OP_CLASSIFY, "classify [--task TASK] TEXT..."},
    {QI_OP_STATUS, "status"},
    {QI_OP_VARIANTS, "variants"},
    {QI_OP_SET_BUDGET, "set-budget [SIZE | auto] [--power POWER | auto]"},
    {QI_OP_PIN, "pin NAME"},
    {QI_OP_UNPIN, "unpin"},
    {QI_OP_RELOAD, "reload"},
    {QI_OP_METRICS, "metrics"},
};

void ctl_print_usage(FILE *f)
{
    fputs(
        "usage: qslmctl [--socket PATH] [--json] [--timeout SECONDS] OP [ARGS]\n"
        "\n"
        "Talks to qslmd, the qslm serving daemon, over its Unix socket.\n"
        "\n"
        "Ops:\n"
        "  generate TEXT          continue the prompt TEXT; tokens are printed as they come\n"
        "  classify [--task TASK] TEXT...\n"
        "                         label each TEXT (1..64 of them): one \"LABEL P\" line per\n"
        "                         text, in order: the label's name and its probability;\n"
        "                         --task picks the model's head (default: its first)\n"
        "  status                 the active variant and why, budgets and their sources,\n"
        "                         telemetry readings, queue, counters, uptime\n"
        "  variants               the bundle's variants: footprint, bits/weight, metrics\n"
        "  metrics                the daemon's metrics in Prometheus text format (0.0.4):\n"
        "                         variant, switches, budgets, readings, requests, latencies\n"
        "  set-budget SIZE        set the memory budget (e.g. 32M); `auto` drops it\n"
        "  set-budget --power POWER\n"
        "                         set the power budget (e.g. 3.5W); `--power auto` drops it;\n"
        "                         SIZE and --power may be given together\n"
        "  pin NAME               serve variant NAME whatever the policy would pick\n"
        "  unpin                  hand the choice back to the policy\n"
        "  reload                 re-read the daemon's configuration and bundle\n"
        "set-budget, pin, unpin and reload are for root and the daemon's admin group.\n"
        "\n"
        "Options (before or after the op; `--` ends options):\n"
        "  --socket PATH          the daemon's socket (default: $QSLM_SOCKET if set,\n"
        "                         else " CTL_DEFAULT_SOCKET ")\n"
        "  --json                 print the server's reply lines as they come, one JSON\n"
        "                         object per line, instead of the human output\n"
        "  --timeout SECONDS      give up (exit 3) when the answer takes longer (default:\n"
        "                         30 s; generate waits as long as it takes)\n"
        "  -h, --help             print this text\n"
        "  --version              print qslmctl's version and the protocol version\n"
        "\n"
        "generate options (one not given takes the server's default):\n"
        "  --max-tokens N         generate at most N tokens (1..the server's limit)\n"
        "  --temperature T        0..5; 0 = greedy (server default 0.8)\n"
        "  --top-k K              sample among the K most probable tokens; 0 = off\n"
        "                         (server default 40)\n"
        "  --top-p P              nucleus sampling, 0 < P <= 1; 1 = off (default 0.95)\n"
        "  --repetition-penalty R 1..10; 1 = off (server default 1.1)\n"
        "  --seed S               0..2^64-1; the same seed, prompt, options and variant\n"
        "                         give the same text (default: a random seed)\n"
        "  --stop STR             end the text before STR (1..64 bytes); up to 8 times\n"
        "  --no-stream            print the text once complete, not token by token\n"
        "\n"
        "SIZE: DIGITS with K, M, G or T (1024-based; KiB, MiB, GiB, TiB alike), B or no\n"
        "unit for bytes; no decimals (1536M, not 1.5G), no MB or kB.\n"
        "POWER: DIGITS[.DIGITS] with W, mW or no unit (watts); 1 uW resolution.\n"
        "\n"
        "Output: generate prints the text on stdout and a one-line summary on stderr\n"
        "(tokens, tokens/s, the variant that computed each span of tokens, switches).\n"
        "Ctrl-C during generate cancels it: the text so far and the summary are still\n"
        "printed, exit 0; a second Ctrl-C quits at once. Missing values print as \"-\".\n"
        "\n"
        "Exit status: 0 ok; 1 the server answered with an error (printed as\n"
        "\"qslmctl: CODE: message\"); 2 usage error (nothing was sent); 3 cannot connect,\n"
        "connection lost before the answer, no answer in time, or a malformed reply.\n",
        f);
}

/* ---------------------------------------------------------------- usage errors */

/* Prints the error and the op's synopsis (or the general one): what to type instead. */
static bool usage_error(const ctl_args *a, bool op_known, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool usage_error(const ctl_args *a, bool op_known, const char *fmt, ...)
{
    va_list ap;
    fputs("qslmctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    const char *syn = NULL;
    for (size_t i = 0; op_known && i < sizeof synopses / sizeof synopses[0]; i++)
        if (synopses[i].op == a->req.op)
            syn = synopses[i].synopsis;
    if (syn)
        fprintf(stderr, "usage: qslmctl [OPTIONS] %s\n", syn);
    else
        fputs("usage: qslmctl [--socket PATH] [--json] [--timeout SECONDS] OP [ARGS]\n", stderr);
    fputs("Try 'qslmctl --help' for more.\n", stderr);
    return false;
}

/* ---------------------------------------------------------------- values */

/* An unsigned decimal integer in lo..hi: digits only (strtoull would take a sign and spaces). */
static bool parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!*s || strspn(s, "0123456789") != strlen(s))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* A decimal number in [lo, hi] (or (lo, hi] with lo_open); no hex, inf or nan, which strtod
 * would accept. */
static bool parse_real(const char *s, double lo, double hi, bool lo_open, double *out)
{
    if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !qi_number_representable(v) || v > hi || v < lo ||
        (lo_open && v == lo))
        return false;
    *out = v;
    return true;
}

/* A variant name as the protocol allows it: 1..64 of [A-Za-z0-9._-]. */
static bool valid_variant_name(const char *s)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    size_t n = strlen(s);
    return n >= 1 && n <= QI_VARIANT_NAME_MAX && strspn(s, ok) == n;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const opt_def *def;
    const char *name;  /* as typed, for messages */
    const char *value; /* NULL for a flag */
} opt_use;

static const opt_def *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* True when arg is an option rather than a value: "-x", "--xyz", but not "-", "-1", "-.5". */
static bool looks_like_option(const char *arg)
{
    if (arg[0] != '-' || arg[1] == '\0')
        return false;
    if (arg[1] == '-')
        return true;
    return !(arg[1] >= '0' && arg[1] <= '9') && arg[1] != '.';
}

/* Splits argv into options (with their values) and positional arguments, in order. */
static bool split_args(int argc, char **argv, ctl_args *a, opt_use *uses, size_t *n_uses,
                       char **pos, size_t *n_pos)
{
    bool only_pos = false;
    *n_uses = *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (only_pos || !looks_like_option(arg)) {
            pos[(*n_pos)++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        if (arg[1] != '-')
            return usage_error(a, false, "unknown option '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        const opt_def *d = find_opt(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!d)
            return usage_error(a, false, "unknown option '%s'", arg);
        opt_use *u = &uses[(*n_uses)++];
        u->def = d;
        u->name = d->name;
        u->value = eq ? eq + 1 : NULL;
        if (!d->has_value && eq)
            return usage_error(a, false, "--%s takes no value", d->name);
        if (d->has_value && !eq) {
            if (i + 1 >= argc)
                return usage_error(a, false, "--%s needs a value", d->name);
            u->value = argv[++i];
        }
    }
    return true;
}

/* Applies one generate option to the request. */
static bool apply_generate_opt(ctl_args *a, const opt_use *u)
{
    qi_generate *g = &a->req.u.generate;
    uint64_t n;
    const char *v = u->value;
    switch (u->def->id) {
    case OPT_MAX_TOKENS:
        if (!parse_uint(v, 1, UINT32_MAX, &n))
            return usage_error(a, true, "--max-tokens: '%s' is not an integer >= 1", v);
        g->max_tokens = (uint32_t)n;
        a->given.max_tokens = true;
        return true;
    case OPT_TEMPERATURE:
        a->given.temperature = true;
        if (!parse_real(v, 0, 5, false, &g->temperature))
            return usage_error(a, true, "--temperature: '%s' is not a number in 0..5", v);
        return true;
    case OPT_TOP_K:
        if (!parse_uint(v, 0, QI_TOP_K_MAX, &n))
            return usage_error(a, true, "--top-k: '%s' is not an integer >= 0", v);
        g->top_k = (uint32_t)n;
        a->given.top_k = true;
        return true;
    case OPT_TOP_P:
        a->given.top_p = true;
        if (!parse_real(v, 0, 1, true, &g->top_p))
            return usage_error(a, true, "--top-p: '%s' is not a number in (0, 1]", v);
        return true;
    case OPT_REPETITION_PENALTY:
        a->given.repetition_penalty = true;
        if (!parse_real(v, 1, 10, false, &g->repetition_penalty))
            return usage_error(a, true, "--repetition-penalty: '%s' is not a number in 1..10", v);
        return true;
    case OPT_SEED:
        if (!parse_uint(v, 0, UINT64_MAX, &g->seed))
            return usage_error(a, true, "--seed: '%s' is not an integer in 0..2^64-1", v);
        g->has_seed = true;
        return true;
    case OPT_STOP:
        if (g->n_stop == QI_STOP_MAX)
            return usage_error(a, true, "--stop: at most %d stop strings", QI_STOP_MAX);
        if (strlen(v) < 1 || strlen(v) > QI_STOP_MAX_LEN)
            return usage_error(a, true, "--stop: '%s' must be 1..%d bytes", v, QI_STOP_MAX_LEN);
        a->stop[g->n_stop++] = (char *)v;
        g->stop = a->stop;
        return true;
    case OPT_NO_STREAM:
        g->stream = false;
        return true;
    default:
        return true;
    }
}

/* classify --task: checked against the protocol's grammar here, so a typo is a usage error;
 * whether the model has the task is the server's answer. */
static bool apply_task(ctl_args *a, const char *v)
{
    if (!qi_task_name_ok(v))
        return usage_error(a, true, "--task: '%s' is not a task name (1..%d of a-z 0-9 _ -)", v, QI_TASK_MAX);
    a->req.u.classify.task = (char *)v;
    return true;
}

/* Applies the options common to every op. */
static bool apply_common_opt(ctl_args *a, const opt_use *u)
{
    switch (u->def->id) {
    case OPT_SOCKET:
        if (!*u->value)
            return usage_error(a, false, "--socket: the path must not be empty");
        a->socket = u->value;
        return true;
    case OPT_JSON:
        a->json = true;
        return true;
    case OPT_TIMEOUT:
        if (!parse_real(u->value, 0, 1e6, true, &a->timeout_s))
            return usage_error(a, false, "--timeout: '%s' is not a number of seconds in (0, 1e6]",
                               u->value);
        return true;
    default:
        return true;
    }
}

/* ---------------------------------------------------------------- ops */

/* set-budget's positional SIZE (or "auto") and --power value into the request. */
static bool parse_set_budget(ctl_args *a, char **pos, size_t n_pos, const char *power)
{
    qi_set_budget *b = &a->req.u.set_budget;
    qi_error err;
    if (n_pos > 1)
        return usage_error(a, true, "set-budget takes one SIZE, got %zu values", n_pos);
    if (n_pos == 0 && !power)
        return usage_error(a, true, "set-budget needs a SIZE, --power POWER, or both");
    if (n_pos == 1 && strcmp(pos[0], "auto") == 0) {
        b->memory = QI_BUDGET_AUTO;
    } else if (n_pos == 1) {
        if (qi_parse_memory(pos[0], strlen(pos[0]), NULL, &b->memory_bytes, &err))
            return usage_error(a, true, "bad memory budget '%s': %s", pos[0], err.msg);
        b->memory = QI_BUDGET_SET;
    }
    if (power && strcmp(power, "auto") == 0) {
        b->power = QI_BUDGET_AUTO;
    } else if (power) {
        if (qi_parse_power(power, strlen(power), NULL, &b->power_uw, &err))
            return usage_error(a, true, "bad power budget '%s': %s", power, err.msg);
        b->power = QI_BUDGET_SET;
    }
    return true;
}

/* The op's positional arguments into the request. */
static bool parse_operands(ctl_args *a, char **pos, size_t n_pos, const char *power)
{
    qi_op op = a->req.op;
    switch (op) {
    case QI_OP_GENERATE:
        if (n_pos != 1)
            return usage_error(a, true, n_pos ? "generate takes one TEXT (quote the prompt)"
                                              : "generate needs a TEXT");
        if (!*pos[0])
            return usage_error(a, true, "generate: TEXT must not be empty");
        a->req.u.generate.prompt = pos[0];
        return true;
    case QI_OP_CLASSIFY:
        if (n_pos == 0 || n_pos > QI_TEXTS_MAX)
            return usage_error(a, true, "classify takes 1..%d TEXTs, got %zu", QI_TEXTS_MAX,
                               n_pos);
        for (size_t i = 0; i < n_pos; i++)
            if (!*pos[i])
                return usage_error(a, true, "classify: TEXT %zu is empty", i + 1);
        a->req.u.classify.texts = pos;
        a->req.u.classify.n_texts = n_pos;
        a->req.u.classify.single = n_pos == 1;
        return true;
    case QI_OP_SET_BUDGET:
        return parse_set_budget(a, pos, n_pos, power);
    case QI_OP_PIN:
        if (n_pos != 1)
            return usage_error(a, true, "pin takes one variant NAME");
        if (!valid_variant_name(pos[0]))
            return usage_error(a, true, "pin: '%s' is not a variant name (1..%d of A-Z a-z 0-9 . _ -)",
                               pos[0], QI_VARIANT_NAME_MAX);
        a->req.u.pin.variant = pos[0];
        return true;
    default:
        if (n_pos != 0)
            return usage_error(a, true, "%s takes no arguments, got '%s'", qi_op_name(op),
                               pos[0]);
        return true;
    }
}

/* The op named by the first positional argument; cancel is refused because it can only name
 * a request of the same connection, which a new qslmctl process never has. */
static bool parse_op(ctl_args *a, const char *name)
{
    if (!qi_op_from_name(name, &a->req.op))
        return usage_error(a, false, "unknown op '%s'", name);
    if (a->req.op == QI_OP_CANCEL)
        return usage_error(a, false, "cancel names a request of the same connection: press "
                                     "Ctrl-C during generate instead");
    return true;
}

bool ctl_parse_args(int argc, char **argv, ctl_args *a)
{
    opt_use uses[CTL_MAX_ARGS];
    memset(a, 0, sizeof *a);
    const char *env = getenv("QSLM_SOCKET");
    a->socket = env && *env ? env : CTL_DEFAULT_SOCKET;
    if (argc > CTL_MAX_ARGS)
        return usage_error(a, false, "too many arguments (at most %d)", CTL_MAX_ARGS - 1);
    size_t n_uses, n_pos;
    char **pos = a->pos;
    if (!split_args(argc, argv, a, uses, &n_uses, pos, &n_pos))
        return false;
    for (size_t i = 0; i < n_uses; i++) {
        a->help |= uses[i].def->id == OPT_HELP;
        a->version |= uses[i].def->id == OPT_VERSION;
    }
    if (a->help || a->version)
        return true;
    if (n_pos == 0)
        return usage_error(a, false, "no op given");
    if (!parse_op(a, pos[0]))
        return false;
    qi_id id;
    qi_id_set_int(&id, 1);
    qi_request_init(&a->req, a->req.op, &id, NULL);
    if (a->req.op == QI_OP_GENERATE)
        a->req.u.generate.stream = true;
    a->timeout_s = a->req.op == QI_OP_GENERATE ? 0 : CTL_DEFAULT_TIMEOUT_S;
    const char *power = NULL;
    for (size_t i = 0; i < n_uses; i++) {
        const opt_use *u = &uses[i];
        if (u->def->op >= 0 && u->def->op != (int)a->req.op)
            return usage_error(a, true, "--%s is an option of %s", u->name,
                               qi_op_name((qi_op)u->def->op));
        bool ok = u->def->id == OPT_POWER ? (power = u->value, true)
                  : u->def->id == OPT_TASK ? apply_task(a, u->value)
                  : u->def->op == QI_OP_GENERATE ? apply_generate_opt(a, u)
                                                 : apply_common_opt(a, u);
        if (!ok)
            return false;
    }
    return parse_operands(a, pos + 1, n_pos - 1, power);
}
