"""Tracking mode of `memcheck leaks`, without gdb: breakpoints on the malloc family of each
tracked process (filtered by pid, since the same virtual address runs in every process),
one on the return site of each call that hands out a block, and three kernel events from
the shared event source: fork (the child inherits the map), exec-ready (the map starts
again at the program's entry) and exit (the leak report, taken before the mm is torn down).
The frontend places the breakpoints this asks for and hands their hits back."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from ..arch import Arch
from ..glibc import heap as glibc_heap
from ..linux.kevents import HitStats, KernelEvent, RepeatedHits
from ..linux.memory import UserMemory
from ..linux.system import System
from ..linux.tasks import Task
from ..symbols.elfsyms import SymbolCache
from ..symbols.stackframes import Frame, frame
from ..symbols.unwind import PC, ModuleMap, Unwinder, frame_registers
from ..target import TargetError
from . import alloctrack, heapscan, leaks, preload_ring
from .program_symbols import (allocator_exits, auxv_entry, flag_read_pc, main_address, malloc_family, malloc_flag,
                              preload_symbols, runtime_address)

KERNEL_GROUPS = ("new-task", "exec-ready", "exit")
ARGS = 4                         # the malloc family takes at most four arguments
MALLOC_STOPS = ("call", "return", "watch")    # set memcheck malloc-stops


class Heap(Protocol):
    """What the heap walker tells tracking: the blocks live now, and their classification."""

    def live_blocks(self, system: System, process: Task) -> list[tuple[int, int]]:
        """(address, usable size) of every live block, from a scan of the process's heap."""

    def classify(self, system: System, process: Task, blocks: list[leaks.Block],
                 not_roots: list[tuple[int, int]] = ()) -> None:
        """Sort tracked blocks into leak kinds by a root scan of the process, `not_roots` left out."""

    def usable_size(self, system: System, process: Task, block: int) -> int:
        """The usable size of a block malloc just handed out, from its chunk."""


class GlibcHeap:
    """The Heap of a glibc process, walked from outside (heapscan)."""

    def live_blocks(self, system: System, process: Task) -> list[tuple[int, int]]:
        return [(b.address, b.size) for b in heapscan.scan(system, process).index.blocks]

    def classify(self, system: System, process: Task, blocks: list[leaks.Block],
                 not_roots: list[tuple[int, int]] = ()) -> None:
        heapscan.classify_tracked(system, process, blocks, not_roots)

    def usable_size(self, system: System, process: Task, block: int) -> int:
        return glibc_heap.usable_size(system.user_memory(process).read, block)


@dataclass(eq=False)
class RecordedStack:
    """A preload ring record's registers and copy of the stack, unwound only when a report or
    a bad free needs the frames: most recorded blocks are freed before anyone looks, and an
    unwind costs more than the rest of a record's handling."""

    registers: dict[int, int]
    call: preload_ring.RingCall
    pcs: tuple[int, ...] | None = None


class TrackerOutput(Protocol):
    """Where the tracker tells what happened while the guest ran (the frontend prints it)."""

    def bad_free(self, bad: alloctrack.BadFree, frames: dict[int, Frame]) -> None:
        """An invalid or double free, just seen, with its stacks symbolized."""

    def exited(self, report: leaks.LeakReport) -> None:
        """A tracked process's last thread entered do_exit: its report."""

    def not_tracking(self, reason: str) -> None:
        """A process that executed a tracked program cannot be tracked, and why."""


class UserBreakpoints(Protocol):
    """Where the tracker's user-space breakpoints go (gdb breakpoints, or a test's set)."""

    def insert(self, address: int) -> None:
        """Place a breakpoint at `address` whose hits come back through MallocTracker.user_hit."""

    def watch(self, address: int, length: int) -> None:
        """Place a read watchpoint on `length` bytes at `address`, whose hits come back through
        MallocTracker.watch_hit (QEMU flushes no translations for a watchpoint stop)."""

    def remove_all(self) -> None:
        """Delete every breakpoint and watchpoint placed."""


