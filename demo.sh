#!/usr/bin/env bash
# The demo: install, build the lab (cached), boot a guest, attach gdb with the
# plugin and show what it finds.  --keep leaves the guest running for your own gdb.
set -euo pipefail
cd "$(dirname "$0")"
keep=${1:-}
bash qemu-scripts/setup.sh          # one line per step; apt's output goes to a log file
. qemu-scripts/common.sh
export PYTHONPATH=$(python_path)
run_dir=$(/usr/bin/python3 qemu-scripts/guestlab.py boot)
export LAB_RUN_DIR=$run_dir
trap '[ "$keep" = --keep ] || /usr/bin/python3 qemu-scripts/guestlab.py stop "$run_dir"' EXIT
echo "== the guest's own view: uname -r; ps"
/usr/bin/python3 qemu-scripts/guestlab.py sh "$run_dir" 'uname -r; ps -o pid,ppid,comm | awk "\$1 != 2 && \$2 != 2"'
echo "== gdb with the plugin"
/usr/bin/python3 qemu-scripts/guestlab.py gdb "$run_dir" -batch -ex 'help memcheck' \
  -ex 'echo \n== memcheck ps\n' -ex 'memcheck ps' \
  -ex 'echo \n== memcheck maps wl-maps --rss\n' -ex 'memcheck maps wl-maps --rss' \
  -ex 'echo \n== memcheck leaks wl-leak\n' -ex 'memcheck leaks wl-leak' \
  -ex 'set pagination off' -x qemu-scripts/demo-track.py
if [ "$keep" = --keep ]; then
  echo "guest left running; attach with: /usr/bin/python3 qemu-scripts/guestlab.py gdb $run_dir"
  echo "stop it with: /usr/bin/python3 qemu-scripts/guestlab.py stop $run_dir"
fi
