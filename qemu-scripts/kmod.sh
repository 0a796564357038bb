#!/usr/bin/env bash
# Build the lab's kernel module (workloads/kmod/) for one lab kernel, against Debian's
# linux-headers for that kernel, fetched with apt-get download and unpacked in the cache
# (never installed).  The module is cached by kernel ABI and a hash of its source and of
# this script.  Prints the path of the .ko on stdout.
#
#   kmod.sh [KERNEL]        (a kernel.sh name or ABI; default as kernel.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

kdir=$(bash "$here/kernel.sh" "$@")
abi=$(basename "$kdir")
src="$LAB_ROOT/workloads/kmod"
key=$( (cat "$src"/*.c "$src/Makefile" "$here/kmod.sh"; gcc --version) | sha256sum | cut -c1-16)
out="$CACHE/kmod/$abi/$key"
if [ -s "$out/memcheck_kmod.ko" ]; then
  say "kernel module for $abi cached in $out"
  echo "$out/memcheck_kmod.ko"; exit 0
fi

headers="$CACHE/kmod/headers/$abi"
if [ ! -s "$headers/ready" ]; then
  mkdir -p "$headers/debs" "$CACHE/logs"
  apt-cache show "linux-headers-$abi" >/dev/null 2>&1 || apt-get update -qq
  # linux-headers-ABI depends on its -common package and on linux-kbuild-VERSION
  deps=$(apt-cache depends "linux-headers-$abi" | sed -n 's/^ *|\?Depends: \(linux-\(headers\|kbuild\)-.*\)$/\1/p')
  (cd "$headers/debs" && for pkg in "linux-headers-$abi" $deps; do
     ls "${pkg}"_*.deb >/dev/null 2>&1 || { say "downloading $pkg"; apt-get download "$pkg" >>"$CACHE/logs/kmod.log" 2>&1; }
   done)
  rm -rf "$headers/root"
  for deb in "$headers"/debs/*.deb; do dpkg-deb -x "$deb" "$headers/root"; done
  # the ABI's Makefile includes the -common tree by its installed path: point it at ours
  sed -i "s|^include /usr/src/|include $headers/root/usr/src/|" "$headers/root/usr/src/linux-headers-$abi/Makefile"
  echo "$abi" > "$headers/ready"
fi

rm -rf "$out.tmp" && mkdir -p "$out.tmp"
cp "$src"/*.c "$src/Makefile" "$out.tmp/"
say "building memcheck_kmod.ko for $abi (output in $CACHE/logs/kmod.log)"
# no BTF for the module: that needs pahole, and nothing here reads it
make -C "$headers/root/usr/src/linux-headers-$abi" M="$out.tmp" CONFIG_DEBUG_INFO_BTF_MODULES= modules >>"$CACHE/logs/kmod.log" 2>&1 \
  || { tail -20 "$CACHE/logs/kmod.log" >&2; exit 1; }
strip --strip-debug "$out.tmp/memcheck_kmod.ko"
rm -rf "$out" && mv "$out.tmp" "$out"
say "kernel module ready: $out/memcheck_kmod.ko"
echo "$out/memcheck_kmod.ko"
