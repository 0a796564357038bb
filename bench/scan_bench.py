#!/usr/bin/env python3
"""Scan-mode scaling benchmark, one guest (3 GB), one run:
  - `memcheck leaks PID --json` on wl-blocks with 100k, 300k and 1M live blocks (nine in ten
    reachable, one in ten definitely lost), and on 100k blocks all lost as cycles of three;
    target: linear (1M takes 10x the 100k time) and 1M under 5 s
  - each scan again with the text report instead of --json (every block is in the JSON)
  - each scan again with timers on its phases: reading guest memory, the heap walk
    (glibc/heap.py and heapscan's block lists), the pointer scan (classify's roots and reached
    blocks), the clique walk (leaks._lost), the JSON, and the rest (kernel walks, gdb)
  - the counts checked against what each program printed
Usage: /usr/bin/python3 bench/scan_bench.py [--sizes 100000,300000,1000000] [--cycles 100000] [--profile N]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

SCRIPT = r"""
import gc, time
from gdb_memcheck.frontend import leak_commands
from gdb_memcheck.frontend.session import SESSION
from gdb_memcheck.glibc import heap as glibc_heap
from gdb_memcheck.leakcheck import heapscan, leaks
from gdb_memcheck.linux import memory

spent, running = {}, []

def timer(phase, fn):
    def timed(*args, **kwargs):            # exclusive time: a nested phase's time is not its caller's
        t0 = time.perf_counter()
        running.append(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - t0
            running.pop()
            spent[phase] = spent.get(phase, 0.0) + took
            if running:
                spent[running[-1]] = spent.get(running[-1], 0.0) - took
    return timed

PHASES = [(memory.PageCache, "read", "read guest memory"),
          (type(SESSION.kmem().paging), "translate", "read guest memory"),
          (memory.UserMemory, "_read_mapped", "read guest memory"),
          (heapscan, "scan", "heap walk"),
          (leaks, "classify", "pointer scan"),
          (leaks, "_lost", "clique walk"),
          (leak_commands, "leak_report_json", "JSON"),
          (leak_commands, "json_text", "JSON")]
PHASES += [(glibc_heap, name, "heap walk") for name, fn in vars(glibc_heap).items()
           if callable(fn) and getattr(fn, "__module__", "") == glibc_heap.__name__ and not isinstance(fn, type)]

def scan(pid, with_timers, options="--json"):
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PHASES]
    if with_timers:
        for owner, name, phase in PHASES:
            setattr(owner, name, timer(phase, getattr(owner, name)))
    spent.clear()
    SESSION.on_cont(None)                  # what a resume does: drop the per-stop caches
    gc.collect()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        out = gdb.execute(f"memcheck leaks {pid} {options}", to_string=True)
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    return took, cpu, out

def profiled(pid, top):
    import cProfile, io, pstats
    SESSION.on_cont(None)
    profile = cProfile.Profile()
    profile.enable()
    gdb.execute(f"memcheck leaks {pid} --json", to_string=True)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()

for pid in PIDS:
    took, cpu, out = scan(pid, False)
    doc = json.loads(out)
    del out
    timed, _, _ = scan(pid, True)
    phases = dict(spent)
    text, _, _ = scan(pid, False, "")
    emit({"pid": pid, "seconds": took, "cpu_seconds": cpu, "text_seconds": text, "blocks": len(doc["blocks"]),
          "summary": doc["summary"], "timed_seconds": timed, "phases": phases})
if PROFILE:
    emit({"profile": profiled(PIDS[PROFILE_AT], PROFILE)})
