#!/usr/bin/env python3
"""Tracing benchmark: the churn workload untraced, then traced in several ways, in one run.

Prints stops per event (target 1), handler time per event beyond the bare stop
(target <= 0.5 ms), and each variant's slowdown against the untraced run; with --vcpus,
all of it again on guests with that many vCPUs.
Usage: /usr/bin/python3 bench/trace_bench.py [--rounds N] [--vcpus 1,2,4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

VARIANTS = [
    ("all hooks, software breakpoints", ""),
    ("all hooks, hardware breakpoints", "--hw"),
    ("process events only (new-task,exec,exit)", "--only new-task,exec,exit"),
    ("mapping events only (mmap,munmap,mprotect,brk)", "--only mmap,munmap,mprotect,brk"),
]

SCRIPT = r"""
import re
from gdb_memcheck.frontend.trace import CONTROLLER
def jit():
    return int(re.search(r"TB flush count\s+(\d+)", guest.hmp("info jit")).group(1))
def timed_run(command):
    return while_running(command, timeout=900)["seconds"]
results = {"untraced": timed_run("wl-churn-static all ROUNDS")}
for name, opts in VARIANTS:
    CONTROLLER.tracer.seq = 0
    gdb.execute("memcheck trace on " + opts)
    before = jit()
    seconds = timed_run("wl-churn-static all ROUNDS")
    stops = (jit() - before) / 2
    results[name] = {"seconds": seconds, "events": CONTROLLER.tracer.seq, "stops": stops,
                     "handler_ms": CONTROLLER.stats.ms_per_hit}
    gdb.execute("memcheck trace off")
results["after off"] = [timed_run("wl-churn-static all ROUNDS") for _ in range(2)]
emit(results)
"""


def measure(vcpus: int, rounds: int) -> None:
    guest = guestlab.boot(guestlab.BootOptions(smp=vcpus))
    try:
        script = SCRIPT.replace("ROUNDS", str(rounds)).replace("VARIANTS", repr(VARIANTS))
        res = run_gdb(guest, script=script, timeout=1800).result()
    finally:
        guest.stop()
    base = res["untraced"]
    print(f"churn workload on {vcpus} vCPU{'s' if vcpus > 1 else ''}, {rounds} rounds of each kind: "
          f"untraced {base:.2f} s")
    for name, _ in VARIANTS:
        r = res[name]
        per_event = (r["seconds"] - base) / max(r["events"], 1) * 1e3
        print(f"{name:<48} {r['seconds']:7.2f} s ({r['seconds'] / base:5.1f}x), {r['events']:4d} events, "
              f"{r['stops'] / max(r['events'], 1):.2f} stops/event, handler {r['handler_ms']:.2f} ms/event, "
              f"{per_event:.0f} ms guest time/event")
    first, second = res["after off"]
    print(f"after trace off: {first:.2f} s, then {second:.2f} s ({first / base:.1f}x, {second / base:.1f}x untraced; "
          "the first run re-translates the code the last debug stop flushed)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--vcpus", default="1", help="vCPU counts to measure, e.g. 1,2,4")
    args = ap.parse_args()
    for vcpus in (int(n) for n in args.vcpus.split(",")):
        measure(vcpus, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
