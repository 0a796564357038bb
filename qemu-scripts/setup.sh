#!/usr/bin/env bash
# Install what the lab, the plugin and the tests need, from Debian: QEMU, gdb, busybox, a C
# toolchain, valgrind, jq, and the Python packages gdb's Python imports (python3-pyelftools,
# python3-sortedcontainers, python3-pygments) or the tests do (python3-pytest,
# python3-hypothesis).  For the arm64 lab: qemu-system-arm, the aarch64 cross compiler and
# binutils, gdb-multiarch (Debian's gdb debugs x86-64 only), and arm64 as a foreign dpkg
# architecture, so that apt-get download fetches arm64 kernels, busybox and libc.  pip is used only for a Python package that Debian lacks or has too
# old, into $CACHE/python (common.sh puts it on PYTHONPATH), never into the system Python.
# apt's and pip's output goes to $CACHE/logs/setup.log; each step prints one line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

log="$CACHE/logs/setup.log"
mkdir -p "$(dirname "$log")"
tools=(qemu-system-x86 gdb busybox-static gcc make libelf1 libc6-dev libc6-dbg binutils xz-utils valgrind jq
       python3 python3-pip python3-setuptools python3-wheel
       qemu-system-arm gdb-multiarch gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu)
pydebs=(python3-pyelftools python3-sortedcontainers python3-pygments python3-pytest python3-hypothesis)
# pip distribution>=minimum for each Python package, in the order of pydebs
pydists=("pyelftools>=0.29" "sortedcontainers>=2.4" "pygments>=2.14" "pytest>=7" "hypothesis>=6")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
available() { [ -n "$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]; }

missing=()
for p in "${tools[@]}" "${pydebs[@]}"; do installed "$p" || missing+=("$p"); done
lists_stale=no
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  lists_stale=yes
  say "dpkg: arm64 added as a foreign architecture (the arm64 lab downloads its kernels, busybox and libc)"
fi
if [ ${#missing[@]} -gt 0 ] || [ "$lists_stale" = yes ]; then
  export DEBIAN_FRONTEND=noninteractive
  say "apt-get update (output in $log)"
  apt-get update >>"$log" 2>&1 || { say "apt-get update failed; the end of $log:"; tail -n 20 "$log" >&2; exit 1; }
  wanted=()
  for p in "${missing[@]}"; do
    if available "$p"; then wanted+=("$p"); else say "Debian has no $p here; pip will install it"; fi
  done
  if [ ${#wanted[@]} -gt 0 ]; then
    say "apt-get install ${wanted[*]}"
    apt-get install -y --no-install-recommends "${wanted[@]}" >>"$log" 2>&1 \
      || { say "apt-get install failed; the end of $log:"; tail -n 20 "$log" >&2; exit 1; }
  fi
fi
say "from Debian: $(dpkg-query -W -f='${Package} ${Version}, ' "${tools[0]}" gdb qemu-system-arm gdb-multiarch gcc-aarch64-linux-gnu "${pydebs[@]}" 2>/dev/null | sed 's/, $//')"

# gdb embeds /usr/bin/python3 on Debian; check what it imports, with the versions needed.
py=/usr/bin/python3
need=$("$py" - "${pydists[@]}" <<'EOF'
import importlib.metadata as metadata
import re
import sys

def version(text):
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])

for wanted in sys.argv[1:]:
    dist, minimum = wanted.split(">=")
    try:
        have = metadata.version(dist)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or version(have) < version(minimum):
        print(wanted)
EOF
)
if [ -n "$need" ]; then
  say "pip install --target $CACHE/python $(echo $need) (Debian lacks them or has them too old; output in $log)"
  # shellcheck disable=SC2086
  "$py" -m pip install --target "$CACHE/python" $need >>"$log" 2>&1 \
    || { say "pip failed; the end of $log:"; tail -n 20 "$log" >&2; exit 1; }
fi
PYTHONPATH=$(python_path) "$py" -c 'import elftools, sortedcontainers, pygments, pytest, hypothesis' \
  && say "gdb's Python ($py) imports pyelftools, sortedcontainers, pygments, pytest and hypothesis"
