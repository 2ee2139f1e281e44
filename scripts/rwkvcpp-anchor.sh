#!/usr/bin/env bash
# rwkvcpp-anchor.sh: a comparison anchor against rwkv.cpp (upstream RWKV/rwkv.cpp + ggml) on the
# benchmark shape: RWKV-4, 18 layers, d_model 768, ffn 3072, vocab 50277, RANDOM weights.
# It builds rwkv.cpp (Release, its CMake defaults: ggml -march=native, OpenMP) in a scratch dir,
# writes a random FP16 model in rwkv.cpp's file format, quantizes it to Q8_0/Q4_0 with rwkv.cpp's
# own rwkv_quantize_model_file, and times with a small C driver (THREADS threads):
#   decode:   rwkv_eval for NTOK tokens from a fresh state (median of RUNS after a warm-up)
#   sequence: rwkv_eval_sequence_in_chunks over SEQ_T random tokens, per chunk size (median of RUNS)
# and prints a markdown table (tokens/s and the ratio to the same file's decode).
# MANUAL benchmark: it needs the rwkv.cpp source, which is not in this repo and not in CI. Nothing of
# rwkv.cpp is vendored here; the model writer and driver are generated into the scratch dir.
#
#   bash scripts/rwkvcpp-anchor.sh RWKV_GIT_DIR GGML_GIT_DIR SCRATCH   # git mirrors (bare ok): exports
#        rwkv.cpp at RWKV_REF (default HEAD) and ggml at the commit its ggml submodule pins
#   bash scripts/rwkvcpp-anchor.sh RWKV_CHECKOUT SCRATCH               # a checkout with ggml/ filled in
# Knobs (env): THREADS=2 NTOK=64 SEQ_T=1024 RUNS=5 CHUNKS="16 64" TYPES="Q8_0 Q4_0" (FP16 allowed)
#   JOBS=2 (make -j) NICE=10 SEED=1.  rwkv.cpp is configured with RWKV_STANDALONE=ON, which only skips
#   its tests/ and extras/ (their test models are binary files some snapshots lack).
set -euo pipefail

die() { echo "rwkvcpp-anchor: error: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

THREADS=${THREADS:-2} NTOK=${NTOK:-64} SEQ_T=${SEQ_T:-1024} RUNS=${RUNS:-5}
CHUNKS=${CHUNKS:-"16 64"} TYPES=${TYPES:-"Q8_0 Q4_0"} JOBS=${JOBS:-2} NICE=${NICE:-10} SEED=${SEED:-1}
N_LAYER=18 N_EMBED=768 N_FFN=3072 N_VOCAB=50277

case "${1:-}" in -h|--help) usage ;; esac
for v in THREADS NTOK SEQ_T RUNS JOBS SEED; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $NICE =~ ^[0-9]+$ ]] || die "NICE must be 0..19 (got '$NICE')"
for c in $CHUNKS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "CHUNKS entries must be positive integers (got '$c')"; done
for t in $TYPES; do
  case $t in FP16|Q4_0|Q4_1|Q5_0|Q5_1|Q8_0) ;; *) die "TYPES: unsupported type '$t' (FP16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0)" ;; esac
done

