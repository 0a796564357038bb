"""Kernel breakpoints for live tracing: one internal breakpoint per chosen hook whose
stop() reads registers, lets the core decode the event, and resumes the guest unless
a stop-on rule matched.  Exactly one debug stop per event; no finish breakpoints."""
from __future__ import annotations

import time
from typing import TextIO

import gdb

from .. import tracing
from ..target import TargetError, u64
from .session import SESSION


class HookBreakpoint(gdb.Breakpoint):
    """An internal breakpoint at a hook function's first instruction."""

    def __init__(self, hook: tracing.ChosenHook, controller: "TraceController", hardware: bool) -> None:
        kind = gdb.BP_HARDWARE_BREAKPOINT if hardware else gdb.BP_BREAKPOINT
        super().__init__(f"*{hook.address:#x}", kind, internal=True)
        self.silent = True
        self.hook, self.controller = hook, controller

    def stop(self) -> bool:
        return self.controller.on_hit(self.hook)


class TraceController:
    """Places and removes the hooks, feeds hits to the Tracer, keeps cost figures."""

    def __init__(self) -> None:
        self.tracer = tracing.Tracer()
        self.breakpoints: list[HookBreakpoint] = []
        self.hooks: list[tracing.ChosenHook] = []
        self.missing: list[str] = []
        self.log: TextIO | None = None
        self.hits = 0
        self.handler_seconds = 0.0
        self.errors = 0
        self.last_error = ""
        self.duplicates = 0
        self._last_hit: dict[int, tuple] = {}

    @property
    def active(self) -> bool:
        return bool(self.breakpoints)

    def start(self, groups: list[str] | None = None, hardware: bool = False) -> None:
        """Place the hooks (all groups, or only `groups`); software breakpoints unless `hardware`."""
        if self.active:
            raise TargetError("tracing is already on")
        if SESSION.target.cpu_count() > 1:
            raise TargetError("tracing needs a 1-vCPU guest: on a multi-vCPU QEMU target gdb 13 stops "
                              "Python breakpoint handlers with 'Cannot execute this command while the "
                              "target is running'")
        system = SESSION.system()
        self.hooks, self.missing = tracing.choose_hooks(_resolve)
        if groups:
            self.hooks = [h for h in self.hooks if h.group in groups]
        if not self.hooks:
            raise TargetError("no hook function of this kernel could be found: " + "; ".join(self.missing))
        self.tracer.seed(system)
        self.breakpoints = [HookBreakpoint(h, self, hardware) for h in self.hooks]

    def stop_tracing(self) -> int:
        count = len(self.breakpoints)
        for bp in self.breakpoints:
            if bp.is_valid():
                bp.delete()
        self.breakpoints = []
        return count

    def open_log(self, path: str) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        if path:
            self.log = open(path, "a", encoding="utf-8")

    def on_hit(self, hook: tracing.ChosenHook) -> bool:
        """Called from stop(): must be quick and must never raise into gdb."""
        t0 = time.perf_counter()
        self.hits += 1
        try:
            SESSION.on_cont(None)                      # the guest ran since the last read
            system = SESSION.system()
            cpu = SESSION.selected_cpu()
            args = _arguments(hook, system)
            signature = (hook.address, SESSION.target.register("rsp"), tuple(args))
            if self._last_hit.get(cpu) == signature:
                # the same call reported again: the step past the breakpoint was cut short
                # (QEMU entered an exception first) and the entry instruction hit once more
                self.duplicates += 1
                return False
            self._last_hit[cpu] = signature
            event = self.tracer.handle(hook, cpu, args, system)
            if self.log is not None:
                self.log.write(tracing.event_json_line(event) + "\n")
                self.log.flush()
            stop = self.tracer.should_stop(event)
            if stop:
                gdb.write(f"memcheck: stopped on {event.text()}\n")
            return stop
        except Exception as e:  # a broken read must not kill the trace or gdb
            self.errors += 1
            self.last_error = f"{hook.symbol}: {type(e).__name__}: {e}"
            return False
        finally:
            self.handler_seconds += time.perf_counter() - t0


def _resolve(symbol: str) -> int | None:
    try:
        return SESSION.target.symbol_address(symbol)
    except TargetError:
        return None


def _arguments(hook: tracing.ChosenHook, system) -> list[int]:
    """The hook's arguments, from registers or from the saved user registers (pt_regs)."""
    if hook.args == tracing.REGS:
        return [SESSION.target.register(r) for r in tracing.ARG_REGS[:hook.nargs]]
    layout = SESSION.target.layout("struct pt_regs")
    raw = system.kmem.read(SESSION.target.register("rdi"), layout.size)
    return [u64(raw, layout.offset(name)) for name in tracing.PT_REGS_ARGS[:hook.nargs]]



CONTROLLER = TraceController()
