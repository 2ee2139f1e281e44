#!/usr/bin/env bash
# cross.sh: the aarch64 (Raspberry Pi, Jetson) cross-build, and its tests under qemu user-mode
# emulation. Installs what is missing (needs root then): Debian's gcc-aarch64-linux-gnu, the
# :arm64 multiarch -dev packages the build links (dpkg --add-architecture arm64) and
# qemu-user-static; then configures .build-aarch64 with scripts/cross/aarch64-linux-gnu.ini and
# builds everything (-Werror, debugoptimized). No binfmt registration is needed or made: meson
# runs the test executables through the cross file's exe_wrapper (qemu-aarch64-static).
#   bash scripts/cross.sh          # install what is missing, configure, build; prints the tree
#   bash scripts/cross.sh test     # the above, the pinned data (fetch-data.sh), then the tests
#                                  # under emulation (scripts/cross-test.sh; test --full: all)
# meson's and ninja's chatter goes to .build-aarch64/build-output.log, shown in full on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  ""|build) what=build ;;
  test) what=test; shift ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "cross: unknown command '$1' (build or test)" >&2; exit 2 ;;
esac

# The native packages (meson, ninja, pkgconf, node for the data) come from setup.sh.
bash scripts/setup.sh
host_packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
arm64_packages=(libc6-dev pkgconf libuv1-dev libsystemd-dev libopenblas-dev libmbedtls-dev
                libjson-c-dev libinih-dev libutf8proc-dev libcmocka-dev)
missing=()
for p in "${host_packages[@]}" "${arm64_packages[@]/%/:arm64}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cross: missing Debian packages: ${missing[*]}" >&2
    echo "cross: run as root, or: sudo dpkg --add-architecture arm64 && sudo apt-get update &&" \
         "sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "cross: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

dir=$(bash scripts/build.sh aarch64)
if [ "$what" = build ]; then
  echo "$dir"
  exit 0
fi
bash scripts/fetch-data.sh
exec bash scripts/cross-test.sh "$dir" "$@"
