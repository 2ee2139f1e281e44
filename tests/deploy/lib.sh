# lib.sh: what the deploy tests share (sourced): TAP output, and `meson install` of the build
# tree under test into a temporary DESTDIR.
#
# The tests get the build's install paths from tests/deploy/meson.build in the environment:
# QSLM_MESON, QSLM_BUILD_ROOT, QSLM_PREFIX, QSLM_BINDIR, QSLM_SBINDIR, QSLM_SYSCONFDIR, QSLM_MANDIR,
# QSLM_UNITDIR, QSLM_SYSUSERSDIR, QSLM_BUNDLEDIR (all absolute).

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
diag() { echo "# $*"; }
finish() { echo "1..$n"; [ "$failed" -eq 0 ]; }

# Installs the build into $1 (created); no rebuild: `meson test` has built everything already.
# Bails out of the whole test (TAP "Bail out!") when the install itself fails.
install_into() {
  local dest=$1 log
  log=$(mktemp)
  if ! "$QSLM_MESON" install -C "$QSLM_BUILD_ROOT" --no-rebuild --quiet --destdir "$dest" >"$log" 2>&1; then
    echo "Bail out! meson install --destdir $dest failed:"
    sed 's/^/# /' "$log"
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

# The value of Key= in a unit file (the last one given).
unit_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
