/* bench_tokenizer.c: byte-level BPE encode (and decode) throughput, in MB/s of input text, for
 * three tokenizers: GPT-2's files ($QSLM_DATA_DIR/gpt2/{encoder.json,vocab.bpe}), the default
 * model's models/tokenizer.json (4096 ids) and GPT-NeoX's models/tokenizers/20B_tokenizer.json
 * (50277 ids, NFC normalizer, 23 added runs of spaces).
 *
 * usage: bench-tokenizer [TEXT_FILE]
 * The text defaults to $QSLM_DATA_DIR/sotu/test.txt if it exists, else golden_text.txt repeated
 * to about 1 MB. Prints, per tokenizer, the median of 7 runs (and min/max); it gives numbers, not
 * a verdict, but stops if decode(encode(text)) is not the text (NFC of the text for 20B, checked
 * only if the text is UTF-8: 20B drops the bytes it has no token for). Run from the source root
 * or set QSLM_SOURCE_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_files.h"
#include "tokenizer.h"
#include "unicode.h"

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

/* Encodes and decodes text RUNS times with tok; prints the medians. want[0..want_len) is what
 * decode must give back (NULL: not checked). Returns 0, or 1 if the round trip fails. */
static int bench_one(const char *label, const qr_tokenizer *tok, double load_s, const char *text,
                     size_t len, const char *want, size_t want_len)
{
    double enc_s[RUNS], dec_s[RUNS];
    size_t n_ids = 0;
    qr_error err = {0};
    for (int r = 0; r < RUNS; r++) {
        int32_t *ids = NULL;
        double t0 = now();
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
        if (want && (back_len != want_len || memcmp(back, want, want_len) != 0)) {
            fprintf(stderr, "bench-tokenizer: %s: decode(encode(text)) differs from the text\n", label);
            return 1;
        }
        free(back);
        free(ids);
    }
    qsort(enc_s, RUNS, sizeof *enc_s, cmp_double);
    qsort(dec_s, RUNS, sizeof *dec_s, cmp_double);
    double mb = (double)len / 1e6;
    printf("%s: %zu ids (%.2f bytes/id), load %.1f ms\n", label, n_ids,
           n_ids ? (double)len / (double)n_ids : 0.0, load_s * 1e3);
    printf("  encode: median %.1f MB/s (min %.1f, max %.1f) over %d runs\n", mb / enc_s[RUNS / 2],
           mb / enc_s[RUNS - 1], mb / enc_s[0], RUNS);
    printf("  decode: median %.1f MB/s\n", mb / dec_s[RUNS / 2]);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data_dir = getenv("QSLM_DATA_DIR");
    if (!data_dir)
        data_dir = ".data";
    const char *src = getenv("QSLM_SOURCE_DIR");
    if (!src)
        src = ".";
    char name[4096];
    size_t len = 0;
    char *text = load_text(argc, argv, data_dir, name, sizeof name, &len);
    if (!text || len == 0) {
        free(text);
        fprintf(stderr, "bench-tokenizer: cannot read the text, or it is empty (%s); run from the "
                        "source root or give a file\n", name);
        return 1;
    }
    printf("text: %s, %zu bytes\n", name, len);
    uint8_t *nfc = NULL;
    size_t nfc_len = 0;
    static const qr_norm_form form = QR_NORM_NFC;
    if (qr_normalize(&form, 1, (const uint8_t *)text, len, &nfc, &nfc_len, NULL) != QR_OK) {
        free(text);
        return 1;
    }
    bool utf8 = true;
    for (size_t i = 0; i < len && utf8;) {
        uint32_t cp;
        int k = qr_utf8_scan((const uint8_t *)text + i, len - i, &cp);
        utf8 = k > 0;
        i += k > 0 ? (size_t)k : 0;
    }
    struct {
        const char *label, *a, *b; /* b: vocab.bpe for GPT-2's files, else NULL */
        bool nfc;
    } toks[] = {
        {"GPT-2 (encoder.json + vocab.bpe, 50257 ids)", "gpt2/encoder.json", "gpt2/vocab.bpe", false},
        {"models/tokenizer.json (4096 ids)", "models/tokenizer.json", NULL, false},
        {"models/tokenizers/20B_tokenizer.json (50277 ids, NFC)", "models/tokenizers/20B_tokenizer.json",
         NULL, true},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof toks / sizeof *toks && rc == 0; i++) {
        char a[4096], b[4096];
        qr_tokenizer *tok = NULL;
        qr_error err = {0};
        double t0 = now();
        qr_status st;
        if (toks[i].b) {
            snprintf(a, sizeof a, "%s/%s", data_dir, toks[i].a);
            snprintf(b, sizeof b, "%s/%s", data_dir, toks[i].b);
            st = qr_tokenizer_load_gpt2(a, b, &tok, &err);
        } else {
            snprintf(a, sizeof a, "%s/%s", src, toks[i].a);
            st = qr_tokenizer_load_hf_file(a, &tok, &err);
        }
        if (st != QR_OK) {
            fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
            rc = 1;
            break;
        }
        double load_s = now() - t0;
        const char *want = !toks[i].nfc ? text : utf8 ? (const char *)nfc : NULL;
        rc = bench_one(toks[i].label, tok, load_s, text, len, want, toks[i].nfc ? nfc_len : len);
        qr_tokenizer_free(tok);
    }
    free(nfc);
    free(text);
    return rc;
}
