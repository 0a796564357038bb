"""Radix page tables of 512 eight-byte entries a level, walked in guest-physical memory,
whatever the CPU: what differs between architectures (which entry is a leaf, where the
address bits are, how permissions combine down the levels, how the virtual address is
laid out) is an EntryFormat.  x86-64 and AArch64 (4 KiB granule) both fit this shape:
level 1 maps 4 KiB, level 2 2 MiB, level 3 1 GiB, each level indexing 9 bits."""
from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress
from operator import sub
from typing import Callable, Iterable, Iterator, NamedTuple, Protocol

from ..target import MemoryReadError, TargetError

PhysReader = Callable[[int, int], bytes]
LEVEL_SHIFT = {5: 48, 4: 39, 3: 30, 2: 21, 1: 12}
MAX_TABLES = 1 << 18
Perms = tuple           # an EntryFormat's permission state, carried down the levels


class EntryFormat(Protocol):
    """What an architecture's page-table entries mean."""

    depths: tuple[int, ...]        # how many levels a walk can have
    names: dict[int, str]          # level -> the architecture's name of that table
    address_mask: int              # the output address bits of an entry
    bit0_present: bool             # every entry with bit 0 set is present (present() need not be asked)
    run_ignored: int               # bits that may differ within a run of alike pages (accessed, dirty)
    top_perms: Perms               # the permission state above the root table

    def present(self, entry: int, level: int) -> bool:
        """Whether an entry whose bit 0 is set maps anything (some encodings are reserved)."""

    def leaf(self, entry: int, level: int) -> bool:
        """Whether a present entry maps memory itself (a page or a block) rather than a table."""

    def descend(self, perms: Perms, entry: int) -> Perms:
        """The permission state below a table entry."""

    def access(self, perms: Perms, entry: int) -> tuple[bool, bool, bool]:
        """(writable, user, executable) of a leaf entry under `perms`."""

    def flags(self, entry: int, level: int) -> str:
        """The entry's bits as the architecture's manuals name them, e.g. "P W U A D NX"."""

    def to_virtual(self, raw: int, levels: int) -> int:
        """The virtual address of an offset into the space the root table maps."""

    def to_raw(self, va: int, levels: int) -> int:
        """The offset of `va` into that space, clamped to its edges (order-preserving)."""

    def reject(self, va: int, levels: int) -> str | None:
        """Why `va` cannot be translated through this root, or None."""


class PageWalkError(TargetError):
    """The walk stopped: not present, outside the translated space, or a table that cannot be read."""

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
    name: str = ""
    flags: str = ""


@dataclass(frozen=True)
class Translation:
    """Where a virtual address lands, the entries that took it there, and its access."""

    virtual: int
    physical: int
    page_size: int
    steps: list[WalkStep] = field(default_factory=list)
    writable: bool = False
    user: bool = False
    executable: bool = False


def translate(fmt: EntryFormat, read_phys: PhysReader, root: int, va: int, levels: int) -> Translation:
    """Walk the tables from `root` (physical) for `va`; raise PageWalkError where it stops."""
    if levels not in fmt.depths:
        raise PageWalkError(f"cannot walk {levels}-level page tables", [])
    why = fmt.reject(va, levels)
    if why:
        raise PageWalkError(why, [])
    steps: list[WalkStep] = []
    table, perms = root & fmt.address_mask, fmt.top_perms
    for level in range(levels, 0, -1):
        shift = LEVEL_SHIFT[level]
        index = (va >> shift) & 0x1FF
        entry = _read_entry(fmt, read_phys, table, index, level, steps)
        steps.append(WalkStep(level, table, index, entry, fmt.names[level], fmt.flags(entry, level)))
        if not (entry & 1 and fmt.present(entry, level)):
            raise PageWalkError(f"{va:#x}: {fmt.names[level]} entry {index} not present", steps)
        if fmt.leaf(entry, level):
            size = 1 << shift
            base = entry & fmt.address_mask & ~(size - 1)
            writable, user, executable = fmt.access(perms, entry)
            return Translation(va, base | (va & (size - 1)), size, steps, writable, user, executable)
        if level == 1:
            raise PageWalkError(f"{va:#x}: {fmt.names[level]} entry {index} is not a page", steps)
        perms = fmt.descend(perms, entry)
        table = entry & fmt.address_mask
    raise AssertionError("unreachable: level 1 returns or raises")


def _read_entry(fmt: EntryFormat, read_phys: PhysReader, table: int, index: int, level: int,
                steps: list[WalkStep]) -> int:
    try:
        return struct.unpack("<Q", read_phys(table + 8 * index, 8))[0]
    except MemoryReadError as e:
        raise PageWalkError(f"{fmt.names[level]} table at {table:#x} cannot be read ({e})", steps) from e


class Leaf(NamedTuple):
    """Mapped memory: one page (4 KiB, 2 MiB or 1 GiB), or with merge_runs a run of
    pages alike and physically contiguous; permissions combined over every level."""

    virtual: int
    physical: int
    size: int
    page_size: int
    entry: int
    writable: bool
    user: bool
    executable: bool


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


