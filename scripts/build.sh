#!/usr/bin/env bash
# build.sh: configure (once) and compile one build tree; prints the tree's path on success.
#   bash scripts/build.sh normal     # .build: -Werror, debugoptimized
#   bash scripts/build.sh sanitize   # .build-san: -Werror, ASan + UBSan, no recovery
#   bash scripts/build.sh aarch64    # .build-aarch64: -Werror, cross-built for arm64 (scripts/cross.sh
#                                    # installs the toolchain first)
# meson's and ninja's chatter goes to <tree>/build-output.log, shown in full if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-normal}
case "$kind" in
  normal)   dir=.build; opts=(--werror -Dtests=enabled) ;;
  sanitize) dir=.build-san
            opts=(--werror -Dtests=enabled -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all) ;;
  aarch64)  dir=.build-aarch64; opts=(--werror --cross-file scripts/cross/aarch64-linux-gnu.ini) ;;
  *) echo "build: unknown build '$kind' (normal, sanitize or aarch64)" >&2; exit 2 ;;
esac
mkdir -p "$dir"
log="$dir/build-output.log"
run() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build: '$*' failed (output above, also in $log)" >&2
    exit 1
  fi
}
if [ ! -f "$dir/build.ninja" ]; then
  run meson setup "$dir" "${opts[@]}"
fi
run meson compile -C "$dir"
echo "$dir"
