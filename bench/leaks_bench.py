#!/usr/bin/env python3
"""Leak-check benchmark, one run:
  - tracking mode: the cost of each malloc (debug stops and milliseconds), from a program
    that makes N mallocs and exits, run untraced and then tracked in the same session
  - scan mode on a process with 100,000 live blocks (target < 5 s)
  - scan mode on the leak program vs valgrind --leak-check=full running the same binary
    natively on the host: both times, and the lost-block counts side by side
  - with --vcpus 1,2,4: the tracking cost again on guests with that many vCPUs
Usage: /usr/bin/python3 bench/leaks_bench.py [--blocks N] [--tracked-mallocs N] [--vcpus 1,2,4]
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

TRACK_SCRIPT = r"""
import time
def timed_run(command):
    return while_running(command, timeout=900)["seconds"]

command = "wl-blocks N --exit > /dev/null"
def status():
    return q("memcheck leaks status --json")
untraced = timed_run(command)
gdb.execute("memcheck leaks track --exec wl-blocks")
runs = []
for first in (True, False):
    seconds = timed_run(command)
    runs.append({"seconds": seconds, "status": status()})
pid = runs[-1]["status"]["reports"][-1]
t0 = time.perf_counter()
report = q(f"memcheck leaks report {pid} --json")
render_s = time.perf_counter() - t0
gdb.execute("memcheck leaks track --exec wl-leak")
timed_run("wl-leak > /dev/null")
leak = q("memcheck leaks report --json")
emit({"untraced": untraced, "runs": runs, "report_summary": report["summary"], "render_s": render_s,
      "tracked_leak_summary": leak["summary"]})
"""


def tracking_cost(guest, mallocs: int) -> dict:
    res = run_gdb(guest, script=TRACK_SCRIPT.replace("wl-blocks N", f"wl-blocks {mallocs}"), timeout=1800).result()
    vcpus = guest.options.smp
    print(f"tracking mode on {vcpus} vCPU{'s' if vcpus > 1 else ''}, a program making {mallocs} mallocs "
          f"(no frees) and exiting; untraced it runs {res['untraced']:.2f} s")
    before = {"stops": 0, "handler_s": 0.0}
    for label, run in zip(("first run (cold: ELF, CFI and symbols parsed)", "second run (warm)"), res["runs"]):
        st = run["status"]
        handler_s = st["handler_ms_per_stop"] * st["stops"] / 1e3
        stops, handler = st["stops"] - before["stops"], handler_s - before["handler_s"]
        before = {"stops": st["stops"], "handler_s": handler_s}
        per_malloc = (run["seconds"] - res["untraced"]) / mallocs
        print(f"  {label}: {run['seconds']:.2f} s, {per_malloc * 1e3:.1f} ms a malloc; {stops} debug stops "
              f"({stops / mallocs:.2f} a malloc: entry and return site, plus exec/exit); Python handlers "
              f"{handler * 1e3 / mallocs:.1f} ms a malloc, QEMU and gdb the rest")
    st = res["runs"][-1]["status"]
    lost = res["report_summary"]["definitely lost"]["blocks"]
    print(f"  exit report: {lost} definitely lost (expected {mallocs // 10}), rendered again in "
          f"{res['render_s'] * 1e3:.0f} ms; {st['repeated_hits']} repeated hits, {st['errors']} handler errors")
    return res["tracked_leak_summary"]


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
    ap.add_argument("--tracked-mallocs", type=int, default=300)
    ap.add_argument("--vcpus", default="1", help="vCPU counts to measure tracking on, e.g. 1,2,4")
    args = ap.parse_args()
    for vcpus in [int(n) for n in args.vcpus.split(",") if int(n) > 1]:
        guest = guestlab.boot(guestlab.BootOptions(smp=vcpus))
        try:
            tracking_cost(guest, args.tracked_mallocs)
        finally:
            guest.stop()
    guest = guestlab.boot()
    try:
        tracked = tracking_cost(guest, args.tracked_mallocs)
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
    print(f"{'kind':<16} {'scan blocks':>11} {'tracked blocks':>14} {'valgrind blocks':>15} {'scan bytes':>10} "
          f"{'tracked bytes':>13} {'valgrind bytes':>14}")
    for kind, (vbytes, vblocks) in vg.items():
        ours, track = res["leak_summary"][kind], tracked[kind]
        print(f"{kind:<16} {ours['blocks']:>11} {track['blocks']:>14} {vblocks:>15} {ours['bytes']:>10} "
              f"{track['bytes']:>13} {vbytes:>14}")
    print("(scan bytes are usable sizes, as malloc rounded the requests; tracked and valgrind bytes are the "
          "requests.  Still reachable differs because valgrind frees glibc's own blocks at exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
