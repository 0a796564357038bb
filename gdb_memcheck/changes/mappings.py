"""What changed in a process's memory map between two looks (`maps --delta`).

Address ranges are compared, not VMA lines: each range mapped now and not before is
added, mapped before and not now is removed, mapped both times with other permissions or
another file (offset) is changed.  So an mmap, a munmap and an mprotect of part of a
mapping show as exactly the range each touched, whatever the kernel split or merged.  A
mapping that kept its attributes but grew or shrank (brk, a stack, mremap, or an mmap
merged into it) is one resized change, when it is the only one that matches on each
side.  Mappings whose range did not change show their Rss change."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..linux.system import Mapping
from ..linux.vmas import Vma

ADDED, REMOVED, CHANGED, RESIZED, RSS = "added", "removed", "changed", "resized", "rss"
SAME = "same"


@dataclass(frozen=True)
class MapChange:
    """One change: `now` is the range as mapped now (None when removed), `before` as it was
    (None when added); Rss in bytes where the range is a whole mapping on that side."""

    kind: str
    now: Vma | None
    before: Vma | None
    rss_now: int | None = None
    rss_before: int | None = None

    @property
    def start(self) -> int:
        return (self.now or self.before).start

    @property
    def end(self) -> int:
        return (self.now or self.before).end

    @property
    def rss_change(self) -> int | None:
        if self.kind == ADDED:
            return self.rss_now
        if self.kind == REMOVED:
            return None if self.rss_before is None else -self.rss_before
        if self.rss_now is None or self.rss_before is None:
            return None
        return self.rss_now - self.rss_before


def attributes(vma: Vma, address: int) -> tuple:
    """What must stay for memory at `address` to count as the same mapping: permissions,
    the file (device, inode, name) and the file offset there."""
    file_offset = vma.offset + address - vma.start if (vma.dev or vma.inode) else 0
    return vma.perms, vma.dev, vma.inode, vma.name, file_offset


@dataclass(frozen=True)
class _Piece:
    """A range over which neither map changes VMA: its kind and the VMA on each side."""

    start: int
    end: int
    kind: str
    before: int | None          # index of the VMA before
    now: int | None             # index of the VMA now


def _pieces(before: list[Vma], now: list[Vma]) -> list[_Piece]:
    bounds = sorted({v.start for v in before + now} | {v.end for v in before + now})
    pieces, i, j = [], 0, 0
    for lo, hi in zip(bounds, bounds[1:]):
        while i < len(before) and before[i].end <= lo:
            i += 1
        while j < len(now) and now[j].end <= lo:
            j += 1
        old = i if i < len(before) and before[i].start <= lo else None
        new = j if j < len(now) and now[j].start <= lo else None
        if old is None and new is None:
            continue
        if old is None:
            kind = ADDED
        elif new is None:
            kind = REMOVED
        else:
            kind = SAME if attributes(before[old], lo) == attributes(now[new], lo) else CHANGED
        pieces.append(_Piece(lo, hi, kind, old, new))
    return pieces


def _runs(pieces: list[_Piece]) -> list[_Piece]:
    """Neighbouring pieces of one kind between the same VMAs joined."""
    out: list[_Piece] = []
    for p in pieces:
        last = out[-1] if out else None
        if last and (last.end, last.kind, last.before, last.now) == (p.start, p.kind, p.before, p.now):
            out[-1] = replace(last, end=p.end)
        else:
            out.append(p)
    return out


def _partners(pieces: list[_Piece]) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """For each VMA, the VMAs on the other side that share a range with it unchanged."""
    of_before: dict[int, set[int]] = {}
    of_now: dict[int, set[int]] = {}
    for p in pieces:
        if p.kind == SAME:
            of_before.setdefault(p.before, set()).add(p.now)
            of_now.setdefault(p.now, set()).add(p.before)
    return of_before, of_now


def map_changes(before: list[Mapping], now: list[Mapping]) -> list[MapChange]:
    """Every change from the map `before` to the map `now` (both in address order), by address."""
    old, new = [m.vma for m in before], [m.vma for m in now]
    rss_old = [m.usage.rss if m.usage else None for m in before]
    rss_new = [m.usage.rss if m.usage else None for m in now]
    pieces = _runs(_pieces(old, new))
    of_before, of_now = _partners(pieces)
    pairs = {(o, n) for o, ns in of_before.items() for n in ns
             if len(ns) == 1 and len(of_now[n]) == 1}            # one mapping, the same on both sides
    same_range = {(o, n) for o, n in pairs if (old[o].start, old[o].end) == (new[n].start, new[n].end)}
    resized = {(o, n) for o, n in pairs - same_range if _only_grew_or_shrank(pieces, o, n)}
    shrunk, grown = {o for o, _ in resized}, {n for _, n in resized}
    changes = [MapChange(RESIZED, new[n], old[o], rss_new[n], rss_old[o]) for o, n in resized]
    changes += [MapChange(RSS, new[n], old[o], rss_new[n], rss_old[o]) for o, n in same_range
                if None not in (rss_old[o], rss_new[n]) and rss_old[o] != rss_new[n]]
    for p in pieces:
        if p.kind == SAME or (p.kind == REMOVED and p.before in shrunk) or (p.kind == ADDED and p.now in grown):
            continue
        changes.append(_range_change(p, old, new, rss_old, rss_new))
    return sorted(changes, key=lambda c: (c.start, c.end))


def _only_grew_or_shrank(pieces: list[_Piece], o: int, n: int) -> bool:
    """The pair's other pieces are only memory added to the new VMA or removed from the old."""
    return all(p.kind == SAME or (p.kind == ADDED and p.now == n) or (p.kind == REMOVED and p.before == o)
               for p in pieces if p.before == o or p.now == n)


def _range_change(p: _Piece, old: list[Vma], new: list[Vma], rss_old: list, rss_new: list) -> MapChange:
    """An added, removed or changed range, each side as the VMA over it cut to the range."""
    now = _cut(new[p.now], p.start, p.end) if p.now is not None else None
    before = _cut(old[p.before], p.start, p.end) if p.before is not None else None
    rss_now = rss_new[p.now] if now is not None and now == new[p.now] else None
    rss_before = rss_old[p.before] if before is not None and before == old[p.before] else None
    return MapChange(p.kind, now, before, rss_now, rss_before)


def _cut(vma: Vma, start: int, end: int) -> Vma:
    """The part [start, end) of `vma`, its file offset moved with its start."""
    if (start, end) == (vma.start, vma.end):
        return vma
    offset = vma.offset + start - vma.start if (vma.dev or vma.inode) else vma.offset
    return replace(vma, start=start, end=end, offset=offset)


def everything_added(now: list[Mapping]) -> list[MapChange]:
    """The changes from nothing: what --delta shows when there is no previous look."""
    return [MapChange(ADDED, m.vma, None, m.usage.rss if m.usage else None) for m in now]
