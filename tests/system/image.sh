#!/usr/bin/env bash
# image.sh: the recipe of the system test's VM image (Debian bookworm, systemd 252 as PID 1).
# Run by scripts/vm-test.sh as root, never by hand: it caches the result and rebuilds it when this
# file, tests/system/guest/ or the package list changes (their hash is stored beside the image).
#   bash tests/system/image.sh OUTDIR PACKAGE...
# Builds into OUTDIR (an empty directory on the cache's file system):
#   rootfs.ext4   the root file system (raw ext4, filled by `mkfs.ext4 -d`: no loop mount)
#   vmlinuz, initrd.img, kernel-version
#                 the kernel and initramfs, for qemu's -kernel/-initrd (direct boot, no boot loader)
#   packages.txt  the installed packages and versions (dpkg -l)
#   build.log     debootstrap's and the chroot steps' output
# Environment: QSLM_VM_SUITE (bookworm), QSLM_VM_MIRROR (http://deb.debian.org/debian),
# QSLM_VM_ARCH (amd64). Needs debootstrap, e2fsprogs and util-linux's unshare.
#
# Every chroot step runs in a private mount namespace (unshare --mount): the /proc, /sys and /dev
# mounts that debootstrap and the steps make vanish with the process, even when it is killed, so a
# failed build never leaves mounts behind. Inside a chroot, where that cannot be had, the steps
# unmount what they mounted themselves (see ns below).
set -euo pipefail

out=${1:?usage: image.sh OUTDIR PACKAGE...}
shift
suite=${QSLM_VM_SUITE:-bookworm}
mirror=${QSLM_VM_MIRROR:-http://deb.debian.org/debian}
arch=${QSLM_VM_ARCH:-amd64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$out/rootfs
log=$out/build.log
spare_mb=400 # free space left in the root file system for the tests' own files

# What the guest needs besides the runtime libraries of qslmd and qslmctl (the arguments):
# systemd as PID 1 (systemd-sysv), udev (loads the virtio and 9p modules), dbus (logind and
# `systemctl set-property` expect it), the kernel and an initramfs that mounts root from
# virtio-blk, stress-ng (memory pressure), procps (ps, free), jq (qslmctl --json replies).
packages=(systemd systemd-sysv udev dbus kmod "linux-image-$arch" initramfs-tools stress-ng procps jq "$@")

start=${EPOCHREALTIME/[.,]/}
# seconds since the start, one decimal
elapsed() { local d=$(( ${EPOCHREALTIME/[.,]/} - start )); printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10)); }
say() { printf 'image: [%6ss] %s\n' "$(elapsed)" "$*" >&2; }
fail() {
  echo "image: $1 failed; the end of $log:" >&2
  tail -n 40 "$log" | sed 's/^/image: | /' >&2
  exit 1
}
# step NAME CMD...: runs CMD with its output in the log; prints NAME and how long it took.
step() {
  local name=$1 t0 t1
  shift
  say "$name ..."
  t0=$(date +%s)
  echo "=== $name: $*" >>"$log"
  "$@" >>"$log" 2>&1 || fail "$name"
  t1=$(date +%s)
  say "$name: done in $((t1 - t0)) s"
}
# A private mount namespace needs / to be a mount point. Inside a chroot (a CI or a fresh-machine
# check that runs the tests in one) it is not, and unshare's --propagation private fails; there
# the mounts are made in the caller's namespace, /dev's as a slave (so unmounting it cannot
# unmount the host's /dev/pts), and undone when each step ends and, for a killed build, by a trap.
if unshare --mount --propagation private -- true 2>/dev/null; then
  ns=(unshare --mount --propagation private --)
else
  ns=()
  trap 'for m in dev sys proc; do umount -R -l "$root/$m" 2>/dev/null || true; done' EXIT
