#!/usr/bin/env bash
# run_load.sh QSLMD QSLM_LOAD [qslm-load options...]: the load test at a small size. Starts
# qslmd on a temporary socket with the bundle $QSLM_SOURCE_DIR/models/bundle (or $QSLM_BUNDLE)
# and an empty fake telemetry root (so only the load's set-budget decides), runs qslm-load
# (default: 16 clients, 200 requests, a budget change every 0.2 s, 24 streams replayed pinned),
# and asserts that it exits 0 and that qslmd then stops with exit 0 on SIGTERM.
# With `flood` as the first option, it runs qslm-load's flood mode instead (long-text classify
# floods next to short generates; its options follow). QSLMD_EXTRA (words split at spaces) adds
# options to qslmd's command line, e.g. QSLMD_EXTRA="--threads 2" for the full-size run by hand.
set -euo pipefail
qslmd=$1 load=$2
shift 2
bundle=${QSLM_BUNDLE:-${QSLM_SOURCE_DIR:?QSLM_SOURCE_DIR is not set}/models/bundle}
dir=$(mktemp -d "${TMPDIR:-/tmp}/qslm-load-XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$dir/root"
# shellcheck disable=SC2086 # QSLMD_EXTRA is words
"$qslmd" --socket "$dir/s.sock" --bundle "$bundle" --threads 1 --telemetry-root "$dir/root" \
  --policy-interval 0.05 --up-delay 0.1 ${QSLMD_EXTRA:-} 2>"$dir/qslmd.log" &
pid=$!
# wait (up to 30 s) until the daemon answers
for _ in $(seq 300); do
  if [ -S "$dir/s.sock" ] && "$load" --socket "$dir/s.sock" --clients 1 --requests 1 --budget-every 0 \
       --check-sample 0 --timeout 5 >/dev/null 2>&1; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "qslmd exited before accepting:"; cat "$dir/qslmd.log"; exit 1; }
  sleep 0.1
done
if [ $# -eq 0 ]; then
  set -- --clients 16 --requests 200 --budget-every 0.2 --check-sample 24 --timeout 60
fi
rc=0
if [ "$1" = flood ]; then
  shift
  "$load" flood --socket "$dir/s.sock" "$@" || rc=$?
else
  "$load" --socket "$dir/s.sock" "$@" || rc=$?
fi
kill -TERM "$pid"
st=0
wait "$pid" || st=$?
pid=
if [ "$rc" -ne 0 ] || [ "$st" -ne 0 ]; then
  echo "qslm-load exit $rc, qslmd exit $st; qslmd's log:"
  tail -n 60 "$dir/qslmd.log"
  exit 1
fi
grep -c "serving " "$dir/qslmd.log" | sed 's/^/switch lines in the log: /'
echo "ok: qslm-load passed and qslmd stopped with exit 0"