need=(cmake make cc tar uptime realpath awk)
[ $# -eq 3 ] && need+=(git)
for tool in "${need[@]}"; do command -v "$tool" >/dev/null || die "'$tool' not found in PATH"; done

if [ $# -eq 3 ]; then
  rwkv_git=$1 ggml_git=$2 scratch=$3 ref=${RWKV_REF:-HEAD}
  git -C "$rwkv_git" rev-parse --git-dir >/dev/null 2>&1 || die "RWKV_GIT_DIR '$rwkv_git' is not a git repository"
  git -C "$ggml_git" rev-parse --git-dir >/dev/null 2>&1 || die "GGML_GIT_DIR '$ggml_git' is not a git repository"
  git -C "$rwkv_git" cat-file -e "$ref:rwkv.h" 2>/dev/null || die "'$rwkv_git' at $ref has no rwkv.h: not an rwkv.cpp repository?"
  ggml_commit=$(git -C "$rwkv_git" ls-tree "$ref" ggml | awk '$2 == "commit" { print $3 }')
  [ -n "$ggml_commit" ] || die "rwkv.cpp at $ref has no ggml submodule entry"
  git -C "$ggml_git" cat-file -e "$ggml_commit^{commit}" 2>/dev/null ||
    die "ggml commit $ggml_commit (pinned by rwkv.cpp $ref) is missing from '$ggml_git'"
  git -C "$ggml_git" cat-file -e "$ggml_commit:CMakeLists.txt" 2>/dev/null || die "'$ggml_git' at $ggml_commit has no CMakeLists.txt: not ggml?"
elif [ $# -eq 2 ]; then
  src=$1 scratch=$2
  [ -d "$src" ] || die "RWKV_CHECKOUT '$src' is not a directory"
  for f in rwkv.h rwkv.cpp CMakeLists.txt; do [ -f "$src/$f" ] || die "RWKV_CHECKOUT '$src' lacks $f: not an rwkv.cpp checkout?"; done
  [ -f "$src/ggml/CMakeLists.txt" ] || die "'$src/ggml' is empty or missing: run 'git submodule update --init' there"
  src=$(cd "$src" && pwd)
else
  echo "rwkvcpp-anchor: error: expected 2 or 3 arguments, got $#" >&2
  usage
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(realpath -m "$scratch")
case "$scratch/" in "$repo"/*) die "scratch dir '$scratch' is inside this repo; use one outside it (e.g. /tmp/rwkvcpp)" ;; esac
mkdir -p "$scratch" || die "cannot create scratch dir '$scratch'"
run() { nice -n "$NICE" "$@"; }
log=$scratch/logs
mkdir -p "$log" "$scratch/anchor" "$scratch/models"
t_all=$SECONDS

# 1. Source and build.
t=$SECONDS
if [ $# -eq 3 ]; then
  src=$scratch/src
  rm -rf "$src" && mkdir -p "$src/ggml"
  # tests/ is left out: rwkv.cpp's test models are binary blobs that mirrors may not hold.
  # (git may still report those absent blobs on stderr while exiting 0: hence the log.)
  git -C "$rwkv_git" archive "$ref" -- . ':(exclude)tests' 2>"$log/export.log" | tar -x -C "$src" ||
    die "exporting rwkv.cpp $ref from '$rwkv_git' failed, see $log/export.log"
  git -C "$ggml_git" archive "$ggml_commit" 2>>"$log/export.log" | tar -x -C "$src/ggml" ||
    die "exporting ggml $ggml_commit from '$ggml_git' failed, see $log/export.log"
  echo "rwkv.cpp $(git -C "$rwkv_git" rev-parse "$ref") + ggml $ggml_commit -> $src" >&2
fi
echo "configuring and building rwkv.cpp (logs in $log) ..." >&2
run cmake -S "$src" -B "$scratch/build" -DCMAKE_BUILD_TYPE=Release -DRWKV_STANDALONE=ON >"$log/cmake.log" 2>&1 ||
  die "cmake failed, see $log/cmake.log"
run make -C "$scratch/build" -j"$JOBS" rwkv >"$log/make.log" 2>&1 || die "building librwkv failed, see $log/make.log"
lib=$(find "$scratch/build" -name 'librwkv.so' -print -quit)
[ -n "$lib" ] || die "librwkv.so not found under $scratch/build"
libdir=$(dirname "$lib")
t_build=$((SECONDS - t))

# 2. Generated sources: random-model writer and benchmark driver (C11, linked against librwkv).
cat >"$scratch/anchor/write_model.c" <<'EOF'
/* rwkvcpp-anchor model writer: a random-weight RWKV-4 model in rwkv.cpp's file format (version 101).
 * Layout follows rwkv.cpp docs/FILE_FORMAT.md and python/convert_pytorch_to_ggml.py:
 *   header: int32 magic 0x67676d66, version 101, n_vocab, n_embed, n_layer, data_type
 *   per tensor: int32 dim_count, key_length, data_type, dims (ggml order = reversed
 *   PyTorch shape), key bytes, raw data (little-endian).
 * FP16 files keep 1-D tensors and the .time_* vectors in FP32, like the converter.
 * RWKV-4 specifics from the converter: .time_* are squeezed to 1-D and
 * att.time_decay is stored as -exp(time_decay). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWO_PI 6.283185307179586
static uint64_t rng_state;
static uint64_t splitmix64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform01(void) { return ((splitmix64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static float gauss(float std) {
    static int have = 0; static double spare;
    if (have) { have = 0; return (float) (spare * std); }
    double u = uniform01(), v = uniform01();
    double r = sqrt(-2.0 * log(u));
    spare = r * sin(TWO_PI * v); have = 1;
    return (float) (r * cos(TWO_PI * v) * std);
}

static uint16_t f32_to_f16(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t e = (int32_t) ((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t) (sign | 0x7c00u | (mant ? 0x200u : 0));
    if (e >= 31) return (uint16_t) (sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t) sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (h & 1))) h++;
        return (uint16_t) (sign | h);
    }
    uint32_t h = ((uint32_t) e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t) (sign | h);
}

static FILE * out;
static int file_fp16;
static float * buf;
static uint16_t * hbuf;

static void put_i32(int32_t v) {
    if (fwrite(&v, 4, 1, out) != 1) { perror("write"); exit(1); }
}

/* ne0 = elements per row (PyTorch last dim), ne1 = rows (0 for 1-D). */
static void write_tensor(const char * name, int ne0, int ne1, int keep_fp32) {
    size_t n = (size_t) ne0 * (size_t) (ne1 ? ne1 : 1);
    int as_fp16 = file_fp16 && ne1 && !keep_fp32;
    put_i32(ne1 ? 2 : 1);
    put_i32((int32_t) strlen(name));
    put_i32(as_fp16 ? 1 : 0);
    put_i32(ne0);
    if (ne1) put_i32(ne1);
    fwrite(name, 1, strlen(name), out);
    if (as_fp16) {
        for (size_t i = 0; i < n; i++) hbuf[i] = f32_to_f16(buf[i]);
        if (fwrite(hbuf, 2, n, out) != n) { perror("write"); exit(1); }
    } else {
        if (fwrite(buf, 4, n, out) != n) { perror("write"); exit(1); }
    }
}

static void fill_const(size_t n, float v) { for (size_t i = 0; i < n; i++) buf[i] = v; }
static void fill_gauss(size_t n, float std) { for (size_t i = 0; i < n; i++) buf[i] = gauss(std); }

int main(int argc, char ** argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s OUT.bin FP16|FP32 n_layer n_embed n_ffn n_vocab seed\n", argv[0]);
        return 2;
    }
    file_fp16 = strcmp(argv[2], "FP16") == 0;
    if (!file_fp16 && strcmp(argv[2], "FP32") != 0) { fprintf(stderr, "type must be FP16 or FP32\n"); return 2; }
    int L = atoi(argv[3]), C = atoi(argv[4]), F = atoi(argv[5]), V = atoi(argv[6]);
    rng_state = strtoull(argv[7], NULL, 10);
    if (L <= 0 || C <= 0 || F <= 0 || V <= 0) { fprintf(stderr, "bad shape\n"); return 2; }

    size_t maxn = (size_t) V * C;
    if ((size_t) F * C > maxn) maxn = (size_t) F * C;
    buf = malloc(maxn * sizeof(float));
    hbuf = malloc(maxn * sizeof(uint16_t));
    out = fopen(argv[1], "wb");
    if (!buf || !hbuf || !out) { perror("alloc/open"); return 1; }

    put_i32(0x67676d66); put_i32(101); put_i32(V); put_i32(C); put_i32(L); put_i32(file_fp16 ? 1 : 0);

    char name[128];
    /* Embedding: real RWKV-4 init is tiny uniform; ln0 normalises it anyway. */
    for (size_t i = 0; i < (size_t) V * C; i++) buf[i] = (float) ((uniform01() * 2.0 - 1.0) * 1e-4);
    write_tensor("emb.weight", C, V, 0);
    fill_const(C, 1.0f); write_tensor("blocks.0.ln0.weight", C, 0, 0);
    fill_const(C, 0.0f); write_tensor("blocks.0.ln0.bias", C, 0, 0);

    for (int l = 0; l < L; l++) {
        double r01 = L > 1 ? (double) l / (L - 1) : 0.0;  /* RWKV-4 init schedule */
        double r1a0 = 1.0 - (double) l / L;
#define NAME(s) (snprintf(name, sizeof name, "blocks.%d." s, l), name)
        fill_const(C, 1.0f); write_tensor(NAME("ln1.weight"), C, 0, 0);
        fill_const(C, 0.0f); write_tensor(NAME("ln1.bias"), C, 0, 0);
        fill_const(C, 1.0f); write_tensor(NAME("ln2.weight"), C, 0, 0);
        fill_const(C, 0.0f); write_tensor(NAME("ln2.bias"), C, 0, 0);
        /* time_decay w_i in [-5, 3]; file stores -exp(w) (converter does this for v4). */
        for (int i = 0; i < C; i++) {
            double w = -5.0 + 8.0 * pow((double) i / (C - 1), 0.7 + 1.3 * r01);
            buf[i] = (float) -exp(w);
        }
        write_tensor(NAME("att.time_decay"), C, 0, 1);
        for (int i = 0; i < C; i++) buf[i] = (float) (log(0.3) + 0.5 * (((i + 1) % 3) - 1));
        write_tensor(NAME("att.time_first"), C, 0, 1);
        for (int i = 0; i < C; i++) buf[i] = (float) pow((double) i / C, r1a0);
        write_tensor(NAME("att.time_mix_k"), C, 0, 1);
        for (int i = 0; i < C; i++) buf[i] = (float) (pow((double) i / C, r1a0) + 0.3 * r01);
        write_tensor(NAME("att.time_mix_v"), C, 0, 1);
        for (int i = 0; i < C; i++) buf[i] = (float) pow((double) i / C, 0.5 * r1a0);
        write_tensor(NAME("att.time_mix_r"), C, 0, 1);
        fill_gauss((size_t) C * C, 0.02f); write_tensor(NAME("att.key.weight"), C, C, 0);
        fill_gauss((size_t) C * C, 0.02f); write_tensor(NAME("att.value.weight"), C, C, 0);
        fill_gauss((size_t) C * C, 0.02f); write_tensor(NAME("att.receptance.weight"), C, C, 0);
        fill_gauss((size_t) C * C, 0.02f); write_tensor(NAME("att.output.weight"), C, C, 0);
        for (int i = 0; i < C; i++) buf[i] = (float) pow((double) i / C, r1a0);
        write_tensor(NAME("ffn.time_mix_k"), C, 0, 1);
        write_tensor(NAME("ffn.time_mix_r"), C, 0, 1);
        /* PyTorch ffn.key.weight is (F, C): ggml ne0 = C, ne1 = F. */
        fill_gauss((size_t) F * C, 0.02f); write_tensor(NAME("ffn.key.weight"), C, F, 0);
        fill_gauss((size_t) C * C, 0.02f); write_tensor(NAME("ffn.receptance.weight"), C, C, 0);
        /* PyTorch ffn.value.weight is (C, F): ggml ne0 = F, ne1 = C. */
        fill_gauss((size_t) C * F, 0.02f); write_tensor(NAME("ffn.value.weight"), F, C, 0);
#undef NAME
    }
    fill_const(C, 1.0f); write_tensor("ln_out.weight", C, 0, 0);
    fill_const(C, 0.0f); write_tensor("ln_out.bias", C, 0, 0);
    fill_gauss((size_t) V * C, 0.02f); write_tensor("head.weight", C, V, 0);

    if (fclose(out) != 0) { perror("close"); return 1; }
    free(buf); free(hbuf);
    return 0;
}
EOF
cat >"$scratch/anchor/bench.c" <<'EOF'
/* rwkvcpp-anchor driver: times rwkv.cpp one-token decode vs sequence mode on one model file.
 * usage: bench quantize IN OUT TYPE
 *        bench run MODEL LABEL THREADS NTOK T RUNS CHUNK...
 * "run" prints markdown table rows on stdout, diagnostics on stderr. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rwkv.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}
static int cmp_d(const void * a, const void * b) {
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}
static double median(double * v, int n) {
    qsort(v, (size_t) n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static uint64_t rng = 12345;
static uint32_t next_token(uint32_t n_vocab) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t) (rng % n_vocab);
}
static int finite_all(const float * x, size_t n) {
    for (size_t i = 0; i < n; i++) if (!isfinite(x[i])) return 0;
    return 1;
}
#define CHECK(c, what) do { if (!(c)) { fprintf(stderr, "bench: %s failed (rwkv error 0x%x)\n", what, (unsigned) rwkv_get_last_error(ctx)); exit(1); } } while (0)

/* One decode run: ntok rwkv_eval calls from a fresh state; logits optional. */
static double decode_run(struct rwkv_context * ctx, const uint32_t * tok, int ntok, float * state, float * logits) {
    rwkv_init_state(ctx, state);
    double t0 = now_s();
    for (int i = 0; i < ntok; i++) CHECK(rwkv_eval(ctx, tok[i], state, state, logits), "rwkv_eval");
    return now_s() - t0;
}

int main(int argc, char ** argv) {
    struct rwkv_context * ctx = NULL;
    rwkv_set_print_errors(NULL, true);
    if (argc == 5 && strcmp(argv[1], "quantize") == 0) {
        double t0 = now_s();
        CHECK(rwkv_quantize_model_file(argv[2], argv[3], argv[4]), "rwkv_quantize_model_file");
        fprintf(stderr, "quantized %s -> %s (%s) in %.1f s\n", argv[2], argv[3], argv[4], now_s() - t0);
        return 0;
    }
    if (argc < 9 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s quantize IN OUT TYPE\n       %s run MODEL LABEL THREADS NTOK T RUNS CHUNK...\n", argv[0], argv[0]);
        return 2;
    }
    const char * path = argv[2], * label = argv[3];
    int threads = atoi(argv[4]), ntok = atoi(argv[5]), T = atoi(argv[6]), runs = atoi(argv[7]);
    if (threads <= 0 || ntok <= 0 || T <= 0 || runs <= 0 || runs > 100) { fprintf(stderr, "bench: bad numeric argument\n"); return 2; }

    fprintf(stderr, "rwkv.cpp system info: %s\n", rwkv_get_system_info_string());
    double tl = now_s();
    ctx = rwkv_init_from_file(path, (uint32_t) threads, 0);
    CHECK(ctx != NULL, "rwkv_init_from_file");
    fprintf(stderr, "[%s] loaded in %.1f s: n_layer=%zu n_embed=%zu n_vocab=%zu threads=%d\n", label, now_s() - tl,
            rwkv_get_n_layer(ctx), rwkv_get_n_embed(ctx), rwkv_get_n_vocab(ctx), threads);
    const uint32_t n_vocab = (uint32_t) rwkv_get_n_vocab(ctx);
    const size_t state_len = rwkv_get_state_len(ctx), logits_len = rwkv_get_logits_len(ctx);
    float * state = malloc(state_len * sizeof(float));
    float * state2 = malloc(state_len * sizeof(float));
    float * logits = malloc(logits_len * sizeof(float));
    float * logits2 = malloc(logits_len * sizeof(float));
    uint32_t * tok = malloc((size_t) (T > ntok ? T : ntok) * sizeof(uint32_t));
    double * t = malloc((size_t) runs * sizeof(double));
    if (!state || !state2 || !logits || !logits2 || !tok || !t) { fprintf(stderr, "bench: out of memory\n"); return 1; }
    for (int i = 0; i < (T > ntok ? T : ntok); i++) tok[i] = next_token(n_vocab);

    /* Consistency: decode over the first ntok tokens vs. sequence mode (chunk 16). */
    decode_run(ctx, tok, ntok, state, logits);
    CHECK(rwkv_eval_sequence_in_chunks(ctx, tok, (size_t) ntok, 16, NULL, state2, logits2), "rwkv_eval_sequence_in_chunks");
    double maxdiff = 0, maxabs = 0;
    for (size_t i = 0; i < logits_len; i++) {
        double d = fabs((double) logits[i] - logits2[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(logits[i]) > maxabs) maxabs = fabs(logits[i]);
    }
    fprintf(stderr, "[%s] check: logits finite=%d, max|logit|=%.3g, max|decode-sequence| over %d tokens=%.3g\n",
            label, finite_all(logits, logits_len) && finite_all(logits2, logits_len), maxabs, ntok, maxdiff);

    /* (a) decode: one rwkv_eval per token, logits every token (a generation step). The check
     * above was the warm-up. Note: at this rwkv.cpp/ggml version the scheduler keeps the graph it
     * allocated first, so passing NULL logits does not skip the head anyway. */
    for (int r = 0; r < runs; r++) t[r] = decode_run(ctx, tok, ntok, state, logits);
    double dec = ntok / median(t, runs);
    printf("| %s | decode | 1 | %.1f | 1.00 |\n", label, dec);
    fflush(stdout);

    /* (b) sequence mode over T tokens from a fresh state; logits requested for the last token. */
    for (int a = 8; a < argc; a++) {
        int chunk = atoi(argv[a]);
        if (chunk <= 0) { fprintf(stderr, "bench: bad chunk size '%s'\n", argv[a]); return 2; }
        double tw = now_s();
        /* Warm-up: one chunk builds and allocates the graph for this chunk length. */
        CHECK(rwkv_eval_sequence_in_chunks(ctx, tok, (size_t) chunk, (size_t) chunk, NULL, state, logits), "rwkv_eval_sequence_in_chunks");
        fprintf(stderr, "[%s] chunk %d warm-up (graph build + %d tokens) %.2f s\n", label, chunk, chunk, now_s() - tw);
        for (int r = 0; r < runs; r++) {
            double t0 = now_s();
            CHECK(rwkv_eval_sequence_in_chunks(ctx, tok, (size_t) T, (size_t) chunk, NULL, state, logits), "rwkv_eval_sequence_in_chunks");
            t[r] = now_s() - t0;
        }
        double seq = T / median(t, runs);
        printf("| %s | sequence T=%d | %d | %.1f | %.2f |\n", label, T, chunk, seq, seq / dec);
        fflush(stdout);
    }
    rwkv_free(ctx);
    return 0;
}
EOF
cc -O2 -std=c11 -Wall -Wextra -o "$scratch/anchor/write_model" "$scratch/anchor/write_model.c" -lm ||
  die "compiling the model writer failed"
cc -O2 -std=c11 -Wall -Wextra -I"$src" -o "$scratch/anchor/bench" "$scratch/anchor/bench.c" \
  -L"$libdir" -lrwkv -Wl,-rpath,"$libdir" -lm || die "compiling the driver against $lib failed"

# 3. Random FP16 model, then rwkv.cpp's own quantizer.
t=$SECONDS
fp16=$scratch/models/rwkv4-random-L$N_LAYER-C$N_EMBED-FP16.bin
echo "writing $fp16 ..." >&2
"$scratch/anchor/write_model" "$fp16" FP16 "$N_LAYER" "$N_EMBED" "$N_FFN" "$N_VOCAB" "$SEED" || die "writing the model failed"
declare -A file=([FP16]=$fp16)
for ty in $TYPES; do
  [ "$ty" = FP16 ] && continue
  file[$ty]=${fp16%-FP16.bin}-$ty.bin
  run "$scratch/anchor/bench" quantize "$fp16" "${file[$ty]}" "$ty" >"$log/quantize-$ty.log" 2>&1 ||
    die "quantizing to $ty failed, see $log/quantize-$ty.log"
done
t_model=$((SECONDS - t))

# 4. Measure.
t=$SECONDS
rows=() notes=()
for ty in $TYPES; do
  notes+=("load before $ty: $(uptime)")
  echo "measuring $ty ..." >&2
  # shellcheck disable=SC2086  # CHUNKS is a list
  out=$(run "$scratch/anchor/bench" run "${file[$ty]}" "$ty" "$THREADS" "$NTOK" "$SEQ_T" "$RUNS" $CHUNKS 2>"$log/bench-$ty.log") ||
    die "benchmark of $ty failed, see $log/bench-$ty.log"
  rows+=("$out")
  grep -v '^rwkv.cpp system info' "$log/bench-$ty.log" >&2 || true
done
notes+=("load after: $(uptime)")
t_run=$((SECONDS - t))

echo
echo "rwkv.cpp anchor: RWKV-4 random weights, L=$N_LAYER d=$N_EMBED ffn=$N_FFN vocab=$N_VOCAB, $THREADS threads;"
echo "decode = rwkv_eval x $NTOK tokens from a fresh state; sequence = rwkv_eval_sequence_in_chunks over $SEQ_T"
echo "random tokens; medians of $RUNS runs after a warm-up. emb/head stay FP16 in quantized files (rwkv.cpp's rule)."
sed -n 's/^rwkv.cpp system info: //p' "$log/bench-${TYPES%% *}.log"
echo
echo "| type | mode | chunk | tokens/s | ratio to decode |"
echo "|---|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
printf -- '- %s\n' "${notes[@]}"
echo "- time: build ${t_build}s, model+quantize ${t_model}s, measurement ${t_run}s, total $((SECONDS - t_all))s (nice $NICE)"
