#!/usr/bin/env python3
"""Lab benchmark: gdb + plugin start-up after the guest is up, gdb's memory, and
1 MiB physical reads through QEMU's process memory against the gdbstub paths.

Targets (issue: guest lab): ready < 3 s, RSS < 500 MB, 1 MiB fast read < 20 ms.
Usage: /usr/bin/python3 bench/lab_bench.py [--runs N] [--arch amd64|arm64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

READ_SCRIPT = r"""
import time
from gdb_memcheck.frontend import physical
from gdb_memcheck.frontend.session import SESSION
MiB = 1 << 20
t = SESSION.target
times = {}
for name in physical.PATHS:
    path = physical.open_path(name, t, SESSION.arch)
    samples = []
    for i in range(REPEAT):
        t0 = time.perf_counter()
        data = path.read(RAM + 0x1000000 + i * MiB, MiB)
        samples.append(time.perf_counter() - t0)
        assert len(data) == MiB
    times[name] = sorted(samples)[len(samples) // 2]
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
emit({"read": times, "rss_kb": int(status["VmRSS"].split()[0]), "hwm_kb": int(status["VmHWM"].split()[0])})
"""

RAM_START = {"amd64": 0, "arm64": 0x4000_0000}      # QEMU's pc and virt machines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="gdb start-ups to time")
    ap.add_argument("--repeat", type=int, default=5, help="1 MiB reads per path")
    ap.add_argument("--arch", default="amd64", choices=guestlab.ARCHES)
    args = ap.parse_args()
    guest = guestlab.boot(guestlab.BootOptions(arch=args.arch))
    try:
        ready = [run_gdb(guest, "python print('ready')").seconds for _ in range(args.runs)]
        bare = [run_gdb(guest, "python print('ready')", plugin=False).seconds for _ in range(args.runs)]
        script = READ_SCRIPT.replace("REPEAT", str(args.repeat)).replace("RAM", hex(RAM_START[args.arch]))
        run = run_gdb(guest, script=script)
        res = run.result()
    finally:
        guest.stop()
    r = res["read"]
    fast, stub = r["qemu-mem"], r["directmap"]
    print(f"gdb start, symbols, connect, plugin load, exit: median {statistics.median(ready):.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in ready)}; target < 3 s)")
    print(f"  the same gdb without the plugin: median {statistics.median(bare):.2f} s; the plugin adds "
          f"{statistics.median(ready) - statistics.median(bare):.2f} s ({statistics.median(ready) / statistics.median(bare):.2f}x)")
    print(f"gdb RSS after loading: {res['rss_kb'] / 1024:.0f} MB, peak {res['hwm_kb'] / 1024:.0f} MB (target < 500 MB)")
    print(f"read 1 MiB physical via qemu-mem:   {fast * 1e3:8.2f} ms (target < 20 ms)")
    print(f"read 1 MiB physical via phymemmode: {r['phymemmode'] * 1e3:8.2f} ms (gdbstub)")
    print(f"read 1 MiB physical via directmap:  {stub * 1e3:8.2f} ms (gdbstub, virtual)")
    print(f"ratio gdbstub(directmap) / qemu-mem: {stub / fast:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
