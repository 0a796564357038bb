"""The kernel leak scan's pieces without a guest: which interior pointers count, the classes
of a small object graph, and the views of slab, kmem and kleaks against the JSON schema."""
from __future__ import annotations

import json
import struct

from gdb_memcheck.leakcheck import kleaks, leaks
from gdb_memcheck.linux.kmem import KernelAddress, PageInfo
from gdb_memcheck.linux.slab import objects_of
from gdb_memcheck.report import schema
from gdb_memcheck.report.kernel_views import (cache_json, cache_text, kleaks_json, kleaks_text, kmem_json, kmem_text,
                                              slab_json, slab_text)
from gdb_memcheck.report.views import json_text
from slab_objects import DIRECT_MAP, KernelRam, standard

ROOT = 0xFFFF_FFFF_8300_0000
OBJECTS = DIRECT_MAP + 0x10_0000


class Scanner(kleaks.KernelScanner):
    """Only the interior-pointer rule of the real scanner, over test memory."""

    def __init__(self, ram: KernelRam) -> None:
        self.kmem, self._words, self.blank = ram, {}, {}


def graph() -> tuple[KernelRam, list[leaks.Block]]:
    """Six 64-byte objects: A from a root, B through a list_head inside it, C only through a
    pointer into its text, D a lost head holding E, F reached through a tagged pointer."""
    ram = KernelRam()
    ram.write(ROOT, bytes(64))
    ram.write(OBJECTS, bytes(6 * 64))
    a, b, c, d, e, f = (OBJECTS + 64 * i for i in range(6))
    ram.u64_at(ROOT, a)
    ram.u64_at(a + 8, b + 16)             # &b->list
    ram.u64_at(b + 16, a + 8)             # b->list.next: a kernel pointer, so an embedded node
    ram.u64_at(ROOT + 8, c + 40)
    ram.write(c + 40, b"not a pointer")
    ram.u64_at(d, e)
    ram.u64_at(a + 16, f | 2)             # an XArray node entry
    return ram, [leaks.Block(x, 64, via="test") for x in (a, b, c, d, e, f)]


def test_interior_pointers_to_embedded_nodes_and_tagged_pointers_are_references():
    ram, blocks = graph()
    scanner = Scanner(ram)
    index = leaks.classify(blocks, ram.read, [leaks.Region(ROOT, ROOT + 64, "root")], [], scanner._link)
    kinds = [b.kind for b in index.blocks]
    assert kinds == [leaks.Kind.REACHABLE, leaks.Kind.REACHABLE, leaks.Kind.POSSIBLE, leaks.Kind.DEFINITE,
                     leaks.Kind.INDIRECT, leaks.Kind.REACHABLE]
    assert index.blocks[3].indirect == 64


def test_without_the_kernel_rule_every_interior_pointer_only_makes_an_object_possibly_lost():
    ram, blocks = graph()
    index = leaks.classify(blocks, ram.read, [leaks.Region(ROOT, ROOT + 64, "root")], [])
    assert [b.kind for b in index.blocks][:3] == [leaks.Kind.REACHABLE, leaks.Kind.POSSIBLE, leaks.Kind.POSSIBLE]


def test_a_span_without_holes_is_cut_into_sorted_pieces():
    assert kleaks._cut((0, 100), [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert kleaks._cut((0, 100), [(0, 200)]) == []


def scan_of(blocks: list[leaks.Block], ram: KernelRam) -> kleaks.KernelLeakScan:
    index = leaks.classify(blocks, ram.read, [leaks.Region(ROOT, ROOT + 64, "root")], [], Scanner(ram)._link)
    objects = {b.address: kleaks.KernelObject("test", ram.read(b.address, 32), (0xFFFF_FFFF_8100_1000,))
               for b in blocks}
    return kleaks.KernelLeakScan(index, objects, [], {"kernel data": 64}, 1, 0, 0.5)


def symbolize(pc: int) -> str:
    return "kmem_cache_alloc+0x10" if pc == 0xFFFF_FFFF_8100_1000 else ""


def test_the_kleaks_report_groups_by_cache_with_previews_stacks_and_a_summary():
    ram, blocks = graph()
    text = kleaks_text(scan_of(blocks, ram), False, None, symbolize)
    assert "test: 1 definitely lost, 1 indirectly lost, 1 possibly lost" in text
    assert "64 bytes definitely lost (+64 indirect)" in text
    assert "at 0xffffffff81001000: kmem_cache_alloc+0x10" in text
    assert "definitely lost:  64 bytes in 1 objects" in text
    doc = json.loads(json_text("kleaks", kleaks_json(scan_of(blocks, ram), True, None, symbolize)))
    assert schema.validate(doc) == []
    assert {o["kind"] for o in doc["objects"]} == {k.value for k in leaks.Kind}
    assert doc["caches"] == [{"cache": "test", "definitely lost": 1, "indirectly lost": 1, "possibly lost": 1}]


def test_slab_views_follow_the_schema():
    slub, _ = standard()
    allocator = slub.allocator()
    rows = allocator.all_stats()
    assert schema.validate(json.loads(json_text("slab", slab_json([cache_json(r, True, False) for r in rows])))) == []
    cache = allocator.find_cache("test_cache")
    stats, slabs = allocator.walk(cache)
    doc = json.loads(json_text("slab", slab_json([cache_json(stats, True, False)], slabs, objects_of(cache, slabs))))
    assert schema.validate(doc) == [] and len(doc["objects"]) == 256
    assert "test_cache" in slab_text(rows) and "2 caches:" in slab_text(rows)
    assert "1 on no list (full)" in cache_text(stats, slabs, True)


def test_kmem_views_follow_the_schema():
    info = KernelAddress(OBJECTS + 20, "slab object", cache="test_cache", object_start=OBJECTS, offset=20,
                         object_size=64, free=False, physical=0x10_0014,
                         page=PageInfo(0x100, 0x100, ("slab",), 0, 1, 0), alloc_stack=(0xFFFF_FFFF_8100_1000,))
    doc = json.loads(json_text("kmem", kmem_json(info, symbolize)))
    assert schema.validate(doc) == [] and doc["alloc_stack"][0]["function"] == "kmem_cache_alloc+0x10"
    text = kmem_text(info, symbolize)
    assert f"object {OBJECTS:#x} + 0x14 (object size 64), in use" in text


def test_a_blanked_word_is_no_reference():
    ram, blocks = graph()
    scanner = Scanner(ram)
    scanner.blank[ROOT] = (0,)
    data = kleaks.KernelScanner._read(scanner, ROOT, 16)
    assert struct.unpack("<QQ", data) == (0, ram.u64(ROOT + 8))