fi
# in_root CMD...: CMD inside the image root with /proc, /sys and /dev (see ns above).
in_root() {
  "${ns[@]}" /bin/sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" &&
      mount --make-rslave "$r/dev" || exit 1
    chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive "$@"
    rc=$?
    umount -R -l "$r/dev" "$r/sys" "$r/proc" 2>/dev/null
    exit $rc' sh "$root" "$@"
}

[ "$(id -u)" -eq 0 ] || { echo "image: must run as root (debootstrap, chroot)" >&2; exit 1; }
mkdir -p "$out"
: >"$log"
say "building Debian $suite ($arch) from $mirror into $out"
say "packages: ${packages[*]}"

step "debootstrap (download and install $suite, minbase + ${#packages[@]} packages)" \
  "${ns[@]}" \
  debootstrap --variant=minbase --arch="$arch" --include="$(IFS=,; echo "${packages[*]}")" \
  "$suite" "$root" "$mirror"

configure() {
  echo qslm-vm >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tqslm-vm\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
  # No fsck at boot (pass 0): the root is a fresh copy-on-write overlay every run.
  printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' >"$root/etc/fstab"
  # A fixed machine id: the image is never a "first boot" (systemd-firstboot would prompt on the
  # console); the kernel command line also says systemd.firstboot=off.
  echo 5a1c0ffee0ddba11deadbeefcafe0001 >"$root/etc/machine-id"
  # Root logs in on the serial console without a password (a manual boot: vm-test.sh --shell).
  in_root passwd -d root
  # The root disk's driver and file system in the initramfs whatever MODULES= picks; the 9p share
  # (mount_tag qslm) loaded at boot.
  printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
  printf '%s\n' 9pnet_virtio 9p >"$root/etc/modules-load.d/qslm-vm.conf"
  # Nothing but the test runs: no apt or fstrim jobs firing at boot (Persistent= timers do).
  in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
    e2scrub_reap.service
  # The test's driver: started only when the kernel command line asks for it (systemd.wants=).
  install -m 0644 "$here/guest/qslm-vm-test.service" "$root/etc/systemd/system/"
  mkdir -p "$root/mnt/qslm"
  in_root update-initramfs -u -k all
  in_root apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
}
step "configure (hostname, fstab, root login, initramfs modules, test unit)" configure

kernel() {
  local vm ird kver
  vm=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
  kver=${vm##*/vmlinuz-}
  ird=$root/boot/initrd.img-$kver
  [ -f "$ird" ] || { echo "no initramfs for $kver"; return 1; }
  in_root lsinitramfs "/boot/initrd.img-$kver" >"$out/initrd.list"
  for m in virtio_blk.ko ext4.ko virtio_pci.ko; do
    grep -q "/$m" "$out/initrd.list" || { echo "the initramfs has no $m"; return 1; }
  done
  for m in 9p.ko 9pnet_virtio.ko; do
    find "$root/lib/modules/$kver" -name "$m*" | grep -q . || { echo "the kernel has no $m"; return 1; }
  done
  rm -f "$out/initrd.list"
  cp "$vm" "$out/vmlinuz"
  cp "$ird" "$out/initrd.img"
  echo "$kver" >"$out/kernel-version"
  in_root dpkg -l >"$out/packages.txt"
}
step "extract the kernel and initramfs" kernel
say "kernel $(cat "$out/kernel-version"), systemd $(in_root dpkg-query -W -f='${Version}' systemd)"

mkfs() {
  local mb
  mb=$(( $(du -sm "$root" | cut -f1) + spare_mb ))
  truncate -s "${mb}M" "$out/rootfs.ext4"
  mkfs.ext4 -q -F -L qslm-root -d "$root" "$out/rootfs.ext4"
  e2fsck -fn "$out/rootfs.ext4"
  echo "rootfs.ext4: $mb MB"
}
step "mkfs.ext4 -d (root file system image, $spare_mb MB spare)" mkfs
step "remove the build tree" rm -rf "$root"
say "image built in $(elapsed) s: $(du -sh --apparent-size "$out/rootfs.ext4" | cut -f1) root file system"
