#!/usr/bin/env python3
"""Snapshot-view benchmark, each figure against a baseline measured in the same run:
  - page-table walk (memcheck pagetable): on x86-64 of the CR3 process vs QEMU's `info mem`
    (target <= 1.0x); on arm64 (QEMU 7.2's `info mem` is x86-only; in the kernel TTBR0 holds
    an empty table) of wl-maps vs a naive walk of its tables that reads each descriptor through
    the gdbstub in physical mode; and the walk with nothing remembered
  - task-list walk per task vs the same walk through gdb.Value fields           (target >= 25x faster)
  - `memcheck maps --rss` of a process with 10,000 VMAs                           (target < 0.5 s)
Usage: /usr/bin/python3 bench/views_bench.py [--arch amd64|arm64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

VMAS = 10_000

SCRIPT = r"""
import time
from gdb_memcheck.frontend.session import SESSION
from gdb_memcheck.linux.tasks import TaskReader
monitor = guest.hmp

def cold():
    SESSION.on_cont(None)            # what a resume does: drop the per-stop caches

def best(fn, n=5):
    times = []
    for _ in range(n):
        cold()
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)

from gdb_memcheck.arch.pagetables import LeafMemo

def fresh_walk():
    SESSION.leaf_memo = LeafMemo()   # as at the first walk of a session: nothing remembered
    gdb.execute(f"memcheck pagetable {WALKED} --json", to_string=True)

def naive_walk():                 # a process's tables, one 8-byte descriptor per gdbstub request
    inferior = gdb.selected_inferior()
    leaves = 0
    def table(base, level):
        nonlocal leaves
        for i in range(512):
            entry = int.from_bytes(inferior.read_memory(base + 8 * i, 8), "little")
            if entry & 3 == 3 and level < 3:
                table(entry & 0x0000_FFFF_FFFF_F000, level + 1)
            elif entry & 1:
                leaves += 1
    gdb.execute("maint packet Qqemu.PhyMemMode:1", to_string=True)
    try:
        table(root, 0)
    finally:
        gdb.execute("maint packet Qqemu.PhyMemMode:0", to_string=True)
    return leaves

WALKED = "" if ARCH == "amd64" else str(next(t["pid"] for t in q("memcheck ps --json")["tasks"]
                                               if t["comm"] == "wl-maps"))
if WALKED:
    pgd = int(gdb.parse_and_eval(f"(unsigned long)$memcheck_task({WALKED})->mm->pgd"))
    root = int(q(f"memcheck vtop --json {pgd:#x}")["physical"], 16)
pt_first = best(fresh_walk)
gdb.execute(f"memcheck pagetable {WALKED} --json", to_string=True)
pt = best(lambda: gdb.execute(f"memcheck pagetable {WALKED} --json", to_string=True))
baseline = best(lambda: monitor("info mem")) if ARCH == "amd64" else best(naive_walk, 3)

def ours_tasks():
    return list(TaskReader(SESSION.target, SESSION.kmem().read).processes())
n_tasks = len(ours_tasks())
ours = best(ours_tasks)

def value_tasks():
    head = gdb.parse_and_eval("&init_task.tasks")
    ttype = gdb.lookup_type("struct task_struct").pointer()
    off = int(gdb.parse_and_eval("(unsigned long)&((struct task_struct *)0)->tasks"))
    node, out = head["next"], []
    while int(node) != int(head):
        task = gdb.Value(int(node) - off).cast(ttype)
        out.append((int(task["pid"]), task["comm"].string(), int(task["mm"])))
        node = node["next"]
    return out
value = best(value_tasks, 3)

emit({"pagetable": pt, "pagetable_first": pt_first, "baseline": baseline, "tasks": n_tasks, "ours": ours, "value": value})
"""

MAPS_SCRIPT = r"""
import time, gdb
from gdb_memcheck.frontend.session import SESSION
times = []
for _ in range(3):
    SESSION.on_cont(None)
    t0 = time.perf_counter()
    gdb.execute("memcheck maps MANY_PID --rss --json", to_string=True)
    times.append(time.perf_counter() - t0)
emit({"maps": min(times)})
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="amd64", choices=guestlab.ARCHES)
    arch = ap.parse_args().arch
    guest = guestlab.boot(guestlab.BootOptions(arch=arch))
    try:
        guest.sh("true")        # the process on the vCPU at the stop is then a small, idle one
        res = run_gdb(guest, script=SCRIPT.replace("ARCH", repr(arch)), timeout=600).result()
        guest.sh(f"wl-manymaps {VMAS} > /tmp/log/many.log 2>&1 &")
        guest.sh("sleep 2; grep -q ready /tmp/log/many.log")
        pid = int(guest.sh("pidof wl-manymaps"))
        count = len(guest.sh(f"cat /proc/{pid}/maps").splitlines())
        res.update(run_gdb(guest, script=MAPS_SCRIPT.replace("MANY_PID", str(pid)), timeout=600).result())
    finally:
        guest.stop()
    baseline = "QEMU info mem" if arch == "amd64" else "naive walk, one gdbstub read per descriptor"
    walked = "the CR3 process" if arch == "amd64" else "wl-maps"
    print(f"page-table walk of {walked} (memcheck pagetable --json, every table read from the "
          f"guest): {res['pagetable'] * 1e3:.1f} ms; {baseline}: {res['baseline'] * 1e3:.1f} ms; "
          f"ratio {res['pagetable'] / res['baseline']:.2f}x (target <= 1.0x)")
    print(f"  the first walk of a session, with no subtree remembered: {res['pagetable_first'] * 1e3:.1f} ms, "
          f"{res['pagetable_first'] / res['baseline']:.2f}x")
    per_ours, per_value = res["ours"] / res["tasks"], res["value"] / res["tasks"]
    print(f"task-list walk, {res['tasks']} tasks: {per_ours * 1e6:.0f} us/task; gdb.Value walk: "
          f"{per_value * 1e6:.0f} us/task; {per_value / per_ours:.0f}x faster (target >= 25x)")
    print(f"memcheck maps --rss of a process with {count} VMAs: {res['maps'] * 1e3:.0f} ms (target < 500 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
