"""The one breakpoint class of the breakpoint-driven features, and the kernel hooks they
share: each hook function any subscriber of the event source wants gets exactly one
breakpoint, whose stop() hands the hit to the gdb-free source and resumes the guest
unless a subscriber asks to stop."""
from __future__ import annotations

import signal
import time
from typing import Callable

import gdb

from ..linux import kevents
from ..target import TargetError
from .session import SESSION


class Hits:
    """When memcheck's breakpoints last fired, and the conditions a script set (run_until)
    that stop the guest at one of them: a stop there is synchronous, where an interrupt
    racing a breakpoint's handler is not."""

    def __init__(self) -> None:
        self.last = 0.0
        self.stop_when: list[Callable[[], bool]] = []

    def after(self, stop: bool) -> bool:
        self.last = time.monotonic()
        return stop or any(_holds(condition) for condition in self.stop_when)


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return bool(condition())
    except Exception:  # noqa: BLE001 - a script's broken condition stops the guest rather than gdb
        return True


HITS = Hits()


class SilentBreakpoint(gdb.Breakpoint):
    """An internal, silent breakpoint whose stop() asks a handler whether to stop.  It never
    deletes itself there (gdb 13 crashes within 50 hits when a breakpoint does)."""

    interrupted = 0         # Ctrl-Cs that arrived during a handler, on any breakpoint
    landed = 0              # hits taken at a stop that landed on the breakpoint (see taken_at_stop)
    placed: dict[int, "SilentBreakpoint"] = {}

    def __init__(self, address: int, handler: Callable[[int], bool], hardware: bool = False,
                 read_watch: int = 0) -> None:
        """A breakpoint at `address`, or with `read_watch` a read watchpoint on that many bytes there."""
        if read_watch:
            watched = {1: "char", 2: "short", 4: "int"}.get(read_watch, "long")
            super().__init__(f"*({watched} *){address:#x}", gdb.BP_WATCHPOINT, gdb.WP_READ, internal=True)
        else:
            kind = gdb.BP_HARDWARE_BREAKPOINT if hardware else gdb.BP_BREAKPOINT
            super().__init__(f"*{address:#x}", kind, internal=True)
            SilentBreakpoint.placed[address] = self
        self.silent = True
        self.address, self.handler = address, handler

    def stop(self) -> bool:
        """Run the handler with Ctrl-C held back, so an event is never left half done; a
        Ctrl-C that came meanwhile is delivered after it, and stops the guest.  A script's
        run_until condition that holds stops it too (HITS)."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        stop = True
        try:
            stop = self.handler(self.address)
        except KeyboardInterrupt:               # an interrupt gdb raised without the signal
            SilentBreakpoint.interrupted += 1
        finally:
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            except KeyboardInterrupt:
                SilentBreakpoint.interrupted += 1
                stop = True
        return HITS.after(stop)

    def remove(self) -> None:
        if SilentBreakpoint.placed.get(self.address) is self:
            del SilentBreakpoint.placed[self.address]
        if self.is_valid():
            self.delete()


def taken_at_stop(event) -> None:
    """A stop that is not a breakpoint hit (an interrupt) can leave the vCPU on the first
    instruction of one of these breakpoints without having hit it.  gdb steps over the
    breakpoint at the pc it resumes from, so that hit would be lost (a do_exit never seen);
    it is taken now, at the stop."""
    if not isinstance(event, gdb.BreakpointEvent):      # a hit had every breakpoint at its pc evaluated
        take_hit_at_pc()


def take_hit_at_pc() -> None:
    """Run the breakpoint at the selected vCPU's pc, if one of these is there (also wanted
    when hooks are placed on the instruction a stopped vCPU is about to run)."""
    try:
        pc = int(gdb.parse_and_eval("$pc")) & 0xFFFF_FFFF_FFFF_FFFF
    except gdb.error:
        return
    bp = SilentBreakpoint.placed.get(pc)
    if bp is not None and bp.is_valid():
        SilentBreakpoint.landed += 1
        bp.stop()


def event_path() -> dict:
    """How breakpoint events are taken, for the status commands: the same way on any number
    of vCPUs (a Python stop() that returns False), and how many Ctrl-Cs a handler held back."""
    return {"vcpus": SESSION.target.cpu_count(), "handled_in": "Breakpoint.stop()",
            "interrupted_handlers": SilentBreakpoint.interrupted, "taken_at_stops": SilentBreakpoint.landed}


def event_path_text(path: dict) -> str:
    held = path["interrupted_handlers"]
    note = f"; {held} Ctrl-C held until a handler finished" if held else ""
    return f"events handled in {path['handled_in']} on {path['vcpus']} vCPU{'s' if path['vcpus'] > 1 else ''}{note}"


def resolve(symbol: str) -> int | None:
    """A kernel function's address, or None when this kernel has no such function."""
    try:
        return SESSION.target.symbol_address(symbol)
    except TargetError:
        return None


class KernelHooks:
    """The event source and the breakpoints placed for what its subscribers want."""

    def __init__(self) -> None:
        self.source = kevents.KernelEventSource()
        self.placed: dict[str, tuple[kevents.ChosenHook, SilentBreakpoint]] = {}
        self.missing: list[str] = []

    def subscribe(self, subscriber: kevents.Subscriber, groups: list[str], feature: str,
                  hardware: bool = False, require_all: bool = False) -> kevents.Subscription:
        """Place the hooks `groups` need and subscribe; refuse when none of them exists, or
        when one is missing and the feature needs them all, or a dump is open."""
        SESSION.require_live(feature)
        chosen, missing = kevents.choose_hooks(resolve, SESSION.arch, groups)
        if not chosen or (missing and require_all):
            raise TargetError(f"{feature} needs kernel functions this kernel lacks: " + "; ".join(missing))
        subscription = self.source.subscribe(subscriber, [h.group for h in chosen])
        self.missing = missing
        for hook in chosen:
            if hook.group not in self.placed:
                bp = SilentBreakpoint(hook.address, lambda _address, h=hook: self._hit(h), hardware)
                self.placed[hook.group] = (hook, bp)
                if hook.group == "exit":
                    self.source.note_exiting(SESSION.system())
        take_hit_at_pc()
        return subscription

    def unsubscribe(self, subscriber: kevents.Subscriber) -> int:
        """Stop feeding `subscriber`; remove the hooks nobody wants any more; say how many."""
        self.source.unsubscribe(subscriber)
        wanted = self.source.wanted_groups()
        removed = 0
        for group in [g for g in self.placed if g not in wanted]:
            self.placed.pop(group)[1].remove()
            removed += 1
        return removed

    def hooks(self, subscription: kevents.Subscription) -> list[kevents.ChosenHook]:
        return [hook for group, (hook, _bp) in self.placed.items() if group in subscription.groups]

    def breakpoints(self, subscription: kevents.Subscription) -> list[SilentBreakpoint]:
        return [bp for group, (_hook, bp) in self.placed.items() if group in subscription.groups]

    def _hit(self, hook: kevents.ChosenHook) -> bool:
        SESSION.on_cont(None)                      # the guest ran since the last read
        return self.source.hit(hook, SESSION.selected_cpu(), SESSION.system)


KERNEL_HOOKS = KernelHooks()
