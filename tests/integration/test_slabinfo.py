"""`memcheck slab` on every cache against the guest's /proc/slabinfo, on x86-64 and arm64."""
from __future__ import annotations

import re

import pytest

from labtools import run_gdb

ARCHES = ("amd64", "arm64")
MIN_CACHES = 20


def slabinfo(text: str) -> dict[str, tuple[int, int]]:
    """Cache name -> (active_objs, num_objs), as /proc/slabinfo prints them."""
    return {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^(\S+)\s+(\d+)\s+(\d+)\s", text, re.M)}


@pytest.fixture(scope="module")
def seen(guest):
    """What `memcheck slab` says right after /proc/slabinfo was read in the quiet guest."""
    info = slabinfo(guest.sh("cat /proc/slabinfo"))
    run = run_gdb(guest, script='emit(q("memcheck slab --json"))', timeout=600)
    assert "Traceback" not in run.output and run.stderr == "", run.output
    return {"caches": run.result(), "slabinfo": info}


def test_slab_counts_match_proc_slabinfo_on_every_quiet_cache(seen):
    """Tolerance: none for a cache whose counts did not move between the shell's read of
    /proc/slabinfo and gdb's stop; the shell's own work (fork, exec, the read itself) may
    move a few caches by up to one slab, and those are counted apart."""
    ours = {c["name"]: c for c in seen["caches"]["caches"]}
    exact, moved = [], []
    for name, (active, total) in seen["slabinfo"].items():
        if name not in ours:
            continue
        c = ours[name]
        if (c["slabinfo_active"], c["objects"]) == (active, total):
            exact.append(name)
        else:
            moved.append(name)
            assert abs(c["objects"] - total) <= c["objects_per_slab"], (name, c, active, total)
            assert abs(c["slabinfo_active"] - active) <= c["objects_per_slab"], (name, c, active, total)
    assert set(ours) == set(seen["slabinfo"]), "the same caches as /proc/slabinfo"
    print(f"slabinfo: {len(exact)} caches exact, {len(moved)} moved by the shell: {moved}")
    assert len(exact) >= MIN_CACHES and len(moved) <= len(exact) // 10, (len(exact), moved)


