/* qslm-quantize: rewrites a .qslm model with every matrix in one storage type.
 *
 *   qslm-quantize IN.qslm OUT.qslm --type q4_0 [--keep-head f16] [--keep-emb f16] [--threads N]
 *
 * The global tier of a quantization setting, by hand: QSLM's search (quant/) writes finer
 * settings through the same library call, qr_requantize. Exit codes: 0 success, 1 the conversion
 * failed, 2 bad arguments or a bad input file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"
#include "model_file.h"
#include "pool.h"
#include "requantize.h"
#include "tensor_types.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: qslm-quantize IN.qslm OUT.qslm --type TYPE [--keep-head TYPE] [--keep-emb TYPE]\n"
    "                     [--threads N]\n"
    "\n"
    "Writes OUT.qslm: IN.qslm with every matrix (2-D tensor) stored as TYPE. Layer norms and\n"
    "other vectors are stored as f32. A matrix whose rows are not a whole number of TYPE's\n"
    "blocks (32 weights) keeps its type, and is listed. Metadata is copied; quant.setting lists\n"
    "every matrix's type and general.provenance notes the conversion.\n"
    "\n"
    "  --type TYPE        f32 f16 q8_0 q6_0 q5_0 q4_0 q3_0 q2_0 q8_1 q6_1 q5_1 q4_1 q3_1 q2_1\n"
    "                     q4_s q3_s q2_s\n"
    "                     (qB_0: B-bit codes and a scale per 32 weights, B + 0.5 bits/weight;\n"
    "                     qB_1: also a minimum, B + 1 bits/weight; qB_s: an 8-bit scale and\n"
    "                     levels symmetric about zero, B + 0.25 bits/weight)\n"
    "  --keep-head TYPE   store the LM head (head.weight) and every classifier head (cls.weight,\n"
    "                     cls.N.weight) as TYPE\n"
    "  --keep-emb TYPE    store the embedding (emb.weight) as TYPE\n"
    "  --threads N        worker threads (default: one per CPU)\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status: 0 success, 1 the conversion failed, 2 bad arguments or a bad input file.\n";

typedef struct {
    uint32_t type, head, emb;
    int keep_head, keep_emb;
    size_t kept; /* matrices that could not take their type */
} chooser;

/* The setting: one type, with the head and embedding optionally kept apart. Notes each matrix
 * whose rows cannot be cut into the type's blocks (qr_requantize keeps its type). */
static uint32_t choose(void *ctx, const char *name, uint32_t n_dims, const uint64_t *dims)
{
    chooser *c = ctx;
    uint32_t t = c->type;
    bool bias;
    if (c->keep_head && (!strcmp(name, "head.weight") || qr_head_tensor_index(name, &bias) >= 0))
        t = c->head;
    else if (c->keep_emb && !strcmp(name, "emb.weight"))
        t = c->emb;
    const qr_type_info *ti = qr_type_get(t);
    if (n_dims == 2 && ti && dims[1] % ti->block_weights != 0) {
        fprintf(stderr, "qslm-quantize: note: %s (%llu x %llu) keeps its type: %llu columns are not whole blocks of %u\n",
                name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                (unsigned long long)dims[1], ti->block_weights);
        c->kept++;
    }
    return t;
}

static int parse_type(const char *arg, const char *opt, uint32_t *out)
{
    if (!qr_type_from_name(arg, out)) {
        fprintf(stderr, "qslm-quantize: %s: unknown type '%s' (see --help)\n", opt, arg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, NULL, 't'},      {"keep-head", required_argument, NULL, 'H'},
        {"keep-emb", required_argument, NULL, 'E'},  {"threads", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    chooser c = {0};
    int have_type = 0, threads = 0, ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 't':
            if (parse_type(optarg, "--type", &c.type))
                return EXIT_USAGE;
            have_type = 1;
            break;
        case 'H':
            if (parse_type(optarg, "--keep-head", &c.head))
                return EXIT_USAGE;
            c.keep_head = 1;
            break;
        case 'E':
            if (parse_type(optarg, "--keep-emb", &c.emb))
                return EXIT_USAGE;
            c.keep_emb = 1;
            break;
        case 'j': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > 256) {
                fprintf(stderr, "qslm-quantize: --threads must be an integer in 1..256, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            threads = (int)v;
            break;
        }
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind != 2 || !have_type) {
        fprintf(stderr, "qslm-quantize: %s\n%s",
                !have_type ? "--type is required" : "expected an input and an output file", usage);
        return EXIT_USAGE;
    }
    const char *in_path = argv[optind], *out_path = argv[optind + 1];
    if (!strcmp(in_path, out_path)) {
        fprintf(stderr, "qslm-quantize: the output must not be the input (%s)\n", in_path);
        return EXIT_USAGE;
    }
    qr_error err;
    qr_model_file *in;
    if (qr_model_file_open(in_path, &in, &err)) {
        fprintf(stderr, "qslm-quantize: %s\n", err.msg);
        return EXIT_USAGE;
    }
    qr_pool *pool;
    if (qr_pool_new(threads, &pool, &err)) {
        fprintf(stderr, "qslm-quantize: %s\n", err.msg);
        qr_model_file_close(in);
        return EXIT_RUNTIME;
    }
    int rc = 0;
    if (qr_requantize(in, out_path, choose, &c, NULL, pool, &err)) {
        fprintf(stderr, "qslm-quantize: %s\n", err.msg);
        rc = EXIT_RUNTIME;
    } else {
        qr_model_file *out;
        if (qr_model_file_open(out_path, &out, &err)) {
            fprintf(stderr, "qslm-quantize: wrote %s but cannot read it back: %s\n", out_path, err.msg);
            rc = EXIT_RUNTIME;
        } else {
            printf("qslm-quantize: wrote %s: %.2f MB (from %.2f MB)%s\n", out_path,
                   (double)qr_model_file_size(out) / 1e6, (double)qr_model_file_size(in) / 1e6,
                   c.kept ? "; some matrices kept their type (see the notes above)" : "");
            qr_model_file_close(out);
        }
    }
    qr_pool_free(pool);
    qr_model_file_close(in);
    return rc;
}
