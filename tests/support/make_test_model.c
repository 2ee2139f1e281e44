/* make-test-model: writes a small random SpikeGPT for the command-line tests.
 *
 *   make-test-model OUT.qslm [--layers N] [--d N] [--classes N] [--task NAME=L1,L2,...]...
 *                   [--f16] [--seed N] [--tokenizer tokenizer.json | --vocab N]
 *
 * --classes makes one unnamed classifier head (a file from before heads had names); each --task
 * adds a named head instead (FORMAT.md "Classification heads"), up to 8.
 * With --tokenizer the file is embedded and the vocabulary is the tokenizer's. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "synthetic_model.h"
#include "tensor_types.h"
#include "tokenizer.h"

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"layers", required_argument, NULL, 'l'}, {"d", required_argument, NULL, 'd'},
        {"classes", required_argument, NULL, 'c'}, {"f16", no_argument, NULL, 'h'},
        {"seed", required_argument, NULL, 's'},    {"tokenizer", required_argument, NULL, 't'},
        {"vocab", required_argument, NULL, 'v'},   {"task", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0}};
    synthetic_shape sh = {.n_layer = 1, .d = 32, .f = 128, .vocab = 64, .matrix_type = QR_TYPE_F32, .seed = 1};
    const char *tok_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': sh.n_layer = strtoul(optarg, NULL, 10); break;
        case 'd': sh.d = strtoul(optarg, NULL, 10); sh.f = 4 * sh.d; break;
        case 'c': sh.n_classes = strtoul(optarg, NULL, 10); break;
        case 'h': sh.matrix_type = QR_TYPE_F16; break;
        case 's': sh.seed = strtoull(optarg, NULL, 10); break;
        case 't': tok_path = optarg; break;
        case 'v': sh.vocab = strtoul(optarg, NULL, 10); break;
        case 'k':
            if (sh.n_tasks == sizeof sh.tasks / sizeof sh.tasks[0])
                return 2;
            sh.tasks[sh.n_tasks++] = optarg;
            break;
        default: return 2;
        }
    }
    if (optind + 1 != argc || sh.n_layer == 0 || sh.d == 0 || sh.vocab == 0) {
        fprintf(stderr, "usage: make-test-model OUT.qslm [--layers N] [--d N] [--classes N] [--task NAME=L1,L2,...]... [--f16] [--seed N] [--tokenizer FILE | --vocab N]\n");
        return 2;
    }
    qr_error err;
    char *json = NULL;
    if (tok_path) {
        qr_tokenizer *tok;
        if (qr_tokenizer_load_hf_file(tok_path, &tok, &err)) {
            fprintf(stderr, "make-test-model: %s\n", err.msg);
            return 1;
        }
        sh.vocab = qr_tokenizer_vocab_size(tok);
        qr_tokenizer_free(tok);
        FILE *f = fopen(tok_path, "rb");
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        json = malloc((size_t)len);
        if (!json || fread(json, 1, (size_t)len, f) != (size_t)len) {
            fprintf(stderr, "make-test-model: cannot read %s\n", tok_path);
            return 1;
        }
        fclose(f);
        sh.tokenizer_json = json;
        sh.tokenizer_len = (size_t)len;
    }
    int rc = 0;
    if (synthetic_model_write(&sh, argv[optind], &err)) {
        fprintf(stderr, "make-test-model: %s\n", err.msg);
        rc = 1;
    }
    free(json);
    return rc;
}
