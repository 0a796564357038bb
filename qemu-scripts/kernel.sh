#!/usr/bin/env bash
# Fetch a Debian kernel and its debug symbols without installing them, and build an
# indexed vmlinux (relocations stripped + .gdb_index) that gdb loads in < 1 s.
# Prints the kernel directory on stdout.
#
#   kernel.sh [KERNEL] [--refresh]
#
# KERNEL is a lab name (6.1-cloud, the default; 6.1, 6.1-rt, 6.12-cloud, 6.12, 6.12-rt)
# or an exact ABI (6.12.117+deb12-cloud-amd64).  Default: $GDB_MEMCHECK_KERNEL, or
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

# The Debian metapackage that depends on the newest ABI of each lab name.
metapackage() {
  case "$1" in
    6.1-cloud) echo linux-image-cloud-amd64 ;;
    6.1) echo linux-image-amd64 ;;
    6.1-rt) echo linux-image-rt-amd64 ;;
    6.12-cloud) echo linux-image-6.12-cloud-amd64 ;;
    6.12) echo linux-image-6.12-amd64 ;;
    6.12-rt) echo linux-image-6.12-rt-amd64 ;;
    *) return 1 ;;
  esac
}

# apt's lists may be stored compressed (*Packages.lz4), so ask apt-cache, not ls.
apt_knows() { apt-cache show "$1" >/dev/null 2>&1; }
ensure_apt_lists() { apt_knows "$1" || apt-get update -qq; }

resolve() {
  local meta=$1 abi
  ensure_apt_lists "$meta"
  abi=$(apt-cache depends "$meta" 2>/dev/null \
        | sed -n 's/^ *Depends: linux-image-\(.*-amd64\)$/\1/p' | head -n 1)
  [ -n "$abi" ] || { say "cannot resolve $meta to a kernel ABI (is apt reachable?)"; exit 1; }
  echo "$abi"
}

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
    *-amd64) abi=$name ;;
    *) say "unknown kernel '$name': give 6.1-cloud, 6.1, 6.1-rt, 6.12-cloud, 6.12, 6.12-rt or an ABI"; exit 2 ;;
  esac
fi

dir="$CACHE/kernel/$abi"
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/vmlinux-indexed" ]; then
  say "kernel $abi cached in $dir"
  echo "$dir"; exit 0
fi
mkdir -p "$dir/debs"
cd "$dir/debs"
for pkg in "linux-image-$abi-unsigned" "linux-image-$abi-dbg"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    ensure_apt_lists "$pkg"
    say "downloading $pkg (output in $CACHE/logs/kernel.log)"
    mkdir -p "$CACHE/logs"
    apt-get download "$pkg" >>"$CACHE/logs/kernel.log" 2>&1
  fi
done
if [ ! -s "$dir/vmlinuz" ]; then
  say "extracting vmlinuz"
  dpkg-deb --fsys-tarfile "linux-image-$abi-unsigned"_*.deb | tar -xO "./boot/vmlinuz-$abi" > "$dir/vmlinuz.tmp"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
fi
say "extracting vmlinux from the -dbg package (15-60 s)"
dpkg-deb --fsys-tarfile "linux-image-$abi-dbg"_*.deb \
  | tar -xO "./usr/lib/debug/boot/vmlinux-$abi" > "$dir/vmlinux.full"
say "stripping relocations and adding .gdb_index"
objcopy --remove-relocations='*' "$dir/vmlinux.full" "$dir/vmlinux.tmp"
rm -f "$dir/vmlinux.full"
gdb-add-index "$dir/vmlinux.tmp" >&2
mv "$dir/vmlinux.tmp" "$dir/vmlinux-indexed"
rm -f "$dir"/debs/*-dbg_*.deb
echo "$abi" > "$dir/abi"
say "kernel $abi ready in $dir"
echo "$dir"
