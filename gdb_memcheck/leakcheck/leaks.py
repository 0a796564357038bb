"""Leak classification as valgrind's memcheck defines it (mc_leakcheck.c), from outside:
scan the roots (readable memory outside heap blocks, live stacks above each thread's
stack pointer, saved registers) for pointers to block starts and interiors, follow
reached blocks, then group the rest into cliques, each led by one definitely lost block
that carries the bytes indirectly lost through it."""
from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from itertools import accumulate, repeat
from operator import add, attrgetter
from typing import Callable, Iterable

Reader = Callable[[int, int], bytes]
_ADDRESS, _SIZE, _INDIRECT = attrgetter("address"), attrgetter("size"), attrgetter("indirect")


class Kind(Enum):
    """valgrind's leak kinds, in report order."""

    DEFINITE = "definitely lost"
    INDIRECT = "indirectly lost"
    POSSIBLE = "possibly lost"
    REACHABLE = "still reachable"

    __hash__ = object.__hash__      # members are singletons; Enum's own hash is Python code run per block


@dataclass
class Block:
    """A live heap block: user address and usable size; filled in by the scan."""

    address: int
    size: int
    kind: Kind | None = None
    start_pointed: bool = False
    interior_pointed: bool = False
    stack: tuple = ()
    origin: str = "own"
    via: str = ""
    indirect: int = 0               # definitely lost: bytes of the blocks lost through it


@dataclass(frozen=True)
class Region:
    """Memory to scan for pointers: [start, end)."""

    start: int
    end: int
    what: str


Link = Callable[[Block, int], bool]


class BlockIndex:
    """Blocks sorted by address; finds the block a pointer falls in.  `link(block, pointer)`,
    when given, says which interior pointers count as start pointers (the kernel's embedded
    list nodes and tagged pointers)."""

    def __init__(self, blocks: list[Block], link: Link | None = None) -> None:
        self.link = link
        self.blocks = sorted(blocks, key=_ADDRESS)
        self.starts = list(map(_ADDRESS, self.blocks))
        self.sizes = list(map(_SIZE, self.blocks))
        self.ends = [start + (size or 1) for start, size in zip(self.starts, self.sizes)]   # a 0-byte block has its start
        self.lo = self.starts[0] if self.blocks else 0
        self.hi = max(map(add, self.starts, self.sizes), default=0)
        self._high_halves = _high_halves_pattern(self.starts, self.sizes)

    def find(self, value: int) -> tuple[int, bool] | None:
        """(block index, is start pointer) for a word that points into a block."""
        i = bisect_right(self.starts, value) - 1
        if i >= 0 and value < self.ends[i]:
            start = self.starts[i]
            return i, value == start or (self.link is not None and self.link(self.blocks[i], value))
        return None

    def pointers_in(self, data: bytes) -> list[tuple[int, bool]]:
        """Blocks pointed to by the aligned words of `data`."""
        return [found for _, w in self.words_in_range(data) if (found := self.find(w)) is not None]

    def words_in_range(self, data: bytes) -> list[tuple[int, int]]:
        """(word number, value) of the aligned words of `data` between the lowest block start
        and the highest block end.  In a large buffer, the blocks' high halves are searched for
        at C speed (a pointer is rare among the words): a match at a word's high half is a
        candidate, and one elsewhere can only hide, by overlapping it, the next high half."""
        n = len(data) // 8
        words = memoryview(data)[:8 * n].cast("B").cast("Q")
        lo, hi = self.lo, self.hi
        if self._high_halves is None or n < _SEARCH_FROM_WORDS:
            return [(k, w) for k, w in enumerate(words) if lo <= w < hi]
        hits = []
        for m in self._high_halves.finditer(data, 0, 8 * n):
            p = m.start()
            k = (p + 3) >> 3                    # the word whose high half starts here or next after p
            if (p & 7 == 4 or 8 * k < p) and lo <= words[k] < hi:
                hits.append((k, words[k]))
        return hits

    def edges(self, read: Reader, spans: bool) -> Edges:
        """Every pointer from a block's words into a block, each block read once; with `spans`,
        neighbouring blocks are read together (a read of a span must equal its blocks' reads)."""
        out = Edges()
        if spans:
            i = 0
            while i < len(self.blocks):
                i = self._span_edges(read, i, out)
        else:
            for i, b in enumerate(self.blocks):
                for j, is_start in self.pointers_in(read(b.address, b.size)):
                    out.add(i, j, is_start)
        return out

    def _span_edges(self, read: Reader, first: int, out: Edges) -> int:
        """Edges of the blocks of the span starting at block `first`; returns the block after it."""
        starts, sizes, ends = self.starts, self.sizes, self.ends
        base, end, last = starts[first], starts[first] + sizes[first], first + 1
        while last < len(starts) and end <= starts[last] <= end + _SPAN_GAP and (starts[last] - base) % 8 == 0 \
                and starts[last] + sizes[last] - base <= _SPAN_MAX:
            end = starts[last] + sizes[last]
            last += 1
        blocks, link = self.blocks, self.link
        add_source, add_target = out.sources.append, out.targets.append     # Edges.add, inline
        for k, w in self.words_in_range(read(base, end - base)):
            at = base + 8 * k
            i = bisect_right(starts, at, first, last) - 1
            if at + 8 > starts[i] + sizes[i]:           # not a whole word of block i, as its own read gives
                continue
            j = bisect_right(starts, w) - 1             # self.find, inline: this runs once a pointer
            if j >= 0 and w < ends[j]:
                add_source(i)
                add_target(2 * j + (w == starts[j] or (link is not None and link(blocks[j], w))))
        return last


