#!/usr/bin/env bash
# build.sh: configure (once) and compile one build tree.
#   bash scripts/build.sh normal     # .build: -Werror, debugoptimized
#   bash scripts/build.sh sanitize   # .build-san: -Werror, ASan + UBSan, no recovery
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-normal}
case "$kind" in
  normal)   dir=.build; opts=(--werror) ;;
  sanitize) dir=.build-san
            opts=(--werror -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all) ;;
  *) echo "build: unknown build '$kind' (normal or sanitize)" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}" >/dev/null
fi
meson compile -C "$dir" >/dev/null
echo "$dir"
