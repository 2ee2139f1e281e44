#!/usr/bin/env bash
# bench.sh: the benchmarks behind the README's performance tables (prints medians and ratios).
#   bash scripts/bench.sh            # decode: the default model at every type, the 216M shape at
#                                    # every type (head quantized too, then f32 edges), the batched
#                                    # path, the spike-hidden path, prefill against decode (the
#                                    # 216M shape, the default bundle); tokenizer; qslmd serving the
#                                    # default bundle (concurrency, classify, prefill by text
#                                    # length and the round as a client sees it, switches, memory)
#   THREADS=1 bash scripts/bench.sh  # another thread count (default: one per CPU)
#   QUICK=1 bash scripts/bench.sh    # only f32, f16, q8_0 and q4_0
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(bash scripts/build.sh normal)
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
types=f32,f16,q8_0,q8_1,q6_0,q6_1,q5_0,q5_1,q4_0,q4_1,q3_0,q3_1,q2_0,q2_1,q4_s,q3_s,q2_s
[ -n "${QUICK:-}" ] && types=f32,f16,q8_0,q4_0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The default model stored at each type (every matrix, head and embedding included).
models=()
if [ -f models/spikegpt-sotu.qslm ]; then
  for t in ${types//,/ }; do
    if [ "$t" = f32 ]; then models+=(models/spikegpt-sotu.qslm); continue; fi
    "$dir/runtime/tools/qslm-quantize" models/spikegpt-sotu.qslm "$tmp/spikegpt-sotu-$t.qslm" --type "$t" >/dev/null
    models+=("$tmp/spikegpt-sotu-$t.qslm")
  done
fi
bench=("$dir/tests/bench/bench-decode" "${threads[@]}" --tokens 64 --runs 5)
[ ${#models[@]} -gt 0 ] && { "${bench[@]}" --no-synthetic --batch 0 --prefill 2048 --chunk 128 "${models[@]}"; echo; }
"${bench[@]}" --types "$types" --batch 128 --prefill 1024 --chunk 128   # 216M shape, head quantized; gemm table
echo
"${bench[@]}" --types q8_0,q4_0 --edge f32 --batch 0            # 216M shape, emb and head kept f32
echo
"${bench[@]}" --types f32,q8_0,q4_0 --spike-hidden --batch 0    # dense vs spike.ffn_hidden
echo
"${bench[@]}" --no-synthetic --batch 0 --prefill 2048 --chunk 128 models/bundle/*.qslm
echo
"${bench[@]}" --no-synthetic --batch 0 --prefill 2048 --chunk 20 models/bundle/*.qslm  # qslmd's chunk
echo
if [ -f .data/sotu/test.txt ]; then
  "$dir/tests/bench/bench-tokenizer" .data/sotu/test.txt
fi
echo
# qslmd on the default bundle: up-delay 0 so that switches up are not held back.
sock=$tmp/qslmd.sock
# --max-line 256K: a 64 KiB text in one request line.
"$dir/daemon/qslmd" --bundle models/bundle --socket "$sock" --up-delay 0 --policy-interval 0.05 \
  --max-line 256K --log-level warning "${threads[@]}" &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
sleep 0.2 # bound, then listening
text=()
[ -f .data/sotu/test.txt ] && text=(--text .data/sotu/test.txt)
"$dir/tests/bench/bench-daemon" --socket "$sock" --pid $daemon --runs 5 "${text[@]}"
kill -TERM $daemon
wait $daemon