_SEARCH_FROM_WORDS = 64          # below this, a plain loop over the words is quicker
_SPAN_GAP = 64 << 10             # blocks this close are read as one span...
_SPAN_MAX = 8 << 20              # ...of at most this many bytes
_MAX_HIGH_HALVES = 16


def _high_halves_pattern(starts: list[int], sizes: list[int]) -> re.Pattern | None:
    """A search for the high 32 bits of every address inside a block, when they are few and not
    0 (a 0 half is every small integer); None sends the scan through every word."""
    halves: set[int] = set()
    i = 0
    while i < len(starts):
        half = starts[i] >> 32
        j = bisect_left(starts, (half + 1) << 32, i)
        top = (max(map(add, starts[i:j], sizes[i:j])) - 1) >> 32
        if top - half >= _MAX_HIGH_HALVES:
            return None
        halves.update(range(half, top + 1))
        if len(halves) > _MAX_HIGH_HALVES:
            return None
        i = j
    if not halves or 0 in halves or sys.byteorder != "little":
        return None
    return re.compile(b"|".join(re.escape(h.to_bytes(4, "little")) for h in sorted(halves)))


class Edges:
    """Pointers from blocks into blocks, added in order of the block they are in."""

    def __init__(self) -> None:
        self.sources = array("q")
        self.targets = array("q")           # block index * 2 + 1 for a start pointer
        self._firsts: list[int] = []

    def add(self, source: int, target: int, is_start: bool) -> None:
        self.sources.append(source)
        self.targets.append(2 * target + is_start)

    def firsts(self, blocks: int) -> list[int]:
        """Where each of `blocks` blocks' pointers begin in `targets` (and where the last's end):
        block i's pointers are targets[firsts[i]:firsts[i + 1]], block index * 2 + 1 for a
        start pointer (+ 0 for an interior one)."""
        if len(self._firsts) != blocks + 1:
            counts = Counter(self.sources)
            self._firsts = [0, *accumulate(map(counts.get, range(blocks), repeat(0)))]
        return self._firsts


