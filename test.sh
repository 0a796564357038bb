#!/usr/bin/env bash
# The test command: install what is missing, build the lab (cached), run every test.
# Integration tests boot real guests (one per test module); they fail, never skip,
# when the lab cannot be built or booted.
set -euo pipefail
cd "$(dirname "$0")"
bash qemu-scripts/setup.sh
bash qemu-scripts/kernel.sh >/dev/null
bash qemu-scripts/initramfs.sh >/dev/null
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests "$@"
