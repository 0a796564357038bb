#!/usr/bin/env python3
"""Leak-check benchmark, one run:
  - scan mode on a process with 100,000 live blocks (target < 5 s)
  - scan mode on the leak program vs valgrind --leak-check=full running the same binary
    natively on the host: both times, and the lost-block counts side by side
Usage: /usr/bin/python3 bench/leaks_bench.py [--blocks N]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

SCRIPT = r"""
import gdb, json, time
def timed(cmd):
    t0 = time.perf_counter()
    doc = json.loads(gdb.execute(cmd, to_string=True))
    return time.perf_counter() - t0, doc
many_s, many = timed("memcheck leaks MANY --json")
leak_s, leak = timed("memcheck leaks wl-leak --json")
emit({"many_s": many_s, "many_blocks": len(many["blocks"]), "many_summary": many["summary"],
      "leak_s": leak_s, "leak_summary": leak["summary"]})
"""


def valgrind(binary: Path) -> tuple[float, dict]:
    t0 = time.monotonic()
    proc = subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=all", str(binary)],
                          capture_output=True, text=True)
    took = time.monotonic() - t0
    kinds = {}
    for kind in ("definitely lost", "indirectly lost", "possibly lost", "still reachable"):
        m = re.search(rf"{kind}: ([\d,]+) bytes in ([\d,]+) blocks", proc.stderr)
        kinds[kind] = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else (0, 0)
    return took, kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blocks", type=int, default=100_000)
    args = ap.parse_args()
    guest = guestlab.boot()
    try:
        guest.sh(f"wl-blocks {args.blocks} > /tmp/log/blocks.log 2>&1 &")
        guest.sh("sleep 3; grep -q ready /tmp/log/blocks.log")
        pid = guest.sh("pidof wl-blocks").split()[0]
        res = run_gdb(guest, script=SCRIPT.replace("MANY", pid), timeout=600).result()
        vg_s, vg = valgrind(guest.sysroot / "bin" / "wl-leak")
    finally:
        guest.stop()
    lost = res["many_summary"]["definitely lost"]["blocks"]
    print(f"scan of a process with {res['many_blocks']} live blocks: {res['many_s']:.2f} s "
          f"({lost} definitely lost, expected {args.blocks // 10}; target < 5 s)")
    print(f"wl-leak: memcheck scan {res['leak_s'] * 1e3:.0f} ms (guest stopped, no breakpoint); "
          f"valgrind natively on the host {vg_s:.2f} s (whole run under instrumentation)")
    print(f"{'kind':<16} {'memcheck blocks':>15} {'valgrind blocks':>15} {'memcheck bytes':>14} {'valgrind bytes':>14}")
    for kind, (vbytes, vblocks) in vg.items():
        ours = res["leak_summary"][kind]
        print(f"{kind:<16} {ours['blocks']:>15} {vblocks:>15} {ours['bytes']:>14} {vbytes:>14}")
    print("(bytes differ by design: memcheck's scan sees usable sizes, valgrind the requested ones; "
          "still reachable differs because valgrind does not count glibc's own blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
