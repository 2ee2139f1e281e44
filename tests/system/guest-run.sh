#!/usr/bin/env bash
# guest-run.sh: the guest side of a system test run, started inside the VM by the image's
# qslm-vm-test.service (tests/system/guest/) from the host's 9p share, mounted on /mnt/qslm:
#   1. installs the staged tree (share/root: `meson install --destdir` of the /usr build) into /,
#   2. systemd-sysusers (the qslm user and group) and systemctl daemon-reload (qslmd's units),
#   3. runs tests/system/in-vm.sh, its output to results/in-vm.tap on the share and to the serial
#      console (QSLM_VM_CONSOLE in share/vm.env: /dev/ttyS0 on amd64, /dev/ttyAMA0 on arm64's virt
#      machine), within the time the host allows (QSLM_VM_DEADLINE in share/vm.env),
#   4. writes its exit status to results/exit-status.
# The unit powers the machine off when this script ends, whatever its exit status.
set -uo pipefail
share=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
results=$share/results
tap=$results/in-vm.tap
mkdir -p "$results"
QSLM_VM_DEADLINE=
QSLM_VM_CONSOLE=/dev/ttyS0
# shellcheck source=/dev/null
[ -f "$share/vm.env" ] && source "$share/vm.env"
console=$QSLM_VM_CONSOLE
say() { echo "guest-run: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
# The run's verdict when in-vm.sh cannot give one.
give_up() {
  { echo "Bail out! $*"; echo "vm-test: FAIL"; } | tee -a "$tap" >"$console"
  echo 1 >"$results/exit-status"
  sync
  exit 1
}
say "started; the share is $share" | tee "$results/started"

# tar, not `cp -a root/. /`: cp would give / and /usr the staging directories' owner and modes;
# --no-overwrite-dir keeps existing directories as they are, --no-same-owner makes root own it all.
say "installing the staged tree"
if ! tar -C "$share/root" -cf - . | tar -C / -xf - --no-same-owner --no-overwrite-dir \
    >"$results/install.log" 2>&1; then
  give_up "installing the staged tree into / failed: $(tail -n 3 "$results/install.log")"
fi
systemd-sysusers >>"$results/install.log" 2>&1 || give_up "systemd-sysusers failed"
systemctl daemon-reload >>"$results/install.log" 2>&1 || give_up "systemctl daemon-reload failed"

# in-vm.sh must end by QSLM_VM_DEADLINE (the host's timeout less 20 s to report and power off;
# the clocks agree: the guest's RTC is the host's clock); 10 minutes when the host said nothing.
limit=600
if [ -n "$QSLM_VM_DEADLINE" ]; then
  limit=$(( QSLM_VM_DEADLINE - $(date +%s) ))
  [ "$limit" -ge 10 ] || limit=10
fi
say "running tests/system/in-vm.sh (at most $limit s)"
export QSLM_VM_RESULTS=$results
cd /
timeout --kill-after=5 "$limit" bash "$share/tests/system/in-vm.sh" 2>&1 | tee -a "$tap" >"$console"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  give_up "in-vm.sh did not finish within $limit s"
fi
echo "$rc" >"$results/exit-status"
systemctl --failed --no-pager >"$results/failed-units.txt" 2>&1
sync
say "in-vm.sh exited $rc"
exit "$rc"
