#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer targets with clang (ASan + UBSan) and run one.
#   bash scripts/fuzz.sh list                 # the targets
#   bash scripts/fuzz.sh TARGET [SECONDS]     # fuzz TARGET (default 60 s) from its corpus
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
exe="$dir/tests/fuzz/fuzz_$target"
[ -x "$exe" ] || { echo "fuzz: no target '$target' (bash scripts/fuzz.sh list)" >&2; exit 2; }
seconds=${2:-60}
mkdir -p ".fuzz/$target"
exec "$exe" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=".fuzz/$target-" \
  ".fuzz/$target" "tests/fuzz/corpus/$target"