def leaves(fmt: EntryFormat, read_phys: PhysReader, root: int, levels: int, start: int = 0, end: int = 1 << 64,
           max_tables: int = MAX_TABLES, merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
    """Every present leaf overlapping [start, end), in address order.

    A whole table is read at once (512 entries) and only the indices that overlap the
    range are looked at.  merge_runs joins neighbouring entries of one page size that
    differ only in address (and the format's run-ignored bits) into one leaf: the views
    want ranges, RSS wants pages.  A walk of corrupt tables stops with PageWalkError after
    `max_tables` tables, having yielded what it found before.  `memo` skips decoding
    subtrees whose tables it has seen with the same bytes (every table is still read).
    """
    walk = _Walk(fmt, read_phys, levels, fmt.to_raw(start, levels), fmt.to_raw(end, levels), max_tables,
                 merge_runs, memo)
    found: list[Leaf] = []
    try:
        walk.table(root & fmt.address_mask, levels, 0, fmt.top_perms, found)
    except PageWalkError:
        yield from found
        raise
    yield from found


@dataclass
class _Walk:
    """One bounded walk over [lo, hi) in raw addresses (offsets into the root's space)."""

    fmt: EntryFormat
    read_phys: PhysReader
    levels: int
    lo: int
    hi: int
    limit: int
    merge_runs: bool
    memo: LeafMemo | None = None

    def __post_init__(self) -> None:
        self.budget = self.limit
        self.run_mask = ~self.fmt.run_ignored & ((1 << 64) - 1)

    def table(self, table: int, level: int, base: int, perms: Perms, out: list[Leaf]) -> tuple:
        """Append the leaves under one table to `out`; return the table's memo key."""
        content = self._read(table, level)
        key = (table, level, base, perms, self.lo, self.hi, self.merge_runs, self.levels, id(self.fmt))
        if self.memo is not None:
            known = self._recall(key, content)
            if known is not None:
                out.extend(known)
                return key
        start = len(out)
        children = self._decode(content, level, base, perms, out)
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
            raise PageWalkError(f"{self.fmt.names[level]} table at {table:#x} cannot be read ({e})", []) from e

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

    def _decode(self, content: bytes, level: int, base: int, perms: Perms, out: list[Leaf]) -> list[tuple]:
        """Decode one table: leaves for its pages and blocks, a walk of each lower table;
        returns the lower tables' keys."""
        fmt, shift = self.fmt, LEVEL_SHIFT[level]
        first = max(0, (self.lo - base) >> shift) if self.lo > base else 0
        last = min(511, (self.hi - 1 - base) >> shift)
        entries = struct.unpack("<512Q", content)
        present = list(_present(content, first, last))
        if not fmt.bit0_present:
            present = [i for i in present if fmt.present(entries[i], level)]
        span = 1 << shift
        breaks: list[int] | None = None      # computed on the first leaf, if any
        children = []
        at = 0
        while at < len(present):
            index = present[at]
            entry = entries[index]
            raw = base | (index << shift)
            if fmt.leaf(entry, level):
                run = index + 1
                if self.merge_runs:
                    if breaks is None:
                        breaks = _step_breaks(entries, span, index, present[-1])
                    run = _run_end(entries, breaks, index, present[-1], span, self.run_mask)
                at = bisect_left(present, run, at + 1)          # past the run, without visiting it
                writable, user, executable = fmt.access(perms, entry)
                out.append(Leaf(fmt.to_virtual(raw, self.levels), entry & fmt.address_mask & ~(span - 1),
                                (run - index) * span, span, entry, writable, user, executable))
            else:
                at += 1
                if level > 1:
                    children.append(self.table(entry & fmt.address_mask, level - 1, raw,
                                               fmt.descend(perms, entry), out))
        return children


def _step_breaks(entries: tuple, step: int, first: int, last: int) -> list[int]:
    """Indices j in (first, last] where entry j is not exactly `step` past entry j-1, at C
    speed.  A true run break is among them; ignored bits can make a false one."""
    window = entries[first:last + 1]
    return list(compress(range(first + 1, last + 1), map(step.__ne__, map(sub, window[1:], window[:-1]))))


def _run_end(entries: tuple, breaks: list[int], index: int, last: int, step: int, mask: int) -> int:
    """One past the last entry continuing entries[index] page by page (same bits under
    `mask`, next physical page of size `step`), bounded by `last`."""
    k = bisect_right(breaks, index)
    while k < len(breaks) and breaks[k] <= last:
        j = breaks[k]
        if (entries[j] & mask) - (entries[j - 1] & mask) != step:
            return j
        k += 1
    return last + 1


_BIT0 = bytes(i & 1 for i in range(256))


def _present(raw_table: bytes, first: int, last: int) -> Iterator[int]:
    """Indices in [first, last] of entries with bit 0 set, picked at C speed from each entry's first byte."""
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
