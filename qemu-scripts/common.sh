# Shared settings of the lab scripts: cache location and the kernel ABI name.
say() { printf '[lab] %s\n' "$*" >&2; }
LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${GDB_MEMCHECK_CACHE:-$HOME/.cache/gdb-memcheck}
mkdir -p "$CACHE"
# setup.sh installs a Python package Debian lacks into $CACHE/python: gdb's Python and the
# tests find it through PYTHONPATH.
python_path() {
  if [ -d "$CACHE/python" ]; then echo "$CACHE/python${PYTHONPATH:+:$PYTHONPATH}"; else echo "${PYTHONPATH:-}"; fi
}
