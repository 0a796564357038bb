"""Live tracing: kernel events (from kevents) kept as a log, and the state they keep — a
process table and, per mm, a mapping cache invalidated by a generation counter (every
thread sharing an mm bumps the same counter; views re-read VMAs only when it moved)."""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .linux.kevents import KernelEvent, exit_code
from .linux.system import System
from .linux.vmas import Vma
from .report.schema import SCHEMA_VERSION, hexa
from .report.style import PLAIN, Styler
from .target import TargetError

TRACED_GROUPS = ("new-task", "exec", "exit", "mmap", "munmap", "mprotect", "brk")
ADDRESS_DETAILS = frozenset({"mm", "start", "end", "brk"})     # hex strings in JSON


@dataclass(frozen=True)
class Event:
    """One traced kernel event."""

    seq: int
    cpu: int
    pid: int
    tid: int
    comm: str
    kind: str
    details: dict = field(default_factory=dict)
    time: float = 0.0               # when it was handled, Unix seconds

    def as_dict(self) -> dict:
        """The schema's event: addresses among the details as hex strings."""
        details = {k: hexa(v) if k in ADDRESS_DETAILS else v for k, v in self.details.items()}
        return {"seq": self.seq, "time": self.time, "cpu": self.cpu, "pid": self.pid, "tid": self.tid,
                "comm": self.comm, "event": self.kind, **details}

    def text(self, style: Styler = PLAIN) -> str:
        parts = []
        for key, value in self.details.items():
            if key in ADDRESS_DETAILS:
                value = style.address(hex(value))
            elif key == "path":
                value = style.filename(value)
            elif isinstance(value, int) and key not in ("child", "code"):
                value = hex(value)
            parts.append(f"{key}={value}")
        return (f"{self.seq:>6} cpu{self.cpu} {self.pid:>6}/{self.tid:<6} {self.comm:<16} {self.kind:<11} "
                f"{' '.join(parts)}")


@dataclass
class TracedProcess:
    """What the trace knows of one process (thread group)."""

    pid: int
    ppid: int
    comm: str
    image: str
    mm: int
    threads: set[int] = field(default_factory=set)
    execs: int = 0
    exiting: bool = False       # its last thread entered do_exit; kept until it is reaped
    in_exit: set[int] = field(default_factory=set)      # threads that entered do_exit


class MappingCache:
    """Per-mm VMA lists, re-read only when the mm's generation moved."""

    def __init__(self) -> None:
        self.generation: dict[int, int] = {}
        self._cached: dict[int, tuple[int, list[Vma]]] = {}
        self.reads = self.hits = 0

    def bump(self, mm: int) -> None:
        self.generation[mm] = self.generation.get(mm, 0) + 1

    def forget(self, mm: int) -> None:
        self.generation.pop(mm, None)
        self._cached.pop(mm, None)

    def get(self, mm: int, read: Callable[[], list[Vma]]) -> list[Vma]:
        gen = self.generation.get(mm, 0)
        cached = self._cached.get(mm)
        if cached is not None and cached[0] == gen:
            self.hits += 1
            return cached[1]
        self.reads += 1
        vmas = read()
        self._cached[mm] = (gen, vmas)
        return vmas


@dataclass(frozen=True)
class StopRule:
    """Stop in the debugger when an event of `kind` matches `pattern` (pid, comm or path)."""

    kind: str
    pattern: str = ""

    def matches(self, event: Event) -> bool:
        if self.kind not in (event.kind, "any"):
            return False
        if not self.pattern:
            return True
        values = {str(event.pid), str(event.tid), event.comm, str(event.details.get("path", ""))}
        return self.pattern in values


