#!/usr/bin/env bash
# Install the host packages the lab and the plugin need: QEMU, gdb, busybox, a C
# toolchain, and the Python packages into the interpreter that gdb embeds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

debs=(qemu-system-x86 gdb busybox-static gcc libc6-dev libc6-dbg binutils xz-utils python3 python3-pip valgrind jq)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages already installed: ${debs[*]}"
fi

gdb_python=$(gdb -nx -batch -ex 'python import sys; print(sys.executable)' 2>/dev/null | tail -n 1)
case "$gdb_python" in
  */python*) ;;
  *) gdb_python=/usr/bin/python3 ;;
esac
# gdb reports /usr/bin/python; the pip that belongs to it is the system python3's.
[ -x "$gdb_python" ] || gdb_python=/usr/bin/python3
say "gdb embeds $gdb_python; installing the Python packages there"
if ! "$gdb_python" -c 'import elftools, sortedcontainers, pygments, pytest, hypothesis' 2>/dev/null; then
  "$gdb_python" -m pip install --quiet --break-system-packages -r "$here/../requirements-dev.txt"
fi
"$gdb_python" -c 'import elftools, sortedcontainers, pygments, pytest, hypothesis; print("python packages ok")'
