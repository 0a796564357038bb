"""Live tracing from kernel breakpoints: which functions to hook on this kernel, how to
decode their arguments into events, and the state the events keep — a process table
and, per mm, a mapping cache invalidated by a generation counter (every thread sharing
an mm bumps the same counter; views re-read VMAs only when it moved)."""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .system import System
from .target import TargetError, cstring, i32, u64
from .tasks import Task
from .vmas import Vma

REGS = "regs"           # arguments in rdi, rsi, rdx, rcx, r8, r9
PT_REGS = "pt_regs"     # a syscall wrapper: rdi points at the user's saved registers
ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
PT_REGS_ARGS = ("di", "si", "dx", "r10", "r8", "r9")


@dataclass(frozen=True)
class HookSpec:
    """One traced kernel event and the functions that can report it, best first."""

    group: str
    candidates: tuple[tuple[str, str], ...]
    nargs: int
    why: str


HOOKS = (
    HookSpec("new-task", (("wake_up_new_task", REGS),), 1,
             "every fork/clone/kthread passes here once, task complete"),
    HookSpec("exec", (("setup_new_exec", REGS), ("begin_new_exec", REGS)), 1,
             "after the new mm is installed; bprm names the image"),
    HookSpec("exit", (("do_exit", REGS),), 1, "every thread's exit, before exit_mm tears the mm down"),
    HookSpec("mmap", (("mmap_region", REGS),), 5, "the address is chosen, nothing mapped yet"),
    HookSpec("munmap", (("__vm_munmap", REGS), ("__x64_sys_munmap", PT_REGS)), 2,
             "munmap(2) itself, not the unmaps mmap_region does internally"),
    HookSpec("mprotect", (("do_mprotect_pkey", REGS), ("__x64_sys_mprotect", PT_REGS)), 3, "once per call"),
    HookSpec("brk", (("__x64_sys_brk", PT_REGS),), 1, "brk(2) entry"),
)


@dataclass(frozen=True)
class ChosenHook:
    """The function placed for a hook group, its address, and why that one."""

    group: str
    symbol: str
    address: int
    args: str
    nargs: int
    reason: str


