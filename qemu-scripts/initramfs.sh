#!/usr/bin/env bash
# Build the lab's initramfs without root: busybox, the host's ld.so and libc, and
# the workloads compiled here (dynamic and static, with debug info).  The tree is
# kept beside the archive as the sysroot for symbolization.  Prints the build dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

src="$LAB_ROOT/workloads"
ld_so=/lib64/ld-linux-x86-64.so.2
libc=/lib/x86_64-linux-gnu/libc.so.6
key=$( (cat "$src"/*.c "$here/init.sh" "$here/initramfs.sh"; sha256sum /bin/busybox "$(readlink -f $libc)" "$(readlink -f $ld_so)"; gcc --version) \
       | sha256sum | cut -c1-16)
out="$CACHE/initramfs/$key"
if [ -s "$out/initramfs.cpio.gz" ]; then
  say "initramfs cached in $out"
  echo "$out"; exit 0
fi
rm -rf "$out.tmp" && mkdir -p "$out.tmp/root"
root="$out.tmp/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib64,lib/x86_64-linux-gnu,etc}
cp /bin/busybox "$root/bin/busybox"
cp -L "$ld_so" "$root/lib64/"
cp -L "$libc" "$root/lib/x86_64-linux-gnu/"
for c in "$src"/*.c; do
  name=$(basename "$c" .c)
  say "compiling $name (dynamic and static)"
  gcc -g -O0 -fno-omit-frame-pointer -pthread -o "$root/bin/$name" "$c"
  gcc -g -O0 -fno-omit-frame-pointer -pthread -static -o "$root/bin/$name-static" "$c"
done
for b in "$root"/bin/wl-*; do
  case "$b" in *-static) continue ;; esac
  extra=$(ldd "$b" | awk '/=>/ {print $3}' | grep -v -e 'libc.so.6$' || true)
  [ -z "$extra" ] || { say "unexpected library dependency of $b: $extra"; exit 1; }
done
# A static binary without symbols: what leak tracking must refuse in one line.
strip -o "$root/bin/wl-leak-stripped" "$root/bin/wl-leak-static"
install -m 755 "$here/init.sh" "$root/init"
say "packing the archive"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$out.tmp/initramfs.cpio.gz"
rm -rf "$out" && mv "$out.tmp" "$out"
say "initramfs ready: $(du -h "$out/initramfs.cpio.gz" | cut -f1) in $out"
echo "$out"
