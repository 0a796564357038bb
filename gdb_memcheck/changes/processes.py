"""Processes new, gone or resized between two looks at the process list (`ps --delta`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..linux.system import System

NEW, GONE, RESIZED = "new", "gone", "resized"


@dataclass(frozen=True)
class ProcessRecord:
    """What `ps` shows of one process; VSZ and RSS in bytes (0 for kernel threads)."""

    pid: int
    ppid: int
    state: str
    comm: str
    exe: str
    vsz: int
    rss: int
    kernel_thread: bool

    @property
    def identity(self) -> tuple[int, str, str]:
        """The same pid running another program is another process."""
        return self.pid, self.comm, self.exe


def process_records(system: System) -> list[ProcessRecord]:
    """Every process with its VSZ and its RSS counted from its page tables."""
    records = []
    for proc in system.processes:
        exe, vsz, rss = "", 0, 0
        if proc.mm:
            mm = system.mm(proc)
            exe, vsz = system.exe_path(proc), mm.total_vm * 4096
            rss = sum(u.rss for u in system.usages(mm, system.vmas(proc)))
        records.append(ProcessRecord(proc.tgid, proc.ppid, proc.state, proc.comm, exe, vsz, rss,
                                     proc.is_kernel_thread))
    return records


@dataclass(frozen=True)
class ProcessChange:
    """A process new or gone since the previous look, or whose VSZ or RSS changed."""

    kind: str
    now: ProcessRecord | None
    before: ProcessRecord | None

    @property
    def record(self) -> ProcessRecord:
        return self.now if self.now is not None else self.before

    @property
    def vsz_change(self) -> int:
        return (self.now.vsz if self.now else 0) - (self.before.vsz if self.before else 0)

    @property
    def rss_change(self) -> int:
        return (self.now.rss if self.now else 0) - (self.before.rss if self.before else 0)


def process_changes(before: list[ProcessRecord], now: list[ProcessRecord]) -> list[ProcessChange]:
    """New and resized processes in the order they are now, then the gone ones."""
    old = {r.identity: r for r in before}
    current = {r.identity for r in now}
    changes = []
    for record in now:
        previous = old.get(record.identity)
        if previous is None:
            changes.append(ProcessChange(NEW, record, None))
        elif (previous.vsz, previous.rss) != (record.vsz, record.rss):
            changes.append(ProcessChange(RESIZED, record, previous))
    changes += [ProcessChange(GONE, None, r) for r in before if r.identity not in current]
    return changes


def everything_new(now: list[ProcessRecord]) -> list[ProcessChange]:
    """The changes from nothing: what --delta shows when there is no previous look."""
    return [ProcessChange(NEW, r, None) for r in now]

