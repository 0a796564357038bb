#!/usr/bin/env bash
# The test command: install what is missing, build the lab (cached), run every test.
# Unit tests first; then the integration suite boots real guests (one per test module)
# in six passes, two at a time: every module on the 6.1 and 6.12 cloud kernels, the
# default-configuration modules again with KASLR and 5-level paging, and the modules that
# name arm64 on arm64 guests, 6.1 and 6.12 with KASLR (tests/passes.py).
# Integration tests fail, never skip, when the lab cannot be built or booted.
# With arguments, runs pytest once with them on the default kernel (GDB_MEMCHECK_KERNEL).
set -euo pipefail
cd "$(dirname "$0")"
bash qemu-scripts/setup.sh
. qemu-scripts/common.sh
export PYTHONPATH=$(python_path)
# the arm64 builds too: test_lab_arm64.py boots an arm64 guest in each kernel's pass, and two
# passes at once must find the lab built rather than build it together
for kernel in 6.1-cloud 6.12-cloud 6.1-cloud-arm64 6.12-cloud-arm64; do bash qemu-scripts/kernel.sh "$kernel" >/dev/null; done
# the kernel-memory tests' module, for each x86-64 kernel
for kernel in 6.1-cloud 6.12-cloud; do bash qemu-scripts/kmod.sh "$kernel" >/dev/null; done
for arch in amd64 arm64; do bash qemu-scripts/initramfs.sh --arch "$arch" >/dev/null; done
if [ $# -gt 0 ]; then
  exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"
fi
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/unit
exec /usr/bin/python3 tests/passes.py
