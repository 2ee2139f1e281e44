#!/usr/bin/env bash
# vm-test.sh: the system test. Boots Debian bookworm's kernel with systemd 252 as PID 1 in QEMU and
# runs tests/system/in-vm.sh inside it, as root, against this project's install tree
# (tests/system/README.md says how it works and how long it takes).
#   bash scripts/vm-test.sh                  # build, make the image if needed, boot, check
#   bash scripts/vm-test.sh --keep           # keep the run directory (share, disk overlay, logs)
#   bash scripts/vm-test.sh --rebuild-image  # build the image again even when the cached one is current
#   bash scripts/vm-test.sh --shell          # no test: boot with the staged tree on /mnt/qslm's share
#                                            # and a root shell on the serial console (Ctrl-A x quits)
#   bash scripts/vm-test.sh --arch arm64     # the guest's architecture: amd64 (the default) or arm64
#                                            # (qemu-system-aarch64 -M virt -cpu cortex-a72, the
#                                            # cross-built tree of .build-vm-arm64)
# Environment: QSLM_VM_ACCEL auto (KVM when it works, else TCG), kvm or tcg; QSLM_VM_TIMEOUT
# seconds from qemu's start to the guest's power-off before qemu is killed (600; arm64: 1500);
# QSLM_VM_MEM MiB (512); QSLM_VM_SMP (2); QSLM_VM_CACHE the image cache (/var/cache/qslm-vm: one
# directory per arch); QSLM_VM_MIRROR (http://deb.debian.org/debian).
# Installs qemu-system-x86 (arm64: qemu-system-arm, qemu-user-static and scripts/cross.sh's cross
# toolchain and :arm64 libraries), qemu-utils, debootstrap and e2fsprogs when missing, and builds
# the image, as root. The in-VM TAP streams to stdout; progress and diagnostics go to stderr; the
# guest's results, serial log and a summary land in .build-vm/vm-test-results/ (arm64:
# .build-vm-arm64/vm-test-results/).
# Exit status: 0 every check passed; 1 a check failed, the run timed out or something broke;
# 2 usage error; 77 skipped: qemu cannot run here (not installed and not installable, or it
# cannot start a machine even with TCG). Nothing else skips.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=amd64 keep=0 rebuild=0 shell=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) [ $# -ge 2 ] || { echo "vm-test: --arch needs a value (amd64 or arm64)" >&2; exit 2; }
            arch=$2; shift ;;
    --arch=*) arch=${1#--arch=} ;;
    --keep) keep=1 ;;
    --rebuild-image) rebuild=1 ;;
    --shell) shell=1 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "vm-test: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
# Per guest architecture: qemu and its package, the machine, the CPU under TCG, the serial console
# (the kernel's console= and the device the guest writes the TAP to), the build tree, the timeout.
# arm64: the Raspberry Pi 4's core (Cortex-A72: ARMv8.0, no dotprod, so qslmd runs its plain
# neon kernels); emulating it costs more than emulating x86 on x86 (see tests/system/README.md).
case "$arch" in
  amd64) qemu=qemu-system-x86_64 qemu_pkg=qemu-system-x86 machine=q35 tcg_cpu=max kvm_host=x86_64
         console=ttyS0 build_dir=.build-vm default_timeout=600 ;;
  arm64) qemu=qemu-system-aarch64 qemu_pkg=qemu-system-arm machine=virt tcg_cpu=cortex-a72 kvm_host=aarch64
         console=ttyAMA0 build_dir=.build-vm-arm64 default_timeout=1500 ;;
  *) echo "vm-test: unsupported --arch '$arch' (amd64 or arm64)" >&2; exit 2 ;;
esac
accel=${QSLM_VM_ACCEL:-auto}
case "$accel" in auto|kvm|tcg) ;; *) echo "vm-test: QSLM_VM_ACCEL must be auto, kvm or tcg" >&2; exit 2 ;; esac
timeout=${QSLM_VM_TIMEOUT:-$default_timeout}
kvm_stall=30 # seconds without a kernel message before KVM counts as unable to run the guest
mem=${QSLM_VM_MEM:-512}
smp=${QSLM_VM_SMP:-2}
mirror=${QSLM_VM_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
cache_root=${QSLM_VM_CACHE:-/var/cache/qslm-vm}
cache=$cache_root/$arch
results_out=$build_dir/vm-test-results
for v in timeout mem smp; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "vm-test: QSLM_VM_${v^^} must be a positive integer" >&2; exit 2; }
done

