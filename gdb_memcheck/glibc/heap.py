"""The glibc heap of a process, walked from outside (glibc 2.36, x86-64; malloc/malloc.c):
chunks of the main heap from the start of the brk area to the top chunk, the other
arenas (threads') and their mmapped heaps, the tcache and fastbin free lists (with
safe-linking) that keep freed chunks looking in use, and the separately mmapped chunks.
Every walk is bounded and reports corruption as HeapError."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

from ..target import TargetError

Reader = Callable[[int, int], bytes]
_U64 = struct.Struct("<Q").unpack_from

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
ARENA_NEXT = 0x870                          # malloc_state.next: the circular list of arenas
HEAP_INFO_SIZE = 0x30                       # heap_info: ar_ptr, prev, size, mprotect_size, pagesize, pad
HEAP_MAX_SIZE = 64 << 20                    # 2 * DEFAULT_MMAP_THRESHOLD_MAX: heaps are aligned to it
MAX_ARENAS = 1024
MAX_HEAPS = 1024
MAX_CHUNKS = 1 << 22
MAX_FREE_LIST = 1 << 16
PAGE = 4096


class HeapError(TargetError):
    """The heap does not look like glibc's: a broken chunk size or free list."""


class Chunk(NamedTuple):
    """A malloc chunk: its header address, size (flags removed) and state.  A named tuple:
    a heap may hold millions, and a frozen dataclass costs several times more to make."""

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


def usable_size(read: Reader, block: int) -> int:
    """malloc_usable_size() of an in-use block, from its chunk's size field."""
    field = _u64(read, block - SIZE_SZ)
    return Chunk(block - 2 * SIZE_SZ, field & ~FLAG_BITS, True, bool(field & IS_MMAPPED)).usable


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
    append, u64 = chunks.append, _U64          # one pass in local names: a heap may hold millions of chunks
    off, length, readable = 0, end - start, len(data) - 2 * SIZE_SZ
    for _ in range(MAX_CHUNKS):
        if off > readable:
            break
        size = u64(data, off + SIZE_SZ)[0] & ~FLAG_BITS
        if size < MINSIZE or size % MALLOC_ALIGNMENT or off + size > length:
            raise HeapError(f"heap chunk at {start + off:#x} has an impossible size {size:#x}")
        if off + size == length:
            append(Chunk(start + off, size, False))          # the top chunk
            return chunks
        append(Chunk(start + off, size, bool(u64(data, off + size + SIZE_SZ)[0] & PREV_INUSE)))
        off += size
    raise HeapError(f"heap walk ran past {end:#x} at {start + off:#x} without meeting the top chunk")


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
    free = fastbin_chunks(read, arena.address)
    if tcache is not None:
        free |= tcache_chunks(read, tcache)
    return free


def tcache_chunks(read: Reader, tcache: int) -> set[int]:
    """Chunk addresses on a thread's tcache lists (tcache: its tcache_perthread_struct)."""
    free: set[int] = set()
    raw = read(tcache, TCACHE_COUNTS_SIZE + TCACHE_BINS * 8)
    for i in range(TCACHE_BINS):
        entry = struct.unpack_from("<Q", raw, TCACHE_COUNTS_SIZE + 8 * i)[0]
        free.update(c - 2 * SIZE_SZ for c in _follow(read, entry, 0, f"tcache bin {i}"))
    return free


def fastbin_chunks(read: Reader, arena: int) -> set[int]:
    """Chunk addresses on an arena's fastbin lists."""
    free: set[int] = set()
    fast = read(arena + ARENA_FASTBINS, NFASTBINS * 8)
    for i in range(NFASTBINS):
        chunk = struct.unpack_from("<Q", fast, 8 * i)[0]
        free.update(_follow(read, chunk, 2 * SIZE_SZ, f"fastbin {i}"))
    return free


@dataclass(frozen=True)
class ArenaHeap:
    """One mmapped heap of a non-main arena: the mapping [start, end) and where its chunks begin."""

    start: int
    end: int
    first_chunk: int


