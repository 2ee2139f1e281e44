#!/usr/bin/env bash
# bench.sh: the benchmarks behind the README's performance tables (prints medians and ratios).
#   bash scripts/bench.sh            # decode: reference models, the default model, 216M-shaped f32/f16
#   THREADS=1 bash scripts/bench.sh  # another thread count (default: one per CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(bash scripts/build.sh normal)
models=(tests/data/reference/spike_lm.qslm tests/data/reference/spike_lm_f16.qslm)
[ -f models/spikegpt-sotu.qslm ] && models+=(models/spikegpt-sotu.qslm)
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
"$dir/tests/bench/bench-decode" "${threads[@]}" --tokens 64 --runs 5 "${models[@]}"
echo
if [ -f .data/sotu/test.txt ]; then
  "$dir/tests/bench/bench-tokenizer" .data/sotu/test.txt
fi
