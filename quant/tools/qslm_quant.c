/* qslm-quant: QSLM, automated tiered quantization of a spike-driven language model.
 *
 *   qslm-quant hierarchy MODEL
 *   qslm-quant sensitivity MODEL [--tier T] [--svg FILE] [data options]
 *   qslm-quant search MODEL --budget SIZE [floors] [data options]
 *   qslm-quant build MODEL --budgets LIST -o DIR [floors] [data options]
 *   qslm-quant report MODEL DIR [-o FILE.md]
 *   qslm-quant keygen --key PRIV.pem --pubkey PUB.pem
 *   qslm-quant sign DIR --key PRIV.pem
 *   qslm-quant verify DIR --pubkey PUB.pem */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linear.h"

static const char usage[] =
    "usage: qslm-quant COMMAND [ARGS] [options]\n"
    "\n"
    "Commands:\n"
    "  hierarchy MODEL       the model's tree (blocks, sub-blocks, modules) with parameter\n"
    "                        counts and bytes at f32\n"
    "  sensitivity MODEL     measure each unit's damage at each type on the calibration split;\n"
    "                        print the table (--tier global|block|module|all, default block)\n"
    "                        and, with --svg FILE, write it as a heatmap; with --check-local,\n"
    "                        measure every matrix inside a layer both end to end and\n"
    "                        layer-locally at every type and print how well the module tier's\n"
    "                        estimates rank (Spearman's rho)\n"
    "  search MODEL          the tiered search for one --budget; prints the setting\n"
    "  build MODEL           one variant per --budgets point into -o DIR, plus manifest.json\n"
    "  report MODEL DIR      DIR/report.md and SVG plots: the bundle built from MODEL against\n"
    "                        f32, the paper's per-tensor min-max baseline (4/8/12/16 bits) and\n"
    "                        every uniform type, all on the test split (-o FILE.md)\n"
    "  keygen                a new ECDSA P-256 key pair: --key PRIV.pem --pubkey PUB.pem\n"
    "  sign DIR              sign DIR/manifest.json with --key PRIV.pem (DIR/manifest.json.sig)\n"
    "  verify DIR            check DIR's signature with --pubkey PUB.pem and every variant's\n"
    "                        SHA-256 against the manifest\n"
    "\n"
    "Budgets and floors:\n"
    "  --budget SIZE         served memory, e.g. 8M or 4.65M (K, M, G, T: powers of 1024;\n"
    "                        MB is refused: write M or MiB)\n"
    "  --budgets LIST        comma-separated sizes, e.g. 4M,8M,16M,32M\n"
    "  --max-ppl-increase P  validation perplexity at most P% over f32 (default 5)\n"
    "  --max-acc-drop P      validation accuracy at most P points under f32 (default 1), unless\n"
    "                        the drop is within chance: a head breaks the floor when it is more\n"
    "                        than P points under f32 AND significantly worse than f32 on the\n"
    "                        same sentences (exact one-sided McNemar test at --acc-alpha)\n"
    "  --acc-alpha A         that test's level, 0 < A <= 1 (default 0.05; 1: the drop alone)\n"
    "  --lambda L            trade-off weight of memory (default 0.1: see quant/README.md)\n"
    "  --max-tier T          search, build: stop after tier T (global, block or module;\n"
    "                        default module, all three)\n"
    "  --module-measure M    search, build: how the module tier measures the matrices inside\n"
    "                        the layers: exact (end to end, a calibration pass each), local\n"
    "                        (a run of their layer alone, scaled to the layer's end-to-end\n"
    "                        damage: quant/README.md) or auto (default: exact while that\n"
    "                        takes at most a minute, else local)\n"
    "  --serve-batch N       sequences served at once, counted in the footprint (default 4)\n"
    "  --ec-tokens N         error-compensating rounding (GPTQ) for every matrix the LM\n"
    "                        multiplies, fitted to its inputs on the last N tokens of the\n"
    "                        calibration text (default 8192; 0: round each block to its\n"
    "                        nearest levels, importance-weighted, as before)\n"
    "  --ec-damp D           its dampening: D times the mean input power added to each\n"
    "                        column's (default 0.01)\n"
    "  --refine R            search, build: quantize the kept setting's matrices again, each\n"
    "                        fitted to the inputs the quantized matrices before it give it,\n"
    "                        and keep that if it does better on validation (settings with a\n"
    "                        matrix at 4 or fewer bits, with --ec-tokens above 0): on, off or\n"
    "                        auto (default: when its two runs over the --ec-tokens text take\n"
    "                        at most 30 s, judged by the f32 calibration run, for settings at\n"
    "                        least 1% over f32's validation perplexity)\n"
    "\n"
    "Data (defaults under --data-dir, itself $QSLM_DATA_DIR or ./.data):\n"
    "  --calib-text FILE     sotu/train.txt; its last --calib-tokens N (default 1024) tokens\n"
    "  --calib-labels FILE   sentiment/fit.jsonl; its first --calib-items N (default 32)\n"
    "  --valid-text FILE     sotu/valid.txt; its first --valid-tokens N (default 16384)\n"
    "  --valid-labels FILE   sentiment/heldout.jsonl\n"
    "  --test-text FILE      sotu/test.txt (build: each variant's reported perplexity)\n"
    "  --test-labels FILE    sentiment/test.jsonl (build: each variant's reported accuracy)\n"
    "  --classify TASK=DIR   the classifier head named TASK is measured on DIR/heldout.jsonl\n"
    "                        (validation: the accuracy floor holds per head) and DIR/test.jsonl\n"
    "                        (build, report); repeat it for each head. For the model's first\n"
    "                        head it replaces the three --*-labels files (DIR/fit.jsonl is its\n"
    "                        calibration set); a head with no data set is not measured\n"
    "  --calib-window N      tokens per perplexity window on calibration (default 64)\n"
    "  --window N            tokens per perplexity window on validation (default 128)\n"
    "  --batch N             sequences evaluated together (default 64)\n"
    "\n"
    "Other:\n"
    "  --threads N           worker threads (default: one per CPU)\n"
    "  --cache DIR           sensitivity cache (default $XDG_CACHE_HOME/qslm or ~/.cache/qslm)\n"
    "  --no-cache            measure everything afresh, keep nothing\n"
    "  --json                machine-readable output (hierarchy, sensitivity, search)\n"
    "  -o, --out PATH        output directory (build) or file (report)\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 success, 1 failure (including a budget with no feasible setting in build),\n"
    "2 bad arguments or input files.\n";