def choose_hooks(resolve: Callable[[str], "int | None"]) -> tuple[list[ChosenHook], list[str]]:
    """Probe the kernel for each group's candidates; return the chosen hooks and the groups left out."""
    chosen, missing = [], []
    for spec in HOOKS:
        tried = []
        for symbol, args in spec.candidates:
            address = resolve(symbol)
            if address is not None:
                note = f"; not in this kernel: {', '.join(tried)}" if tried else ""
                chosen.append(ChosenHook(spec.group, symbol, address, args, spec.nargs, spec.why + note))
                break
            tried.append(symbol)
        else:
            missing.append(f"{spec.group}: none of {', '.join(tried)} in this kernel")
    return chosen, missing


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

    def as_dict(self) -> dict:
        return {"seq": self.seq, "cpu": self.cpu, "pid": self.pid, "tid": self.tid, "comm": self.comm,
                "event": self.kind, **self.details}

    def text(self) -> str:
        parts = []
        for key, value in self.details.items():
            parts.append(f"{key}={value:#x}" if isinstance(value, int) and key not in ("child", "code", "len_pages")
                         else f"{key}={value}")
        return f"{self.seq:>6} cpu{self.cpu} {self.pid:>6}/{self.tid:<6} {self.comm:<16} {self.kind:<11} {' '.join(parts)}"


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

    # -- start ------------------------------------------------------------------
    def seed(self, system: System) -> None:
        """Start from a snapshot of the stopped guest."""
        self.processes.clear()
        for proc in system.processes:
            if proc.pid == 0:
                continue
            traced = TracedProcess(proc.tgid, proc.ppid, proc.comm, system.exe_path(proc), proc.mm)
            traced.threads = {t.pid for t in system.threads(proc)}
            self.processes[proc.tgid] = traced

    # -- events -----------------------------------------------------------------
    def handle(self, hook: ChosenHook, cpu: int, args: list[int], system: System) -> Event:
        """Decode one hit of `hook` on vCPU `cpu` (args already taken from registers)."""
        current = system.current(cpu)
        kind, details = getattr(self, "_on_" + hook.group.replace("-", "_"))(args, current, system)
        self.seq += 1
        event = Event(self.seq, cpu, current.tgid, current.pid, current.comm, kind, details)
        self.events.append(event)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return event

    def should_stop(self, event: Event) -> bool:
        return any(rule.matches(event) for rule in self.rules)

    def _on_new_task(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        child = system.tasks.task(args[0])
        if child.pid == child.tgid:
            parent = self.processes.get(child.ppid)
            image = parent.image if parent else ""
            self.processes[child.tgid] = TracedProcess(child.tgid, child.ppid, child.comm, image, child.mm,
                                                       {child.pid})
            return "fork", {"child": child.pid, "mm": child.mm}
        proc = self.processes.get(child.tgid)
        if proc is not None:
            proc.threads.add(child.pid)
        return "clone", {"child": child.pid}

    def _on_exec(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        path = _read_cstring(system, u64(system.kmem.read(args[0] + system.layout_offset(
            "struct linux_binprm", "filename"), 8)))
        proc = self.processes.setdefault(current.tgid, TracedProcess(current.tgid, current.ppid, current.comm,
                                                                      path, current.mm, {current.pid}))
        if proc.mm and proc.mm != current.mm:
            self.mappings.forget(proc.mm)
        proc.image, proc.mm, proc.execs = path, current.mm, proc.execs + 1
        proc.comm = path.rsplit("/", 1)[-1][:15]
        proc.threads = {current.pid}
        self.mappings.bump(current.mm)
        return "exec", {"path": path}

    def _on_exit(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        code = i32(args[0].to_bytes(8, "little"))
        proc = self.processes.get(current.tgid)
        # The last thread to enter do_exit ends the process.  signal->live drops later in
        # do_exit, so threads that exit_group kills together could each still count the others.
        threads = {t.pid for t in system.threads(current)}
        in_exit = ((proc.in_exit if proc else set()) & threads) | {current.pid}
        if proc is not None:
            proc.in_exit = in_exit
        if threads - in_exit:
            if proc is not None:
                proc.threads.discard(current.pid)
            return "thread-exit", {"code": code}
        if proc is not None:
            proc.exiting = True
            self.mappings.forget(proc.mm)
            proc.mm = 0
            for other in self.processes.values():
                if other.ppid == current.tgid:
                    other.ppid = 1
        return "exit", {"code": code}

    def prune(self, system: System) -> None:
        """Forget exited processes that have been reaped (no longer on the task list);
        done when a view asks, so reaping costs no breakpoint."""
        alive = {p.tgid for p in system.processes}
        for pid in [pid for pid, proc in self.processes.items() if proc.exiting and pid not in alive]:
            del self.processes[pid]

    def _on_mmap(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        file, addr, length, flags, pgoff = args[:5]
        self.mappings.bump(current.mm)
        details = {"start": addr, "end": addr + length, "flags": flags}
        if file:
            details["path"] = system.file_path(file)
            details["offset"] = pgoff << 12
        return "mmap", details

    def _on_munmap(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        self.mappings.bump(current.mm)
        return "munmap", {"start": args[0], "end": args[0] + args[1]}

    def _on_mprotect(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        self.mappings.bump(current.mm)
        return "mprotect", {"start": args[0], "end": args[0] + args[1], "prot": args[2]}

    def _on_brk(self, args: list[int], current: Task, system: System) -> tuple[str, dict]:
        self.mappings.bump(current.mm)
        return "brk", {"brk": args[0]}

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
    return json.dumps(event.as_dict())


def _read_cstring(system: System, addr: int, limit: int = 4096) -> str:
    """A NUL-terminated string in kernel memory, read page by page."""
    out = b""
    while len(out) < limit:
        chunk = system.kmem.read(addr + len(out), 4096 - ((addr + len(out)) & 0xFFF))
        out += chunk
        if b"\0" in chunk:
            break
    return cstring(out)
