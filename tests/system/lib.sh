# lib.sh: what the in-VM checks share (sourced by tests/system/in-vm.sh, inside the guest, as root).
# shellcheck shell=bash
#
# TAP: every check prints one "ok N - WHAT" or "not ok N - WHAT" line (then "# " lines saying why);
# finish prints the plan "1..N" and the verdict line "vm-test: PASS" or "vm-test: FAIL", and
# returns non-zero on failure. scripts/vm-test.sh passes the run only when the script exits 0,
# prints the verdict PASS, and every test line is ok and matches the plan.
# Figures: `figure KEY VALUE` prints "# figure: KEY VALUE" (a TAP comment); vm-test.sh collects
# them into its summary. KEY: one word ([A-Za-z0-9_.-]); VALUE: the rest of the line, units in the
# key (first_status_s, memory_current_bytes).
# Files: results NAME is the path of NAME in the results directory (the host's share, copied back
# to .build-vm/vm-test-results/ after the run); keep logs and command outputs there.

n=0
failed=0
QSLM_VM_RESULTS=${QSLM_VM_RESULTS:-/tmp/qslm-vm-results}
mkdir -p "$QSLM_VM_RESULTS"

ok() { n=$((n + 1)); echo "ok $n - $1"; }
# bad WHAT [WHY...]: a failed check; each WHY is printed on its own "# " line.
bad() {
  n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift
  local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
# check WHAT CMD...: ok when CMD succeeds; else not ok with CMD's output (stdout and stderr).
check() {
  local what=$1 out rc; shift
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ]; then ok "$what"; else bad "$what" "exit $rc: $*" ${out:+"$out"}; fi
}
diag() { echo "# $*"; }
section() { echo "# --- $*"; }
figure() { local key=$1; shift; echo "# figure: $key $*"; }
# Bail out of the whole run (TAP "Bail out!"): the remaining checks cannot mean anything.
bail() { echo "Bail out! $*"; echo "vm-test: FAIL"; exit 1; }
finish() {
  echo "1..$n"
  if [ "$failed" -eq 0 ] && [ "$n" -gt 0 ]; then echo "vm-test: PASS"; return 0; fi
  echo "vm-test: FAIL ($failed of $n checks failed)"; return 1
}

results() { echo "$QSLM_VM_RESULTS/$1"; }

# now: seconds since the epoch, microseconds (EPOCHREALTIME). since T0: seconds since T0, three
# decimals. Time a step: t0=$(now); ...; figure step_s "$(since "$t0")".
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'; }

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds (0) or SECONDS have passed (1).
wait_for() {
  local limit=$1 t0; shift
  t0=$(now)
  until "$@" >/dev/null 2>&1; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a >= l) }'; then return 1; fi
    sleep 0.1
  done
}

# prop UNIT PROPERTY: the value of a unit's property (systemctl show -P).
prop() { systemctl show -P "$2" "$1"; }
# cgroup_dir UNIT: the unit's cgroup directory under /sys/fs/cgroup (empty when it has none).
cgroup_dir() { local cg; cg=$(prop "$1" ControlGroup); [ -n "$cg" ] && echo "/sys/fs/cgroup$cg"; }
# cgroup_value UNIT FILE: one of the unit's cgroup files (memory.current, memory.max, ...).
cgroup_value() { local d; d=$(cgroup_dir "$1") && cat "$d/$2"; }
