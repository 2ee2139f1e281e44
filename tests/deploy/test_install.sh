#!/usr/bin/env bash
# test_install.sh: `meson install` into a temporary DESTDIR gives exactly the tree README's
# Deployment section describes, and its parts agree with each other. TAP, one line per check.
#   bash tests/deploy/test_install.sh      (from meson test: the environment of tests/deploy/meson.build)
# Checks: every expected file and nothing else (no test, benchmark or fuzzer); modes (0755
# executables, 0644 the rest, nothing group- or world-writable, no symlinks); the bundle is the
# manifest and every file it names; the units start what was installed (ExecStart=, ExecReload=,
# --config) and listen where qslmd, qslmctl and qslmd.conf expect the socket; the installed qslmd's
# compiled-in bundle and configuration are the installed ones.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
src=${QSLM_SOURCE_DIR:?}

dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
install_into "$dest"

# ---------------------------------------------------------------- the exact tree
expected=()
exe() { expected+=("0755 $1"); }
data() { expected+=("0644 $1"); }
exe "$QSLM_SBINDIR/qslmd"
for b in qslmctl qslm-quant qslm-eval qslm-generate qslm-quantize; do exe "$QSLM_BINDIR/$b"; done
data "$QSLM_UNITDIR/qslmd.service"
data "$QSLM_UNITDIR/qslmd.socket"
data "$QSLM_SYSUSERSDIR/qslm.conf"
data "$QSLM_SYSCONFDIR/qslm/qslmd.conf"
data "$QSLM_MANDIR/man8/qslmd.8"
data "$QSLM_MANDIR/man1/qslmctl.1"
data "$QSLM_MANDIR/man1/qslm-quant.1"
data "$QSLM_MANDIR/man5/qslmd.conf.5"
# The default bundle: the manifest, its signature if the source has one, every file it names.
bundle_files=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
for v in m["variants"]:
    print(v["file"])' "$src/models/bundle/manifest.json")
data "$QSLM_BUNDLEDIR/manifest.json"
[ -f "$src/models/bundle/manifest.json.sig" ] && data "$QSLM_BUNDLEDIR/manifest.json.sig"
for f in $bundle_files; do data "$QSLM_BUNDLEDIR/$f"; done

got=$(cd "$dest" && find . -mindepth 1 ! -type d -printf '%#m /%P\n' | sed 's/^0*\([0-7]\{4\}\) /\1 /' | sort)
want=$(printf '%s\n' "${expected[@]}" | sort)
missing=$(comm -13 <(echo "$got") <(echo "$want"))
extra=$(comm -23 <(echo "$got") <(echo "$want"))
if [ -z "$missing" ] && [ -z "$extra" ]; then
  ok "the installed tree is exactly the ${#expected[@]} expected files with their modes"
else
  mapfile -t m <<<"$missing"
  mapfile -t e <<<"$extra"
  bad "the installed tree is exactly the expected files with their modes" \
    "missing or wrong mode:" "${m[@]}" "unexpected or wrong mode:" "${e[@]}"
fi
check "no symlinks, nothing group- or world-writable" \
  test -z "$(find "$dest" -mindepth 1 \( -type l -o -perm /022 \) -print)"
check "nothing from tests/ (no test_*, bench*, fuzz* file)" \
  test -z "$(find "$dest" -name 'test_*' -o -name '*bench*' -o -name '*fuzz*')"
for b in "$QSLM_SBINDIR/qslmd" "$QSLM_BINDIR/qslmctl" "$QSLM_BINDIR/qslm-quant"; do
  check "$(basename "$b") is an ELF executable that runs (--help)" \
    bash -c 'head -c 4 "$1" | grep -q ELF && "$1" --help >/dev/null' _ "$dest$b"
done
for f in $bundle_files manifest.json; do
  check "bundle: $f is the source's byte for byte" cmp -s "$src/models/bundle/$f" "$dest$QSLM_BUNDLEDIR/$f"
done

# ---------------------------------------------------------------- the parts agree
service="$dest$QSLM_UNITDIR/qslmd.service"
socket="$dest$QSLM_UNITDIR/qslmd.socket"
conf="$QSLM_SYSCONFDIR/qslm/qslmd.conf"
start=$(unit_value "$service" ExecStart)
reload=$(unit_value "$service" ExecReload)
listen=$(unit_value "$socket" ListenStream)
check "ExecStart= runs the installed qslmd with the installed configuration" \
  test "$start" = "$QSLM_SBINDIR/qslmd --config $conf"
check "ExecReload= runs the installed qslmctl's reload on the unit's socket" \
  test "$reload" = "$QSLM_BINDIR/qslmctl --socket $listen --timeout 90 reload"
check "the socket is /run/qslmd.sock, outside any RuntimeDirectory=" \
  bash -c 'test "$1" = /run/qslmd.sock && ! grep -q "^RuntimeDirectory=" "$2"' _ "$listen" "$service"
help_d=$("$dest$QSLM_SBINDIR/qslmd" --help)
help_c=$("$dest$QSLM_BINDIR/qslmctl" --help)
check "qslmd's default socket is the unit's" grep -q -- "--socket PATH .*(default $listen)" <<<"$help_d"
check "qslmctl's default socket is the unit's" grep -q "else $listen)" <<<"$help_c"
check "qslmd's default bundle is the installed one" grep -q -- "--bundle DIR .*(default $QSLM_BUNDLEDIR)" <<<"$help_d"
check "qslmd's default configuration is the installed one" grep -q -- "--config FILE .*(default $conf[;)]" <<<"$help_d"
# qslmd.conf: `socket` (commented at its default, or set) must be the unit's path.
conf_socket=$(sed -n 's/^[#;]*[[:space:]]*socket[[:space:]]*=[[:space:]]*//p' "$dest$conf")
check "qslmd.conf's socket is the unit's ($conf_socket)" test "$conf_socket" = "$listen"
conf_bundle=$(sed -n 's/^[#;]*[[:space:]]*bundle[[:space:]]*=[[:space:]]*//p' "$dest$conf")
check "qslmd.conf's bundle is the installed one ($conf_bundle)" test "$conf_bundle" = "$QSLM_BUNDLEDIR"
check "the installed qslmd accepts the installed qslmd.conf (--check-config)" \
  bash -c '"$1" --check-config --config "$2" >/dev/null' _ "$dest$QSLM_SBINDIR/qslmd" "$dest$conf"
finish
