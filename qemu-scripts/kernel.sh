#!/usr/bin/env bash
# Fetch a Debian kernel and its debug symbols without installing them, and build an
# indexed vmlinux (relocations stripped + .gdb_index) that gdb loads in < 1 s.
# Prints the kernel directory on stdout.
#
#   kernel.sh [KERNEL] [--refresh]
#
# KERNEL is a lab name (6.1-cloud, the default; 6.1, 6.1-rt, 6.12-cloud, 6.12, 6.12-rt; each
# with -arm64 appended for the arm64 build: 6.1-cloud-arm64) or an exact ABI
# (6.12.117+deb12-cloud-amd64, 6.1.0-57-cloud-arm64).  Default: $GDB_MEMCHECK_KERNEL, or
# $GDB_MEMCHECK_KERNEL_ABI, or 6.1-cloud.  A name is resolved to an ABI through its Debian
# metapackage once and remembered in the cache, so a cached lab boots offline and a new
# Debian kernel release does not switch the lab between two runs; --refresh asks apt again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${GDB_MEMCHECK_KERNEL:-${GDB_MEMCHECK_KERNEL_ABI:-6.1-cloud}}
refresh=no
for arg in "$@"; do
  case "$arg" in
    --refresh) refresh=yes ;;
    -*) say "unknown option $arg"; exit 2 ;;
    *) name=$arg ;;
  esac
done

# The Debian architecture of a kernel name or ABI: arm64 when it says so, else amd64.
kernel_arch() { case "$1" in *-arm64) echo arm64 ;; *) echo amd64 ;; esac; }

# The Debian metapackage that depends on the newest ABI of each lab name.
metapackage() {
  local arch flavour
  arch=$(kernel_arch "$1")
  case "${1%-arm64}" in
    6.1-cloud) flavour=cloud- ;;
    6.1) flavour= ;;
    6.1-rt) flavour=rt- ;;
    6.12-cloud) flavour=6.12-cloud- ;;
    6.12) flavour=6.12- ;;
    6.12-rt) flavour=6.12-rt- ;;
    *) return 1 ;;
  esac
  echo "linux-image-$flavour$arch"
}

# apt's lists may be stored compressed (*Packages.lz4), so ask apt-cache, not ls.
apt_knows() { apt-cache show "$1" >/dev/null 2>&1; }
ensure_apt_lists() { apt_knows "$1" || apt-get update -qq; }

# arm64 packages are asked for as foreign ones (pkg:arm64, after setup.sh's
# dpkg --add-architecture arm64); apt-cache names their dependencies with that suffix too.
debian_package() { if [ "$arch" = amd64 ]; then echo "$1"; else echo "$1:$arch"; fi; }

resolve() {
  local meta abi
  meta=$(debian_package "$1")
  ensure_apt_lists "$meta"
  abi=$(apt-cache depends "$meta" 2>/dev/null \
        | sed -n "s/^ *Depends: linux-image-\\(.*-$arch\\)\\(:$arch\\)\\{0,1\\}\$/\\1/p" | head -n 1)
  [ -n "$abi" ] || { say "cannot resolve $meta to a kernel ABI (is apt reachable?)"; exit 1; }
  echo "$abi"
}

arch=$(kernel_arch "$name")
if meta=$(metapackage "$name"); then
  remembered="$CACHE/kernel/names/$name"
  if [ "$refresh" = yes ] || [ ! -s "$remembered" ]; then
    mkdir -p "$(dirname "$remembered")"
    resolve "$meta" > "$remembered.tmp"
    mv "$remembered.tmp" "$remembered"
    say "kernel $name is $(cat "$remembered") (remembered in $remembered)"
  fi
  abi=$(cat "$remembered")
else
  case "$name" in
    *-amd64|*-arm64) abi=$name ;;
    *) say "unknown kernel '$name': give 6.1-cloud, 6.1, 6.1-rt, 6.12-cloud, 6.12, 6.12-rt (each also with -arm64) or an ABI"; exit 2 ;;
  esac
fi

# QEMU's -kernel boots what Debian ships as vmlinuz: a bzImage on amd64, and on arm64 the plain
# Image (magic "ARMd" at 0x38; Debian 12's 6.1 and 6.12 builds set no CONFIG_EFI_ZBOOT).  An
# EFI zboot image ("zimg" at 4) would need unpacking first: QEMU 7.2 cannot load one.
check_boot_image() {
  [ "$arch" = arm64 ] || return 0
  [ "$(dd if="$1" bs=1 skip=56 count=4 2>/dev/null)" = ARMd ] && return 0
  say "the vmlinuz of $abi is not a plain arm64 Image (no ARMd magic at 0x38); QEMU cannot boot it as it is"
  exit 1
}

dir="$CACHE/kernel/$abi"
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/vmlinux-indexed" ]; then
  say "kernel $abi cached in $dir"
  echo "$dir"; exit 0
fi
mkdir -p "$dir/debs"
cd "$dir/debs"
for pkg in "linux-image-$abi-unsigned" "linux-image-$abi-dbg"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    ensure_apt_lists "$(debian_package "$pkg")"
    say "downloading $(debian_package "$pkg") (output in $CACHE/logs/kernel.log)"
    mkdir -p "$CACHE/logs"
    apt-get download "$(debian_package "$pkg")" >>"$CACHE/logs/kernel.log" 2>&1
  fi
done
if [ ! -s "$dir/vmlinuz" ]; then
  say "extracting vmlinuz"
  dpkg-deb --fsys-tarfile "linux-image-$abi-unsigned"_*.deb | tar -xO "./boot/vmlinuz-$abi" > "$dir/vmlinuz.tmp"
  check_boot_image "$dir/vmlinuz.tmp"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
fi
say "extracting vmlinux from the -dbg package (15-60 s)"
dpkg-deb --fsys-tarfile "linux-image-$abi-dbg"_*.deb \
  | tar -xO "./usr/lib/debug/boot/vmlinux-$abi" > "$dir/vmlinux.full"
say "stripping relocations and adding .gdb_index"
# the host's binutils and gdb know x86-64 only: an arm64 vmlinux needs the cross objcopy and
# gdb-multiarch (gdb-add-index takes both from the environment)
if [ "$arch" = arm64 ]; then objcopy=aarch64-linux-gnu-objcopy gdb=gdb-multiarch; else objcopy=objcopy gdb=gdb; fi
"$objcopy" --remove-relocations='*' "$dir/vmlinux.full" "$dir/vmlinux.tmp"
rm -f "$dir/vmlinux.full"
OBJCOPY=$objcopy GDB=$gdb gdb-add-index "$dir/vmlinux.tmp" >&2
mv "$dir/vmlinux.tmp" "$dir/vmlinux-indexed"
rm -f "$dir"/debs/*-dbg_*.deb
echo "$abi" > "$dir/abi"
say "kernel $abi ready in $dir"
echo "$dir"
