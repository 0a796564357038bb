"""`memcheck slab`, `kmem` and `kleaks` against ground truth from the guest: the lab's kernel
module (workloads/kmod) prints every object it allocates with its intended class and counts
its cache's live objects (test_slabinfo checks every other cache against /proc/slabinfo)."""
from __future__ import annotations

import json
import re

import pytest

from kmodtools import CACHE, KIND, load
from labtools import guestlab, run_gdb
from test_slabinfo import slabinfo

BOOT = guestlab.BootOptions()

GROUND_SCRIPT = r"""
caches = q("memcheck slab --json")
mine = q("memcheck slab memcheck_kmod --json")
found = q("memcheck kleaks --show-reachable --json")
kmem = {}
for address in ADDRESSES:
    kmem[hex(address)] = q(f"memcheck kmem --json {address + 8:#x}")
emit({"caches": caches, "mine": mine, "kleaks": found, "kmem": kmem})
"""


@pytest.fixture(scope="module")
def truth(guest):
    return load(guest)


@pytest.fixture(scope="module")
def seen(guest, truth):
    """What the commands say, right after /proc/slabinfo was read in the quiet guest."""
    addresses = [o.address for o in truth.objects]
    info = slabinfo(guest.sh("cat /proc/slabinfo"))
    run = run_gdb(guest, script=GROUND_SCRIPT.replace("ADDRESSES", repr(addresses)), timeout=600)
    assert "Traceback" not in run.output, run.output
    return {**run.result(), "slabinfo": info}


def test_every_object_the_module_printed_is_classified_as_designed(truth, seen):
    objects = {int(o["address"], 16): o for o in seen["kleaks"]["objects"]}
    for o in truth.objects:
        if o.kind == "freed":
            assert o.address not in objects, f"freed {o.address:#x} is not an allocated object"
            continue
        assert objects[o.address]["kind"] == KIND[o.kind], f"{o.kind} {o.address:#x} ({o.cache})"
        assert objects[o.address]["cache"].startswith(o.cache), f"{o.address:#x} in {objects[o.address]['cache']}"
    kinds = {o.kind for o in truth.objects}
    assert kinds == {"definite", "indirect", "possible", "reachable", "freed"}


def test_a_leaked_list_head_carries_the_bytes_of_the_list_lost_through_it(truth, seen):
    objects = {int(o["address"], 16): o for o in seen["kleaks"]["objects"]}
    lists = [objects[o.address]["indirect_bytes"] for o in truth.objects if o.kind == "definite" and o.cache == CACHE]
    assert sorted(lists) == [0, 0, 0, 3 * truth.object_size]


def test_kmem_names_each_objects_cache_offset_and_state(truth, seen):
    for o in truth.objects:
        doc = seen["kmem"][hex(o.address)]
        if o.cache == "vmalloc":
            assert (doc["kind"], doc["range_start"], doc["offset"]) == ("vmalloc", hex(o.address), 8)
            continue
        assert doc["kind"] == "slab object" and doc["cache"].startswith(o.cache), doc
        assert (doc["object_start"], doc["offset"], doc["free"]) == (hex(o.address), 8, o.kind == "freed"), doc


def test_slab_counts_match_the_modules_own_accounting(truth, seen):
    cache = seen["mine"]["caches"][0]
    assert cache["in_use"] == truth.live
    assert cache["object_size"] == truth.object_size
    objects = seen["mine"]["objects"]
    assert len(objects) == cache["objects"] and sum(not o["free"] for o in objects) == truth.live
    assert {s["where"].split()[0] for s in seen["mine"]["slabs"]} >= {"cpu", "node", "full"}
    assert (cache["slabinfo_active"], cache["objects"]) == seen["slabinfo"][CACHE]


CORRUPT_SCRIPT = r"""
import struct, time
from gdb_memcheck.frontend.session import SESSION
mine = q("memcheck slab memcheck_kmod --json")
cache = mine["caches"][0]
offset = int(gdb.parse_and_eval(f"((struct kmem_cache *){cache['address']})->offset"))
partial = next(s for s in mine["slabs"] if s["where"].startswith("node") and s["free"] > 1)
free = [o for o in mine["objects"] if o["free"] and o["slab"] == partial["address"]]
victim = int(free[0]["address"], 16) + offset
inferior = gdb.selected_inferior()
saved = bytes(inferior.read_memory(victim, 8))
inferior.write_memory(victim, struct.pack("<Q", 0x4141414141414141))
SESSION.on_cont(None)
out = {"victim": hex(victim)}
for command in ("memcheck slab memcheck_kmod", "memcheck slab", "memcheck kleaks --cache memcheck_kmod"):
    t0 = time.monotonic()
    try:
        text = gdb.execute(command, to_string=True)
        error = ""
    except gdb.error as e:
        text, error = "", str(e)
    out[command] = {"text": text, "error": error, "seconds": time.monotonic() - t0}
inferior.write_memory(victim, saved)
SESSION.on_cont(None)
out["restored"] = q("memcheck slab memcheck_kmod --json")["caches"][0]["in_use"]
emit(out)
"""


def test_a_corrupt_freelist_pointer_gives_partial_results_and_one_error_line(guest, truth):
    run = run_gdb(guest, script=CORRUPT_SCRIPT, timeout=300)
    assert "Traceback" not in run.output, run.output
    out = run.result()
    one = out["memcheck slab memcheck_kmod"]
    assert one["error"].startswith("memcheck slab: cache memcheck_kmod: slab ") and \
        f"the free pointer at {out['victim']} gives" in one["error"], one["error"]
    assert "\n" not in one["error"]
    every = out["memcheck slab"]
    assert every["error"].startswith("memcheck slab: cache memcheck_kmod:"), every["error"]
    scan = out["memcheck kleaks --cache memcheck_kmod"]
    assert not scan["error"] and "note: cache memcheck_kmod:" in scan["text"]
    assert all(out[c]["seconds"] < 60 for c in ("memcheck slab memcheck_kmod", "memcheck slab"))
    assert out["restored"] == truth.live


def test_partial_slab_output_comes_before_the_error_line(guest, truth):
    script = CORRUPT_SCRIPT.replace("to_string=True", "to_string=False")
    run = run_gdb(guest, script=script, timeout=300)
    lines = run.stdout.splitlines()
    assert any(l.startswith("cache memcheck_kmod at 0x") for l in lines)
    assert any(re.match(r"^memcheck_kmod\s+128\s", l) for l in lines), "the caches read before the break"


def test_bad_input_gives_one_line(guest):
    run = run_gdb(guest, "memcheck slab no_such_cache", "memcheck kmem 0x1000", "memcheck kmem",
                  "memcheck kleaks --cache nope", "memcheck slab --json no_such_cache")
    assert "memcheck slab: no slab cache named 'no_such_cache'" in run.stderr
    assert "memcheck kmem: 0x1000 is a user address: `memcheck addr -p PID 0x1000` says what it is" in run.stderr
    assert "memcheck kmem: the following arguments are required: ADDRESS" in run.stderr
    assert "memcheck kleaks: no slab cache named 'nope'" in run.stderr
    docs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert docs == [{"schema_version": 1, "command": "slab", "error": "no slab cache named 'no_such_cache'"}]
    assert "Traceback" not in run.output
