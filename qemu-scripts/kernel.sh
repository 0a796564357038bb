#!/usr/bin/env bash
# Fetch the Debian cloud kernel and its debug symbols without installing them, and
# build an indexed vmlinux (relocations stripped + .gdb_index) that gdb loads in < 1 s.
# Prints the kernel directory on stdout.  Override the ABI with GDB_MEMCHECK_KERNEL_ABI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

abi=${GDB_MEMCHECK_KERNEL_ABI:-}
if [ -z "$abi" ]; then
  [ -n "$(ls /var/lib/apt/lists/*Packages 2>/dev/null | head -n 1)" ] || apt-get update -qq
  abi=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: linux-image-\(.*-cloud-amd64\)$/\1/p' | head -n 1)
  [ -n "$abi" ] || { say "cannot resolve linux-image-cloud-amd64 (run apt-get update)"; exit 1; }
fi
dir="$CACHE/kernel/$abi"
mkdir -p "$dir/debs"
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/vmlinux-indexed" ]; then
  say "kernel $abi cached in $dir"
  echo "$dir"; exit 0
fi
cd "$dir/debs"
for pkg in "linux-image-$abi-unsigned" "linux-image-$abi-dbg"; do
  if ! ls "${pkg}"_*.deb >/dev/null 2>&1; then
    say "downloading $pkg"
    apt-get download "$pkg" >&2
  fi
done
if [ ! -s "$dir/vmlinuz" ]; then
  say "extracting vmlinuz"
  dpkg-deb --fsys-tarfile "linux-image-$abi-unsigned"_*.deb | tar -xO "./boot/vmlinuz-$abi" > "$dir/vmlinuz.tmp"
  mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
fi
say "extracting vmlinux from the -dbg package (about 15 s)"
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