start=${EPOCHREALTIME/[.,]/}
usec() { echo "${EPOCHREALTIME/[.,]/}"; }
# secs FROM [TO]: seconds between two usec() readings, one decimal
secs() { local d=$(( ${2:-$(usec)} - $1 )); printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10)); }
say() { printf 'vm-test: [%6ss] %s\n' "$(secs "$start")" "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 77; }

run=
qpid=
build_pid=
build_tmp=
cleanup() {
  local rc=$?
  if [ -n "$build_pid" ]; then
    # the image build's whole process group (debootstrap, dpkg in the chroot), then its directory
    kill -- "-$build_pid" 2>/dev/null || true
    wait "$build_pid" 2>/dev/null || true
    sleep 1
    kill -9 -- "-$build_pid" 2>/dev/null || true
    say "interrupted the image build"
  fi
  if [ -n "$build_tmp" ]; then rm -rf "$build_tmp"; fi
  if [ -n "$qpid" ]; then
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  if [ -n "$run" ] && [ -d "$run" ]; then
    if [ "$keep" = 1 ]; then say "kept the run directory: $run"; else rm -rf "$run"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_root() { [ "$(id -u)" -eq 0 ]; }
apt_install() {
  is_root || return 1
  say "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >"${TMPDIR:-/tmp}/vm-test-apt.log" 2>&1
}

# ------------------------------------------------------------------ qemu: present, and which accelerator
if ! command -v "$qemu" >/dev/null; then
  apt_install "$qemu_pkg" || true
  command -v "$qemu" >/dev/null ||
    skip "$qemu is not installed and could not be installed ($(is_root && echo "apt-get install $qemu_pkg failed: see ${TMPDIR:-/tmp}/vm-test-apt.log" || echo "not root: apt-get install $qemu_pkg"))"
fi
if ! command -v qemu-img >/dev/null; then
  apt_install qemu-utils || say "qemu-utils is not installable: the disk is used with -snapshot instead of a qcow2 overlay"
fi
# probe ACCEL: can qemu create a machine with this accelerator? (-M none: no guest, no devices)
probe_log=$(mktemp)
probe() { echo quit | timeout 60 "$qemu" -accel "$1" -M none -nodefaults -display none -S -monitor stdio >"$probe_log" 2>&1; }
probe_why() { grep -v '^QEMU .*monitor\|^(qemu)' "$probe_log" | tr '\n' ' ' | sed 's/ *$//'; }
kvm_why=
if [ "$accel" != tcg ]; then
  if [ "$(uname -m)" != "$kvm_host" ]; then kvm_why="an $arch guest needs an $kvm_host host for KVM, this one is $(uname -m)"
  elif [ ! -e /dev/kvm ]; then kvm_why="no /dev/kvm"
  elif [ -d /sys/module/kvm_pvm ] && [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
    # PVM (pagetable-based nested virtualization): /dev/kvm works, but runs only guest kernels
    # built for it; Debian's hangs before its first message.
    kvm_why="/dev/kvm is PVM (module kvm_pvm), which runs only PVM-enabled guest kernels, not Debian's"
  elif ! probe kvm; then kvm_why="qemu -accel kvm fails: $(probe_why)"
  fi
  if [ -z "$kvm_why" ]; then accel=kvm
  elif [ "$accel" = kvm ]; then rm -f "$probe_log"; die "QSLM_VM_ACCEL=kvm, but KVM does not work here: $kvm_why"
  else say "KVM does not work here ($kvm_why): using TCG"; accel=tcg
  fi
fi
if [ "$accel" = tcg ] && ! probe tcg; then
  why=$(probe_why); rm -f "$probe_log"
  skip "$qemu cannot start a machine even with TCG: ${why:-no message}"
fi
rm -f "$probe_log"
say "qemu: $("$qemu" --version | head -n 1), accelerator $accel"

# ------------------------------------------------------------------ the build (prefix /usr)
# scripts/build.sh's .build has meson's default prefix, /usr/local: its qslmd.service would read
# /usr/local/etc/qslm/qslmd.conf while ConfigurationDirectory= is /etc/qslm, and its units and
# sysusers file would land under /usr/local/lib. The VM gets what a Debian package would install,
# so it has its own build tree, .build-vm: --prefix=/usr --sysconfdir=/etc --localstatedir=/var,
# -Werror like .build. meson's chatter goes to .build-vm/build-output.log, shown on failure.
# arm64: .build-vm-arm64, the same options and scripts/cross's aarch64 cross file.
bash scripts/setup.sh
cross=()
if [ "$arch" = arm64 ]; then
  cross=(--cross-file scripts/cross/aarch64-linux-gnu.ini)
  # scripts/cross.sh's packages (but cmocka: no tests run here), and qemu-user-static: the
  # libraries' list below and the image build run arm64 programs through it.
  cross_missing=()
  for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
           libc6-dev:arm64 pkgconf:arm64 libuv1-dev:arm64 libsystemd-dev:arm64 libopenblas-dev:arm64 \
           libmbedtls-dev:arm64 libjson-c-dev:arm64 libinih-dev:arm64 libutf8proc-dev:arm64; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || cross_missing+=("$p")
  done
  if [ ${#cross_missing[@]} -gt 0 ]; then
    is_root || die "missing for the arm64 cross build: ${cross_missing[*]} (run as root, or scripts/cross.sh's instructions)"
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt_install "${cross_missing[@]}" || die "cannot install ${cross_missing[*]} (see ${TMPDIR:-/tmp}/vm-test-apt.log)"
  fi
fi
mkdir -p "$build_dir"
blog=$build_dir/build-output.log
quietly() {
  if ! "$@" >"$blog" 2>&1; then
    sed 's/^/  | /' "$blog" >&2
    die "'$*' failed (output above, also in $blog)"
  fi
}
t=$(usec)
if [ ! -f "$build_dir/build.ninja" ]; then
  quietly meson setup "$build_dir" --werror --prefix=/usr --sysconfdir=/etc --localstatedir=/var "${cross[@]}"
fi
dirs=$(meson introspect --buildoptions "$build_dir" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["sysconfdir"], o["localstatedir"])')
[ "$dirs" = "/usr /etc /var" ] ||
  die "$build_dir is configured with prefix, sysconfdir, localstatedir '$dirs', not '/usr /etc /var': remove $build_dir"
quietly meson compile -C "$build_dir"
# and an arm64 tree holds arm64 programs (ELF e_machine 183, AArch64): it was set up with the cross file
if [ "$arch" = arm64 ] && [ "$(od -An -tu2 -j18 -N2 "$build_dir/daemon/qslmd" | tr -d ' ')" != 183 ]; then
  die "$build_dir/daemon/qslmd is not an AArch64 program ($build_dir was not set up with the cross file?): remove $build_dir"
fi
say "built $build_dir in $(secs "$t") s"

# The Debian packages of the libraries qslmd and qslmctl load (ldd), for the image. arm64: the
# dynamic loader of libc6:arm64 lists them (ldd's own way, `ld.so --list`) under qemu-user; the
# libraries are the host's :arm64 ones, from the same Debian packages as the guest's.
pkg_of() {
  local c p
  for c in "$1" "/usr$1" "$(readlink -f "$1")"; do
    p=$(dpkg -S "$c" 2>/dev/null) || continue
    echo "${p%%:*}"
    return 0
  done
  return 1
}
if [ "$arch" = arm64 ]; then
  libs=$(for b in qslmd qslmctl; do
           qemu-aarch64-static /lib/ld-linux-aarch64.so.1 --list "$build_dir/daemon/$b" ||
             echo "ld.so --list $b failed: not found"
         done)
else
  libs=$(ldd "$build_dir/daemon/qslmd" "$build_dir/daemon/qslmctl")
fi
if grep -q 'not found' <<<"$libs"; then die "ldd: $(grep 'not found' <<<"$libs" | tr -s ' \t\n' ' ')"; fi
runtime_pkgs=()
for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$libs" | sort -u); do
  p=$(pkg_of "$lib") || die "no Debian package ships $lib (dpkg -S)"
  runtime_pkgs+=("$p")
done
mapfile -t runtime_pkgs < <(printf '%s\n' "${runtime_pkgs[@]}" | sort -u)

# ------------------------------------------------------------------ the image (cached)
# The recipe: tests/system/image.sh, what it bakes in (tests/system/guest/), the package list, the
# suite and the mirror. Its hash is stored beside the image; a different hash rebuilds it.
recipe() {
  echo "suite $suite, arch $arch, mirror $mirror"
  echo "runtime packages: ${runtime_pkgs[*]}"
  local f
  for f in tests/system/image.sh tests/system/guest/*; do echo "=== $f"; cat "$f"; done
}
hash=$(recipe | sha256sum | cut -d' ' -f1)
image_ok() {
  [ -f "$cache/rootfs.ext4" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/initrd.img" ] &&
    [ "$(cat "$cache/recipe.sha256" 2>/dev/null)" = "$hash" ]
}

# The image build's command. arm64: debootstrap's second stage, the maintainer scripts and
# update-initramfs run arm64 programs in the image's root. qemu-aarch64-static alone cannot run
# them (a program it emulates execs the next one natively, which fails), so the kernel has to hand
# every arm64 executable to it: a binfmt_misc entry with the F flag (the interpreter is opened when
# registered, so it needs no copy inside the root). The build runs in a private mount namespace
# with binfmt_misc mounted (if it is not already): an enabled entry that does the job (Debian's
# qemu-user-static, registered by binfmt-support or systemd-binfmt) is used as it is; else it
# registers its own, qslm-vm-aarch64, for the build only. Since Linux 6.7 a binfmt_misc mount's
# entries vanish with its last unmount, so that entry goes with the namespace even when the build
# is killed; the build also removes it when it ends (older kernels keep entries), and a leftover
# of a killed build is replaced by the next.
image_cmd=(bash tests/system/image.sh)
if [ "$arch" = arm64 ]; then
  # shellcheck disable=SC2016
  image_cmd=(unshare --mount --propagation private -- bash -c '
    d=/proc/sys/fs/binfmt_misc
    say() { echo "vm-test: binfmt_misc: $*" >&2; }
    [ -e "$d/register" ] || mount -t binfmt_misc binfmt_misc "$d" || { say "cannot mount it"; exit 1; }
    [ "$(cat "$d/status")" = enabled ] || { say "it is disabled ($d/status)"; exit 1; }
    [ ! -e "$d/qslm-vm-aarch64" ] || echo -1 >"$d/qslm-vm-aarch64"
    use=
    for e in "$d"/*; do
      case ${e##*/} in register|status) continue ;; esac
      if grep -qx enabled "$e" && grep -qx "magic 7f454c460201010000000000000000000200b700" "$e" &&
         grep -q "^flags:.*F" "$e"; then use=$e; break; fi
    done
    if [ -n "$use" ]; then
      say "arm64 programs run through the registered ${use##*/} ($(sed -n "s/^interpreter //p" "$use"))"
    else
      printf "%s\n" ":qslm-vm-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F" \
        >"$d/register" || { say "cannot register qemu-aarch64-static"; exit 1; }
      trap "echo -1 >$d/qslm-vm-aarch64 2>/dev/null" EXIT
      trap "exit 143" TERM
      trap "exit 130" INT
      say "registered qslm-vm-aarch64 (/usr/bin/qemu-aarch64-static, flag F) for the build"
    fi
    "$@"' binfmt bash tests/system/image.sh)
fi

mkdir -p "$cache_root" 2>/dev/null || true
lockfd=
if exec {lockfd}>>"$cache_root/.lock-$arch"; then flock -x "$lockfd"; else lockfd=; fi 2>/dev/null
if [ "$rebuild" = 1 ] || ! image_ok; then
  if [ "$rebuild" = 1 ]; then why="--rebuild-image"
  elif [ ! -f "$cache/recipe.sha256" ]; then why="no image in $cache"
  else why="the recipe changed (tests/system/image.sh, tests/system/guest/ or the packages)"
  fi
  is_root || die "the image needs building ($why), which needs root"
  [ -n "$lockfd" ] || die "cannot lock $cache_root/.lock-$arch"
  missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "cannot install ${missing[*]} (see ${TMPDIR:-/tmp}/vm-test-apt.log)"
  fi
  say "building the image: $why"
  # In a temporary directory beside the cache, renamed into place only when complete; in its own
  # process group (killed if this script is interrupted).
  tmp=$(mktemp -d "$cache_root/.$arch.build.XXXXXX")
  build_tmp=$tmp
  chmod 0755 "$tmp"
  t=$(usec)
  QSLM_VM_ARCH=$arch setsid "${image_cmd[@]}" "$tmp" "${runtime_pkgs[@]}" &
  build_pid=$!
  if ! wait "$build_pid"; then
    build_pid=
    mv "$tmp/build.log" "$cache_root/.$arch.failed-build.log" 2>/dev/null || true
    die "the image build failed (log: $cache_root/.$arch.failed-build.log)"
  fi
  build_pid=
  recipe >"$tmp/recipe.txt"
  echo "$hash" >"$tmp/recipe.sha256"
  chmod a-w "$tmp/rootfs.ext4"
  old=
  if [ -e "$cache" ]; then old=$(mktemp -u "$cache_root/.$arch.old.XXXXXX"); mv "$cache" "$old"; fi
  mv "$tmp" "$cache"
  build_tmp=
  [ -z "$old" ] || rm -rf "$old"
  say "image built in $(secs "$t") s: $cache (kernel $(cat "$cache/kernel-version"))"
else
  say "image: $cache (cached; kernel $(cat "$cache/kernel-version"))"
fi
# Readers share the lock: a rebuild elsewhere waits until this run is over.
[ -z "$lockfd" ] || flock -s "$lockfd"

# ------------------------------------------------------------------ stage the share
# The guest sees $run/share over virtio-9p (mount_tag qslm), read-write so it can write results
# back: root/ is the install tree (meson install --destdir), tests/system/ the guest's scripts,
# results/ what the guest writes, vm.env the run's settings.
run=$(mktemp -d "${TMPDIR:-/tmp}/qslm-vm.XXXXXX")
chmod 0755 "$run"
share=$run/share
umask 022
mkdir -p "$share/root" "$share/tests/system" "$share/results"
quietly meson install -C "$build_dir" --no-rebuild --destdir "$share/root"
cp -r tests/system/. "$share/tests/system/"
say "staged the install tree ($(du -sh "$share/root" | cut -f1)) in $share"

# ------------------------------------------------------------------ boot
cmdline="root=/dev/vda rw console=$console,115200 panic=-1 systemd.unified_cgroup_hierarchy=1 psi=1"
cmdline+=" systemd.firstboot=off"
if [ "$shell" = 0 ]; then
  # the test unit, and no login prompt on the console the test writes to
  cmdline+=" qslm.vmtest=1 systemd.wants=qslm-vm-test.service systemd.mask=serial-getty@$console.service"
fi
qemu_args() { # ACCEL
  local cpu=$tcg_cpu disk
  [ "$1" = kvm ] && cpu=host
  cpu_used=$cpu
  if command -v qemu-img >/dev/null; then
    rm -f "$run/root.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$cache/rootfs.ext4" "$run/root.qcow2"
    disk=(-drive "file=$run/root.qcow2,format=qcow2,if=virtio,cache=unsafe")
  else
    disk=(-drive "file=$cache/rootfs.ext4,format=raw,if=virtio,cache=unsafe" -snapshot)
  fi
  args=(-name qslm-vm -machine "$machine" -accel "$1" -cpu "$cpu" -smp "$smp" -m "$mem"
        -nodefaults -no-user-config -display none -no-reboot
        -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" -append "$cmdline"
        "${disk[@]}"
        -virtfs "local,path=$share,mount_tag=qslm,security_model=none,id=qslm"
        -device virtio-rng-pci)
}

if [ "$shell" = 1 ]; then
  qemu_args "$accel"
  say "booting a shell: log in as root (no password); the share: mount -t 9p -o trans=virtio,version=9p2000.L qslm /mnt/qslm"
  say "then 'bash /mnt/qslm/tests/system/guest-run.sh' installs the tree and runs the checks; Ctrl-A x quits qemu"
  "$qemu" "${args[@]}" -chardev "stdio,id=con,mux=on,signal=off,logfile=$run/serial.log" \
    -serial chardev:con -mon chardev=con || true
  exit 0
fi

alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $s != Z* ]]; }
tap=$share/results/in-vm.tap
shown=0
# Prints the in-VM TAP lines that have arrived on the share since the last call (whole lines).
stream() {
  [ -f "$tap" ] || return 0
  local total
  total=$(wc -l <"$tap")
  if [ "$total" -gt "$shown" ]; then
    sed -n "$((shown + 1)),${total}p" "$tap"
    shown=$total
  fi
}
# boot ACCEL: runs the machine until it powers off or the timeout; sets qrc, timed_out, boot_s
# (qemu's start to the guest runner's start, empty if it never started) and wall_s.
# stop_qemu GRACE: SIGTERM to the running qemu, then SIGKILL after GRACE seconds.
stop_qemu() {
  kill "$qpid" 2>/dev/null || true
  sleep "$1"
  kill -9 "$qpid" 2>/dev/null || true
}
boot() {
  qemu_args "$1"
  rm -f "$run/serial.log" "$share/results/"*
  # when in-vm.sh must be over: 20 s before the host's timeout, to report and power off
  # and the serial console, where the guest copies the TAP
  { echo "QSLM_VM_DEADLINE=$(( $(date +%s) + timeout - 20 ))"; echo "QSLM_VM_CONSOLE=/dev/$console"; } >"$share/vm.env"
  say "booting Debian $suite $arch with $1 (-machine $machine -cpu $cpu_used -m $mem -smp $smp; timeout $timeout s; serial log $run/serial.log)"
  t_boot=$(usec)
  "$qemu" "${args[@]}" -serial "file:$run/serial.log" -monitor none >"$run/qemu.log" 2>&1 &
  qpid=$!
  timed_out=0 boot_s='' stalled=0
  local limit=$(( t_boot + timeout * 1000000 )) stall_limit=$(( t_boot + kvm_stall * 1000000 ))
  while alive "$qpid"; do
    # KVM that creates machines but cannot run this kernel (a nested hypervisor's quirk): the
    # kernel's first message never comes (under KVM it comes within a second).
    if [ "$1" = kvm ] && [ "$stalled" = 0 ] && [ "$(usec)" -ge "$stall_limit" ] &&
       ! grep -q 'Linux version' "$run/serial.log" 2>/dev/null; then
      stalled=1
      say "no kernel message $kvm_stall s after qemu started with KVM: KVM cannot run this guest here"
      stop_qemu 2
      break
    fi
    if [ -z "$boot_s" ] && [ -f "$share/results/started" ]; then
      boot_s=$(secs "$t_boot")
      say "the guest's test runner started $boot_s s after qemu did"
    fi
    stream
    if [ "$(usec)" -ge "$limit" ]; then
      timed_out=1
      say "timeout: $timeout s since qemu started; killing qemu"
      stop_qemu 3
      break
    fi
    sleep 0.2
  done
  qrc=0
  wait "$qpid" || qrc=$?
  qpid=
  wall_s=$(secs "$t_boot")
  if [ -z "$boot_s" ] && [ -f "$share/results/started" ]; then boot_s="?"; fi
  stream
}
boot "$accel"
# KVM that opens but cannot run a guest (some nested set-ups): qemu fails at once, the guest
# never printed a thing. Then TCG, if the accelerator was not forced.
kvm_failed=
if [ "$accel" = kvm ] && [ "$stalled" = 1 ]; then
  kvm_failed="the kernel printed nothing in $kvm_stall s"
elif [ "$accel" = kvm ] && [ "$qrc" -ne 0 ] && [ "$timed_out" = 0 ] && [ ! -s "$run/serial.log" ]; then
  kvm_failed="qemu exit $qrc: $(tr '\n' ' ' <"$run/qemu.log")"
fi
if [ -n "$kvm_failed" ]; then
  [ "${QSLM_VM_ACCEL:-auto}" = auto ] || die "QSLM_VM_ACCEL=kvm, but KVM cannot run the guest: $kvm_failed"
  say "KVM cannot run the guest ($kvm_failed): again with TCG"
  accel=tcg
  boot tcg
fi

# ------------------------------------------------------------------ verdict
problems=()
[ "$timed_out" = 0 ] || problems+=("qemu was killed after $timeout s (QSLM_VM_TIMEOUT)")
if [ "$qrc" -ne 0 ] && [ "$timed_out" = 0 ]; then
  problems+=("qemu exited $qrc: $(tr '\n' ' ' <"$run/qemu.log")")
fi
if [ ! -f "$share/results/started" ]; then
  problems+=("the guest's test runner never started (no results/started on the share): see the serial log")
elif [ ! -f "$tap" ]; then
  problems+=("the guest wrote no results/in-vm.tap")
else
  if grep -q '^Bail out!' "$tap"; then problems+=("$(grep -m1 '^Bail out!' "$tap")"); fi
  n_ok=$(grep -c '^ok ' "$tap" || true)
  n_bad=$(grep -c '^not ok ' "$tap" || true)
  plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
  [ "$n_bad" -eq 0 ] || problems+=("$n_bad of $((n_ok + n_bad)) checks are not ok")
  if [ -z "$plan" ]; then problems+=("no TAP plan (1..N): in-vm.sh did not finish")
  elif [ "$plan" -ne $((n_ok + n_bad)) ]; then problems+=("the plan says $plan checks, $((n_ok + n_bad)) ran")
  fi
  [ "$(grep '^vm-test: ' "$tap" | tail -n 1)" = "vm-test: PASS" ] || problems+=("in-vm.sh's verdict is not 'vm-test: PASS'")
  status=$(cat "$share/results/exit-status" 2>/dev/null || echo none)
  [ "$status" = 0 ] || problems+=("in-vm.sh's exit status: $status")
fi

# The summary: TAP comments on stdout, copied to the results.
arch_note=
[ "$arch" = amd64 ] || arch_note="$arch (-machine $machine -cpu $cpu_used), "
{
  echo "# vm-test summary: ${arch_note}accel $accel, -m $mem -smp $smp, kernel $(cat "$cache/kernel-version")"
  echo "# figure: host.accel $accel"
  echo "# figure: host.qemu_start_to_runner_s ${boot_s:--}"
  echo "# figure: host.qemu_wall_s $wall_s"
  echo "# figure: host.total_s $(secs "$start")"
  [ ! -f "$tap" ] || grep '^# figure: ' "$tap" || true
  if [ ${#problems[@]} -eq 0 ]; then echo "# vm-test: PASS ($n_ok checks)"
  else for p in "${problems[@]}"; do echo "# vm-test: FAIL: $p"; done
  fi
} | tee "$share/results/summary.txt" | sed 's/^# figure: /#   /'

rm -rf "$results_out"
mkdir -p "$results_out"
cp -r "$share/results/." "$results_out/"
cp "$run/serial.log" "$run/qemu.log" "$results_out/" 2>/dev/null || true
if [ ${#problems[@]} -ne 0 ]; then
  if [ ! -f "$tap" ] || [ "$timed_out" = 1 ] || [ "$qrc" -ne 0 ]; then
    say "the end of the serial log ($results_out/serial.log):"
    tail -n 30 "$run/serial.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
  fi
  die "${problems[0]} (results in $results_out)"
fi
say "PASS: results in $results_out"
