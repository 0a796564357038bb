"""x86-64 paging: the CPU's paging mode, and translation of one virtual address
by walking 4- or 5-level page tables in guest-physical memory.

Intel SDM vol. 3A ch. 4.5: each level indexes 9 bits of the address; bit 7 (PS)
in a PDPT or PD entry maps a 1 GiB or 2 MiB page; NX is bit 63.
"""
from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from itertools import compress
from operator import sub
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Iterator, NamedTuple

from ...target import MemoryReadError, TargetError

PhysReader = Callable[[int, int], bytes]

PRESENT, WRITABLE, USER, ACCESSED, DIRTY, HUGE, GLOBAL = (1 << b for b in (0, 1, 2, 5, 6, 7, 8))
NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000
LEVEL_NAMES = {5: "PML5", 4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}
LEVEL_SHIFT = {5: 48, 4: 39, 3: 30, 2: 21, 1: 12}

CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10


class PagingMode(Enum):
    """How the CPU translates linear addresses."""

    OFF = "paging off"
    LEGACY_32 = "32-bit paging"
    PAE = "PAE paging"
    FOUR_LEVEL = "4-level paging"
    FIVE_LEVEL = "5-level paging"

    @property
    def levels(self) -> int:
        return {PagingMode.FOUR_LEVEL: 4, PagingMode.FIVE_LEVEL: 5}.get(self, 0)


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    """Decode the paging mode from control registers (SDM 3A table 4-1)."""
    if not cr0 & CR0_PG:
        return PagingMode.OFF
    if not cr4 & CR4_PAE:
        return PagingMode.LEGACY_32
    if not efer & EFER_LMA:
        return PagingMode.PAE
    return PagingMode.FIVE_LEVEL if cr4 & CR4_LA57 else PagingMode.FOUR_LEVEL


class PageWalkError(TargetError):
    """The walk stopped: not present, non-canonical, or a table that cannot be read."""

    def __init__(self, message: str, steps: list["WalkStep"]) -> None:
        super().__init__(message)
        self.steps = steps


@dataclass(frozen=True)
class WalkStep:
    """One level of a walk: the table read, the index used and the entry found."""

    level: int
    table: int
    index: int
    entry: int

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level]


@dataclass(frozen=True)
class Translation:
    """Where a virtual address lands and the entries that took it there."""

    virtual: int
    physical: int
    page_size: int
    steps: list[WalkStep] = field(default_factory=list)

    @property
    def writable(self) -> bool:
        return all(s.entry & WRITABLE for s in self.steps)

    @property
    def user(self) -> bool:
        return all(s.entry & USER for s in self.steps)

    @property
    def executable(self) -> bool:
        return not any(s.entry & NX for s in self.steps)


def is_canonical(va: int, levels: int) -> bool:
    """True when the bits above the top translated bit all copy it."""
    top = 57 if levels == 5 else 48
    high = va >> (top - 1)
    return high == 0 or high == (1 << (65 - top)) - 1


def cr3_table(cr3: int) -> int:
    """Physical address of the top-level table in CR3 (PCID and flag bits dropped)."""
    return cr3 & ADDR_MASK


def translate(read_phys: PhysReader, root: int, va: int, levels: int = 4) -> Translation:
    """Walk the tables from `root` (physical) for `va`; raise PageWalkError where it stops."""
    if levels not in (4, 5):
        raise PageWalkError(f"cannot walk {levels}-level page tables", [])
    if not is_canonical(va, levels):
        raise PageWalkError(f"{va:#x} is not a canonical {levels}-level address", [])
    steps: list[WalkStep] = []
    table = root & ADDR_MASK
    for level in range(levels, 0, -1):
        shift = LEVEL_SHIFT[level]
        index = (va >> shift) & 0x1FF
        entry = _read_entry(read_phys, table, index, level, steps)
        steps.append(WalkStep(level, table, index, entry))
        if not entry & PRESENT:
            raise PageWalkError(f"{va:#x}: {LEVEL_NAMES[level]} entry {index} not present", steps)
        if level == 1 or (level in (2, 3) and entry & HUGE):
            size = 1 << shift
            base = entry & ADDR_MASK & ~(size - 1)
            return Translation(va, base | (va & (size - 1)), size, steps)
        table = entry & ADDR_MASK
    raise AssertionError("unreachable: level 1 always returns")


def _read_entry(read_phys: PhysReader, table: int, index: int, level: int, steps: list[WalkStep]) -> int:
    try:
        return struct.unpack("<Q", read_phys(table + 8 * index, 8))[0]
    except MemoryReadError as e:
        raise PageWalkError(f"{LEVEL_NAMES[level]} table at {table:#x} cannot be read ({e})", steps) from e


SPECIAL = 1 << 9            # _PAGE_SPECIAL: no struct page behind it (zero page, PFN maps)
MAX_TABLES = 1 << 18