@dataclass
class ProcessHooks:
    """Where the malloc family of one tracked process lives, and its start-up breakpoints."""

    pid: int
    family: dict[int, str] = field(default_factory=dict)     # address -> function (entry breakpoints)
    exits: dict[int, str] = field(default_factory=dict)      # return instruction -> function (malloc-stops return)
    internal: tuple[tuple[int, int], ...] = ()  # the allocator's functions: a call returning into them is its own
    watched: dict[int, str] = field(default_factory=dict)    # pc after the flag's first read -> function
    allocator: str = ""             # the module that defines the family (libc, or a static executable)
    frees_by_scan: bool = False     # no free breakpoint: frees are found by a heap scan at each report
    ring: int | None = None         # the preload library's ring (cooperative mode): no malloc-family stop
    ring_full: int | None = None    # the function it calls when full
    cursor: int = 0                 # the next ring record to read
    dropped_before: int = 0         # calls the library dropped before tracking began (not this map's loss)
    entries: dict[str, int] = field(default_factory=dict)    # function -> run-time entry (ring records' first frame)
    entry: int | None = None        # the program's entry point, while waiting for it after exec
    main: int | None = None         # main(), while waiting for it
    modules: ModuleMap | None = None


class MallocTracker:
    """Follows tracked processes through their malloc-family calls and kernel events."""

    def __init__(self, breakpoints: UserBreakpoints, symbols: Callable[[], SymbolCache],
                 output: TrackerOutput, heap: Heap | None = None) -> None:
        self.breakpoints, self.symbols, self.output = breakpoints, symbols, output
        self.heap = heap or GlibcHeap()
        self.depth = 16                 # frames kept per allocation stack (set memcheck stack-depth)
        self.malloc_stops = "call"      # set memcheck malloc-stops
        self.free_stops = True          # set memcheck free-stops
        self.reports: list[leaks.LeakReport] = []
        self.frames: dict[int, dict[int, Frame]] = {}       # pid -> pc -> symbolized frame
        self.tracker = alloctrack.AllocationTracker()
        self.reset()

    def reset(self) -> None:
        """Forget what is tracked (not the reports, bad frees and their frames)."""
        bad = self.tracker.bad_frees
        self.tracker = alloctrack.AllocationTracker()
        self.tracker.bad_frees = bad
        self.hooks: dict[int, ProcessHooks] = {}
        self.exec_paths: set[str] = set()
        self.user_addresses: set[int] = set()
        self.return_sites: set[int] = set()
        self.unwinder: Unwinder | None = None  # for the guest's architecture, made at its first stack
        self.watches: set[int] = set()          # read watchpoints: malloc's flag, and return-address slots
        self.untracked: list[str] = []          # processes that executed a program we cannot track
        self.stats = HitStats()                 # user-space stops
        self.repeats = RepeatedHits()

    # -- what to track --------------------------------------------------------
    def track_process(self, system: System, process: Task) -> str:
        """Start tracking a running process: its live blocks are taken from a heap scan."""
        pid = process.tgid
        if pid in self.hooks:
            raise TargetError(f"pid {pid} ({process.comm}) is already tracked")
        hooks = ProcessHooks(pid)
        self._place_family(system, process, hooks)      # refuses before anything is tracked
        self.hooks[pid] = hooks
        self.tracker.track(pid, in_main=True, complete=len(system.threads(process)) == 1, since="attach")
        seeded = self._seed(system, process, alloctrack.Origin.PREEXISTING)
        return f"tracking pid {pid} ({process.comm}): {len(hooks.family)} malloc-family entry points; {seeded}"

    def check_arch(self, arch: Arch, preload: str = "") -> None:
        """malloc-stops return and watch and the preload ring read x86-64 code and stacks (and
        the lab builds the library for x86-64 only): refused on other guests in one line."""
        if arch.name == "x86_64":
            return
        if preload:
            raise TargetError(f"the preload ring of {preload} is read on x86-64 guests only (this one is {arch.name})")
        if self.malloc_stops != "call":
            raise TargetError(f"malloc-stops {self.malloc_stops} works on x86-64 guests only (this one is "
                              f"{arch.name}): set memcheck malloc-stops call")

    def track_exec(self, path: str) -> str:
        """Track every process that executes `path` from now on, from its first instruction."""
        self.exec_paths.add(path)
        return f"tracking processes that execute {path}"

    # -- kernel events ----------------------------------------------------------
    def on_event(self, event: KernelEvent, system: System) -> bool:
        """fork, exec-ready, exit and thread-exit of tracked processes; never stops."""
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"), None)
        if handler is not None:
            handler(event, system)
        return False

    def _on_fork(self, event: KernelEvent, system: System) -> None:
        parent = self.hooks.get(event.current.tgid)
        child = event.child.tgid
        self._drain_if_ring(system, event.current)      # the child's copy of the ring holds the same calls
        if parent is not None and self.tracker.forked(event.current.tgid, child):
            self.hooks[child] = replace(parent, pid=child, family=dict(parent.family))

    def _on_exec_ready(self, event: KernelEvent, system: System) -> None:
        """start_thread: the new image is mapped and its auxv written; libc is not yet."""
        current = event.current
        pid = current.tgid
        if pid not in self.hooks and not exec_matches(system.exe_path(current), self.exec_paths):
            return
        self.tracker.forget(pid)
        self.tracker.track(pid, in_main=False, complete=True, since="exec")
        entry = auxv_entry(system, current)
        self.hooks[pid] = ProcessHooks(pid, entry=entry)
        self._insert(entry)

    def _on_thread_exit(self, event: KernelEvent, system: System) -> None:
        hooks = self.hooks.get(event.current.tgid)
        if hooks is None:
            return
        self.tracker.thread_exited(event.current.tgid, event.current.pid)
        proc = self.tracker.processes.get(event.current.tgid)
        if hooks.frees_by_scan and proc is not None:
            # the thread's tcache can be read only while it exists: its freed chunks would
            # look live to the scan at the process's exit
            self._reconcile(system, event.current, proc)

    def _on_exit(self, event: KernelEvent, system: System) -> None:
        current = event.current
        if self.hooks.get(current.tgid) is None:
            return
        proc = self.tracker.processes.get(current.tgid)
        if proc is not None:
            self._drain_if_ring(system, current)
            report = self._report(system, current, proc, "exited")
            self.reports.append(report)
            self.output.exited(report)
        self.tracker.forget(current.tgid)
        self.hooks.pop(current.tgid)
        if not self.hooks:
            self._drop_user_breakpoints()

    def _drop_user_breakpoints(self) -> None:
        """No tracked process is left: its malloc-family, start-up and return-site breakpoints
        go, so a long --exec session does not pile up breakpoints gdb re-inserts at every stop."""
        self.breakpoints.remove_all()
        self.user_addresses.clear()
        self.return_sites.clear()
        self.watches.clear()
        self.repeats.clear()

    # -- user-space breakpoints -------------------------------------------------
    def user_hit(self, address: int, cpu: int, system: Callable[[], System]) -> bool:
        """A malloc-family entry, return site, program entry or main was hit; never stops."""
        def handle() -> bool:
            snapshot = system()
            self._user_hit(snapshot, snapshot.current(cpu), address)
            return False
        return self.stats.run(f"{address:#x}", handle)

    def _user_hit(self, system: System, current: Task, address: int) -> None:
        hooks = self.hooks.get(current.tgid)
        if hooks is None:
            return
        if address in hooks.family:
            self._entry(system, current, hooks, address)
            return
        self.repeats.forget(current.pid)         # the thread ran on: a next entry is a new call
        if address in hooks.exits:
            self._allocator_return(system, current, hooks, address)
        if address in self.return_sites:
            self._return(system, current)
        if address == hooks.entry:
            self._at_entry(system, current, hooks)
        if address == hooks.ring_full:
            self._drain(system, current, hooks, acknowledge=True)
        if address == hooks.main:
            hooks.main = None
            self._drain_if_ring(system, current)         # what the ring holds was allocated before main
            self.tracker.processes[current.tgid].in_main = True

    def _entry(self, system: System, current: Task, hooks: ProcessHooks, address: int) -> None:
        reg, calls = system.target.register, system.arch.calls
        args = [reg(r) for r in calls.args[:ARGS]]
        sp = reg(calls.sp)
        memory = system.user_memory(current)
        site = reg(calls.link) if calls.link else memory.u64(sp)      # where the call returns to
        if self._repeated(system, current.pid, (address, sp, site, *args), memory, hooks.family[address] == "free"):
            return
        modules = self._modules(system, current, hooks, [address])
        registers = frame_registers(system.arch, address, sp, reg(calls.frame_pointer), site if calls.link else None)
        stack = tuple(self._unwinder(system).unwind(registers, memory.read, modules, self.depth))
        caller = modules.module(site)
        wait, bad = self.tracker.entry(current.tgid, current.pid, hooks.family[address], args, sp, stack,
                                       from_allocator=caller is not None and caller.path == hooks.allocator)
        if bad is not None:
            frames = self._symbolize(current.tgid, bad.stack + bad.freed_by + (bad.block.stack if bad.block else ()),
                                     modules)
            self.output.bad_free(bad, frames)
        if wait and site not in self.return_sites:
            self.return_sites.add(site)
            self._insert(site)

    def _repeated(self, system: System, tid: int, call: tuple, memory: UserMemory, free: bool) -> bool:
        """Whether this entry hit is the thread's last one reported again: the same `call`
        (entry, stack pointer, return address, arguments) and scratch registers.  glibc's
        free writes into its block (tcache key or list link), so a free entered again with
        its block unchanged is the same call, even from a loop with equal registers; a
        replacement's free may not write, so two frees of a block from two call sites differ
        by their return addresses."""
        block = memory.read(call[3], 16) if free and call[3] else b""
        scratch = tuple(system.target.register(r) for r in system.arch.calls.scratch)
        if self.repeats.seen(tid, (*call, *scratch, block)):
            self.stats.repeated += 1
            return True
        return False

    def watch_hit(self, address: int, cpu: int, system: Callable[[], System]) -> bool:
        """A read of malloc's flag or of a watched return-address slot; never stops."""
        def handle() -> bool:
            snapshot = system()
            current = snapshot.current(cpu)
            hooks = self.hooks.get(current.tgid)
            if hooks is not None:
                self.repeats.forget(current.pid)        # the thread ran on: its next free is a new call
                pc = snapshot.target.register(snapshot.arch.calls.pc)
                if pc in hooks.watched:
                    self._watched_entry(snapshot, current, hooks, pc)
                else:
                    self._return(snapshot, current)     # a return through a watched slot, or any other read
            return False
        return self.stats.run(f"watch {address:#x}", handle)

    def _watched_entry(self, system: System, current: Task, hooks: ProcessHooks, pc: int) -> None:
        """A call stopped just after it read malloc's flag: arguments in their registers, the
        entry's stack pointer from the CFA; its return is watched at the return-address slot."""
        reg, calls = system.target.register, system.arch.calls
        name = hooks.watched[pc]
        args = [reg(r) for r in calls.args[:ARGS]]
        memory = system.user_memory(current)
        modules = self._modules(system, current, hooks, [pc])
        registers = frame_registers(system.arch, pc, reg(calls.sp), reg(calls.frame_pointer))
        unwinder = self._unwinder(system)
        caller = unwinder.caller(registers, memory.read, modules)
        if caller is None:
            raise TargetError(f"no call-frame information at {pc:#x} ({name})")
        sp = caller[system.arch.dwarf.sp] - calls.sp_after_return
        stack = unwinder.unwind(registers, memory.read, modules, self.depth)
        entry = next(a for a, function in hooks.family.items() if function == name)
        module = modules.module(caller[PC])
        wait, bad = self.tracker.entry(current.tgid, current.pid, name, args, sp, (entry, *stack[1:]),
                                       from_allocator=module is not None and module.path == hooks.allocator)
        if bad is not None:
            self.output.bad_free(bad, self._symbolize(current.tgid, bad.stack + bad.freed_by + (
                bad.block.stack if bad.block else ()), modules))
        if wait:
            self._watch(sp, 8)

    def _allocator_return(self, system: System, current: Task, hooks: ProcessHooks, address: int) -> None:
        """A return instruction of the allocator (malloc-stops return): the block is in the
        result register, its size in its chunk, the caller's stack as at entry."""
        reg, calls = system.target.register, system.arch.calls
        sp = reg(calls.sp)
        memory = system.user_memory(current)
        site = reg(calls.link) if calls.link else memory.u64(sp)
        if any(start <= site < end for start, end in hooks.internal):
            return                               # the allocator calling itself (realloc -> malloc)
        block = reg(calls.result)
        size = self.heap.usable_size(system, current, block) if block else 0
        modules = self._modules(system, current, hooks, [address])
        registers = frame_registers(system.arch, address, sp, reg(calls.frame_pointer), site if calls.link else None)
        stack = self._unwinder(system).unwind(registers, memory.read, modules, self.depth)
        via = hooks.exits[address]
        entry = next(a for a, name in hooks.family.items() if name == via)
        self.tracker.allocated(current.tgid, via, block, size, (entry, *stack[1:]))

    def _return(self, system: System, current: Task) -> None:
        reg, calls = system.target.register, system.arch.calls
        self.tracker.returned(current.tgid, current.pid, reg(calls.sp) - calls.sp_after_return, reg(calls.result),
                              lambda address: system.user_memory(current).u64(address))

    def _unwinder(self, system: System) -> Unwinder:
        if self.unwinder is None or self.unwinder.dwarf is not system.arch.dwarf:
            self.unwinder = Unwinder(system.arch)
        return self.unwinder

    def _at_entry(self, system: System, current: Task, hooks: ProcessHooks) -> None:
        """The program's first instruction: its libraries are mapped, main is not running yet."""
        hooks.entry = None
        try:
            self._place_family(system, current, hooks)
        except TargetError as e:                 # e.g. a static binary without symbols
            self.untracked.append(str(e))
            self.output.not_tracking(str(e))
            self.tracker.forget(current.tgid)
            del self.hooks[current.tgid]
            return
        self._seed(system, current, alloctrack.Origin.TRANSITION)
        main = main_address(hooks.modules, system.exe_path(current))
        if main is None:
            self.tracker.processes[current.tgid].in_main = True
        else:
            hooks.main = main
            self._insert(main)

    # -- helpers ----------------------------------------------------------------
    def _insert(self, address: int) -> None:
        if address not in self.user_addresses:
            self.user_addresses.add(address)
            self.breakpoints.insert(address)

    def _place_family(self, system: System, process: Task, hooks: ProcessHooks) -> None:
        """Find the malloc family (or the preload ring) in the process's modules and hook it."""
        self.check_arch(system.arch)
        hooks.modules = ModuleMap(system.vmas(process), self.symbols())
        preload = preload_symbols(hooks.modules)
        if preload is not None:
            self.check_arch(system.arch, preload[0])
        hooks.allocator, hooks.family = malloc_family(hooks.modules, process, system.user_memory(process).read,
                                                      preload[0] if preload else "")
        if preload is None:
            self._place_hooks(system, hooks)
        else:
            self._use_ring(system, process, hooks, preload[1], preload[2])

    def _use_ring(self, system: System, process: Task, hooks: ProcessHooks, ring: int, full: int) -> None:
        """Cooperative mode: the process records its calls in the preload ring; read them from
        the record the ring is at now, at this tracker's stops and when the ring is full."""
        module = hooks.modules.module(next(iter(hooks.family)))
        hooks.entries = {name: runtime_address(module, vaddr)
                         for name, vaddr in module.elf.addresses_of(alloctrack.FAMILY).items()}
        hooks.ring, hooks.ring_full = ring, full
        header = preload_ring.ring(system.user_memory(process).read, ring)
        hooks.cursor, hooks.dropped_before = header.head, header.dropped
        self._insert(full)

    def _drain(self, system: System, process: Task, hooks: ProcessHooks, acknowledge: bool = False) -> None:
        """Apply the calls recorded in the ring since the last drain; with `acknowledge` (the
        process is stopped in the library, asking for room) tell it how far they were read."""
        memory = system.user_memory(process)
        header = preload_ring.ring(memory.read, hooks.ring)
        memory.map_range(header.records, header.records + header.capacity * header.record_size)
        recorded, overwritten = preload_ring.calls(memory.read, header, hooks.cursor)
        modules = self._modules(system, process, hooks, list(hooks.entries.values()))
        for call in recorded:
            self._ring_call(system, process, hooks, modules, call)
        hooks.cursor += overwritten + len(recorded)
        self.tracker.processes[process.tgid].ring_lost += overwritten
        if acknowledge:
            system.target.write_virtual(hooks.ring + preload_ring.TAIL_OFFSET, hooks.cursor.to_bytes(8, "little"))

    def _ring_call(self, system: System, process: Task, hooks: ProcessHooks, modules: ModuleMap,
                   call: preload_ring.RingCall) -> None:
        """One recorded call, as its entry and its return would have been seen at breakpoints."""
        stack = RecordedStack(frame_registers(system.arch, hooks.entries[call.via], call.sp, call.fp), call)
        wait, bad = self.tracker.entry(process.tgid, call.tid, call.via, list(call.args), call.sp, stack)
        if bad is not None:
            unwound = lambda pcs: self._pcs(system, pcs, modules)
            bad = replace(bad, stack=unwound(bad.stack), freed_by=unwound(bad.freed_by),
                          block=replace(bad.block, stack=unwound(bad.block.stack)) if bad.block else None)
            self.tracker.bad_frees[-1] = bad
            self.output.bad_free(bad, self._symbolize(process.tgid, bad.stack + bad.freed_by + (
                bad.block.stack if bad.block else ()), modules))
        if wait:
            self.tracker.returned(process.tgid, call.tid, call.sp, call.result, lambda _address: call.args[3])

    def _pcs(self, system: System, stack: "tuple[int, ...] | RecordedStack", modules: ModuleMap) -> tuple[int, ...]:
        """A stack's return addresses: a recorded one is unwound from its copy, once."""
        if not isinstance(stack, RecordedStack):
            return stack
        if stack.pcs is None:
            stack.pcs = tuple(self._unwinder(system).unwind(stack.registers, stack.call.read, modules, self.depth))
        return stack.pcs

    def _drain_if_ring(self, system: System, process: Task) -> None:
        hooks = self.hooks.get(process.tgid)
        if hooks is not None and hooks.ring is not None and process.tgid in self.tracker.processes:
            self._drain(system, process, hooks)

    def _place_hooks(self, system: System, hooks: ProcessHooks) -> None:
        """The malloc family's breakpoints as the settings ask: at each entry (and later at
        the caller's return site), or, with malloc-stops return, on the return instructions
        of each function that returns a new block and whose exits are all known; no free
        breakpoint without free-stops."""
        hooks.frees_by_scan = not self.free_stops
        order = {name: i for i, name in enumerate(alloctrack.FAMILY)}
        internal = []
        calls, unwinder = system.arch.calls, self._unwinder(system)
        flag = malloc_flag(hooks.modules, hooks.family, calls) if self.malloc_stops == "watch" else None
        for address, name in sorted(hooks.family.items(), key=lambda item: order[item[1]]):
            if name == "free" and not self.free_stops:
                continue
            if flag is not None and name != "free":
                watched = flag_read_pc(unwinder, calls, hooks.modules.module(address), address, name, flag)
                if watched is not None:
                    hooks.watched[watched] = name
                    continue
            exits = allocator_exits(unwinder, calls, hooks.modules, address, name) if self.malloc_stops == "return" \
                else None
            if exits is None:
                self._insert(address)
                continue
            returns, extents = exits
            internal += extents
            for ret in returns:
                hooks.exits.setdefault(ret, name)
                self._insert(ret)
        hooks.internal = tuple(internal)
        if hooks.watched:
            self._watch(flag, 1)

    def _watch(self, address: int, length: int) -> None:
        if address not in self.watches:
            self.watches.add(address)
            self.breakpoints.watch(address, length)

    def _seed(self, system: System, process: Task, origin: alloctrack.Origin) -> str:
        """Seed the map with the blocks a heap scan finds now; say what it found.  A heap
        that cannot be walked leaves the map incomplete: unknown frees are then counted,
        not reported as invalid."""
        mm = system.mm(process)
        if mm.brk == mm.start_brk:
            return "no heap yet"
        try:
            blocks = self.heap.live_blocks(system, process)
        except TargetError as e:
            self.tracker.processes[process.tgid].complete = False
            return f"the heap scan failed ({e}): frees of blocks it did not see are counted, not reported"
        self.tracker.seed(process.tgid, blocks, origin)
        return f"{len(blocks)} live blocks found by a heap scan"

    def _modules(self, system: System, process: Task, hooks: ProcessHooks, pcs: list[int]) -> ModuleMap:
        if hooks.modules is None or any(hooks.modules.by_address.find(pc) is None for pc in pcs):
            hooks.modules = ModuleMap(system.vmas(process), self.symbols())
        return hooks.modules

    def _symbolize(self, pid: int, pcs: tuple[int, ...], modules: ModuleMap) -> dict[int, Frame]:
        """Frames for these pcs of `pid`, each symbolized once and kept with the process."""
        known = self.frames.setdefault(pid, {})
        hooks = self.hooks.get(pid)
        family = hooks.family if hooks else {}
        for pc in pcs:
            if pc not in known:
                found = frame(pc, modules, is_return=pc not in family)
                # an entry point is named as the program called it, not by glibc's alias
                known[pc] = replace(found, function=family[pc]) if pc in family else found
        return known

    # -- reports ----------------------------------------------------------------
    def _report(self, system: System, process: Task, proc: alloctrack.ProcessAllocations,
                when: str) -> leaks.LeakReport:
        """Classify a tracked process's live blocks now and symbolize their stacks."""
        hooks = self.hooks.get(process.tgid)
        scanned = ""
        if hooks is not None and hooks.frees_by_scan:
            scanned = self._reconcile(system, process, proc)
        if hooks is not None and hooks.ring is not None:
            scanned += self._ring_note(system, process, hooks, proc)
        modules = hooks.modules if hooks and hooks.modules else ModuleMap(system.vmas(process), self.symbols())
        blocks = [leaks.Block(a.address, a.size, stack=self._pcs(system, a.stack, modules), origin=a.origin.value,
                              via=a.via) for a in proc.live()]
        self.heap.classify(system, process, blocks, self._ring_memory(system, process, hooks))
        frames = self._symbolize(process.tgid, tuple(pc for b in blocks for pc in b.stack), modules)
        bad = [b for b in self.tracker.bad_frees if b.pid == process.tgid]
        header = (f"{len(blocks)} live blocks tracked since {proc.since} ({proc.calls} calls), {when}; "
                  f"{proc.untracked_frees} frees of blocks the tracking never saw{scanned}")
        return leaks.LeakReport(process.tgid, process.comm, "tracking", blocks, header,
                                system.exe_path(process), dict(frames), bad)

    def _ring_memory(self, system: System, process: Task, hooks: ProcessHooks | None) -> list[tuple[int, int]]:
        """The preload ring's header and records: copies of pointers, never a root."""
        if hooks is None or hooks.ring is None:
            return []
        try:
            header = preload_ring.ring(system.user_memory(process).read, hooks.ring)
        except TargetError:
            return []
        return [(header.address, header.address + preload_ring.HEADER.size),
                (header.records, header.records + header.capacity * header.record_size)]

    def _ring_note(self, system: System, process: Task, hooks: ProcessHooks,
                   proc: alloctrack.ProcessAllocations) -> str:
        """What the header says of the preload ring: calls it could not record, or lost."""
        try:
            dropped = preload_ring.ring(system.user_memory(process).read, hooks.ring).dropped
        except TargetError as e:
            return f"; the preload ring cannot be read ({e})"
        return f"; calls recorded by the preload library, {dropped - hooks.dropped_before + proc.ring_lost} dropped " \
               "(ring full)"

    def _reconcile(self, system: System, process: Task, proc: alloctrack.ProcessAllocations) -> str:
        """free-stops off: the blocks freed since the last report are those a heap scan no
        longer finds live; what the header says about it."""
        try:
            live = {address for address, _size in self.heap.live_blocks(system, process)}
        except TargetError as e:
            return f"; frees not seen: the heap scan failed ({e})"
        proc.reconcile(live)
        return f"; {proc.scanned_frees} frees found by heap scans, bad frees not checked"

    def tracks(self, pid: int) -> bool:
        """Whether `pid` has an allocation map now."""
        return pid in self.tracker.processes

    def tracked(self) -> list[int]:
        """The pids that have an allocation map now."""
        return sorted(self.tracker.processes)

    def live_report(self, system: System, process: Task) -> leaks.LeakReport:
        """`memcheck leaks PID` of a tracked process: its map as it is at this stop."""
        self._drain_if_ring(system, process)
        return self._report(system, process, self.tracker.processes[process.tgid], "live")

    def status(self, kernel: HitStats) -> dict:
        """Costs and state; `kernel` holds the stats of this tracker's kernel events."""
        stops = kernel.hits + self.stats.hits
        seconds = kernel.seconds + self.stats.seconds
        last_error = self.stats.last_error or kernel.last_error
        return {"exec_paths": sorted(self.exec_paths), "stops": stops,
                "malloc_stops": self.malloc_stops, "free_stops": self.free_stops,
                "repeated_hits": self.stats.repeated + kernel.repeated,
                "handler_ms_per_stop": seconds / stops * 1e3 if stops else 0.0,
                "errors": kernel.errors + self.stats.errors, "last_error": last_error or None,
                "breakpoints": {"user": len(self.user_addresses), "return_sites": len(self.return_sites)},
                "processes": [{"pid": p.pid, "blocks": len(p.blocks), "calls": p.calls, "returns": p.returns,
                               "in_main": p.in_main, "complete": p.complete}
                              for p in self.tracker.processes.values()],
                "reports": [r.pid for r in self.reports], "untracked": self.untracked}

    def bad_frees(self) -> list[tuple[alloctrack.BadFree, dict[int, Frame]]]:
        """Every bad free seen, with the frames its stacks were symbolized to."""
        return [(b, self.frames.get(b.pid, {})) for b in self.tracker.bad_frees]


def exec_matches(path: str, patterns: set[str]) -> bool:
    """`--exec` takes a full guest path, or a bare name that matches any directory."""
    return path in patterns or path.rsplit("/", 1)[-1] in {p for p in patterns if "/" not in p}
