"""Reading a kernel maple tree (lib/maple_tree.c, Linux 6.1+) from outside: the
entries stored in its leaves, in index order.

An encoded node pointer keeps the node type in bits 3-6 and the node is 256-byte
aligned; `ma_root` points at a node only when bit 1 is set.  A node's used slot
count is found like ma_data_end(): when its last pivot is 0, from `meta.end`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from ..target import Target, TargetError

Reader = Callable[[int, int], bytes]

NODE_SIZE = 256
NODE_MASK = 0xFF
DENSE, LEAF_64, RANGE_64, ARANGE_64 = 0, 1, 2, 3
MAX_HEIGHT = 31
MAX_NODES = 1 << 20


class MapleTreeError(TargetError):
    """The tree's nodes are not what a maple tree looks like (corrupt or not a tree)."""


@dataclass(frozen=True)
class NodeFormat:
    """Where pivots, slots and meta.end sit in each node type, and how many there are."""

    pivot: int
    slot: int
    pivots: int
    meta_end: int


@dataclass(frozen=True)
class MapleLayout:
    """Offsets of the node formats and of ma_root in struct maple_tree."""

    range64: NodeFormat
    arange64: NodeFormat
    ma_root: int

    @classmethod
    def from_target(cls, target: Target) -> "MapleLayout":
        r = target.layout("struct maple_range_64")
        a = target.layout("struct maple_arange_64")
        range64 = NodeFormat(r.offset("pivot"), r.offset("slot"), r.fields["pivot"].size // 8, r.offset("meta.end"))
        arange64 = NodeFormat(a.offset("pivot"), a.offset("slot"), a.fields["pivot"].size // 8, a.offset("meta.end"))
        return cls(range64, arange64, target.layout("struct maple_tree").offset("ma_root"))


def entries(read: Reader, tree: int, layout: MapleLayout, last: int = (1 << 64) - 1) -> Iterator[tuple[int, int, int]]:
    """(first index, last index, entry) for every non-empty slot of the tree at `tree`."""
    root = struct.unpack("<Q", read(tree + layout.ma_root, 8))[0]
    if root == 0:
        return
    if not root & 2:
        yield 0, 0, root
        return
    seen: set[int] = set()
    yield from _walk(read, root, 0, last, layout, 0, seen)


def _walk(read: Reader, enode: int, lo: int, hi: int, layout: MapleLayout, depth: int,
          seen: set[int]) -> Iterator[tuple[int, int, int]]:
    node, kind = enode & ~NODE_MASK, (enode >> 3) & 0xF
    if depth > MAX_HEIGHT:
        raise MapleTreeError(f"maple tree deeper than {MAX_HEIGHT} at node {node:#x}")
    if node in seen or len(seen) >= MAX_NODES:
        raise MapleTreeError(f"maple node {node:#x} is reached twice (cycle)")
    seen.add(node)
    if kind not in (LEAF_64, RANGE_64, ARANGE_64):
        raise MapleTreeError(f"maple node {node:#x} has unsupported type {kind}")
    fmt = layout.arange64 if kind == ARANGE_64 else layout.range64
    raw = read(node, NODE_SIZE)
    pivots = struct.unpack_from(f"<{fmt.pivots}Q", raw, fmt.pivot)
    slots = struct.unpack_from(f"<{fmt.pivots + 1}Q", raw, fmt.slot)
    end = _data_end(raw, kind, fmt, pivots, hi)
    start = lo
    for i in range(end + 1):
        stop = pivots[i] if i < fmt.pivots and (pivots[i] or i == 0) else hi
        if stop < start or stop > hi:
            raise MapleTreeError(f"maple node {node:#x}: pivot {i} ({stop:#x}) outside [{start:#x}, {hi:#x}]")
        if slots[i]:
            if kind == LEAF_64:
                yield start, stop, slots[i]
            else:
                yield from _walk(read, slots[i], start, stop, layout, depth + 1, seen)
        if stop == hi:
            break
        start = stop + 1


def _data_end(raw: bytes, kind: int, fmt: NodeFormat, pivots: tuple[int, ...], hi: int) -> int:
    """Index of the last used slot (ma_data_end)."""
    if kind == ARANGE_64:
        return min(raw[fmt.meta_end], fmt.pivots)
    last = fmt.pivots - 1
    if not pivots[last]:
        return min(raw[fmt.meta_end], fmt.pivots)
    return last if pivots[last] == hi else fmt.pivots
