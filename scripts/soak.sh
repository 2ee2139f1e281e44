#!/usr/bin/env bash
# soak.sh: qslmd under load for a long time (default one hour), by hand, not in the test command.
# Starts qslmd on the default bundle, runs tests/load's qslm-load for the duration while another
# client moves the memory budget across every variant every second, and samples the daemon's
# resident memory (VmRSS) and open file descriptors every minute. Prints the samples, the load
# tool's report, and a last line with RSS and fds at start and end.
#   bash scripts/soak.sh [SECONDS] [CLIENTS]     # default 3600 s, 16 clients
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
seconds=${1:-3600}
clients=${2:-16}
dir=$(bash scripts/build.sh normal)
tmp=$(mktemp -d)
trap 'kill $daemon 2>/dev/null; rm -rf "$tmp"' EXIT
sock=$tmp/qslmd.sock
"$dir/daemon/qslmd" --bundle models/bundle --socket "$sock" --config /dev/null --up-delay 1 \
  --policy-interval 0.5 --log-level warning 2>"$tmp/qslmd.log" &
daemon=$!
for _ in $(seq 100); do "$dir/daemon/qslmctl" --socket "$sock" status >/dev/null 2>&1 && break; sleep 0.1; done
sample() { # elapsed-seconds rss-kib fds
  printf '%s %s %s\n' "$1" "$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$daemon/status)" \
    "$(ls /proc/$daemon/fd | wc -l)"
}
echo "elapsed_s rss_kib fds"
first=$(sample 0)
echo "$first"
"$dir/tests/load/qslm-load" --socket "$sock" --clients "$clients" --duration "$seconds" \
  --budget-every 1 >"$tmp/load.txt" 2>&1 &
load=$!
start=$(date +%s)
while kill -0 $load 2>/dev/null; do
  sleep 60
  kill -0 $daemon || { echo "soak: qslmd died" >&2; cat "$tmp/qslmd.log" >&2; exit 1; }
  sample $(( $(date +%s) - start ))
done
rc=0
wait $load || rc=$?
last=$(sample $(( $(date +%s) - start )))
echo "$last"
cat "$tmp/load.txt"
echo "qslmd log (warnings and errors):"
{ grep -c . "$tmp/qslmd.log" || true; } | sed "s/^/  lines: /"
grep -i "error" "$tmp/qslmd.log" | head -5 || true
read -r _ rss0 fd0 <<<"$first"
read -r _ rss1 fd1 <<<"$last"
echo "soak: ${seconds} s, ${clients} clients: VmRSS ${rss0} -> ${rss1} KiB, fds ${fd0} -> ${fd1}, load tool exit ${rc}"
exit $rc