def classify(blocks: list[Block], read: Reader, roots: Iterable[Region], root_words: Iterable[int],
             link: Link | None = None, spans: bool = False) -> BlockIndex:
    """Give every block its Kind, and every definitely lost block the bytes indirectly lost
    through it.  Every block is read once for its pointers (with `spans`, neighbours together:
    see BlockIndex.edges); reached blocks are followed first, then the unreached ones."""
    index = BlockIndex(blocks, link)
    reached: list[int] = []
    for region in roots:
        for i, is_start in index.pointers_in(read(region.start, region.end - region.start)):
            _mark(index.blocks[i], is_start, reached, i)
    for w in root_words:
        found = index.find(w)
        if found is not None:
            _mark(index.blocks[found[0]], found[1], reached, found[0])
    edges = index.edges(read, spans)
    _propagate(index, edges, reached)
    for b in index.blocks:
        if b.start_pointed or b.interior_pointed:
            b.kind = Kind.REACHABLE if b.start_pointed else Kind.POSSIBLE
    _lost(index, edges)
    return index


def _mark(block: Block, is_start: bool, work: list[int], i: int) -> None:
    if is_start and not block.start_pointed:
        block.start_pointed = True
        work.append(i)
    elif not is_start and not (block.interior_pointed or block.start_pointed):
        block.interior_pointed = True
        work.append(i)


def _propagate(index: BlockIndex, edges: Edges, work: list[int]) -> None:
    """Blocks reached from start-pointed blocks keep their pointer kind; from possibly
    reached blocks they are at best possibly reached."""
    blocks, targets, firsts = index.blocks, edges.targets, edges.firsts(len(index.blocks))
    scanned_as: list[bool | None] = [None] * len(blocks)
    while work:
        i = work.pop()
        strong = blocks[i].start_pointed
        if scanned_as[i] is True or scanned_as[i] == strong:
            continue
        scanned_as[i] = strong
        for t in targets[firsts[i]:firsts[i + 1]]:
            j = t >> 1
            block = blocks[j]               # _mark, inline: this runs once a pointer
            if t & 1 and strong:
                if not block.start_pointed:
                    block.start_pointed = True
                    work.append(j)
            elif not (block.interior_pointed or block.start_pointed):
                block.interior_pointed = True
                work.append(j)


def _lost(index: BlockIndex, edges: Edges) -> None:
    """Group the unreached blocks into cliques as valgrind does.  In address order, each
    block no clique has taken yet leads a new one: definitely lost, it takes every untaken
    block it reaches, and they become indirectly lost.  A leader of an earlier clique taken
    this way becomes indirectly lost too, and its clique's bytes move to the new leader; a
    block already taken by another clique stops the walk there.  So a cycle that nothing
    else reaches is led by its lowest block, and where lost structures point into each
    other, which leaders survive can depend on their order in memory, as in valgrind."""
    blocks = index.blocks
    lost = [i for i, b in enumerate(blocks) if b.kind is None]
    targets, firsts = edges.targets, edges.firsts(len(blocks))
    unreached = {i: [t >> 1 for t in targets[firsts[i]:firsts[i + 1]] if blocks[t >> 1].kind is None] for i in lost}
    for i in lost:
        if blocks[i].kind is None:
            blocks[i].kind = Kind.DEFINITE
            _gather_clique(blocks, unreached, i)


def _gather_clique(blocks: list[Block], edges: dict[int, list[int]], leader: int) -> None:
    """Take into `leader`'s clique every block it reaches that is still untaken (never
    reached, or leading a clique of its own), adding their bytes to its indirect total."""
    head = blocks[leader]
    work = [leader]
    while work:
        for j in edges[work.pop()]:
            b = blocks[j]
            if j != leader and b.kind in (None, Kind.DEFINITE):
                head.indirect += b.size + b.indirect
                b.kind, b.indirect = Kind.INDIRECT, 0
                work.append(j)


