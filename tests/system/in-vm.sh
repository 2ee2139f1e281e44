#!/usr/bin/env bash
# in-vm.sh: the system test's checks, run inside the test VM (Debian bookworm, systemd 252 as
# PID 1) as root by tests/system/guest-run.sh, after the project's install tree has been copied
# into / and systemd-sysusers and `systemctl daemon-reload` have run. TAP on stdout (lib.sh: ok,
# bad, check, figure, wait_for, finish); files for the host in $QSLM_VM_RESULTS.
# Add checks before the "end" section; each check prints exactly one ok / not ok line.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export QSLM_SOCKET=/run/qslmd.sock
unit=qslmd.service

# ------------------------------------------------------------------ the machine
section "the machine"
kernel=$(uname -r)
figure kernel "$kernel"
if [[ $kernel == 6.1.* ]]; then ok "kernel is Debian bookworm's 6.1 ($kernel)"; else bad "kernel is Debian bookworm's 6.1" "uname -r: $kernel"; fi
systemd_version=$(systemctl --version | awk 'NR == 1 { print $2 }')
figure systemd "$systemd_version"
if [ "$(ps -o comm= -p 1)" = systemd ] && [ "$systemd_version" = 252 ]; then
  ok "systemd 252 is PID 1"
else
  bad "systemd 252 is PID 1" "PID 1: $(ps -o comm= -p 1), systemctl --version: $systemd_version"
fi
check "cgroup v2 (unified) is mounted on /sys/fs/cgroup" test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
check "cgroup v2 has the memory controller" grep -qw memory /sys/fs/cgroup/cgroup.controllers
check "memory PSI is available (/proc/pressure/memory)" head -n 1 /proc/pressure/memory
figure mem_total_kib "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
figure cpus "$(nproc)"
# The boot, in seconds since the kernel started: systemd's start (on the real root, after the
# initramfs) and multi-user.target's; the test starts after that.
usec_s() { awk -v u="$1" 'BEGIN { printf "%.3f\n", u / 1e6 }'; }
figure boot_userspace_s "$(usec_s "$(systemctl show -P UserspaceTimestampMonotonic)")"
figure boot_multi_user_s "$(usec_s "$(prop multi-user.target ActiveEnterTimestampMonotonic)")"
wait_for 30 bash -c '[ "$(systemctl is-system-running)" != starting ]'
state=$(systemctl is-system-running)
if [ "$state" = running ]; then ok "the boot finished and no unit failed (is-system-running: running)"
else bad "the boot finished and no unit failed" "is-system-running: $state" "$(systemctl --failed --no-legend)"; fi
systemd-analyze >"$(results systemd-analyze.txt)" 2>&1
systemd-analyze blame >"$(results systemd-analyze-blame.txt)" 2>&1

# ------------------------------------------------------------------ installed tree
section "the installed tree"
check "qslmd, qslmctl and the default bundle are installed" \
  test -x /usr/sbin/qslmd -a -x /usr/bin/qslmctl -a -f /usr/share/qslm/bundle/manifest.json
check "systemd-sysusers made the qslm user and group" getent passwd qslm
# (systemd finds them through /lib/systemd/system: /lib is /usr/lib on bookworm)
check "qslmd.service and qslmd.socket are loaded from /usr/lib/systemd/system" \
  test "$(readlink -f "$(prop qslmd.service FragmentPath)") $(readlink -f "$(prop qslmd.socket FragmentPath)")" = \
  "/usr/lib/systemd/system/qslmd.service /usr/lib/systemd/system/qslmd.socket"
check "qslmd --check-config accepts /etc/qslm/qslmd.conf" /usr/sbin/qslmd --check-config --config /etc/qslm/qslmd.conf

# ------------------------------------------------------------------ socket activation
section "socket activation"
check "systemctl enable --now qslmd.socket" systemctl enable --now qslmd.socket
check "qslmd.socket is active and /run/qslmd.sock is a socket" \
  bash -c 'systemctl is-active --quiet qslmd.socket && test -S /run/qslmd.sock'
state=$(systemctl is-active $unit)
if [ "$state" = inactive ]; then ok "qslmd.service is not running before the first connection"
else bad "qslmd.service is not running before the first connection" "is-active: $state"; fi

t0=$(now)
out=$(qslmctl --timeout 120 status 2>&1)
rc=$?
first_status_s=$(since "$t0")
printf '%s\n' "$out" >"$(results status-first.txt)"
if [ $rc -eq 0 ]; then ok "the first qslmctl status answers (qslmd socket-activated)"
else bad "the first qslmctl status answers (qslmd socket-activated)" "exit $rc" "$out"; fi
figure first_status_s "$first_status_s"
# qslmd answers status while it still maps its first variant ("active: -"); the service becomes
# active at READY=1, once that variant serves.
if wait_for 120 systemctl is-active --quiet $unit; then
  ok "qslmd.service becomes active (READY=1) after the first connection"
else
  bad "qslmd.service becomes active (READY=1) after the first connection" "is-active: $(systemctl is-active $unit)"
fi
figure first_ready_s "$(since "$t0")"
pid=$(prop $unit MainPID)
user=$(ps -o user= -p "$pid" 2>/dev/null)
if [ "$user" = qslm ]; then ok "qslmd runs as user qslm (pid $pid)"
else bad "qslmd runs as user qslm" "MainPID $pid, user '$user'"; fi
figure qslmd_memory_current_bytes "$(cgroup_value $unit memory.current)"
figure qslmd_rss_kib "$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ')"

# ------------------------------------------------------------------ requests
section "requests"
t0=$(now)
out=$(qslmctl generate --max-tokens 16 --seed 1 --temperature 0 "The state of the union is" \
  2>"$(results generate.stderr)")
rc=$?
figure generate_16_tokens_s "$(since "$t0")"
printf '%s\n' "$out" >"$(results generate.txt)"
if [ $rc -eq 0 ] && [ -n "$out" ]; then ok "qslmctl generate answers with text"
else bad "qslmctl generate answers with text" "exit $rc, text: '$out'" "$(cat "$(results generate.stderr)")"; fi
diag "generate: $(tr '\n' ' ' <"$(results generate.stderr)")"
check "qslmctl status answers again" qslmctl status

# ------------------------------------------------------------------ memory budget (memory.sh)
# shellcheck source=tests/system/memory.sh
source "$(dirname "${BASH_SOURCE[0]}")/memory.sh"
memory_steps
readme_example
status_line_control
memory_restarts
memory_psi
service_reload
service_stop_mid_generation
service_security

# ------------------------------------------------------------------ end
section "end"
restarts=$(prop $unit NRestarts)
if [ "$restarts" = 0 ]; then ok "qslmd.service was never restarted (NRestarts=0)"
else bad "qslmd.service was never restarted" "NRestarts=$restarts"; fi
check "qslmd.service is still active" systemctl is-active --quiet $unit
journalctl -u qslmd.service -u qslmd.socket --no-pager -o short-monotonic >"$(results journal-qslmd.txt)" 2>&1
systemctl status --no-pager $unit >"$(results systemctl-status-qslmd.txt)" 2>&1
finish
