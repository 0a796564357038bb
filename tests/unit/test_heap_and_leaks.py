"""The glibc heap walker and valgrind-style classification over synthetic heaps."""
from __future__ import annotations

import struct

import pytest

from gdb_memcheck.glibc import heap as glibc_heap
from gdb_memcheck.leakcheck import leaks
from gdb_memcheck.glibc.heap import PREV_INUSE
from gdb_memcheck.target import MemoryReadError

HEAP = 0x55_0000_0000


class Memory:
    """Flat little-endian memory made of named ranges."""

    def __init__(self) -> None:
        self.ranges: dict[int, bytearray] = {}

    def add(self, start: int, size: int) -> bytearray:
        self.ranges[start] = bytearray(size)
        return self.ranges[start]

    def read(self, addr: int, size: int) -> bytes:
        for start, data in self.ranges.items():
            if start <= addr and addr + size <= start + len(data):
                return bytes(data[addr - start:addr - start + size])
        raise MemoryReadError("user", addr, size, "unmapped")

    def put(self, addr: int, value: int) -> None:
        for start, data in self.ranges.items():
            if start <= addr < start + len(data):
                struct.pack_into("<Q", data, addr - start, value)
                return
        raise AssertionError(hex(addr))


def build_heap(mem: Memory, sizes: list[int], free: set[int] = frozenset(), total: int = 0x1000) -> list[int]:
    """Chunks of `sizes` then a top chunk; indices in `free` get the next chunk's PREV_INUSE cleared."""
    mem.add(HEAP, total)
    addrs, pos = [], HEAP
    for size in sizes:
        addrs.append(pos)
        pos += size
    top = pos
    all_chunks = addrs + [top]
    all_sizes = sizes + [HEAP + total - top]
    for i, (addr, size) in enumerate(zip(all_chunks, all_sizes)):
        prev_in_use = 0 if i > 0 and (i - 1) in free else PREV_INUSE
        mem.put(addr + 8, size | prev_in_use)
    return addrs


def test_chunks_are_walked_to_the_top_with_in_use_bits_from_the_next_chunk():
    mem = Memory()
    addrs = build_heap(mem, [0x290, 0x30, 0x40, 0x100], free={2})
    chunks = glibc_heap.main_heap_chunks(mem.read, HEAP, HEAP + 0x1000)
    assert [c.address for c in chunks] == addrs + [addrs[-1] + 0x100]
    assert [c.in_use for c in chunks] == [True, True, False, True, False]
    assert chunks[1].user == addrs[1] + 16 and chunks[1].usable == 0x30 - 8


def test_a_broken_chunk_size_is_reported_with_its_address():
    mem = Memory()
    addrs = build_heap(mem, [0x30, 0x40])
    mem.put(addrs[1] + 8, 0x7)
    with pytest.raises(glibc_heap.HeapError, match=f"heap chunk at {addrs[1]:#x} has an impossible size 0x0"):
        glibc_heap.main_heap_chunks(mem.read, HEAP, HEAP + 0x1000)


def test_safe_linked_tcache_lists_are_followed_and_loops_are_caught():
    mem = Memory()
    addrs = build_heap(mem, [0x290, 0x30, 0x30, 0x30])
    tcache = addrs[0] + 16
    first, second = addrs[1] + 16, addrs[2] + 16
    mem.put(tcache + glibc_heap.TCACHE_COUNTS_SIZE, first)              # entries[0]
    mem.put(first, (first >> 12) ^ second)                              # safe-linked next
    mem.put(second, second >> 12)                                       # the end: a mangled NULL
    arena = glibc_heap.MainArena(0x7F_0000_0000, 0, HEAP, HEAP + 0x1000)
    mem.add(arena.address, 0x1000)                                      # empty fastbins
    assert glibc_heap.free_chunks(mem.read, arena, tcache) == {addrs[1], addrs[2]}
    mem.put(second, (second >> 12) ^ first)                             # second -> first: a loop
    with pytest.raises(glibc_heap.HeapError, match="tcache bin 0 is corrupt"):
        glibc_heap.free_chunks(mem.read, arena, tcache)


def test_main_arena_is_found_as_the_word_pointing_at_the_top_chunk():
    mem = Memory()
    addrs = build_heap(mem, [0x290, 0x30])
    top = addrs[-1] + 0x30
    data = 0x7F_0000_0000
    mem.add(data, 0x1000)
    arena = data + 0x100
    mem.put(arena + glibc_heap.ARENA_TOP, top)
    mem.put(arena + glibc_heap.ARENA_SYSTEM_MEM, 0x1000)
    found = glibc_heap.find_main_arena(mem.read, [(data, data + 0x1000)], HEAP, HEAP + 0x1000)
    assert (found.address, found.top, found.heap_start) == (arena, top, HEAP)


def classify(blocks: list[tuple[int, int]], words: dict[int, int], root: tuple[int, int]) -> dict[int, leaks.Kind]:
    mem = Memory()
    mem.add(0x1000, 0x10000)
    for addr, value in words.items():
        mem.put(addr, value)
    objs = [leaks.Block(a, s) for a, s in blocks]
    index = leaks.classify(objs, mem.read, [leaks.Region(root[0], root[1], "data")], [])
    return {b.address: b.kind for b in index.blocks}


def test_classification_follows_valgrinds_definitions():
    root = (0x1000, 0x1100)
    a, b, c, d, e, f = (0x2000 + 0x100 * i for i in range(6))
    kinds = classify([(x, 0x40) for x in (a, b, c, d, e, f)],
                     {0x1000: a, 0x1008: b + 8,           # a: start pointer, b: interior only
                      a + 8: c,                           # c: reached from a reachable block
                      d: e, e + 16: f},                   # d lost; e and f hang off it
                     root)
    assert kinds == {a: leaks.Kind.REACHABLE, b: leaks.Kind.POSSIBLE, c: leaks.Kind.REACHABLE,
                     d: leaks.Kind.DEFINITE, e: leaks.Kind.INDIRECT, f: leaks.Kind.INDIRECT}


def test_a_cycle_of_lost_blocks_has_one_definitely_lost_leader():
    x, y = 0x3000, 0x3100
    kinds = classify([(x, 0x40), (y, 0x40)], {x: y, y: x}, (0x1000, 0x1100))
    assert sorted(k.value for k in kinds.values()) == ["definitely lost", "indirectly lost"]


def test_loss_records_group_by_kind_and_size_smallest_first():
    blocks = [leaks.Block(0x10, 32, leaks.Kind.DEFINITE), leaks.Block(0x40, 32, leaks.Kind.DEFINITE),
              leaks.Block(0x80, 16, leaks.Kind.INDIRECT), leaks.Block(0x90, 99, leaks.Kind.REACHABLE)]
    records = leaks.loss_records(blocks)
    assert [(r.kind, r.bytes, len(r.blocks)) for r in records] == [(leaks.Kind.INDIRECT, 16, 1),
                                                                  (leaks.Kind.DEFINITE, 64, 2),
                                                                  (leaks.Kind.REACHABLE, 99, 1)]
    assert leaks.summary(blocks)[leaks.Kind.DEFINITE] == (64, 2)