class Leaf(NamedTuple):
    """Mapped memory: one page (4 KiB, 2 MiB or 1 GiB), or with merge_runs a run of
    4 KiB pages alike and physically contiguous; permissions combined over every level."""

    virtual: int
    physical: int
    size: int
    page_size: int
    entry: int
    writable: bool
    user: bool
    executable: bool


def sign_extend(va: int, levels: int) -> int:
    """The canonical form of a virtual address built from table indices."""
    top = 57 if levels == 5 else 48
    if va & (1 << (top - 1)):
        va |= ((1 << 64) - 1) ^ ((1 << top) - 1)
    return va


@dataclass(frozen=True)
class _Subtree:
    """A table as last decoded: its bytes, the tables it led to, and the leaves of them all."""

    content: bytes
    children: tuple[tuple, ...]          # the child tables' keys, in walk order
    leaves: tuple[Leaf, ...]


class LeafMemo:
    """Decoded page-table subtrees, remembered with every table's bytes.  A later walk still
    reads each table, but a table whose bytes, and whose children's bytes, are unchanged
    gives its leaves without being decoded again: the kernel half is shared by every
    process and seldom changes.  Checked by content, so it stays valid across stops."""

    def __init__(self, max_tables: int = 8192) -> None:
        self.max_tables = max_tables
        self.subtrees: dict[tuple, _Subtree] = {}
        self.hits = self.misses = 0

    def put(self, key: tuple, subtree: _Subtree) -> None:
        if len(self.subtrees) >= self.max_tables:
            self.subtrees.clear()
        self.subtrees[key] = subtree


