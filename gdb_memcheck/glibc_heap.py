"""The glibc heap of a process, walked from outside (glibc 2.36, x86-64; malloc/malloc.c):
chunks of the main heap from the start of the brk area to the top chunk, the tcache and
fastbin free lists (with safe-linking) that keep freed chunks looking in use, and the
separately mmapped chunks.  Every walk is bounded and reports corruption as HeapError."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterable

from .target import TargetError

Reader = Callable[[int, int], bytes]

SIZE_SZ = 8
MALLOC_ALIGNMENT = 16
MINSIZE = 32
PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 1, 2, 4
FLAG_BITS = 7
TCACHE_BINS = 64
TCACHE_COUNTS_SIZE = TCACHE_BINS * 2      # uint16_t counts[64]
NFASTBINS = 10
ARENA_FASTBINS = 0x10                       # struct malloc_state: mutex, flags, have_fastchunks, pad
ARENA_TOP = 0x60
ARENA_SYSTEM_MEM = 0x888
ARENA_SIZE = 0x898                          # sizeof(struct malloc_state): its pointers are malloc's, not the program's
MAX_CHUNKS = 1 << 22
MAX_FREE_LIST = 1 << 16
PAGE = 4096


class HeapError(TargetError):
    """The heap does not look like glibc's: a broken chunk size or free list."""


@dataclass(frozen=True)
class Chunk:
    """A malloc chunk: its header address, size (flags removed) and state."""

    address: int
    size: int
    in_use: bool
    mmapped: bool = False

    @property
    def user(self) -> int:
        return self.address + 2 * SIZE_SZ

    @property
    def usable(self) -> int:
        """Bytes the program may use: an in-use chunk also owns the next chunk's prev_size."""
        return self.size - (2 * SIZE_SZ if self.mmapped else SIZE_SZ)


def reveal(stored: int, field_address: int) -> int:
    """Undo safe-linking (glibc 2.32+): stored = (address of the field >> 12) ^ pointer."""
    return stored ^ (field_address >> 12)


def main_heap_chunks(read: Reader, start: int, end: int) -> list[Chunk]:
    """Every chunk of the main heap in [start, end), the top chunk last (not in use).

    In-use here means the next chunk's PREV_INUSE bit; chunks on tcache or fastbin
    lists still look in use and are taken out with `free_chunks`.
    """
    data = read(start, end - start)
    chunks: list[Chunk] = []
    pos = start
    while True:
        off = pos - start
        if off + 2 * SIZE_SZ > len(data) or len(chunks) >= MAX_CHUNKS:
            raise HeapError(f"heap walk ran past {end:#x} at {pos:#x} without meeting the top chunk")
        size = struct.unpack_from("<Q", data, off + SIZE_SZ)[0] & ~FLAG_BITS
        if size < MINSIZE or size % MALLOC_ALIGNMENT or pos + size > end:
            raise HeapError(f"heap chunk at {pos:#x} has an impossible size {size:#x}")
        if pos + size == end:
            chunks.append(Chunk(pos, size, False))          # the top chunk
            return chunks
        next_size = struct.unpack_from("<Q", data, off + size + SIZE_SZ)[0]
        chunks.append(Chunk(pos, size, bool(next_size & PREV_INUSE)))
        pos += size


@dataclass(frozen=True)
class MainArena:
    """Where main_arena is, and the main heap it describes."""

    address: int
    top: int
    heap_start: int
    heap_end: int

    @property
    def struct_range(self) -> tuple[int, int]:
        """Where main_arena itself lies (in libc's data), to keep its free-list pointers out of the roots."""
        return self.address, self.address + ARENA_SIZE


def find_main_arena(read: Reader, data_ranges: Iterable[tuple[int, int]], start_brk: int, brk: int) -> MainArena:
    """Locate main_arena without symbols: the word in a module's writable data that points
    at a chunk ending exactly at the program break is main_arena.top; the main heap then
    starts system_mem bytes below the break."""
    for lo, hi in data_ranges:
        data = read(lo, hi - lo)
        for off in range(0, len(data) - 8, 8):
            top = struct.unpack_from("<Q", data, off)[0]
            if not start_brk <= top < brk or top % MALLOC_ALIGNMENT:
                continue
            arena = lo + off - ARENA_TOP
            if arena < lo or arena + ARENA_SYSTEM_MEM + 8 > hi:
                continue
            top_size = struct.unpack("<Q", read(top + SIZE_SZ, 8))[0] & ~FLAG_BITS
            system_mem = struct.unpack_from("<Q", data, arena - lo + ARENA_SYSTEM_MEM)[0]
            heap_start = brk - system_mem
            if top + top_size == brk and start_brk <= heap_start <= top and heap_start % MALLOC_ALIGNMENT == 0:
                return MainArena(arena, top, heap_start, brk)
    raise HeapError("no main_arena found in the program's data (no glibc heap, or it is corrupt)")


def free_chunks(read: Reader, arena: MainArena, tcache: int | None) -> set[int]:
    """Chunk addresses on the tcache and fastbin lists (they keep looking in use)."""
    free: set[int] = set()
    if tcache is not None:
        raw = read(tcache, TCACHE_COUNTS_SIZE + TCACHE_BINS * 8)
        for i in range(TCACHE_BINS):
            entry = struct.unpack_from("<Q", raw, TCACHE_COUNTS_SIZE + 8 * i)[0]
            free.update(c - 2 * SIZE_SZ for c in _follow(read, entry, 0, f"tcache bin {i}"))
    fast = read(arena.address + ARENA_FASTBINS, NFASTBINS * 8)
    for i in range(NFASTBINS):
        chunk = struct.unpack_from("<Q", fast, 8 * i)[0]
        free.update(_follow(read, chunk, 2 * SIZE_SZ, f"fastbin {i}"))
    return free


def _follow(read: Reader, node: int, next_offset: int, name: str) -> list[int]:
    """Nodes of a safe-linked singly linked list whose link sits `next_offset` into each node."""
    seen: list[int] = []
    while node:
        if node in seen or len(seen) >= MAX_FREE_LIST or node % MALLOC_ALIGNMENT:
            raise HeapError(f"{name} is corrupt at {node:#x} (misaligned or loops)")
        seen.append(node)
        field = node + next_offset
        node = reveal(struct.unpack("<Q", read(field, 8))[0], field)
    return seen


def mmapped_chunks(read: Reader, ranges: Iterable[tuple[int, int]]) -> list[Chunk]:
    """Chunks malloc took straight from mmap: at a page start, prev_size 0, IS_MMAPPED set,
    a page-multiple size that fits the mapping."""
    found = []
    for lo, hi in ranges:
        pos = lo
        while pos + PAGE <= hi:
            prev_size, size = struct.unpack("<QQ", read(pos, 16))
            length = size & ~FLAG_BITS
            if prev_size == 0 and size & IS_MMAPPED and not size & NON_MAIN_ARENA and length % PAGE == 0 \
                    and 0 < length <= hi - pos:
                found.append(Chunk(pos, length, True, mmapped=True))
                pos += length
            else:
                pos += PAGE
    return found