class Tracer:
    """Turns hook hits into events and keeps the process table and mapping caches."""

    def __init__(self, log_size: int = 100_000) -> None:
        self.processes: dict[int, TracedProcess] = {}
        self.mappings = MappingCache()
        self.events: deque[Event] = deque(maxlen=log_size)
        self.seq = 0
        self.counts: dict[str, int] = {}
        self.rules: list[StopRule] = []
        self.log: Callable[[str], None] | None = None     # where each event goes as a JSON line
        self.last_stop: Event | None = None

    # -- start ------------------------------------------------------------------
    def seed(self, system: System) -> None:
        """Start from a snapshot of the stopped guest."""
        self.processes.clear()
        for proc in system.processes:
            if proc.pid == 0:
                continue
            traced = TracedProcess(proc.tgid, proc.ppid, proc.comm, system.exe_path(proc), proc.mm)
            traced.threads = {t.pid for t in system.threads(proc)}
            # a process caught inside do_exit will not pass the hook: it is seen exiting already
            traced.exiting = all(t.is_exiting for t in system.threads(proc))
            self.processes[proc.tgid] = traced

    # -- events -----------------------------------------------------------------
    def on_event(self, event: KernelEvent, system: System) -> bool:
        """Log one kernel event, update the table; True when a stop-on rule matches."""
        details = getattr(self, "_on_" + event.kind.replace("-", "_"))(event, system)
        self.seq += 1
        current = event.current
        logged = Event(self.seq, event.cpu, current.tgid, current.pid, current.comm, event.kind, details, time.time())
        self.events.append(logged)
        self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
        if self.log is not None:
            self.log(event_json_line(logged))
        self.last_stop = logged if self.should_stop(logged) else None
        return self.last_stop is not None

    def should_stop(self, event: Event) -> bool:
        return any(rule.matches(event) for rule in self.rules)

    def _on_fork(self, event: KernelEvent, system: System) -> dict:
        child = event.child
        parent = self.processes.get(child.ppid)
        image = parent.image if parent else ""
        self.processes[child.tgid] = TracedProcess(child.tgid, child.ppid, child.comm, image, child.mm, {child.pid})
        return {"child": child.pid, "mm": child.mm}

    def _on_clone(self, event: KernelEvent, system: System) -> dict:
        proc = self.processes.get(event.child.tgid)
        if proc is not None:
            proc.threads.add(event.child.pid)
        return {"child": event.child.pid}

    def _on_exec(self, event: KernelEvent, system: System) -> dict:
        current, path = event.current, event.path
        proc = self.processes.setdefault(current.tgid, TracedProcess(current.tgid, current.ppid, current.comm,
                                                                      path, current.mm, {current.pid}))
        if proc.mm and proc.mm != current.mm:
            self.mappings.forget(proc.mm)
        proc.image, proc.mm, proc.execs = path, current.mm, proc.execs + 1
        proc.comm = path.rsplit("/", 1)[-1][:15]
        proc.threads = {current.pid}
        self.mappings.bump(current.mm)
        return {"path": path}

    def _on_thread_exit(self, event: KernelEvent, system: System) -> dict:
        proc = self.processes.get(event.current.tgid)
        if proc is not None:
            proc.threads.discard(event.current.pid)
        return {"code": exit_code(event)}

    def _on_exit(self, event: KernelEvent, system: System) -> dict:
        tgid = event.current.tgid
        proc = self.processes.get(tgid)
        if proc is not None:
            proc.exiting = True
            self.mappings.forget(proc.mm)
            proc.mm = 0
            for other in self.processes.values():
                if other.ppid == tgid:
                    other.ppid = 1
        return {"code": exit_code(event)}

    def prune(self, system: System) -> None:
        """Forget exited processes that have been reaped (no longer on the task list);
        done when a view asks, so reaping costs no breakpoint."""
        alive = {p.tgid for p in system.processes}
        for pid in [pid for pid, proc in self.processes.items() if proc.exiting and pid not in alive]:
            del self.processes[pid]

    def _on_mmap(self, event: KernelEvent, system: System) -> dict:
        file, addr, length, flags, pgoff = event.args[:5]
        self.mappings.bump(event.current.mm)
        details = {"start": addr, "end": addr + length, "flags": flags}
        if file:
            details["path"] = system.file_path(file)
            details["offset"] = pgoff << 12
        return details

    def _on_munmap(self, event: KernelEvent, system: System) -> dict:
        self.mappings.bump(event.current.mm)
        return {"start": event.args[0], "end": event.args[0] + event.args[1]}

    def _on_mprotect(self, event: KernelEvent, system: System) -> dict:
        self.mappings.bump(event.current.mm)
        return {"start": event.args[0], "end": event.args[0] + event.args[1], "prot": event.args[2]}

    def _on_brk(self, event: KernelEvent, system: System) -> dict:
        self.mappings.bump(event.current.mm)
        return {"brk": event.args[0]}

    # -- views ------------------------------------------------------------------
    def traced_vmas(self, system: System, pid: int) -> list[Vma]:
        proc = self.processes.get(pid)
        if proc is None:
            raise TargetError(f"the trace has no process {pid}")
        return self.mappings.get(proc.mm, lambda: system.vmas(system.find(str(pid))))

    def last(self, n: int | None = None, pid: int | None = None) -> list[Event]:
        events: Iterable[Event] = self.events
        if pid is not None:
            events = [e for e in events if e.pid == pid]
        events = list(events)
        return events[-n:] if n else events


def event_json_line(event: Event) -> str:
    """A line of the event log: the event and the schema version."""
    return json.dumps({"schema_version": SCHEMA_VERSION, **event.as_dict()})

