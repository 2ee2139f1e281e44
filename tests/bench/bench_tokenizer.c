/* bench_tokenizer.c: GPT-2 BPE encode (and decode) throughput, in MB/s of input text.
 *
 * usage: bench-tokenizer [TEXT_FILE]
 * The text defaults to $QSLM_DATA_DIR/sotu/test.txt if it exists, else golden_text.txt repeated
 * to about 1 MB. The vocab is $QSLM_DATA_DIR/gpt2/{encoder.json,vocab.bpe}. Prints the median of
 * 7 runs (and min/max); it gives numbers, not a verdict. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_files.h"
#include "tokenizer.h"

#define RUNS 7

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The text to encode: the argument, else the SOTU test split, else the golden text x ~1 MB. */
static char *load_text(int argc, char **argv, const char *data_dir, char *name, size_t name_size,
                       size_t *len)
{
    if (argc > 1) {
        snprintf(name, name_size, "%s", argv[1]);
        return test_read_whole(argv[1], len);
    }
    snprintf(name, name_size, "%s/sotu/test.txt", data_dir);
    char *text = test_read_whole(name, len);
    if (text)
        return text;
    const char *src = getenv("QSLM_SOURCE_DIR");
    snprintf(name, name_size, "%s/tests/data/tokenizer/golden_text.txt", src ? src : ".");
    size_t one;
    char *golden = test_read_whole(name, &one);
    if (!golden || one == 0) {
        free(golden);
        return NULL;
    }
    size_t reps = (1u << 20) / one + 1;
    text = malloc(reps * one);
    if (!text) {
        free(golden);
        return NULL;
    }
    for (size_t r = 0; r < reps; r++)
        memcpy(text + r * one, golden, one);
    free(golden);
    *len = reps * one;
    strncat(name, " (repeated)", name_size - strlen(name) - 1);
    return text;
}

int main(int argc, char **argv)
{
    const char *data_dir = getenv("QSLM_DATA_DIR");
    if (!data_dir)
        data_dir = ".data";
    char enc[4096], bpe[4096], name[4096];
    snprintf(enc, sizeof enc, "%s/gpt2/encoder.json", data_dir);
    snprintf(bpe, sizeof bpe, "%s/gpt2/vocab.bpe", data_dir);
    qr_tokenizer *tok = NULL;
    qr_error err = {0};
    double t0 = now();
    if (qr_tokenizer_load_gpt2(enc, bpe, &tok, &err) != QR_OK) {
        fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
        return 1;
    }
    double load_s = now() - t0;
    size_t len = 0;
    char *text = load_text(argc, argv, data_dir, name, sizeof name, &len);
    if (!text || len == 0) {
        free(text);
        fprintf(stderr, "bench-tokenizer: cannot read the text, or it is empty (%s); run from the "
                        "source root or give a file\n", name);
        qr_tokenizer_free(tok);
        return 1;
    }

    double enc_s[RUNS], dec_s[RUNS];
    size_t n_ids = 0;
    for (int r = 0; r < RUNS; r++) {
        int32_t *ids = NULL;
        t0 = now();
        if (qr_tokenizer_encode(tok, text, len, 0, &ids, &n_ids, &err) != QR_OK) {
            fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
            return 1;
        }
        enc_s[r] = now() - t0;
        char *back = NULL;
        size_t back_len = 0;
        t0 = now();
        if (qr_tokenizer_decode(tok, ids, n_ids, &back, &back_len, &err) != QR_OK) {
            fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
            return 1;
        }
        dec_s[r] = now() - t0;
        if (back_len != len || memcmp(back, text, len) != 0) {
            fprintf(stderr, "bench-tokenizer: decode(encode(text)) differs from the text\n");
            return 1;
        }
        free(back);
        free(ids);
    }
    qsort(enc_s, RUNS, sizeof *enc_s, cmp_double);
    qsort(dec_s, RUNS, sizeof *dec_s, cmp_double);
    double mb = (double)len / 1e6;
    printf("text: %s, %zu bytes -> %zu ids (%.2f bytes/id)\n", name, len, n_ids,
           n_ids ? (double)len / (double)n_ids : 0.0);
    printf("load: %.1f ms (encoder.json + vocab.bpe)\n", load_s * 1e3);
    printf("encode: median %.1f MB/s (min %.1f, max %.1f) over %d runs\n", mb / enc_s[RUNS / 2],
           mb / enc_s[RUNS - 1], mb / enc_s[0], RUNS);
    printf("decode: median %.1f MB/s\n", mb / dec_s[RUNS / 2]);
    free(text);
    qr_tokenizer_free(tok);
    return 0;
}
