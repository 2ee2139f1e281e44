#!/usr/bin/env bash
# test_units.sh: the installed systemd files are valid for systemd (252, Debian bookworm) and say
# what the deployment needs. TAP, one line per check.
#   bash tests/deploy/test_units.sh      (from meson test: the environment of tests/deploy/meson.build)
# `systemd-analyze verify` runs on the units as installed, in a DESTDIR tree used as --root (so it
# checks that ExecStart='s and ExecReload='s programs exist there), with the host's own units copied
# in for the targets ours depend on; it needs no running systemd, so it works in a chroot.
# `systemd-sysusers --root` creates the qslm user and group from the installed sysusers.d file.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in systemd-analyze systemd-sysusers; do
  if ! command -v "$tool" >/dev/null; then
    echo "Bail out! $tool is missing: install systemd (bash scripts/setup.sh does)"
    exit 1
  fi
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install_into "$root"
service="$root$QSLM_UNITDIR/qslmd.service"
socket="$root$QSLM_UNITDIR/qslmd.socket"

# The host's units (sysinit.target, sockets.target, ...) where systemd looks for them in the root;
# ours are in $QSLM_UNITDIR, also on its search path, and are never overwritten.
host_units=$(readlink -f /lib/systemd/system)
mkdir -p "$root/usr/lib/systemd/system"
cp -rn "$host_units/." "$root/usr/lib/systemd/system/"
# --man=no: verify would look Documentation='s pages up with the host's man; they are checked in
# the installed tree below instead.
out=$(cd / && systemd-analyze verify --man=no --root="$root" "$QSLM_UNITDIR/qslmd.socket" "$QSLM_UNITDIR/qslmd.service" 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then
  ok "systemd-analyze verify: qslmd.socket and qslmd.service, no error and no warning"
else
  mapfile -t lines <<<"$out"
  bad "systemd-analyze verify: qslmd.socket and qslmd.service, no error and no warning (exit $rc)" "${lines[@]}"
fi
for page in $(sed -n 's/^Documentation=//p' "$service" "$socket" | tr ' ' '\n' | sed -n 's/^man://p' | sort -u); do
  name=${page%(*} sec=${page#*(}
  sec=${sec%)}
  check "Documentation=man:$page is installed" test -f "$root$QSLM_MANDIR/man$sec/$name.$sec"
done
# A unit that names a missing program must fail, or the check above proves nothing.
sed "s|^ExecStart=[^ ]*|ExecStart=$QSLM_SBINDIR/qslmd-missing|" "$service" >"$root$QSLM_UNITDIR/qslmd-broken.service"
check "systemd-analyze verify refuses a unit whose ExecStart= program is missing" \
  bash -c '! systemd-analyze verify --root="$1" "$2" >/dev/null 2>&1' _ "$root" "$QSLM_UNITDIR/qslmd-broken.service"
rm -f "$root$QSLM_UNITDIR/qslmd-broken.service"

# ---------------------------------------------------------------- what the units must say
has() { grep -qx -- "$2" "$1"; }
for line in Type=notify NotifyAccess=main WatchdogSec=30s User=qslm Group=qslm StateDirectory=qslm \
  ConfigurationDirectory=qslm ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
  RestrictAddressFamilies=AF_UNIX MemoryDenyWriteExecute=yes ProtectKernelTunables=yes \
  ProtectControlGroups=yes Requires=qslmd.socket; do
  check "qslmd.service: $line" has "$service" "$line"
done
check "qslmd.service: no ProcSubset=pid (qslmd reads /proc/meminfo and /proc/pressure)" \
  bash -c '! grep -q "^ProcSubset=pid" "$1"' _ "$service"
check "qslmd.service: no DynamicUser= (the socket's group must be a real group)" \
  bash -c '! grep -q "^DynamicUser=yes" "$1"' _ "$service"
nofile=$(sed -n 's/^LimitNOFILE=//p' "$service")
check "qslmd.service: LimitNOFILE= a number that leaves qslmd's 32-descriptor reserve and room for clients ($nofile)" \
  bash -c '[[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 64 ] && [ "$1" -le 65536 ]' _ "$nofile"
conf="$root$QSLM_SYSCONFDIR/qslm/qslmd.conf"
check "qslmd.conf: max_connections defaults to 0, derived from LimitNOFILE= (the unit and the daemon agree)" \
  grep -qx '#max_connections = 0' "$conf"
check "qslmd.conf: idle_timeout = 300 by default" grep -qx '#idle_timeout = 300' "$conf"
check "qslmd.service: a commented MemoryHigh=/MemoryMax= example" \
  bash -c 'grep -q "^#MemoryHigh=" "$1" && grep -q "^#MemoryMax=" "$1"' _ "$service"
for line in ListenStream=/run/qslmd.sock SocketUser=root SocketGroup=qslm SocketMode=0660 WantedBy=sockets.target; do
  check "qslmd.socket: $line" has "$socket" "$line"
done

# ---------------------------------------------------------------- sysusers
mkdir -p "$root/etc"
out=$(systemd-sysusers --root="$root" "$root$QSLM_SYSUSERSDIR/qslm.conf" 2>&1)
check "systemd-sysusers --root accepts qslm.conf" test $? -eq 0
user=$(grep '^qslm:' "$root/etc/passwd" 2>/dev/null)
group=$(grep '^qslm:' "$root/etc/group" 2>/dev/null)
IFS=: read -r _ _ uid gid _ home shell <<<"$user"
check "user qslm: a system uid, home /var/lib/qslm, no login shell ($user)" \
  bash -c '[ -n "$1" ] && [ "$1" -lt 1000 ] && [ "$2" = /var/lib/qslm ] && [[ "$3" == */nologin ]]' _ "$uid" "$home" "$shell"
check "group qslm, the user's primary group ($group)" test -n "$group" -a "$(cut -d: -f3 <<<"$group")" = "$gid"
admin=$(grep '^qslm-admin:' "$root/etc/group" 2>/dev/null)
check "group qslm-admin (qslmd.conf's default admin_group), another group ($admin)" \
  bash -c '[ -n "$1" ] && [ "$(cut -d: -f3 <<<"$1")" != "$2" ]' _ "$admin" "$gid"

# systemd's own exposure score, for the log (not a pass/fail criterion: it changes with versions).
score=$(cd / && systemd-analyze security --offline=yes --root="$root" "$QSLM_UNITDIR/qslmd.service" 2>/dev/null | tail -n 1)
diag "systemd-analyze security: ${score:-not available}"
finish
