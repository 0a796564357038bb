"""One sample of the watched processes at a stop: RSS counted from the page tables, VSZ,
and heap in use from glibc's counters (glibc/counters.py), not from a heap walk.  Where a
process keeps its malloc state is found once and remembered; a process without a glibc
heap yet is looked at again when its program break moves."""
from __future__ import annotations

from dataclasses import dataclass

from ..glibc import counters
from ..leakcheck.heapscan import data_ranges
from ..linux.memory import UserMemory
from ..linux.system import System
from ..linux.tasks import Task
from ..target import TargetError


@dataclass(frozen=True)
class ProcessSample:
    """A process at one sample; sizes in bytes, heap None without a glibc heap."""

    pid: int
    comm: str
    rss: int
    vsz: int
    heap: int | None


@dataclass(frozen=True)
class Sample:
    """One stop: its number, when (Unix time and seconds since the watch began), and the
    watched processes."""

    number: int
    time: float
    seconds: float
    processes: tuple[ProcessSample, ...]


def wanted(processes: list[Task], specs: list[str]) -> list[Task]:
    """The user processes named by pid or comm (a comm may name several, and processes that
    start later are watched too), or every user process."""
    users = [p for p in processes if p.mm and not p.is_kernel_thread]
    if not specs:
        return users
    return [p for p in users if str(p.tgid) in specs or p.comm in specs]


class Sampler:
    """Takes samples; remembers each process's malloc state between them."""

    def __init__(self, specs: list[str]) -> None:
        self.specs = specs
        self._where: dict[tuple[int, int], counters.MallocLocations] = {}
        self._no_heap: dict[tuple[int, int], int] = {}           # (pid, mm) -> program break when not found

    def sample(self, system: System, number: int, time: float, seconds: float) -> Sample:
        taken = []
        for proc in wanted(system.processes, self.specs):
            try:
                taken.append(self._process(system, proc))
            except TargetError:
                continue                # exiting while it was sampled: it has no map to read
        return Sample(number, time, seconds, tuple(taken))

    def _process(self, system: System, proc: Task) -> ProcessSample:
        mm = system.mm(proc)
        vmas = system.vmas(proc)
        rss = sum(u.rss for u in system.usages(mm, vmas))
        return ProcessSample(proc.tgid, proc.comm, rss, mm.total_vm * 4096, self._heap(system, proc, mm, vmas))

    def _heap(self, system: System, proc: Task, mm, vmas) -> int | None:
        key = (proc.tgid, proc.mm)
        if self._no_heap.get(key) == mm.brk:
            return None
        read = UserMemory(system.kmem.phys, system.pgd(mm), system.kmem.paging).read
        try:
            where = self._where.get(key)
            if where is None:
                where = self._where[key] = counters.malloc_locations(read, data_ranges(vmas), mm.start_brk, mm.brk)
            return counters.heap_counters(read, where).in_use
        except TargetError:
            self._where.pop(key, None)
            self._no_heap[key] = mm.brk
            return None
