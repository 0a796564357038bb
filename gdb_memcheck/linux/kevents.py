"""One source of kernel events for every breakpoint-driven feature: the hook functions
chosen for this kernel by probing, each hit decoded once into a KernelEvent, and the
subscribers (live tracing, leak tracking) it is handed to.  gdb-free: the frontend
places one breakpoint per hook that some subscriber wants and calls `hit()` from it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from ..arch import Arch
from ..target import TargetError, cstring, i32, u64
from .system import System
from .tasks import Task

REGS = "regs"           # arguments in the calling convention's registers
PT_REGS = "pt_regs"     # a syscall wrapper: the first argument points at the user's saved registers
SYSCALL = "{sys}"       # in a candidate's name: the architecture's syscall-wrapper prefix


@dataclass(frozen=True)
class HookSpec:
    """One kernel event and the functions that can report it, best first."""

    group: str
    candidates: tuple[tuple[str, str], ...]
    nargs: int
    why: str


# Each candidate after the first is there for a kernel change, named beside it.
HOOKS = (
    HookSpec("new-task", (("wake_up_new_task", REGS),), 1,
             "every fork/clone/kthread passes here once, task complete"),
    HookSpec("exec", (("setup_new_exec", REGS),
                      # 5.9 ("exec: Rename flush_old_exec begin_new_exec"), should setup_new_exec be inlined
                      ("begin_new_exec", REGS)), 1,
             "after the new mm is installed; bprm names the image"),
    HookSpec("exec-ready", (("start_thread", REGS),
                            # start_thread is inline on arm64 (asm/processor.h); finalize_exec runs just before it
                            ("finalize_exec", REGS)), 1,
             "the new image is mapped and its auxiliary vector written; no user code has run"),
    HookSpec("exit", (("do_exit", REGS),), 1, "every thread's exit, before exit_mm tears the mm down"),
    HookSpec("mmap", (("mmap_region", REGS),), 5, "the address is chosen, nothing mapped yet"),
    HookSpec("munmap", (("__vm_munmap", REGS),
                        # 4.17 (fa697140f9a2): syscalls take a pt_regs; used if __vm_munmap is inlined away
                        (SYSCALL + "munmap", PT_REGS)), 2,
             "munmap(2) itself, not the unmaps mmap_region does internally"),
    HookSpec("mprotect", (("do_mprotect_pkey", REGS),
                          # 4.17 (fa697140f9a2): the pt_regs syscall wrapper, if do_mprotect_pkey is inlined
                          (SYSCALL + "mprotect", PT_REGS)), 3, "once per call"),
    HookSpec("brk", ((SYSCALL + "brk", PT_REGS),), 1, "brk(2) entry"),
)
GROUPS = tuple(spec.group for spec in HOOKS)


@dataclass(frozen=True)
class ChosenHook:
    """The function placed for a hook group, its address, and why that one."""

    group: str
    symbol: str
    address: int
    args: str
    nargs: int
    reason: str


def choose_hooks(resolve: Callable[[str], "int | None"], arch: Arch,
                 groups: Iterable[str] = GROUPS) -> tuple[list[ChosenHook], list[str]]:
    """Probe the kernel for each group's candidates (syscall wrappers named as `arch` names
    them); return the chosen hooks and the groups left out."""
    chosen, missing = [], []
    wanted = set(groups)
    for spec in HOOKS:
        if spec.group not in wanted:
            continue
        tried = []
        for candidate, args in spec.candidates:
            symbol = candidate.replace(SYSCALL, arch.syscall_prefix)
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
class KernelEvent:
    """One decoded hook hit: what happened, on which vCPU, to which task."""

    kind: str               # fork clone exec exec-ready exit thread-exit mmap munmap mprotect brk
    hook: ChosenHook
    cpu: int
    current: Task
    args: tuple[int, ...]
    child: Task | None = None       # fork and clone: the new task
    path: str = ""                  # exec: the image as execve named it


class Subscriber(Protocol):
    """A feature fed by kernel events; returns True to stop in the debugger."""

    def on_event(self, event: KernelEvent, system: System) -> bool:
        """Act on one event (called inside a breakpoint stop: must be quick)."""


@dataclass
class HitStats:
    """What handling breakpoint hits cost one feature, and what went wrong."""

    hits: int = 0
    seconds: float = 0.0
    errors: int = 0
    repeated: int = 0
    last_error: str = ""

    def run(self, what: str, handler: Callable[[], bool]) -> bool:
        """Run a handler for one hit; a failure is counted, never raised (it would stop
        the guest or kill gdb), and the guest resumes."""
        t0 = time.perf_counter()
        self.hits += 1
        try:
            return handler()
        except Exception as e:  # noqa: BLE001 - any failure of a handler must leave gdb running
            self.fail(what, e)
            return False
        finally:
            self.seconds += time.perf_counter() - t0

    def fail(self, what: str, error: Exception) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(error).__name__}: {error}"

    @property
    def ms_per_hit(self) -> float:
        return self.seconds / self.hits * 1e3 if self.hits else 0.0


class RepeatedHits:
    """Recognizes a call reported twice: QEMU can cut the single-step past a breakpoint
    short (an exception is taken first), so the entry instruction hits again with the same
    registers.  Keyed by vCPU or thread; a key's other stops in between forget it."""

    def __init__(self) -> None:
        self._last: dict[int, tuple] = {}

    def seen(self, key: int, signature: tuple) -> bool:
        if self._last.get(key) == signature:
            return True
        self._last[key] = signature
        return False

    def forget(self, key: int) -> None:
        self._last.pop(key, None)

    def clear(self) -> None:
        self._last.clear()


