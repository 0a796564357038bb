#!/usr/bin/env bash
# Build the lab's initramfs without root: busybox, ld.so and libc, and the workloads
# compiled here (dynamic and static, with debug info).  The tree is kept beside the archive
# as the sysroot for symbolization.  Prints the build dir.
#
#   initramfs.sh [--arch amd64|arm64]
#
# amd64 (the default) takes busybox, ld.so and libc from the host.  arm64 cross-compiles the
# workloads and takes busybox, ld.so, libc and libc's separate debug files from Debian's
# arm64 packages (busybox-static, libc6, libc6-dbg), downloaded once into $CACHE/debs/arm64
# and kept: libc6-dbg matches only Debian's own libc6 build (by build-id), not the cross
# toolchain's copy.  The debug files stay in the sysroot, out of the archive.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

arch=amd64
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:-}; shift 2 ;;
    --arch=*) arch=${1#--arch=}; shift ;;
    *) say "unknown argument $1 (initramfs.sh [--arch amd64|arm64])"; exit 2 ;;
  esac
done
src="$LAB_ROOT/workloads"
preload="$LAB_ROOT/preload/memcheck-preload.c"     # leak tracking's cooperative mode (x86-64 only)
libs="$src/lib"                                     # libraries the workloads preload (a malloc replacement)

# Debian's arm64 user land, downloaded together (libc6 and libc6-dbg must be one version)
# the first time and kept, so a cached lab builds offline and a new upload changes nothing.
arm64_debs() {
  local dir="$CACHE/debs/arm64" pkg
  mkdir -p "$dir"
  for pkg in busybox-static libc6 libc6-dbg; do
    ls "$dir/${pkg}"_*_arm64.deb >/dev/null 2>&1 && continue
    rm -f "$dir"/*.deb
    apt-cache show libc6-dbg:arm64 >/dev/null 2>&1 || apt-get update -qq
    say "downloading busybox-static, libc6 and libc6-dbg for arm64 (output in $CACHE/logs/initramfs.log)"
    mkdir -p "$CACHE/logs"
    (cd "$dir" && apt-get download busybox-static:arm64 libc6:arm64 libc6-dbg:arm64) >>"$CACHE/logs/initramfs.log" 2>&1 \
      || { say "apt-get download failed; the end of $CACHE/logs/initramfs.log:"; tail -n 5 "$CACHE/logs/initramfs.log" >&2; exit 1; }
    break
  done
  echo "$dir"
}

case "$arch" in
  amd64)
    cc=gcc strip=strip
    ld_so=/lib64/ld-linux-x86-64.so.2
    libc=/lib/x86_64-linux-gnu/libc.so.6
    key=$( (cat "$src"/*.c "$libs"/*.c "$preload" "$here/init.sh" "$here/initramfs.sh"; sha256sum /bin/busybox "$(readlink -f $libc)" "$(readlink -f $ld_so)"; gcc --version) \
           | sha256sum | cut -c1-16)
    out="$CACHE/initramfs/$key" ;;
  arm64)
    cc=aarch64-linux-gnu-gcc strip=aarch64-linux-gnu-strip
    debs=$(arm64_debs)
    key=$( (cat "$src"/*.c "$libs"/*.c "$here/init.sh" "$here/initramfs.sh"; sha256sum "$debs"/*.deb; $cc --version) \
           | sha256sum | cut -c1-16)
    out="$CACHE/initramfs/arm64-$key" ;;
  *) say "unknown architecture '$arch': give amd64 or arm64"; exit 2 ;;
esac
if [ -s "$out/initramfs.cpio.gz" ]; then
  say "initramfs cached in $out"
  echo "$out"; exit 0
fi
rm -rf "$out.tmp" && mkdir -p "$out.tmp/root"
root="$out.tmp/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
if [ "$arch" = amd64 ]; then
  mkdir -p "$root"/{lib64,lib/x86_64-linux-gnu}
  cp /bin/busybox "$root/bin/busybox"
  cp -L "$ld_so" "$root/lib64/"
  cp -L "$libc" "$root/lib/x86_64-linux-gnu/"
else
  say "unpacking busybox, ld.so, libc and libc's debug files from Debian's arm64 packages"
  dpkg-deb --fsys-tarfile "$debs"/busybox-static_*_arm64.deb | tar -x -C "$root" ./bin/busybox
  dpkg-deb --fsys-tarfile "$debs"/libc6_*_arm64.deb \
    | tar -x -C "$root" ./lib/ld-linux-aarch64.so.1 ./lib/aarch64-linux-gnu/ld-linux-aarch64.so.1 ./lib/aarch64-linux-gnu/libc.so.6
  dpkg-deb --fsys-tarfile "$debs"/libc6-dbg_*_arm64.deb | tar -x -C "$root" ./usr/lib/debug
fi
for c in "$src"/*.c; do
  name=$(basename "$c" .c)
  say "compiling $name (dynamic and static)"
  $cc -g -O0 -fno-omit-frame-pointer -pthread -o "$root/bin/$name" "$c"
  $cc -g -O0 -fno-omit-frame-pointer -pthread -static -o "$root/bin/$name-static" "$c"
done
for b in "$root"/bin/wl-*; do
  case "$b" in *-static) continue ;; esac
  extra=$(readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | grep -vx -e 'libc.so.6' || true)
  [ -z "$extra" ] || { say "unexpected library dependency of $b: $extra"; exit 1; }
done
for c in "$libs"/*.c; do
  name=$(basename "$c" .c)
  say "compiling $name.so"
  $cc -shared -fPIC -g -O0 -fno-omit-frame-pointer -o "$root/lib/$name.so" "$c"
done
# Leak tracking's cooperative mode: the preload library that records malloc-family calls.
if [ "$arch" = amd64 ]; then
  gcc -shared -fPIC -O2 -g -fno-omit-frame-pointer -o "$root/lib/libmemcheck-preload.so" "$preload"
fi
# A static binary without symbols: what leak tracking must refuse in one line.
$strip -o "$root/bin/wl-leak-stripped" "$root/bin/wl-leak-static"
install -m 755 "$here/init.sh" "$root/init"
say "packing the archive"
(cd "$root" && find . -path ./usr/lib/debug -prune -o -print | busybox cpio -o -H newc 2>/dev/null | gzip -1) \
  > "$out.tmp/initramfs.cpio.gz"
rm -rf "$out" && mv "$out.tmp" "$out"
say "initramfs ready: $(du -h "$out/initramfs.cpio.gz" | cut -f1) in $out"
echo "$out"
