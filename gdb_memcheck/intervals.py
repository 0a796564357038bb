"""Non-overlapping half-open address intervals with O(log n) lookup by address."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from sortedcontainers import SortedDict

V = TypeVar("V")


@dataclass(frozen=True)
class Interval(Generic[V]):
    """The addresses [start, end) and what they map to."""

    start: int
    end: int
    value: V

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


class IntervalMap(Generic[V]):
    """Disjoint [start, end) intervals keyed by start, so the one holding an address is a bisect away."""

    def __init__(self) -> None:
        self._by_start: SortedDict = SortedDict()

    def add(self, start: int, end: int, value: V) -> Interval[V]:
        """Insert [start, end); refuse empty intervals and overlaps, which would make find() ambiguous."""
        if end <= start:
            raise ValueError(f"empty interval [{start:#x}, {end:#x})")
        clash = self.overlapping(start, end)
        if clash:
            raise ValueError(f"[{start:#x}, {end:#x}) overlaps [{clash[0].start:#x}, {clash[0].end:#x})")
        interval = Interval(start, end, value)
        self._by_start[start] = interval
        return interval

    def remove(self, start: int) -> Interval[V]:
        """Drop the interval starting at `start` and return it; KeyError if there is none."""
        try:
            return self._by_start.pop(start)
        except KeyError:
            raise KeyError(f"no interval starts at {start:#x}") from None

    def find(self, addr: int) -> Interval[V] | None:
        """The interval containing addr, if any."""
        interval = self.floor(addr)
        return interval if interval is not None and addr < interval.end else None

    def floor(self, addr: int) -> Interval[V] | None:
        """The last interval starting at or before addr, whether or not it reaches addr."""
        index = self._by_start.bisect_right(addr) - 1
        return self._by_start.peekitem(index)[1] if index >= 0 else None

    def overlapping(self, start: int, end: int) -> list[Interval[V]]:
        """The intervals sharing at least one address with [start, end), in address order."""
        if end <= start:
            return []
        first = max(self._by_start.bisect_right(start) - 1, 0)
        found = []
        for key in self._by_start.islice(first):
            if key >= end:
                break
            interval = self._by_start[key]
            if interval.end > start:
                found.append(interval)
        return found

    def clear(self) -> None:
        """Forget every interval."""
        self._by_start.clear()

    def __iter__(self) -> Iterator[Interval[V]]:
        return iter(self._by_start.values())

    def __len__(self) -> int:
        return len(self._by_start)
