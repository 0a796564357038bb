"""With slub_debug=U on the module's cache, SLUB keeps an alloc and a free track after each
object (and full slabs on a list): kleaks and kmem show each object's allocation stack
from the stack depot, and the counts still equal the module's own."""
from __future__ import annotations

import re

import pytest

from kmodtools import CACHE, KIND, load
from labtools import guestlab, run_gdb

MODULES = 0xFFFF_FFFF_A000_0000           # MODULES_VADDR (Documentation/arch/x86/x86_64/mm.rst)
BOOT = guestlab.BootOptions(extra_append=f"slub_debug=U,{CACHE}")

SCRIPT = r"""
emit({"kleaks": q("memcheck kleaks --cache memcheck_kmod --show-reachable --json"),
      "slab": q("memcheck slab memcheck_kmod --json"),
      "kmem": q(f"memcheck kmem --json {FIRST:#x}")})
"""


@pytest.fixture(scope="module")
def seen(guest):
    truth = load(guest)
    first = next(o.address for o in truth.objects if o.kind == "definite" and o.cache == CACHE)
    run = run_gdb(guest, script=SCRIPT.replace("FIRST", str(first)), timeout=300)
    assert "Traceback" not in run.output, run.output
    return truth, run.result()


def test_each_object_of_the_cache_carries_its_allocation_stack(seen):
    truth, out = seen
    objects = {int(o["address"], 16): o for o in out["kleaks"]["objects"]}
    mine = [o for o in truth.objects if o.cache == CACHE and o.kind != "freed"]
    for o in mine:
        stack = objects[o.address]["stack"]
        first = stack[0]
        # the module's code, or its init code (freed after init, so no longer named)
        assert re.match(rf"(get|leak_objects)\+0x[0-9a-f]+ \[{CACHE}\]$", first["function"] or "") or \
            (first["function"] is None and int(first["pc"], 16) >= MODULES), stack
        assert any((f["function"] or "").startswith("do_init_module") for f in stack), stack


def test_kmem_shows_the_allocation_stack_and_the_counts_and_classes_still_hold(seen):
    truth, out = seen
    assert out["kmem"]["alloc_stack"] and out["kmem"]["alloc_stack"][0]["function"].endswith(f" [{CACHE}]")
    cache = out["slab"]["caches"][0]
    assert cache["stores_tracks"] and cache["in_use"] == truth.live
    assert cache["size"] > cache["object_size"], "the tracks sit after each object"
    objects = {int(x["address"], 16): x["kind"] for x in out["kleaks"]["objects"]}
    for o in truth.objects:
        if o.cache == CACHE:
            assert objects.get(o.address) == KIND.get(o.kind), (o.kind, hex(o.address))