@dataclass
class LeakReport:
    """Classified blocks of one process, from either source, ready for the views."""

    pid: int
    comm: str
    mode: str                       # "scan" or "tracking"
    blocks: list[Block]
    header: str                     # what was walked or tracked, in one line
    image: str = ""
    frames: dict = field(default_factory=dict)        # pc -> stackframes.Frame
    bad_frees: list = field(default_factory=list)     # alloctrack.BadFree

    _records: list[LossRecord] | None = field(default=None, repr=False, compare=False)

    def reported(self, all_origins: bool) -> list[Block]:
        """The blocks a report covers: forgiven ones (inherited, transition, preexisting) only with --all."""
        return [b for b in self.blocks if all_origins or b.origin == "own"]

    def records(self, all_origins: bool) -> list[LossRecord]:
        """loss_records of every kind over `reported(all_origins)`, grouped once a report (the
        delta view and the JSON both ask): records keep origins apart, so the records without
        forgiven blocks are the records of own blocks."""
        if self._records is None:
            self._records = loss_records(self.reported(True))
        return [r for r in self._records if all_origins or r.origin == "own"]

    def summary(self, all_origins: bool) -> dict[Kind, tuple[int, int]]:
        """summary(reported(all_origins)), added up from the records: they hold every classified block once."""
        out = {k: (0, 0) for k in Kind}
        for r in self.records(all_origins):
            total, count = out[r.kind]
            out[r.kind] = (total + r.bytes, count + len(r.blocks))
        return out


@dataclass(frozen=True)
class LossRecord:
    """Blocks of one kind with one allocation stack (or size, when stacks are unknown)."""

    kind: Kind
    blocks: tuple[Block, ...]
    stack: tuple
    origin: str = "own"

    @cached_property
    def bytes(self) -> int:
        """The record's own bytes: valgrind's "direct" bytes (summed once: a record may hold 10^6 blocks)."""
        return sum(map(_SIZE, self.blocks))

    @cached_property
    def indirect_bytes(self) -> int:
        """Bytes lost through the record's definitely lost blocks (0 for other kinds)."""
        return sum(map(_INDIRECT, self.blocks))

    @cached_property
    def total_bytes(self) -> int:
        return self.bytes + self.indirect_bytes


# valgrind's order for loss records of equal size (its Reachedness enum)
_RECORD_RANK = {Kind.REACHABLE: 0, Kind.POSSIBLE: 1, Kind.INDIRECT: 2, Kind.DEFINITE: 3}


def loss_records(blocks: Iterable[Block]) -> list[LossRecord]:
    """Group the classified blocks by (kind, stack, and size when no stack is known), ordered
    as valgrind orders them: by total bytes (direct and indirect), smallest first, then by
    kind (still reachable first, definitely lost last), then by block count.  Every kind is
    grouped, shown or not: valgrind numbers the records it shows among all of them (a hidden
    still-reachable record still counts, as in "loss record 2 of 4")."""
    groups: dict[tuple, list[Block]] = {}
    for b in blocks:
        if b.kind is not None:
            key = (b.kind, b.stack, None if b.stack else b.size, b.origin)
            group = groups.get(key)
            if group is None:
                groups[key] = [b]
            else:
                group.append(b)
    records = [LossRecord(k[0], tuple(v), k[1], k[3]) for k, v in groups.items()]
    return sorted(records, key=lambda r: (r.total_bytes, _RECORD_RANK[r.kind], len(r.blocks)))


def summary(blocks: Iterable[Block]) -> dict[Kind, tuple[int, int]]:
    """Kind -> (bytes, blocks), as in valgrind's LEAK SUMMARY."""
    total, count = dict.fromkeys(Kind, 0), dict.fromkeys(Kind, 0)
    for b in blocks:
        if b.kind is not None:
            total[b.kind] += b.size
            count[b.kind] += 1
    return {k: (total[k], count[k]) for k in Kind}
