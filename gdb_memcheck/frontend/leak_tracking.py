"""Leak tracking's breakpoint side: the gdb-free MallocTracker asks for user-space
breakpoints and gets their hits back; it subscribes to the shared kernel hooks for
fork, exec-ready and exit."""
from __future__ import annotations

import gdb

from ..leakcheck import heapscan, leaks, malloc_tracker
from ..leakcheck.alloctrack import BadFree
from ..linux import kevents
from ..linux.system import System
from ..linux.tasks import Task
from ..report.views import bad_free_json, bad_free_text, exit_report_text
from ..symbols.stackframes import Frame
from .breakpoints import KERNEL_HOOKS, SilentBreakpoint, event_path
from .session import SESSION


class GdbTrackerOutput:
    """What the tracker tells, printed as it happens; `exit_report` is the setting that
    chooses what a tracked process's exit prints."""

    def __init__(self) -> None:
        self.exit_report = "summary"

    def bad_free(self, bad: BadFree, frames: dict[int, Frame]) -> None:
        gdb.write("memcheck: " + bad_free_text(bad, frames) + "\n")

    def exited(self, report: leaks.LeakReport) -> None:
        gdb.write(exit_report_text(report, self.exit_report))

    def not_tracking(self, reason: str) -> None:
        gdb.write(f"memcheck: not tracking {reason}\n")


class GdbUserBreakpoints:
    """The tracker's user-space breakpoints as gdb breakpoints.  insert() and remove_all()
    run inside other breakpoints' stop(), where gdb's manual advises against changing
    breakpoints; creating and deleting them there is what the integration tests exercise
    on gdb 13 with QEMU 7.2."""

    def __init__(self) -> None:
        self.placed: dict[int, SilentBreakpoint] = {}
        self.watched: dict[int, SilentBreakpoint] = {}
        self.tracker: malloc_tracker.MallocTracker | None = None

    def insert(self, address: int) -> None:
        if address not in self.placed:
            self.placed[address] = SilentBreakpoint(address, self._hit)

    def watch(self, address: int, length: int) -> None:
        if address not in self.watched:
            self.watched[address] = SilentBreakpoint(address, self._watch_hit, read_watch=length)

    def remove_all(self) -> None:
        for bp in [*self.placed.values(), *self.watched.values()]:
            bp.remove()
        self.placed.clear()
        self.watched.clear()

    def _hit(self, address: int) -> bool:
        SESSION.on_cont(None)                      # the guest ran since the last read
        return self.tracker.user_hit(address, SESSION.selected_cpu(), SESSION.system)

    def _watch_hit(self, address: int) -> bool:
        SESSION.on_cont(None)
        return self.tracker.watch_hit(address, SESSION.selected_cpu(), SESSION.system)


class TrackingController:
    """Starts and stops tracking; the tracker does the rest."""

    def __init__(self) -> None:
        self.user_breakpoints = GdbUserBreakpoints()
        self.output = GdbTrackerOutput()
        self.tracker = malloc_tracker.MallocTracker(self.user_breakpoints, SESSION.symbols, self.output)
        self.user_breakpoints.tracker = self.tracker
        self.subscription: kevents.Subscription | None = None

    @property
    def active(self) -> bool:
        return self.subscription is not None

    def track_process(self, process: Task) -> str:
        self._start()
        try:
            return self.tracker.track_process(SESSION.system(), process)
        except Exception:
            if not self.tracker.hooks and not self.tracker.exec_paths:
                self.untrack()
            raise

    def track_exec(self, path: str) -> str:
        self.tracker.check_arch(SESSION.system().arch)
        self._start()
        return self.tracker.track_exec(path)

    def untrack(self) -> int:
        """Remove every tracking breakpoint; keep the reports."""
        count = len(self.user_breakpoints.placed) + len(self.user_breakpoints.watched)
        self.user_breakpoints.remove_all()
        if self.subscription is not None:
            count += len(KERNEL_HOOKS.breakpoints(self.subscription))
            KERNEL_HOOKS.unsubscribe(self.tracker)
            self.subscription = None
        self.tracker.reset()
        return count

    def check(self, system: System, process: Task, scan: bool = False) -> leaks.LeakReport:
        """A process's leaks now: from its allocation map when tracked (unless `scan`), else
        from a scan of its heap."""
        if self.tracker.tracks(process.tgid) and not scan:
            return self.tracker.live_report(system, process)
        return heapscan.scan_report(system, process, self.tracker.symbols())

    def status(self) -> dict:
        kernel = self.subscription.stats if self.subscription else kevents.HitStats()
        doc = {"active": self.active, **self.tracker.status(kernel), "event_path": event_path(),
               "bad_frees": [bad_free_json(bad, frames) for bad, frames in self.tracker.bad_frees()]}
        doc["breakpoints"]["kernel"] = len(KERNEL_HOOKS.breakpoints(self.subscription)) if self.subscription else 0
        return doc

    def _start(self) -> None:
        if self.active:
            return
        self.subscription = KERNEL_HOOKS.subscribe(self.tracker, list(malloc_tracker.KERNEL_GROUPS), "tracking",
                                                   require_all=True)


CONTROLLER = TrackingController()
