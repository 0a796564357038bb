"""What `gdb_memcheck.api` offers scripts, on top of the session the commands use: the same
answers as the commands, as the core's dataclasses instead of text."""
from __future__ import annotations

import threading
import time
from typing import Callable, Union

import gdb

from .. import addrinfo
from ..addrinfo import AddressInfo
from ..arch.x86_64 import paging
from ..leakcheck import leaks
from ..linux.kernel import cpu_paging_mode
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


def _levels() -> int:
    SESSION.require_guest()
    levels = cpu_paging_mode(SESSION.target).levels
    if levels == 0:
        raise TargetError("paging is off: physical addresses equal linear ones")
    return levels


def _root(spec: Process) -> int:
    if spec is None:
        return paging.cr3_table(SESSION.target.register("cr3"))
    return system().task_pgd(process(spec))


def translate(address: int, spec: Process = None) -> paging.Translation:
    """Walk the page tables of a process (None: the selected vCPU's CR3) for a virtual
    address; raises paging.PageWalkError, an Error, where the walk stops."""
    levels = _levels()
    return paging.translate(SESSION.pages().read, _root(spec), address & (2 ** 64 - 1), levels)


def pagetable(spec: Process = None, kernel: bool = False) -> list[paging.Range]:
    """Every mapped range of a process's page tables (None: the selected vCPU's CR3; with
    kernel=True, the kernel's own), merged as `memcheck pagetable` merges them."""
    levels = _levels()
    root = system().kmem.kernel_pgd if kernel else _root(spec)
    found = paging.leaves(SESSION.pages().read, root, levels, merge_runs=True, memo=SESSION.leaf_memo)
    return paging.coalesce(found)


def describe(address: int, spec: Process = None) -> AddressInfo:
    """What an address is: process, mapping, file offset, symbol, source line, physical address."""
    address &= 2 ** 64 - 1
    task = process(spec) if address < addrinfo.USER_TOP else None
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
