#!/usr/bin/env python3
"""Kernel-memory benchmark on an idle 512 MB lab guest (no module loaded), each figure against
a baseline measured in the same run:
  - `memcheck slab` over every cache (target < 1 s) vs the method of the kernel's own
    lx-slabinfo (each cache's node partial lists walked through gdb.Value, counts only), vs
    `cat /proc/slabinfo` through the guest's shell, and vs finding every slab in the memmap
    through gdb.Value (timed on a sample of pages, scaled to the whole memmap)
  - a full `memcheck kleaks` scan (target < 10 s) vs reading the same objects one gdb read_memory call
    each through the gdbstub (timed on a sample, scaled to every object)
  - what kleaks reports as lost on the idle guest, by cache: the false positives
Usage: /usr/bin/python3 bench/kernel_bench.py [--kernel 6.1-cloud|6.12-cloud]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

SAMPLE = 2000

SCRIPT = r"""
import random, time
from gdb_memcheck.frontend.session import SESSION

def cold():
    SESSION.on_cont(None)            # what a resume does: drop the per-stop caches

def best(fn, n=3):
    runs = []
    for _ in range(n):
        cold()
        t0 = time.perf_counter(); out = fn(); runs.append((time.perf_counter() - t0, out))
    return min(runs, key=lambda r: r[0])

slab_s, slab = best(lambda: q("memcheck slab --json"))
kleaks_s, scan = best(lambda: q("memcheck kleaks --show-reachable --json"), 2)

def lx_slabinfo():
    # the method of scripts/gdb/linux/slab.py (lx-slabinfo): each cache's per-node partial
    # lists walked with gdb.Value, total_objects read from each node
    head = gdb.parse_and_eval("&slab_caches")
    cache_t = gdb.lookup_type("struct kmem_cache").pointer()
    slab_t = gdb.lookup_type("struct slab").pointer()
    list_off = int(gdb.parse_and_eval("(unsigned long)&((struct kmem_cache *)0)->list"))
    slab_off = int(gdb.parse_and_eval("(unsigned long)&((struct slab *)0)->slab_list"))
    nodes = int(gdb.parse_and_eval("nr_node_ids"))
    out, node = [], head["next"]
    while int(node) != int(head):
        cache = gdb.Value(int(node) - list_off).cast(cache_t)
        total = free = 0
        for n in range(nodes):
            kn = cache["node"][n]
            total += int(kn["total_objects"]["counter"])
            partial = kn["partial"].address
            entry = partial["next"]
            while int(entry) != int(partial):
                s = gdb.Value(int(entry) - slab_off).cast(slab_t)
                free += int(s["objects"]) - int(s["inuse"])
                entry = entry["next"]
        out.append((cache["name"].string(), total - free, total))
        node = node["next"]
    return out
lx_s, lx = best(lx_slabinfo, 1)

def value_memmap():
    # the naive way to find every slab, full ones included: each struct page's flags and
    # slab_cache through gdb.Value (timed on a sample of pages, scaled to the whole memmap)
    pages = gdb.parse_and_eval("(struct page *)vmemmap_base")
    slab_t = gdb.lookup_type("struct slab").pointer()
    max_pfn = int(gdb.parse_and_eval("max_pfn"))
    pfns = random.Random(2).sample(range(max_pfn), SAMPLE)
    t0 = time.perf_counter()
    for pfn in pfns:
        page = pages + pfn
        int(page["flags"]), int(page.cast(slab_t)["slab_cache"])
    return (time.perf_counter() - t0) * max_pfn / len(pfns)
memmap_value = value_memmap()

objects = [(int(o["address"], 16), o["size"]) for o in scan["objects"]]
sample = random.Random(1).sample(objects, min(SAMPLE, len(objects)))
inferior = gdb.selected_inferior()
t0 = time.perf_counter()
for address, size in sample:
    bytes(inferior.read_memory(address, size))
value_s = (time.perf_counter() - t0) * len(objects) / len(sample)
emit({"slab": slab_s, "caches": len(slab["caches"]), "kleaks": kleaks_s, "scan_seconds": scan["seconds"],
      "header": scan["header"], "objects": len(objects), "lx": lx_s, "memmap_value": memmap_value,
      "lx_caches": len(lx), "value": value_s,
      "lost": [(o["cache"], o["kind"], o["address"], o["size"], o["preview"]) for o in scan["objects"]
               if o["kind"] != "still reachable"]})
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", default="", help="a kernel.sh name (default: GDB_MEMCHECK_KERNEL or 6.1-cloud)")
    a = ap.parse_args()
    guest = guestlab.boot(guestlab.BootOptions(kernel=a.kernel))
    try:
        guest.sh("sleep 6")         # let boot-time work settle: kfree_rcu() batches drain within 5 s
        t0 = time.perf_counter()
        for _ in range(5):
            guest.sh("cat /proc/slabinfo > /dev/null")
        proc = (time.perf_counter() - t0) / 5
        res = run_gdb(guest, script=SCRIPT.replace("SAMPLE", str(SAMPLE)), timeout=1200).result()
        release = guest.sh("uname -r").strip()
    finally:
        guest.stop()
    print(f"kernel {release}, idle 512 MB guest, no module loaded")
    print(f"memcheck slab, {res['caches']} caches: {res['slab'] * 1e3:.0f} ms (target < 1 s); lx-slabinfo's method "
          f"through gdb.Value: {res['lx']:.2f} s ({res['lx'] / res['slab']:.1f}x as long); cat /proc/slabinfo "
          f"through the guest's shell: {proc * 1e3:.0f} ms ({proc / res['slab']:.1f}x); "
          f"finding the slabs in the memmap "
          f"through gdb.Value, as the naive per-object walk must: {res['memmap_value']:.1f} s (from {SAMPLE} sampled "
          f"pages, {res['memmap_value'] / res['slab']:.0f}x)")
    print(f"memcheck kleaks, full scan: {res['kleaks']:.2f} s (target < 10 s; {res['scan_seconds']:.2f} s of it "
          f"classifying); reading the same {res['objects']} objects one gdb read_memory call each, "
          f"through the gdbstub: "
          f"{res['value']:.1f} s (from {SAMPLE} sampled, {res['value'] / res['kleaks']:.1f}x the whole scan)")
    print(f"  {res['header']}")
    counts: dict[tuple[str, str], int] = {}
    for cache, kind, *_ in res["lost"]:
        counts[(kind, cache)] = counts.get((kind, cache), 0) + 1
    print("lost on the idle guest (false positives), by kind and cache:")
    for (kind, cache), n in sorted(counts.items()):
        print(f"  {kind:<16} {n:>4}  {cache}")
    for cache, kind, address, size, preview in res["lost"]:
        if kind == "definitely lost":
            print(f"  definitely lost: {cache} {address} {size} bytes, first bytes {preview[:64]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