"""

ORDER = ("read guest memory", "heap walk", "pointer scan", "clique walk", "JSON")


def start(guest, blocks: int, cycles: bool) -> dict:
    """Start wl-blocks in the guest and wait for its printed truth."""
    log = f"/tmp/log/blocks-{blocks}{'-cycles' if cycles else ''}.log"
    guest.sh(f"wl-blocks {blocks}{' --cycles' if cycles else ''} > {log} 2>&1 &")
    deadline = time.monotonic() + 600
    while "ready" not in (text := guest.sh(f"cat {log}")):
        if time.monotonic() > deadline:
            raise SystemExit(f"wl-blocks {blocks} never got ready: {text!r}")
        time.sleep(2)
    truth = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}
    return {"label": count(blocks) + (" as lost cycles" if cycles else ""), "cycles": cycles, **truth}


def count(blocks: int) -> str:
    return f"{blocks // 10**6}M" if blocks % 10**6 == 0 else f"{blocks // 1000}k"


def checked(run: dict, truth: dict) -> str:
    """The scan's counts against the program's own: exact for its lost blocks (its stdout
    buffer adds one reachable block)."""
    s = {k: v["blocks"] for k, v in run["summary"].items()}
    if truth["cycles"]:
        want = {"definitely lost": truth["definite"], "indirectly lost": truth["indirect"]}
    else:
        want = {"definitely lost": truth["lost"], "indirectly lost": 0}
    ok = all(s[k] == v for k, v in want.items()) and s["possibly lost"] == 0 and \
        s["still reachable"] >= truth["blocks"] - truth["lost"]
    got = ", ".join(f"{k} {s[k]}" for k in ("definitely lost", "indirectly lost", "possibly lost", "still reachable"))
    return ("counts match the program's" if ok else "COUNTS DIFFER from the program's "
            + ", ".join(f"{k} {v}" for k, v in want.items())) + f": {got}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--cycles", type=int, default=100_000, help="blocks of the lost-cycles run (0: none)")
    ap.add_argument("--mem-mb", type=int, default=3072)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile the largest scan (cProfile) and print its N costliest functions")
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    guest = guestlab.boot(guestlab.BootOptions(mem_mb=args.mem_mb))
    try:
        truths = [start(guest, n, False) for n in sizes] + ([start(guest, args.cycles, True)] if args.cycles else [])
        biggest = max(range(len(truths)), key=lambda i: truths[i]["blocks"])
        script = (SCRIPT.replace("PIDS", repr([t["pid"] for t in truths])).replace("PROFILE_AT", str(biggest))
                  .replace("PROFILE", str(args.profile)))
        res = run_gdb(guest, script=script, timeout=3600)
        runs = [r for r in res.results if "profile" not in r]
        profile = [r["profile"] for r in res.results if "profile" in r]
        if len(runs) != len(truths):
            print(res.output[-3000:])
            raise SystemExit("the gdb script did not report every scan")
    finally:
        guest.stop()
    print(f"memcheck leaks PID --json (scan mode) on wl-blocks, guest of {args.mem_mb} MB; gdb's CPU time "
          "beside the wall time (the host is shared); text s: the same scan with the text report; "
          "phases from a second scan with timers on")
    print(f"{'blocks':<20} {'scan s':>7} {'us/block':>9} {'gdb cpu s':>9} {'text s':>6}  " + "  ".join(f"{p:>17}" for p in ORDER + ("rest",)))
    for truth, run in zip(truths, runs):
        total = run["timed_seconds"]
        phases = [run["phases"].get(p, 0.0) for p in ORDER]
        cells = [f"{s:6.2f} s {100 * s / total:3.0f}%" for s in phases + [total - sum(phases)]]
        print(f"{truth['label']:<20} {run['seconds']:7.2f} {run['seconds'] / truth['blocks'] * 1e6:9.2f} "
              f"{run['cpu_seconds']:9.2f} {run['text_seconds']:6.2f}  "
              + "  ".join(f"{c:>17}" for c in cells))
    for truth, run in zip(truths, runs):
        print(f"  {truth['label']}: {checked(run, truth)}")
    if profile:
        print(profile[0])
    by_size = {t["blocks"]: r for t, r in zip(truths, runs) if not t["cycles"]}
    if min(by_size) != max(by_size):
        lo, hi = by_size[min(by_size)], by_size[max(by_size)]
        print(f"{count(max(by_size))}/{count(min(by_size))}: {hi['seconds'] / lo['seconds']:.1f}x the time "
              f"({hi['cpu_seconds'] / lo['cpu_seconds']:.1f}x the CPU) for {max(by_size) / min(by_size):.0f}x the "
              f"blocks; {count(max(by_size))} blocks in {hi['seconds']:.2f} s (target < 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
