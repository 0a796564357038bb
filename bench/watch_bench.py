#!/usr/bin/env python3
"""Watch benchmark: how much a `memcheck watch` slows the guest, at 1 s and at 0.1 s.

A CPU-bound job runs in the guest (sha256sum of zeros) unwatched, then while every user
process is watched at each interval (the job's end presses Ctrl-C, which ends the watch);
the rounds repeat, and each run is timed on the host.  Each interval's median is given as
a ratio of the unwatched median, with the share of the watch the guest stood still
(sampling, measured by the watch itself: the part of the slowdown the host's load does
not blur) and where its samples landed against the grid.
Usage: /usr/bin/python3 bench/watch_bench.py [--mib 256] [--rounds 3] [--intervals 1,0.1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

SCRIPT = r"""
import os, signal, threading, time
JOB = "dd if=/dev/zero bs=1M count=MIB 2>/dev/null | sha256sum"

def watched(every):
    took = {}
    def job():
        time.sleep(0.3)                     # the watch has resumed the guest
        t0 = time.monotonic()
        guest.sh(JOB, timeout=900)
        took["seconds"] = time.monotonic() - t0
        os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C ends the watch
    worker = threading.Thread(target=job)
    worker.start()
    doc = q(f"memcheck watch --every {every} --for 3600 --json")
    worker.join()
    return {"seconds": took["seconds"], "samples": [(s["sample"], s["seconds"]) for s in doc["samples"]],
            "stopped": 1 - doc["running"] / doc["elapsed"]}

results = {"unwatched": [], **{str(every): [] for every in INTERVALS}}
for _ in range(ROUNDS):
    results["unwatched"].append(while_running(JOB, timeout=900)["seconds"])
    for every in INTERVALS:
        results[str(every)].append(watched(every))
emit(results)
"""


def grid_report(runs: list[dict], every: float) -> str:
    """Where the samples of every run landed: intervals, and the share within 10% of k * every."""
    off = sorted(abs(t - k * every) for r in runs for k, t in r["samples"])
    gaps = [b[1] - a[1] for r in runs for a, b in zip(r["samples"], r["samples"][1:]) if b[0] == a[0] + 1]
    within = sum(1 for d in off if d <= 0.1 * every) / len(off)
    skipped = sum(r["samples"][-1][0] + 1 - len(r["samples"]) for r in runs)
    return (f"{len(off)} samples ({skipped} skipped), intervals median {statistics.median(gaps):.3f} s "
            f"(min {min(gaps):.3f}, max {max(gaps):.3f}); {100 * within:.0f}% land within 10% of their time "
            f"on the grid (90th percentile off by {1000 * off[int(0.9 * len(off))]:.0f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=256, help="MiB the job hashes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--intervals", default="1,0.1", help="watch intervals in seconds")
    args = ap.parse_args()
    intervals = [float(x) for x in args.intervals.split(",")]
    guest = guestlab.boot()
    try:
        script = SCRIPT.replace("MIB", str(args.mib)).replace("INTERVALS", repr(intervals)) \
            .replace("ROUNDS", str(args.rounds))
        res = run_gdb(guest, script=script, timeout=3600).result()
    finally:
        guest.stop()
    base = statistics.median(res["unwatched"])
    print(f"job: sha256sum of {args.mib} MiB of zeros in the guest, {args.rounds} rounds; unwatched "
          f"{', '.join(f'{t:.2f}' for t in res['unwatched'])} s (median {base:.2f} s)")
    for every in intervals:
        runs = res[str(every)]
        seconds = [r["seconds"] for r in runs]
        stopped = statistics.median(r["stopped"] for r in runs)
        print(f"watched every {every:g} s: {', '.join(f'{t:.2f}' for t in seconds)} s (median "
              f"{statistics.median(seconds):.2f} s, {statistics.median(seconds) / base:.2f}x unwatched); the guest "
              f"stood still {100 * stopped:.1f}% of the watch; {grid_report(runs, every)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