def other_arenas(read: Reader, main: MainArena) -> list[int]:
    """Addresses of the arenas after main_arena on its circular `next` list (threads' arenas)."""
    found: list[int] = []
    arena = _u64(read, main.address + ARENA_NEXT)
    while arena != main.address:
        if not arena or arena % MALLOC_ALIGNMENT or arena in found or len(found) >= MAX_ARENAS:
            raise HeapError(f"the arena list is corrupt at {arena:#x} (after {len(found)} arenas)")
        found.append(arena)
        arena = _u64(read, arena + ARENA_NEXT)
    return found


def arena_heaps(read: Reader, arena: int) -> list[ArenaHeap]:
    """The heaps of a non-main arena, newest (the one holding top) first: each starts with a
    heap_info naming the arena; the oldest also holds the arena itself."""
    heap = _u64(read, arena + ARENA_TOP) & ~(HEAP_MAX_SIZE - 1)
    heaps: list[ArenaHeap] = []
    while True:
        ar_ptr, prev, size = struct.unpack("<QQQ", read(heap, 24))
        if ar_ptr != arena or not PAGE <= size <= HEAP_MAX_SIZE or len(heaps) >= MAX_HEAPS:
            raise HeapError(f"heap at {heap:#x} does not belong to arena {arena:#x} (heap_info is corrupt)")
        oldest = heap + HEAP_INFO_SIZE == arena
        first = _align(arena + ARENA_SIZE) if oldest else heap + HEAP_INFO_SIZE
        heaps.append(ArenaHeap(heap, heap + size, first))
        if oldest:
            return heaps
        if prev % HEAP_MAX_SIZE:
            raise HeapError(f"heap at {heap:#x} links to a misaligned heap {prev:#x}")
        heap = prev


def arena_chunks(read: Reader, arena: int) -> list[Chunk]:
    """Every chunk of a non-main arena's heaps; the top chunk (not in use) ends the newest."""
    top = _u64(read, arena + ARENA_TOP)
    top_size = _u64(read, top + SIZE_SZ) & ~FLAG_BITS
    chunks: list[Chunk] = []
    for i, heap in enumerate(arena_heaps(read, arena)):
        if i == 0:
            if not heap.first_chunk <= top < top + top_size <= heap.end:
                raise HeapError(f"arena {arena:#x} has its top chunk {top:#x} outside its heap")
            chunks += main_heap_chunks(read, heap.first_chunk, top + top_size)
        else:
            chunks += fenced_chunks(read, heap.first_chunk, heap.end)
    return chunks


def fenced_chunks(read: Reader, start: int, end: int) -> list[Chunk]:
    """Chunks of a full heap, up to the fencepost (a chunk smaller than MINSIZE) glibc left
    where its top chunk was when the arena moved on to a new heap."""
    data = read(start, end - start)
    chunks: list[Chunk] = []
    append, u64 = chunks.append, _U64
    pos = start
    while pos + 2 * SIZE_SZ <= end and len(chunks) < MAX_CHUNKS:
        size = u64(data, pos - start + SIZE_SZ)[0] & ~FLAG_BITS
        if size < MINSIZE:
            return chunks
        if size % MALLOC_ALIGNMENT or pos + size + 2 * SIZE_SZ > end:
            raise HeapError(f"heap chunk at {pos:#x} has an impossible size {size:#x}")
        append(Chunk(pos, size, bool(u64(data, pos - start + size + SIZE_SZ)[0] & PREV_INUSE)))
        pos += size
    raise HeapError(f"heap {start:#x}-{end:#x} has no fencepost")


def thread_tcaches(read: Reader, thread_pointers: Iterable[int], candidates: Iterable[Chunk],
                   tls_below: int = PAGE, tls_above: int = 0) -> set[int]:
    """Which of the candidate chunks are threads' tcache_perthread_structs: those a thread's
    `tcache` TLS variable points at.  glibc's static TLS lies just below the thread pointer
    on x86-64 (TLS variant II) and just above it on AArch64 (variant I), so each thread's
    window [tp - tls_below, tp + tls_above) is read."""
    users = {c.user: c.address for c in candidates}
    found: set[int] = set()
    for tp in thread_pointers:
        if tp < tls_below or not users:
            continue
        for (word,) in struct.iter_unpack("<Q", read(tp - tls_below, tls_below + tls_above)):
            if word in users:
                found.add(users[word])
    return found


def _align(address: int) -> int:
    return (address + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1)


def _u64(read: Reader, address: int) -> int:
    return struct.unpack("<Q", read(address, 8))[0]


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