def leaves(read_phys: PhysReader, root: int, levels: int, start: int = 0, end: int = 1 << 64,
           max_tables: int = MAX_TABLES, merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
    """Every present leaf overlapping [start, end), in address order.

    A whole table is read at once (512 entries) and only the indices that overlap the
    range are looked at.  merge_runs joins neighbouring entries of one page size that
    differ only in address (and accessed/dirty bits) into one leaf: the views want
    ranges, RSS wants pages.  A walk of corrupt tables stops with PageWalkError after `max_tables`
    tables, having yielded what it found before.  `memo` skips decoding subtrees whose
    tables it has seen with the same bytes (every table is still read).
    """
    walk = _Walk(read_phys, levels, _to_raw(start, levels), _to_raw(end, levels), max_tables, merge_runs, memo)
    found: list[Leaf] = []
    try:
        walk.table(root & ADDR_MASK, levels, 0, WRITABLE | USER, False, found)
    except PageWalkError:
        yield from found
        raise
    yield from found


def _to_raw(va: int, levels: int) -> int:
    """Position of `va` in the unextended 48/57-bit space (order-preserving; the hole
    between the halves and anything past the top clamp to the nearest edge)."""
    top = 57 if levels == 5 else 48
    half, span = 1 << (top - 1), 1 << top
    if va <= half:
        return va
    upper_start = (1 << 64) - half
    if va < upper_start:
        return half
    return min(va - ((1 << 64) - span), span)


@dataclass
class _Walk:
    """One bounded walk over [lo, hi) in raw (unextended) addresses."""

    read_phys: PhysReader
    levels: int
    lo: int
    hi: int
    limit: int
    merge_runs: bool
    memo: LeafMemo | None = None

    def __post_init__(self) -> None:
        self.budget = self.limit

    def table(self, table: int, level: int, base: int, perms: int, nx: bool, out: list[Leaf]) -> tuple:
        """Append the leaves under one table to `out`; return the table's memo key."""
        content = self._read(table, level)
        key = (table, level, base, perms, nx, self.lo, self.hi, self.merge_runs, self.levels)
        if self.memo is not None:
            known = self._recall(key, content)
            if known is not None:
                out.extend(known)
                return key
        start = len(out)
        children = self._decode(content, level, base, perms, nx, out)
        if self.memo is not None:
            self.memo.put(key, _Subtree(content, tuple(children), tuple(out[start:])))
        return key

    def _read(self, table: int, level: int) -> bytes:
        self.budget -= 1
        if self.budget < 0:
            raise PageWalkError(f"page-table walk visited more than {self.limit} tables (corrupt tables?)", [])
        try:
            return self.read_phys(table, 4096)
        except MemoryReadError as e:
            raise PageWalkError(f"{LEVEL_NAMES[level]} table at {table:#x} cannot be read ({e})", []) from e

    def _recall(self, key: tuple, content: bytes) -> tuple[Leaf, ...] | None:
        """The memo's leaves for a table, if its bytes and all its descendants' are unchanged."""
        node = self.memo.subtrees.get(key)
        if node is None or node.content != content:
            self.memo.misses += 1
            return None
        for child in node.children:
            if self._recall(child, self._read(child[0], child[1])) is None:
                return None
        self.memo.hits += 1
        return node.leaves

    def _decode(self, content: bytes, level: int, base: int, perms: int, nx: bool, out: list[Leaf]) -> list[tuple]:
        """Decode one table: leaves for its pages, a walk of each lower table; returns their keys."""
        shift = LEVEL_SHIFT[level]
        first = max(0, (self.lo - base) >> shift) if self.lo > base else 0
        last = min(511, (self.hi - 1 - base) >> shift)
        entries = struct.unpack("<512Q", content)
        present = list(_present(content, first, last))
        if level == 1:
            self._page_table(entries, present, base, perms, nx, out)
            return []
        span = 1 << shift
        breaks: list[int] | None = None      # computed on the first huge entry, if any
        children = []
        at = 0
        while at < len(present):
            index = present[at]
            entry = entries[index]
            raw = base | (index << shift)
            eff, enx = perms & entry, nx or bool(entry & NX)
            if level in (2, 3) and entry & HUGE:
                if self.merge_runs and breaks is None:
                    breaks = _step_breaks(entries, span, index, present[-1])
                run = _run_end(entries, breaks, index, present[-1], span) if self.merge_runs else index + 1
                at = bisect_left(present, run, at + 1)          # past the run, without visiting it
                out.append(Leaf(sign_extend(raw, self.levels), entry & ADDR_MASK & ~(span - 1), (run - index) * span,
                                span, entry, bool(eff & WRITABLE), bool(eff & USER), not enx))
            else:
                at += 1
                children.append(self.table(entry & ADDR_MASK, level - 1, raw, eff, enx, out))
        return children

    def _page_table(self, entries: tuple, present: list[int], base: int, perms: int, nx: bool,
                    out: list[Leaf]) -> None:
        breaks: list[int] | None = None
        at = 0
        while at < len(present):
            index = present[at]
            entry = entries[index]
            run = index + 1
            if self.merge_runs:
                if breaks is None:
                    breaks = _step_breaks(entries, 4096, index, present[-1])
                run = _run_end(entries, breaks, index, present[-1], 4096)
            at = bisect_left(present, run, at + 1)
            eff = perms & entry
            out.append(Leaf(sign_extend(base | (index << 12), self.levels), entry & ADDR_MASK, (run - index) << 12,
                            4096, entry, bool(eff & WRITABLE), bool(eff & USER), not (nx or entry & NX)))


_RUN_IGNORED = ACCESSED | DIRTY
_RUN_MASK = ~_RUN_IGNORED & ((1 << 64) - 1)


def _step_breaks(entries: tuple, step: int, first: int, last: int) -> list[int]:
    """Indices j in (first, last] where entry j is not exactly `step` past entry j-1, at C
    speed.  A true run break is among them; accessed/dirty bits can make a false one."""
    window = entries[first:last + 1]
    return list(compress(range(first + 1, last + 1), map(step.__ne__, map(sub, window[1:], window[:-1]))))


def _run_end(entries: tuple, breaks: list[int], index: int, last: int, step: int) -> int:
    """One past the last entry continuing entries[index] page by page (same flags
    except accessed/dirty, next physical page of size `step`), bounded by `last`."""
    k = bisect_right(breaks, index)
    while k < len(breaks) and breaks[k] <= last:
        j = breaks[k]
        if (entries[j] & _RUN_MASK) - (entries[j - 1] & _RUN_MASK) != step:
            return j
        k += 1
    return last + 1


_BIT0 = bytes(i & 1 for i in range(256))


def _present(raw_table: bytes, first: int, last: int) -> Iterator[int]:
    """Indices in [first, last] of present entries, picked at C speed: bit 0 of each entry's first byte."""
    return compress(range(first, last + 1), raw_table[8 * first:8 * (last + 1):8].translate(_BIT0))


@dataclass(frozen=True)
class Range:
    """Leaves merged while contiguous and alike: what `memcheck pagetable` prints a line for."""

    virtual: int
    physical: int
    size: int
    page_size: int
    writable: bool
    user: bool
    executable: bool

    @property
    def end(self) -> int:
        return self.virtual + self.size

    def perms(self) -> str:
        return ("u" if self.user else "k") + "r" + ("w" if self.writable else "-") + ("x" if self.executable else "-")


def coalesce(items: Iterable[Leaf], physical: bool = True) -> list[Range]:
    """Merge neighbours with the same permissions (and, if `physical`, the same page
    size and contiguous physical addresses)."""
    out: list[Range] = []
    cur: list = []
    for leaf in items:
        if cur and cur[0] + cur[2] == leaf.virtual and cur[4:] == [leaf.writable, leaf.user, leaf.executable] \
                and (not physical or (cur[3] == leaf.page_size and cur[1] + cur[2] == leaf.physical)):
            cur[2] += leaf.size
            continue
        if cur:
            out.append(Range(*cur))
        cur = [leaf.virtual, leaf.physical, leaf.size, leaf.page_size, leaf.writable, leaf.user, leaf.executable]
    if cur:
        out.append(Range(*cur))
    return out
