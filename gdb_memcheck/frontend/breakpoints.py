"""The one breakpoint class of the breakpoint-driven features, and the kernel hooks they
share: each hook function any subscriber of the event source wants gets exactly one
breakpoint, whose stop() hands the hit to the gdb-free source and resumes the guest
unless a subscriber asks to stop."""
from __future__ import annotations

from typing import Callable

import gdb

from .. import kevents
from ..target import TargetError
from .session import SESSION


class SilentBreakpoint(gdb.Breakpoint):
    """An internal, silent breakpoint whose stop() asks a handler whether to stop."""

    def __init__(self, address: int, handler: Callable[[int], bool], hardware: bool = False) -> None:
        kind = gdb.BP_HARDWARE_BREAKPOINT if hardware else gdb.BP_BREAKPOINT
        super().__init__(f"*{address:#x}", kind, internal=True)
        self.silent = True
        self.address, self.handler = address, handler

    def stop(self) -> bool:
        return self.handler(self.address)

    def remove(self) -> None:
        if self.is_valid():
            self.delete()


def refuse_multi_vcpu(feature: str) -> None:
    """Tracing and tracking refuse a multi-vCPU guest in one line (see README, known limits)."""
    if SESSION.target.cpu_count() > 1:
        raise TargetError(f"{feature} needs a 1-vCPU guest: on a multi-vCPU QEMU target gdb 13 stops "
                          "Python breakpoint handlers with 'Cannot execute this command while the "
                          "target is running'")


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
        when one is missing and the feature needs them all."""
        refuse_multi_vcpu(feature)
        chosen, missing = kevents.choose_hooks(resolve, groups)
        if not chosen or (missing and require_all):
            raise TargetError(f"{feature} needs kernel functions this kernel lacks: " + "; ".join(missing))
        subscription = self.source.subscribe(subscriber, [h.group for h in chosen])
        self.missing = missing
        for hook in chosen:
            if hook.group not in self.placed:
                bp = SilentBreakpoint(hook.address, lambda _address, h=hook: self._hit(h), hardware)
                self.placed[hook.group] = (hook, bp)
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
