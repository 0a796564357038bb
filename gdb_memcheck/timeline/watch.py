"""The watch loop: a sample now, then the guest runs until each deadline of the interval
grid (start + k * every) and is sampled there, until the duration has passed.  What runs
the guest and what samples it are given, so the loop knows nothing of gdb.

A stop comes some milliseconds after the interrupt is sent; the loop sends each one that
much early (the shortest of the last few delays: the part every stop pays, not the
spikes of a loaded host), so the stops, whose times the samples carry, land on the grid.  A stop that was not the watch's own (Ctrl-C, a breakpoint) or a
KeyboardInterrupt ends it early with the samples taken; a deadline already past when the
guest would run (sampling took longer than the interval) is skipped, so the samples stay
on the grid."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .sampling import Sample

# Run the guest and interrupt it at a monotonic time; return when it stopped, or None when
# it stopped before that for another reason.
RunUntil = Callable[[float], Optional[float]]
TakeSample = Callable[[int, float, float], Sample]
DELAYS_KEPT = 5


@dataclass
class WatchResult:
    """The samples, whether the watch ended early, and how long the guest ran."""

    samples: list[Sample] = field(default_factory=list)
    interrupted: bool = False
    skipped: int = 0
    running: float = 0.0                      # seconds the guest ran
    elapsed: float = 0.0                      # seconds the watch took

    @property
    def intervals(self) -> list[float]:
        times = [s.seconds for s in self.samples]
        return [b - a for a, b in zip(times, times[1:])]


def watch(run_until: RunUntil, take: TakeSample, every: float, duration: float,
          clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> WatchResult:
    start, start_wall = clock(), wall()
    result = WatchResult()
    delays: list[float] = []
    try:
        result.samples.append(take(0, start_wall, 0.0))
        k = 1
        while k * every <= duration + 1e-9:
            lead = min(min(delays[-DELAYS_KEPT:]), every / 2) if delays else 0.0
            interrupt_at = start + k * every - lead
            before = clock()
            if interrupt_at <= before:
                result.skipped += 1
                k += 1
                continue
            stopped = run_until(interrupt_at)
            if stopped is None:
                result.running += clock() - before
                result.interrupted = True
                break
            result.running += stopped - before
            delays.append(max(0.0, stopped - interrupt_at))
            result.samples.append(take(k, start_wall + stopped - start, stopped - start))
            k += 1
    except KeyboardInterrupt:
        result.interrupted = True
    result.elapsed = clock() - start
    return result