static int parse_count(const char *arg, const char *name, size_t min, size_t max, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(arg, &end, 10);
    if (*end || end == arg || arg[0] == '-' || v < min || v > max) {
        fprintf(stderr, "qslm-quant: %s must be an integer in %zu..%zu, not '%s'\n", name, min, max, arg);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int parse_real(const char *arg, const char *name, double min, double max, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (*end || end == arg || !(v >= min && v <= max)) {
        fprintf(stderr, "qslm-quant: %s must be a number in %g..%g, not '%s'\n", name, min, max, arg);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_module_measure(const char *arg, qq_options *o)
{
    static const char *const names[] = {"auto", "exact", "local"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(arg, names[i]) == 0) {
            o->module_measure = (int)i;
            return 0;
        }
    fprintf(stderr, "qslm-quant: --module-measure must be auto, exact or local, not '%s'\n", arg);
    return 1;
}

static int parse_refine(const char *arg, qq_options *o)
{
    static const char *const names[] = {"auto", "on", "off"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(arg, names[i]) == 0) {
            o->refine = (int)i;
            return 0;
        }
    fprintf(stderr, "qslm-quant: --refine must be auto, on or off, not '%s'\n", arg);
    return 1;
}

static int parse_max_tier(const char *arg, qq_tier *out)
{
    static const char *const names[] = {"global", "block", "module"};
    for (int t = QQ_TIER_GLOBAL; t <= QQ_TIER_MODULE; t++)
        if (strcmp(arg, names[t]) == 0) {
            *out = (qq_tier)t;
            return 0;
        }
    fprintf(stderr, "qslm-quant: --max-tier must be global, block or module, not '%s'\n", arg);
    return -1;
}

int main(int argc, char **argv)
{
    qr_blas_use_capable_core(argv);
    qr_blas_use_one_thread();
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(const qq_options *);
        int positional; /* required positional arguments */
    } commands[] = {
        {"hierarchy", qq_cmd_hierarchy, 1}, {"sensitivity", qq_cmd_sensitivity, 1},
        {"search", qq_cmd_search, 1},       {"build", qq_cmd_build, 1},
        {"report", qq_cmd_report, 2},       {"keygen", qq_cmd_keygen, 0},
        {"sign", qq_cmd_sign, 1},           {"verify", qq_cmd_verify, 1},
    };
    size_t ci = sizeof commands / sizeof commands[0];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            ci = i;
    if (ci == sizeof commands / sizeof commands[0]) {
        fprintf(stderr, "qslm-quant: unknown command '%s'\n%s", argv[1], usage);
        return EXIT_USAGE;
    }
    enum { O_BUDGET = 256, O_BUDGETS, O_PPL, O_ACC, O_LAMBDA, O_SERVE, O_DATA, O_CT, O_CTOK, O_CL, O_CI,
           O_VT, O_VTOK, O_VL, O_TT, O_TL, O_WIN, O_CWIN, O_BATCH, O_THREADS, O_CACHE, O_NOCACHE, O_JSON,
           O_TIER, O_MAXTIER, O_SVG, O_KEY, O_PUB, O_CLASSIFY, O_ALPHA, O_CHECK_LOCAL, O_MODULE_MEASURE, O_EC_TOKENS, O_EC_DAMP,
           O_REFINE };
    static const struct option longopts[] = {
        {"budget", required_argument, NULL, O_BUDGET}, {"budgets", required_argument, NULL, O_BUDGETS},
        {"max-ppl-increase", required_argument, NULL, O_PPL}, {"max-acc-drop", required_argument, NULL, O_ACC},
        {"acc-alpha", required_argument, NULL, O_ALPHA},
        {"lambda", required_argument, NULL, O_LAMBDA}, {"serve-batch", required_argument, NULL, O_SERVE},
        {"data-dir", required_argument, NULL, O_DATA}, {"calib-text", required_argument, NULL, O_CT},
        {"calib-tokens", required_argument, NULL, O_CTOK}, {"calib-labels", required_argument, NULL, O_CL},
        {"calib-items", required_argument, NULL, O_CI}, {"valid-text", required_argument, NULL, O_VT},
        {"valid-tokens", required_argument, NULL, O_VTOK}, {"valid-labels", required_argument, NULL, O_VL},
        {"test-text", required_argument, NULL, O_TT}, {"test-labels", required_argument, NULL, O_TL},
        {"window", required_argument, NULL, O_WIN}, {"calib-window", required_argument, NULL, O_CWIN}, {"batch", required_argument, NULL, O_BATCH},
        {"threads", required_argument, NULL, O_THREADS}, {"cache", required_argument, NULL, O_CACHE},
        {"no-cache", no_argument, NULL, O_NOCACHE}, {"json", no_argument, NULL, O_JSON},
        {"tier", required_argument, NULL, O_TIER}, {"max-tier", required_argument, NULL, O_MAXTIER}, {"svg", required_argument, NULL, O_SVG},
        {"key", required_argument, NULL, O_KEY}, {"pubkey", required_argument, NULL, O_PUB},
        {"classify", required_argument, NULL, O_CLASSIFY}, {"check-local", no_argument, NULL, O_CHECK_LOCAL},
        {"module-measure", required_argument, NULL, O_MODULE_MEASURE},
        {"ec-tokens", required_argument, NULL, O_EC_TOKENS}, {"ec-damp", required_argument, NULL, O_EC_DAMP},
        {"refine", required_argument, NULL, O_REFINE},
        {"out", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    qq_options o = {.calib_tokens = 1024, .calib_items = 32, .valid_tokens = 16384, .calib_window = 64,
                    .window = 128, .batch = 64, .serve_batch = 4, .floors = {5.0, 1.0, QQ_ACC_ALPHA}, .lambda = 0.1, .tier = "block",
                    .max_tier = QQ_TIER_MODULE, .ec_tokens = 8192, .ec_damp = 0.01};
    size_t v;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_BUDGET: o.budget = optarg; break;
        case O_BUDGETS: o.budgets = optarg; break;
        case O_PPL: bad = parse_real(optarg, "--max-ppl-increase", 0, 1e6, &o.floors.max_ppl_increase); break;
        case O_ACC: bad = parse_real(optarg, "--max-acc-drop", 0, 100, &o.floors.max_acc_drop); break;
        case O_ALPHA:
            bad = parse_real(optarg, "--acc-alpha", 1e-12, 1, &o.floors.acc_alpha);
            break;
        case O_LAMBDA: bad = parse_real(optarg, "--lambda", 0, 1e6, &o.lambda); break;
        case O_SERVE: bad = parse_count(optarg, "--serve-batch", 1, 4096, &o.serve_batch); break;
        case O_DATA: o.data_dir = optarg; break;
        case O_CT: o.calib_text = optarg; break;
        case O_CTOK: bad = parse_count(optarg, "--calib-tokens", 16, 1 << 24, &o.calib_tokens); break;
        case O_CL: o.calib_labels = optarg; break;
        case O_CI: bad = parse_count(optarg, "--calib-items", 0, 1 << 24, &o.calib_items); break;
        case O_VT: o.valid_text = optarg; break;
        case O_VTOK: bad = parse_count(optarg, "--valid-tokens", 16, 1 << 26, &o.valid_tokens); break;
        case O_VL: o.valid_labels = optarg; break;
        case O_TT: o.test_text = optarg; break;
        case O_TL: o.test_labels = optarg; break;
        case O_WIN: bad = parse_count(optarg, "--window", 2, 1 << 20, &o.window); break;
        case O_CWIN: bad = parse_count(optarg, "--calib-window", 2, 1 << 20, &o.calib_window); break;
        case O_BATCH: bad = parse_count(optarg, "--batch", 1, 4096, &o.batch); break;
        case O_THREADS: bad = parse_count(optarg, "--threads", 1, 256, &v); o.threads = (int)v; break;
        case O_CACHE: o.cache_dir = optarg; break;
        case O_NOCACHE: o.no_cache = true; break;
        case O_JSON: o.json = true; break;
        case O_TIER: o.tier = optarg; break;
        case O_MAXTIER: bad = parse_max_tier(optarg, &o.max_tier); break;
        case O_SVG: o.svg = optarg; break;
        case O_CHECK_LOCAL: o.check_local = true; break;
        case O_MODULE_MEASURE: bad = parse_module_measure(optarg, &o); break;
        case O_EC_TOKENS: bad = parse_count(optarg, "--ec-tokens", 0, 1 << 26, &o.ec_tokens); break;
        case O_EC_DAMP: bad = parse_real(optarg, "--ec-damp", 0, 1, &o.ec_damp); break;
        case O_REFINE: bad = parse_refine(optarg, &o); break;
        case O_KEY: o.key = optarg; break;
        case O_PUB: o.pubkey = optarg; break;
        case O_CLASSIFY:
            if (o.n_classify == QQ_HEADS_MAX) {
                fprintf(stderr, "qslm-quant: at most %d --classify\n", QQ_HEADS_MAX);
                return EXIT_USAGE;
            }
            o.classify[o.n_classify++] = optarg;
            break;
        case 'o': o.out = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return EXIT_USAGE;
        }
        if (bad)
            return EXIT_USAGE;
    }
    if (o.refine == QQ_REFINE_ON && !o.ec_tokens) {
        fprintf(stderr, "qslm-quant: --refine on needs error-compensating rounding: --ec-tokens must be above 0\n");
        return EXIT_USAGE;
    }
    o.rest = argv + optind;
    o.n_rest = argc - optind;
    if (o.n_rest != commands[ci].positional) {
        fprintf(stderr, "qslm-quant %s: expected %d argument%s, got %d\n", commands[ci].name,
                commands[ci].positional, commands[ci].positional == 1 ? "" : "s", o.n_rest);
        return EXIT_USAGE;
    }
    if (o.n_rest)
        o.model_path = o.rest[0];
    return commands[ci].run(&o);
}
