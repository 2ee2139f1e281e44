#!/usr/bin/env bash
# test.sh: the README's test command. Installs what is missing (Debian packages, pinned data),
# then builds and runs every test twice: the normal build (with the daemon's fault tests under
# valgrind memcheck too) and the sanitizer build; then the system test in a booted VM
# (scripts/vm-test.sh: Debian bookworm's kernel and systemd 252 in QEMU; builds its image once,
# about 2.5 minutes, then about 4.5 minutes a run under TCG); then the aarch64 cross-build and its
# tests under qemu (scripts/cross.sh test: installs the cross toolchain and the :arm64 libraries
# when missing; about 2 minutes on 2 cores once installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-data.sh
for kind in normal sanitize; do
  dir=$(bash scripts/build.sh "$kind")
  tests=$(meson test -C "$dir" --list 2>/dev/null)
  if [ "$kind" = normal ] && [[ $tests != *faults_valgrind* ]]; then
    echo "test: $dir has no valgrind test (is valgrind installed? scripts/setup.sh installs it)" >&2
    exit 1
  fi
  echo "test: running every test in $dir ($kind build)" >&2
  meson test -C "$dir" --print-errorlogs --num-processes 2
done
echo "test: all tests passed in both builds" >&2
# The system test skips (exit 77) only when qemu-system cannot run here at all; it said why.
rc=0
bash scripts/vm-test.sh || rc=$?
if [ "$rc" -eq 77 ]; then
  echo "test: SKIPPED the system test in a VM: qemu-system cannot run on this machine (see above)" >&2
elif [ "$rc" -ne 0 ]; then
  echo "test: the system test in a VM failed (results in .build-vm/vm-test-results/)" >&2
  exit "$rc"
fi
bash scripts/cross.sh test
echo "test: all tests passed in both builds, in the VM and under aarch64 emulation" >&2
