#!/usr/bin/env python3
"""Repeated tracing and leak-tracking runs on multi-vCPU guests with a shell spinning on
every vCPU, counting hangs (a gdb run that never came back), handler errors and runs whose
figures went wrong.  Each run is its own gdb session against the same guest.
Usage: /usr/bin/python3 bench/smp_bench.py [--runs 20] [--vcpus 2,4]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402
from smp import spin_on_every_vcpu  # noqa: E402

TRACE_RUN = r"""
gdb.execute("memcheck trace on")
run = while_running("wl-churn-static all 2")
status = q("memcheck trace status --json")
gdb.execute("memcheck trace off")
emit({"text": run["text"], "interrupts": run["interrupts"], "status": status})
"""

TRACK_RUN = r"""
gdb.execute("memcheck leaks track --exec wl-leak")
run = while_running("wl-leak > /dev/null")
status = q("memcheck leaks status --json")
report = q(f"memcheck leaks report {status['reports'][-1]} --json")
gdb.execute("memcheck leaks untrack")
emit({"interrupts": run["interrupts"], "status": status, "summary": report["summary"]})
"""
WL_LEAK_LOST = {"definitely lost": 6, "indirectly lost": 3, "possibly lost": 1}


def trace_ok(res: dict) -> bool:
    """Every churn kind the workload did shows in the counts, with no handler error."""
    done = dict(kv.split("=") for kv in re.search(r"churn pid=\d+ (.*)", res["text"]).group(1).split())
    counts = res["status"]["counts"]
    return res["status"]["errors"] == 0 and all(counts.get(k, 0) >= int(v) for k, v in
                                                (("fork", done["fork"]), ("exec", done["exec"])))


def track_ok(res: dict) -> bool:
    lost = {k: v["blocks"] for k, v in res["summary"].items() if k in WL_LEAK_LOST}
    return res["status"]["errors"] == 0 and lost == WL_LEAK_LOST


def repeat(guest, script: str, judge, runs: int) -> dict:
    tally = {"runs": runs, "hangs": 0, "wrong": 0, "interrupts": 0, "seconds": 0.0}
    for _ in range(runs):
        run = run_gdb(guest, script=script, timeout=300)
        tally["seconds"] += run.seconds
        if not run.results:
            tally["hangs"] += 1
            guest.release_debugger()
            continue
        res = run.results[-1]
        tally["interrupts"] += res["interrupts"]
        tally["wrong"] += not judge(res)
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--vcpus", default="2,4")
    args = ap.parse_args()
    for vcpus in (int(n) for n in args.vcpus.split(",")):
        guest = guestlab.boot(guestlab.BootOptions(smp=vcpus))
        try:
            spin_on_every_vcpu(guest)
            for name, script, judge in (("tracing", TRACE_RUN, trace_ok), ("leak tracking", TRACK_RUN, track_ok)):
                t = repeat(guest, script, judge, args.runs)
                print(f"{vcpus} vCPUs, {name:<13}: {t['runs']} runs, {t['hangs']} hangs, {t['wrong']} wrong, "
                      f"{t['interrupts'] / t['runs']:.2f} interrupts a run, {t['seconds'] / t['runs']:.1f} s a run",
                      flush=True)
        finally:
            guest.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
