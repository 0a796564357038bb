"""What `gdb_memcheck.api` offers scripts, on top of the session the commands use: the same
answers as the commands, as the core's dataclasses instead of text."""
from __future__ import annotations

import threading
import time
from typing import Callable, Union

import gdb

from .. import addrinfo
from ..addrinfo import AddressInfo
from ..arch import Regime, Span
from ..arch.pagetables import Range, Translation, coalesce
from ..leakcheck import leaks
from ..linux.system import Mapping, System
from ..linux.tasks import Task
from ..target import TargetError
from ..tracing import Event
from .breakpoints import HITS
from .commands import kernel_symbol, pick_process
from .leak_tracking import CONTROLLER as TRACKING
from .session import SESSION
from .trace import CONTROLLER as TRACING

Process = Union[int, str, Task, None]
QUIET = 0.5      # seconds without a memcheck breakpoint hit before run_until interrupts the guest
RESEND = 1.0     # seconds before run_until sends an interrupt the guest did not stop for again


def system() -> System:
    """The stopped guest as the commands see it at this stop."""
    SESSION.require_guest()
    return SESSION.system()


def process(spec: Process = None) -> Task:
    """A process by pid, comm or Task; None: the one on the selected vCPU."""
    if isinstance(spec, Task):
        return spec
    return pick_process(system(), None if spec is None else str(spec))


def processes() -> list[Task]:
    """Every process (thread-group leader), kernel threads included, from init_task on."""
    return list(system().processes)


def threads(spec: Process = None) -> list[Task]:
    """Every thread of a process."""
    return system().threads(process(spec))


def maps(spec: Process = None, rss: bool = True) -> list[Mapping]:
    """A process's mappings, as /proc/PID/maps lists them, each with its Rss and Anonymous
    bytes counted from the page tables (unless rss=False, which is faster)."""
    return system().mappings(process(spec), rss)


def _regime() -> Regime:
    SESSION.require_guest()
    paging = SESSION.regime()
    if paging.levels == 0:
        raise TargetError(f"{paging.description}: physical addresses equal linear ones")
    return paging


def _spans(spec: Process) -> list[Span]:
    if spec is None:
        return SESSION.arch.current_spans(SESSION.target, None)
    return SESSION.arch.process_spans(system().task_pgd(process(spec)), system().kmem.kernel_pgd)


def translate(address: int, spec: Process = None) -> Translation:
    """Walk the page tables of a process (None: the selected vCPU's) for a virtual
    address; raises PageWalkError, an Error, where the walk stops."""
    paging = _regime()
    address &= 2 ** 64 - 1
    why = paging.reject(address)
    if why:
        raise TargetError(why)
    return paging.translate(SESSION.pages().read, SESSION.arch.root_for(paging.untag(address), _spans(spec)), address)


def pagetable(spec: Process = None, kernel: bool = False) -> list[Range]:
    """Every mapped range of a process's page tables (None: the selected vCPU's; with
    kernel=True, the kernel's own), merged as `memcheck pagetable` merges them."""
    paging = _regime()
    spans = SESSION.arch.kernel_spans(system().kmem.kernel_pgd) if kernel else _spans(spec)
    found = [leaf for s in spans for leaf in paging.leaves(SESSION.pages().read, s.root, s.start, s.end,
                                                            merge_runs=True, memo=SESSION.leaf_memo)]
    return coalesce(found)


def describe(address: int, spec: Process = None) -> AddressInfo:
    """What an address is: process, mapping, file offset, symbol, source line, physical address."""
    address &= 2 ** 64 - 1
    task = process(spec) if address < SESSION.arch.user_top else None
    return addrinfo.describe(system(), task, address, SESSION.symbols(), kernel_symbol)


def leak_check(spec: Process = None, scan: bool = False) -> leaks.LeakReport:
    """A process's leaks now, classified as valgrind does: from its allocation map when it
    is tracked (unless scan=True), else from a scan of its glibc heap."""
    return TRACKING.check(system(), process(spec), scan)


def exit_reports(pid: int | None = None) -> list[leaks.LeakReport]:
    """The reports tracked processes left when they exited (of one pid, if given), oldest first."""
    return [r for r in TRACKING.tracker.reports if pid is None or r.pid == pid]


def track(spec: Process = None, exec_path: str | None = None) -> str:
    """Track a running process, or every process that executes `exec_path`; says what it did."""
    if exec_path:
        SESSION.require_guest()
        return TRACKING.track_exec(exec_path)
    return TRACKING.track_process(process(spec))


def untrack() -> int:
    """Remove every tracking breakpoint (the reports stay); how many were removed."""
    return TRACKING.untrack()


def tracked() -> list[int]:
    """The pids tracked now."""
    return TRACKING.tracker.tracked()


def events(pid: int | None = None, last: int | None = None) -> list[Event]:
    """The traced event log (of one pid, the last N), oldest first."""
    return TRACING.tracer.last(last, pid)


def run_until(done: Callable[[], bool], timeout: float | None = None, poll: float = 0.1) -> bool:
    """Let the guest run until `done()` holds or `timeout` seconds pass, then stop it again;
    True if `done()` held.  `done` may look at what breakpoints recorded (reports, events)
    but not call gdb: every memcheck breakpoint checks it and then stops the guest there, and
    a watcher thread checks it every `poll` seconds and interrupts the guest once those
    breakpoints have been quiet for a while (an interrupt racing their handlers is unsafe).
    The interrupt is sent again every second until the guest stops, as gdbdrive sends it:
    QEMU 7.2 drops one that arrives while it waits for gdb's ack of a breakpoint stop."""
    deadline = None if timeout is None else time.monotonic() + timeout
    condition = lambda: bool(done()) or (deadline is not None and time.monotonic() >= deadline)
    stopped = threading.Event()

    def interrupt() -> None:
        if not stopped.is_set():         # a late resend must not stop a later `continue`
            try:
                gdb.execute("interrupt")
            except gdb.error:            # it stopped meanwhile
                pass

    def watch() -> None:
        while not stopped.wait(poll):
            if time.monotonic() - HITS.last >= QUIET and condition():
                while not stopped.is_set():
                    gdb.post_event(interrupt)
                    stopped.wait(RESEND)
                return

    HITS.stop_when.append(condition)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        gdb.execute("continue")
    finally:
        stopped.set()
        HITS.stop_when.remove(condition)
        watcher.join()
    return bool(done())


def run_for(seconds: float) -> None:
    """Let the guest run for `seconds`, then stop it again."""
    run_until(lambda: False, seconds)
