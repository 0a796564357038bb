"""Leak classification as valgrind's memcheck defines it (mc_leakcheck.c), from outside:
scan the roots (readable memory outside heap blocks, live stacks above each thread's
stack pointer, saved registers) for pointers to block starts and interiors, follow
reached blocks, then group the rest into cliques, each led by one definitely lost block
that carries the bytes indirectly lost through it."""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from operator import attrgetter
from typing import Callable, Iterable

Reader = Callable[[int, int], bytes]


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
        self.blocks = sorted(blocks, key=lambda b: b.address)
        self.starts = [b.address for b in self.blocks]
        self.lo = self.starts[0] if self.blocks else 0
        self.hi = max((b.address + b.size for b in self.blocks), default=0)

    def find(self, value: int) -> tuple[int, bool] | None:
        """(block index, is start pointer) for a word that points into a block."""
        i = bisect.bisect_right(self.starts, value) - 1
        if i >= 0:
            b = self.blocks[i]
            if value < b.address + max(b.size, 1):
                return i, value == b.address or (self.link is not None and self.link(b, value))
        return None

    def pointers_in(self, data: bytes) -> list[tuple[int, bool]]:
        """Blocks pointed to by the aligned words of `data`."""
        words = array("Q")
        words.frombytes(data[:len(data) - len(data) % 8])
        lo, hi = self.lo, self.hi
        hits = []
        for w in words:
            if lo <= w < hi:
                found = self.find(w)
                if found is not None:
                    hits.append(found)
        return hits


def classify(blocks: list[Block], read: Reader, roots: Iterable[Region], root_words: Iterable[int],
             link: Link | None = None) -> BlockIndex:
    """Give every block its Kind, and every definitely lost block the bytes indirectly lost
    through it.  Reached blocks are scanned first, then each unreached block once."""
    index = BlockIndex(blocks, link)
    reached: list[int] = []
    for region in roots:
        for i, is_start in index.pointers_in(read(region.start, region.end - region.start)):
            _mark(index.blocks[i], is_start, reached, i)
    for w in root_words:
        found = index.find(w)
        if found is not None:
            _mark(index.blocks[found[0]], found[1], reached, found[0])
    _propagate(index, read, reached)
    for b in index.blocks:
        if b.start_pointed or b.interior_pointed:
            b.kind = Kind.REACHABLE if b.start_pointed else Kind.POSSIBLE
    _lost(index, read)
    return index


def _mark(block: Block, is_start: bool, work: list[int], i: int) -> None:
    if is_start and not block.start_pointed:
        block.start_pointed = True
        work.append(i)
    elif not is_start and not (block.interior_pointed or block.start_pointed):
        block.interior_pointed = True
        work.append(i)


def _propagate(index: BlockIndex, read: Reader, work: list[int]) -> None:
    """Blocks reached from start-pointed blocks keep their pointer kind; from possibly
    reached blocks they are at best possibly reached."""
    scanned_as: dict[int, bool] = {}
    while work:
        i = work.pop()
        parent = index.blocks[i]
        strong = parent.start_pointed
        if scanned_as.get(i) is True or scanned_as.get(i) == strong:
            continue
        scanned_as[i] = strong
        for j, is_start in index.pointers_in(read(parent.address, parent.size)):
            _mark(index.blocks[j], is_start and strong, work, j)


def _lost(index: BlockIndex, read: Reader) -> None:
    """Group the unreached blocks into cliques as valgrind does.  In address order, each
    block no clique has taken yet leads a new one: definitely lost, it takes every untaken
    block it reaches, and they become indirectly lost.  A leader of an earlier clique taken
    this way becomes indirectly lost too, and its clique's bytes move to the new leader; a
    block already taken by another clique stops the walk there.  So a cycle that nothing
    else reaches is led by its lowest block, and where lost structures point into each
    other, which leaders survive can depend on their order in memory, as in valgrind."""
    blocks = index.blocks
    lost = [i for i, b in enumerate(blocks) if b.kind is None]
    edges = {i: [j for j, _ in index.pointers_in(read(blocks[i].address, blocks[i].size))
                 if blocks[j].kind is None] for i in lost}
    for i in lost:
        if blocks[i].kind is None:
            blocks[i].kind = Kind.DEFINITE
            _gather_clique(blocks, edges, i)


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

    def reported(self, all_origins: bool) -> list[Block]:
        """The blocks a report covers: forgiven ones (inherited, transition, preexisting) only with --all."""
        return [b for b in self.blocks if all_origins or b.origin == "own"]


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


_SIZE, _INDIRECT = attrgetter("size"), attrgetter("indirect")

# valgrind's order for loss records of equal size (its Reachedness enum)
_RECORD_RANK = {Kind.REACHABLE: 0, Kind.POSSIBLE: 1, Kind.INDIRECT: 2, Kind.DEFINITE: 3}


def loss_records(blocks: Iterable[Block], kinds: Iterable[Kind]) -> list[LossRecord]:
    """Group blocks of the wanted kinds by (kind, stack, and size when no stack is known),
    ordered as valgrind orders them: by total bytes (direct and indirect), smallest first,
    then by kind (still reachable first, definitely lost last), then by block count."""
    wanted = set(kinds)
    groups: dict[tuple, list[Block]] = {}
    for b in blocks:
        if b.kind in wanted:
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
