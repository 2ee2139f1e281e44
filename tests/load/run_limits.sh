#!/usr/bin/env bash
# run_limits.sh QSLMD QSLM_ABUSE: qslm-abuse's modes at a small size, each against a fresh qslmd
# on a temporary socket (the bundle $QSLM_SOURCE_DIR/models/bundle, an empty fake telemetry root):
#   fds:   qslmd with 64 file descriptors (ulimit -n) and max_connections above that: every extra
#          client gets too_many_connections, the daemon logs one warning for the burst, and a new
#          client is served once they leave;
#   loris: idle_timeout 1 s, 8 connections trickling half a line for 3 s: each is closed with
#          idle_timeout while status probes are answered within 2 s;
#   flood: 6 connections x 2000 pipelined status; VmRSS back within 8 MiB of where it was
#          (not asserted under ASan, which keeps freed memory quarantined: QSLM_SANITIZE=1).
# Full size, by hand: the same commands with --connections 1000 / 200 / 10 and --requests 6000.
set -euo pipefail
qslmd=$1 abuse=$2
bundle=${QSLM_BUNDLE:-${QSLM_SOURCE_DIR:?QSLM_SOURCE_DIR is not set}/models/bundle}
dir=$(mktemp -d "${TMPDIR:-/tmp}/qslm-limits-XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir "$dir/root"

# start NOFILE ARGS...: qslmd in the background (pid in $pid), waiting until it answers
start() {
  local nofile=$1
  shift
  rm -f "$dir/s.sock"
  (ulimit -n "$nofile" && exec "$qslmd" --socket "$dir/s.sock" --bundle "$bundle" --threads 1 \
     --telemetry-root "$dir/root" "$@") 2>"$dir/qslmd.log" &
  pid=$!
  for _ in $(seq 300); do
    if [ -S "$dir/s.sock" ] && grep -q "ready: serving" "$dir/qslmd.log"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "qslmd exited before serving:"; cat "$dir/qslmd.log"; exit 1; }
    sleep 0.1
  done
  echo "qslmd did not become ready"; cat "$dir/qslmd.log"; exit 1
}
stop() {
  kill -TERM "$pid"
  local st=0
  wait "$pid" || st=$?
  pid=
  [ "$st" -eq 0 ] || { echo "qslmd exited $st; its log:"; tail -n 40 "$dir/qslmd.log"; exit 1; }
}
fail() { echo "FAIL: $*"; echo "qslmd's log:"; tail -n 40 "$dir/qslmd.log"; exit 1; }

start 64 --max-connections 1000 --idle-timeout 0
"$abuse" --socket "$dir/s.sock" --mode fds --connections 120 --probe-within 10 || fail "fds"
n=$(grep -c "refusing new connections" "$dir/qslmd.log" || true)
[ "$n" -eq 1 ] || fail "fds: $n warnings for one burst of refusals (expected 1)"
grep -q "out of file descriptors" "$dir/qslmd.log" || fail "fds: the warning does not say why"
stop

start 1024 --idle-timeout 1
"$abuse" --socket "$dir/s.sock" --mode loris --connections 8 --seconds 3 --probe-within 2 || fail "loris"
stop

start 1024
slack=8
[ "${QSLM_SANITIZE:-0}" = 1 ] && slack=100000
"$abuse" --socket "$dir/s.sock" --mode flood --connections 6 --requests 2000 --pid "$pid" --settle 15 \
  --rss-slack "$slack" || fail "flood"
stop
echo "ok: fds, loris and flood bounds held"