class ExitRule:
    """The last thread of a process to enter do_exit ends it.  signal->live cannot tell: it
    drops later in do_exit, so threads that exit_group kills together could each still
    count the others."""

    def __init__(self) -> None:
        self.in_exit: dict[int, set[int]] = {}

    def last_thread(self, current: Task, threads: set[int]) -> bool:
        entered = (self.in_exit.get(current.tgid, set()) & threads) | {current.pid}
        if threads - entered:
            self.in_exit[current.tgid] = entered
            return False
        self.in_exit.pop(current.tgid, None)
        return True


@dataclass
class Subscription:
    """A subscriber, the event groups it wants, and its costs."""

    subscriber: Subscriber
    groups: frozenset[str]
    stats: HitStats = field(default_factory=HitStats)


class KernelEventSource:
    """Decodes hook hits and hands each event to the subscribers of its group."""

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self.exits = ExitRule()
        self.repeats = RepeatedHits()

    def subscribe(self, subscriber: Subscriber, groups: Iterable[str]) -> Subscription:
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise TargetError(f"unknown kernel event group {', '.join(sorted(unknown))}")
        self.unsubscribe(subscriber)
        sub = Subscription(subscriber, frozenset(groups))
        self.subscriptions.append(sub)
        return sub

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscriptions = [s for s in self.subscriptions if s.subscriber is not subscriber]
        if not self.subscriptions:
            self.exits = ExitRule()
            self.repeats.clear()

    def note_exiting(self, system: System) -> None:
        """Threads already inside do_exit when the exit hook is placed will not pass it:
        count them as entered, so their process's last thread still ends it."""
        for process in system.processes:
            exiting = {t.pid for t in system.threads(process) if t.is_exiting}
            if exiting:
                self.exits.in_exit[process.tgid] = self.exits.in_exit.get(process.tgid, set()) | exiting

    def wanted_groups(self) -> set[str]:
        return set().union(*(s.groups for s in self.subscriptions)) if self.subscriptions else set()

    def hit(self, hook: ChosenHook, cpu: int, system: Callable[[], System]) -> bool:
        """One breakpoint hit of `hook` on vCPU `cpu`; True if a subscriber wants to stop."""
        subs = [s for s in self.subscriptions if hook.group in s.groups]
        t0 = time.perf_counter()
        try:
            snapshot = system()
            event = self._decode(hook, cpu, snapshot)
        except Exception as e:  # noqa: BLE001 - a broken read must not stop the guest or kill gdb
            for sub in subs:
                sub.stats.hits += 1
                sub.stats.fail(hook.symbol, e)
            return False
        decode = time.perf_counter() - t0
        stop = False
        for sub in subs:
            sub.stats.seconds += decode
            if event is None:
                sub.stats.hits += 1
                sub.stats.repeated += 1
                continue
            stop |= bool(sub.stats.run(hook.symbol, lambda s=sub: s.subscriber.on_event(event, snapshot)))
        return stop

    def _decode(self, hook: ChosenHook, cpu: int, system: System) -> KernelEvent | None:
        """The event of a hit, or None when it is the same call reported again."""
        args = tuple(arguments(hook, system))
        if self.repeats.seen(cpu, (hook.address, system.target.register(system.arch.calls.sp), args)):
            return None
        current = system.current(cpu)
        if hook.group == "new-task":
            child = system.tasks.task(args[0])
            return KernelEvent("fork" if child.pid == child.tgid else "clone", hook, cpu, current, args, child)
        if hook.group == "exec":
            return KernelEvent("exec", hook, cpu, current, args, path=_bprm_filename(system, args[0]))
        if hook.group == "exit":
            threads = {t.pid for t in system.threads(current)}
            kind = "exit" if self.exits.last_thread(current, threads) else "thread-exit"
            return KernelEvent(kind, hook, cpu, current, args)
        return KernelEvent(hook.group, hook, cpu, current, args)


def arguments(hook: ChosenHook, system: System) -> list[int]:
    """The hook's arguments, from registers or from the saved user registers (pt_regs)."""
    register, calls = system.target.register, system.arch.calls
    if hook.args == REGS:
        return [register(r) for r in calls.args[:hook.nargs]]
    layout = system.target.layout("struct pt_regs")
    raw = system.kmem.read(register(calls.args[0]), layout.size)
    saved = system.arch.user_registers(layout)
    return [u64(raw, saved[name]) for name in system.arch.syscall_args[:hook.nargs]]


def exit_code(event: KernelEvent) -> int:
    """do_exit's code argument, as the signed int it is."""
    return i32(event.args[0].to_bytes(8, "little"))


def _bprm_filename(system: System, bprm: int) -> str:
    filename = u64(system.kmem.read(bprm + system.layout_offset("struct linux_binprm", "filename"), 8))
    return read_cstring(system, filename)


def read_cstring(system: System, addr: int, limit: int = 4096) -> str:
    """A NUL-terminated string in kernel memory, read page by page."""
    out = b""
    while len(out) < limit:
        chunk = system.kmem.read(addr + len(out), 4096 - ((addr + len(out)) & 0xFFF))
        out += chunk
        if b"\0" in chunk:
            break
    return cstring(out)
