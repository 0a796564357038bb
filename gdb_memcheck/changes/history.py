"""What the previous look at something showed, for --delta: one checkpoint per key (the
process list, one process's map, one process's leak records), with where and when it was
taken."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable


@dataclass(frozen=True)
class Checkpoint:
    """A view remembered: its value, what it was read from ("live" or a dump's path), and
    when (host time)."""

    value: Any
    source: str
    time: float

    def describe(self, now: float) -> str:
        where = "live" if self.source == "live" else f"dump {self.source}"
        return f"{where}, {now - self.time:.1f} s ago"


class History:
    """The latest checkpoint of each key; each look replaces the one before."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._last: dict[Hashable, Checkpoint] = {}

    def swap(self, key: Hashable, value: Any, source: str) -> Checkpoint | None:
        """Remember `value` as the latest look at `key`; return the look before, if any."""
        before = self._last.get(key)
        self._last[key] = Checkpoint(value, source, self.clock())
        return before

    def forget(self) -> None:
        self._last.clear()
