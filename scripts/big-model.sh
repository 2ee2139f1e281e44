#!/usr/bin/env bash
# big-model.sh: the real-size path a user with a SpikeGPT-216M checkpoint takes first, end to end,
# each step timed (wall clock and peak RSS, from /usr/bin/time -v):
#   1. checkpoint  a seeded random SpikeGPT-216M .pth in the upstream layout (18 layers, d 768,
#                  vocab 50277, bf16 matrices as published), written by
#                  tests/reference/make_upstream_golden.py --write-checkpoint
#   2. convert     models/train/convert.py with GPT-NeoX's 20B tokenizer
#   3. eval        qslm-eval: perplexity on the first --eval-bytes of the SOTU test split
#   4. quantize    qslm-quant build: one variant per --budgets point (default four), searched up
#                  to --max-tier (default module: all three tiers) on the default calibration and
#                  validation splits (1024 and 8192 tokens), each variant's test perplexity on
#                  step 3's text (the whole SOTU test split would be 110,000 tokens a variant)
#   5. serve       qslmd on that bundle: start until the socket answers (hashing and loading)
#   6. generate    qslmctl generate, greedy, --tokens tokens, with the 20B tokenizer
# and prints the table the README quotes. Needs about 6 GB of RAM and 3 GB of disk in --work.
#   bash scripts/big-model.sh [--work DIR] [--budgets 100M,128M,160M,256M] [--max-tier global|block|module]
#                             [--eval-bytes N] [--tokens N] [--keep]
# --keep keeps the .pth and the converted f32 model in --work (about 1.3 GB); the bundle and the
# logs stay either way.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${TMPDIR:-/tmp}/qslm-big-model
budgets=100M,128M,160M,256M
max_tier=module
eval_bytes=20000
tokens=16
keep=0
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --work) work=$2; shift 2 ;;
    --budgets) budgets=$2; shift 2 ;;
    --max-tier) max_tier=$2; shift 2 ;;
    --eval-bytes) eval_bytes=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "big-model: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$eval_bytes$tokens" in *[!0-9]*) echo "big-model: --eval-bytes and --tokens take whole numbers" >&2; exit 2 ;; esac
[ -x /usr/bin/time ] || { echo "big-model: needs /usr/bin/time (Debian package 'time')" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null ||
  { echo "big-model: needs Debian's PyTorch: apt-get install python3-torch" >&2; exit 2; }

bash scripts/setup.sh
bash scripts/fetch-data.sh >/dev/null
dir=$(bash scripts/build.sh normal)
data=${QSLM_DATA_DIR:-$PWD/.data}
tokenizer=models/tokenizers/20B_tokenizer.json
mkdir -p "$work"
rm -rf "$work/bundle" "$work/times"
mkdir -p "$work/times"
results=$work/results.md
printf '| step | wall | peak RSS | what |\n|---|---|---|---|\n' >"$results"

# step NAME WHAT -- COMMAND...: runs COMMAND under /usr/bin/time -v, its output in $work/NAME.log,
# and adds a row to the results table.
step() {
  local name=$1 what=$2
  shift 3
  echo "big-model: [$name] $*" >&2
  if ! /usr/bin/time -v -o "$work/times/$name" "$@" >"$work/$name.log" 2>&1; then
    cat "$work/$name.log" >&2
    echo "big-model: step '$name' failed (log: $work/$name.log)" >&2
    exit 1
  fi
  row "$name" "$what" "$work/times/$name"
}
# row NAME WHAT TIMEFILE: the wall clock and maximum resident set size of a /usr/bin/time -v report.
row() {
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$3" |
         awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f s", s }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MB", $2 / 1024}' "$3")
  printf '| %s | %s | %s | %s |\n' "$1" "$wall" "$rss" "$2" >>"$results"
}

pth=$work/SpikeGPT-216M.pth
model=$work/spikegpt-216m.qslm
step checkpoint "seeded random SpikeGPT-216M, upstream layout" -- \
  /usr/bin/python3 tests/reference/make_upstream_golden.py --write-checkpoint spikegpt-216m \
  --seed 216 -o "$pth"
step convert "convert.py, f32, 20B tokenizer embedded" -- \
  /usr/bin/python3 models/train/convert.py "$pth" --upstream auto --tokenizer "$tokenizer" -o "$model"
head -c "$eval_bytes" "$data/sotu/test.txt" >"$work/eval.txt"
step eval "qslm-eval, perplexity on $eval_bytes bytes of SOTU test, window 256" -- \
  "$dir/runtime/tools/qslm-eval" "$model" --text "$work/eval.txt" --window 256
step quantize "qslm-quant build --budgets $budgets --max-tier $max_tier (default splits, test ppl on the eval text)" -- \
  "$dir/quant/tools/qslm-quant" build "$model" --budgets "$budgets" --max-tier "$max_tier" \
  --test-text "$work/eval.txt" --no-cache -o "$work/bundle"

sock=$work/qslmd.sock
rm -f "$sock"
export QSLM_SOCKET=$sock
qslmctl=$dir/daemon/qslmctl
start=$(date +%s%N)
"$dir/daemon/qslmd" --bundle "$work/bundle" --socket "$sock" >"$work/serve.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
until "$qslmctl" status >/dev/null 2>&1; do
  kill -0 $daemon 2>/dev/null || { cat "$work/serve.log" >&2; echo "big-model: qslmd exited" >&2; exit 1; }
  sleep 0.2
done
ready=$(date +%s%N)
printf '| serve | %s | %s | qslmd on the bundle: start until status answers |\n' \
  "$(awk -v ns=$((ready - start)) 'BEGIN { printf "%.1f s", ns / 1e9 }')" \
  "$(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' /proc/$daemon/status)" >>"$results"
step generate "qslmctl generate, greedy, $tokens tokens (the daemon's peak RSS after it: next row)" -- \
  "$qslmctl" generate --temperature 0 --max-tokens "$tokens" "The state of the Union is"
printf '| (qslmd) | | %s | the daemon after the generation |\n' \
  "$(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' /proc/$daemon/status)" >>"$results"
"$qslmctl" status >"$work/status.txt"
kill -TERM $daemon
wait $daemon || true
trap - EXIT

echo >&2
cat "$work/generate.log" >&2
echo >&2
grep -E '^perplexity' "$work/eval.log" >&2 || true
cat "$results"
if [ $keep = 0 ]; then
  rm -f "$pth" "$model"
fi
