"""Live tracing's breakpoint side: the tracer subscribes to the shared kernel hooks; each
event costs exactly one debug stop (no finish breakpoints) and the guest resumes unless a
stop-on rule matched."""
from __future__ import annotations

from typing import TextIO

import gdb

from .. import tracing
from ..linux import kevents
from ..target import TargetError
from .breakpoints import KERNEL_HOOKS, SilentBreakpoint
from .session import SESSION


class TraceController:
    """Starts and stops tracing, keeps the event log file and the cost figures."""

    def __init__(self) -> None:
        self.tracer = tracing.Tracer()
        self.subscription: kevents.Subscription | None = None     # the last one, kept after `off`
        self.active = False
        self.log: TextIO | None = None

    @property
    def stats(self) -> kevents.HitStats:
        """Hits, handler time and errors since the last `trace on`."""
        return self.subscription.stats if self.subscription else kevents.HitStats()

    @property
    def hooks(self) -> list[kevents.ChosenHook]:
        return KERNEL_HOOKS.hooks(self.subscription) if self.active else []

    @property
    def breakpoints(self) -> list[SilentBreakpoint]:
        return KERNEL_HOOKS.breakpoints(self.subscription) if self.active else []

    def start(self, groups: list[str] | None = None, hardware: bool = False) -> None:
        """Hook all traced groups, or only `groups`; software breakpoints unless `hardware`."""
        if self.active:
            raise TargetError("tracing is already on")
        system = SESSION.system()
        self.subscription = KERNEL_HOOKS.subscribe(self, list(groups or tracing.TRACED_GROUPS), "tracing", hardware)
        self.active = True
        self.tracer.seed(system)

    def on_event(self, event: kevents.KernelEvent, system) -> bool:
        stop = self.tracer.on_event(event, system)
        if stop:
            gdb.write(f"memcheck: stopped on {self.tracer.last_stop.text()}\n")
        return stop

    def stop_tracing(self) -> int:
        if not self.active:
            return 0
        self.active = False
        return KERNEL_HOOKS.unsubscribe(self)

    def open_log(self, path: str) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
            self.tracer.log = None
        if path:
            self.log = open(path, "a", encoding="utf-8")
            self.tracer.log = self._write_log

    def _write_log(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()


CONTROLLER = TraceController()
