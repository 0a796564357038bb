"""Leak classification as valgrind's memcheck defines it (mc_leakcheck.c), from outside:
scan the roots (readable memory outside heap blocks, live stacks above each thread's
stack pointer, saved registers) for pointers to block starts and interiors, follow
reached blocks, then sort the rest into definitely and indirectly lost."""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable

Reader = Callable[[int, int], bytes]


class Kind(Enum):
    """valgrind's leak kinds, in report order."""

    DEFINITE = "definitely lost"
    INDIRECT = "indirectly lost"
    POSSIBLE = "possibly lost"
    REACHABLE = "still reachable"


@dataclass
class Block:
    """A live heap block: user address and usable size; filled in by the scan."""

    address: int
    size: int
    kind: Kind | None = None
    start_pointed: bool = False
    interior_pointed: bool = False
    stack: tuple = field(default_factory=tuple)
    origin: str = "own"
    via: str = ""


@dataclass(frozen=True)
class Region:
    """Memory to scan for pointers: [start, end)."""

    start: int
    end: int
    what: str


class BlockIndex:
    """Blocks sorted by address; finds the block a pointer falls in."""

    def __init__(self, blocks: list[Block]) -> None:
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
                return i, value == b.address
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


def classify(blocks: list[Block], read: Reader, roots: Iterable[Region], root_words: Iterable[int]) -> BlockIndex:
    """Give every block its Kind.  Blocks are scanned once each, reached ones first."""
    index = BlockIndex(blocks)
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
    """Unreached blocks: the ones no other lost block points to are definitely lost (a
    cycle's lowest block stands for it); what they reach is indirectly lost."""
    lost = [i for i, b in enumerate(index.blocks) if b.kind is None]
    edges = {i: [j for j, _ in index.pointers_in(read(index.blocks[i].address, index.blocks[i].size))
                 if index.blocks[j].kind is None and j != i] for i in lost}
    pointed = {j for targets in edges.values() for j in targets}
    leaders = [i for i in lost if i not in pointed]
    done: set[int] = set()
    pending = set(lost)
    while pending:
        for leader in leaders:
            index.blocks[leader].kind = Kind.DEFINITE
            stack = [leader]
            while stack:
                i = stack.pop()
                if i in done:
                    continue
                done.add(i)
                pending.discard(i)
                for j in edges[i]:
                    if j not in done:
                        index.blocks[j].kind = index.blocks[j].kind or Kind.INDIRECT
                        stack.append(j)
        leaders = [min(pending)] if pending else []


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

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.blocks)


def loss_records(blocks: Iterable[Block], kinds: Iterable[Kind]) -> list[LossRecord]:
    """Group blocks of the wanted kinds by (kind, stack, and size when no stack is known),
    ordered as valgrind orders them: by total bytes, smallest first."""
    wanted = set(kinds)
    groups: dict[tuple, list[Block]] = {}
    for b in blocks:
        if b.kind in wanted:
            key = (b.kind, b.stack, None if b.stack else b.size, b.origin)
            groups.setdefault(key, []).append(b)
    records = [LossRecord(k[0], tuple(v), k[1], k[3]) for k, v in groups.items()]
    return sorted(records, key=lambda r: (r.bytes, len(r.blocks), r.kind.value))


def summary(blocks: Iterable[Block]) -> dict[Kind, tuple[int, int]]:
    """Kind -> (bytes, blocks), as in valgrind's LEAK SUMMARY."""
    out = {k: (0, 0) for k in Kind}
    for b in blocks:
        if b.kind is not None:
            total, count = out[b.kind]
            out[b.kind] = (total + b.size, count + 1)
    return out
