#!/usr/bin/env bash
# run_hostile.sh QSLMD QSLM_HOSTILE [storm|silent options...]: the hostile clients of
# tests/load/qslm-hostile.c against qslmd on a temporary socket, with the bundle
# $QSLM_SOURCE_DIR/models/bundle (or $QSLM_BUNDLE) and an empty fake telemetry root. Without
# options, both modes at a small size (seconds) with generous bounds: a probe status answered
# within 5 s, VmHWM under 120 MB (1024 MB for an ASan build), no watchdog gap over 2 s
# (WatchdogSec=2). With options, one run
# with them (full size by hand: see the README's Reliability section), e.g.
#   run_hostile.sh .build/daemon/qslmd .build/tests/load/qslm-hostile --mode storm --connections 10 --requests 6000
set -euo pipefail
qslmd=$1 hostile=$2
shift 2
bundle=${QSLM_BUNDLE:-${QSLM_SOURCE_DIR:?QSLM_SOURCE_DIR is not set}/models/bundle}
dir=$(mktemp -d "${TMPDIR:-/tmp}/qslm-hostile-XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/root"
run() {
  rm -f "$dir/s.sock"
  if ! "$hostile" --socket "$dir/s.sock" --notify "$dir/notify.sock" --log "$dir/qslmd.log" "$@" -- \
       "$qslmd" --socket "$dir/s.sock" --bundle "$bundle" --threads 1 --telemetry-root "$dir/root" \
       --policy-interval 0.05; then
    echo "qslm-hostile failed; qslmd's log:"
    tail -n 40 "$dir/qslmd.log"
    exit 1
  fi
}
hwm=120
if ldd "$qslmd" 2>/dev/null | grep libasan >/dev/null; then # not -q: under pipefail, ldd cut off by an early exit fails the test
  hwm=1024 # ASan's quarantine keeps freed memory (up to 256 MB) and its shadow adds more
  echo "qslmd is built with ASan: VmHWM bound $hwm MB instead of 120"
fi
if [ $# -gt 0 ]; then
  run "$@"
else
  run --mode storm --connections 4 --requests 6000 --probe-max 5 --hwm-max "$hwm"
  run --mode silent --connections 8 --requests 4000 --hold 3 --probe-max 5 --hwm-max "$hwm"
fi
echo "ok: qslmd stayed answerable, bounded and watched"
