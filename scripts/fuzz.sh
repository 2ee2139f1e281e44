#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer targets with clang (ASan + UBSan) and run one.
#   bash scripts/fuzz.sh list                 # the targets
#   bash scripts/fuzz.sh TARGET [SECONDS]     # fuzz TARGET (default 60 s) from its corpus
#   bash scripts/fuzz.sh campaign [SECONDS [TARGET...]]  # every target (or those named) in turn
#                                             # (default 600 s each), then
#                                             # merge into the committed corpus what it found
#                                             # that adds coverage (-merge=1; no file removed);
#                                             # a table of run times and executions at the end
# New inputs go to .fuzz/TARGET (git-ignored); the committed seeds in tests/fuzz/corpus/TARGET
# are read, never written. A crash leaves its input in .fuzz/ and exits non-zero: fix the bug,
# then copy the input into tests/fuzz/corpus/TARGET so it replays as a test forever.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --fuzz
dir=.build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=all >/dev/null
fi
meson compile -C "$dir" >/dev/null
target=${1:-}
if [ -z "$target" ] || [ "$target" = list ]; then
  ls "$dir/tests/fuzz" | sed -n 's/^fuzz_//p'
  exit 0
fi
if [ "$target" = campaign ]; then
  seconds=${2:-600}
  summary=.fuzz/campaign.txt
  mkdir -p .fuzz
  shift $(( $# > 1 ? 2 : 1 ))
  [ -f "$summary" ] || printf '| target | seconds | executions | exec/s | corpus before | corpus after | result |\n|---|---|---|---|---|---|---|\n' >"$summary"
  for exe in "$dir"/tests/fuzz/fuzz_*; do
    [ -f "$exe" ] && [ -x "$exe" ] || continue   # not the object directories beside them
    t=${exe##*/fuzz_}
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$t"; then continue; fi
    mkdir -p ".fuzz/$t"
    log=".fuzz/$t.log"
    before=$(ls "tests/fuzz/corpus/$t" | wc -l)
    start=$(date +%s)
    if "$exe" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=".fuzz/$t-" \
        ".fuzz/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then result=clean; else result="FAILED (see $log)"; fi
    took=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # the committed corpus keeps every file it has (named seeds, regression inputs) and gains
    # only the inputs found now that add coverage beyond it
    if [ "$result" = clean ]; then "$exe" -merge=1 "tests/fuzz/corpus/$t" ".fuzz/$t" >>"$log" 2>&1 || true; fi
    after=$(ls "tests/fuzz/corpus/$t" | wc -l)
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$took" "${runs:-?}" \
      "$(( ${runs:-0} / (took > 0 ? took : 1) ))" "$before" "$after" "$result" >>"$summary"
    echo "fuzz: $t: $result, ${runs:-?} executions in $took s" >&2
  done
  cat "$summary"
  exit 0
fi
exe="$dir/tests/fuzz/fuzz_$target"
[ -x "$exe" ] || { echo "fuzz: no target '$target' (bash scripts/fuzz.sh list)" >&2; exit 2; }
seconds=${2:-60}
mkdir -p ".fuzz/$target"
exec "$exe" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=".fuzz/$target-" \
  ".fuzz/$target" "tests/fuzz/corpus/$target"
