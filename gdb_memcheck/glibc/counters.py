"""glibc's own accounting of a process's heap, read without walking it (glibc 2.36,
x86-64; malloc/malloc.c): each arena's system_mem (memory it took from the system) and
its top chunk (the part of that not handed out), and mp_.mmapped_mem (the chunks
mmapped on their own).  Heap in use = the arenas' memory less their top chunks, plus the
mmapped chunks; in mallinfo2's terms, arena - (each arena's keepcost) + hblkhd.  This
counts free chunks in bins as in use, but costs a few reads where a walk reads the heap."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable

from . import heap as glibc_heap
from .heap import ARENA_NEXT, ARENA_SYSTEM_MEM, ARENA_TOP, FLAG_BITS, MAX_ARENAS, PAGE, SIZE_SZ, HeapError, Reader

# struct malloc_par mp_ (glibc 2.36: trim_threshold .. hp_flags, n_mmaps at 60, then the statistics)
MP_N_MMAPS = 60
MP_MMAPPED_MEM = 80
MP_MAX_MMAPPED_MEM = 88
MP_SBRK_BASE = 96
MP_TCACHE_BINS = 104
MP_TCACHE_COUNT = 120
MP_SIZE = 136
TCACHE_MAX_BINS = 64
MAX_TCACHE_COUNT = 0xFFFF


@dataclass(frozen=True)
class MallocLocations:
    """Where one process keeps its malloc state: main_arena and mp_."""

    main_arena: int
    malloc_par: int


@dataclass(frozen=True)
class HeapCounters:
    """glibc's counters summed over the arenas."""

    system_bytes: int           # the arenas' system_mem
    top_bytes: int              # their top chunks
    mmapped_bytes: int          # mp_.mmapped_mem
    arenas: int

    @property
    def in_use(self) -> int:
        return self.system_bytes - self.top_bytes + self.mmapped_bytes


def find_malloc_par(read: Reader, data_ranges: Iterable[tuple[int, int]], sbrk_base: int) -> int:
    """mp_ without symbols: the struct in a module's writable data whose sbrk_base is where
    the main heap starts and whose other fields are in their ranges."""
    for lo, hi in data_ranges:
        data = read(lo, hi - lo)
        at = data.find(struct.pack("<Q", sbrk_base))
        while at >= 0:
            start = at - MP_SBRK_BASE
            if start >= 0 and at % 8 == 0 and start + MP_SIZE <= len(data) and _looks_like_mp(data, start):
                return lo + start
            at = data.find(struct.pack("<Q", sbrk_base), at + 1)
    raise HeapError(f"no mp_ found in the program's data (no malloc_par whose sbrk_base is {sbrk_base:#x})")


def _looks_like_mp(data: bytes, start: int) -> bool:
    n_mmaps = struct.unpack_from("<i", data, start + MP_N_MMAPS)[0]
    mmapped, max_mmapped = struct.unpack_from("<QQ", data, start + MP_MMAPPED_MEM)
    bins, _max_bytes, count = struct.unpack_from("<QQQ", data, start + MP_TCACHE_BINS)
    return (n_mmaps >= 0 and mmapped % PAGE == 0 and max_mmapped >= mmapped and mmapped >= n_mmaps * PAGE
            and 1 <= bins <= TCACHE_MAX_BINS and count <= MAX_TCACHE_COUNT)


def malloc_locations(read: Reader, data_ranges: list[tuple[int, int]], start_brk: int, brk: int) -> MallocLocations:
    """main_arena (found as heap.find_main_arena finds it) and mp_, whose sbrk_base is the
    start of the main heap main_arena describes."""
    arena = glibc_heap.find_main_arena(read, data_ranges, start_brk, brk)
    return MallocLocations(arena.address, find_malloc_par(read, data_ranges, arena.heap_start))


def heap_counters(read: Reader, where: MallocLocations) -> HeapCounters:
    """Read the counters: each arena on main_arena's `next` list, and mp_.mmapped_mem."""
    system = top = 0
    arena, seen = where.main_arena, []
    while True:
        if arena in seen or len(seen) >= MAX_ARENAS or not arena or arena % 16:
            raise HeapError(f"the arena list is corrupt at {arena:#x} (after {len(seen)} arenas)")
        seen.append(arena)
        chunk = _u64(read, arena + ARENA_TOP)
        system += _u64(read, arena + ARENA_SYSTEM_MEM)
        top += _u64(read, chunk + SIZE_SZ) & ~FLAG_BITS if chunk else 0
        arena = _u64(read, arena + ARENA_NEXT)
        if arena == where.main_arena:
            break
    mmapped = _u64(read, where.malloc_par + MP_MMAPPED_MEM)
    if top > system:
        raise HeapError(f"the arenas' top chunks ({top} bytes) exceed their memory ({system} bytes)")
    return HeapCounters(system, top, mmapped, len(seen))


def _u64(read: Reader, address: int) -> int:
    return struct.unpack("<Q", read(address, 8))[0]
