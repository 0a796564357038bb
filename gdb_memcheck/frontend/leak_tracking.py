"""Tracking mode of `memcheck leaks`: breakpoints on the malloc family of each tracked
process (filtered by pid, since the same virtual address runs in every process), one
on the return site of each call that hands out a block, and three kernel hooks: fork
(the child inherits the map), exec (the map starts again at the program's entry) and
exit (the leak report, taken before the mm is torn down)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import gdb

from .. import alloctrack, heapscan, leaks
from ..memory import UserMemory
from ..stackframes import Frame, frame
from ..views import bad_free_json, bad_free_text, leak_report_memcheck, leak_report_text
from ..system import System
from ..target import TargetError, u64
from ..tasks import Task
from ..unwind import RA, RBP, RSP, ModuleMap, Unwinder
from .session import SESSION

ARG_REGS = ("rdi", "rsi", "rdx", "rcx")
# Registers a call clobbers: equal values at a second hit of an entry, with no other stop
# of the thread in between, mean the same call reported again (QEMU cut the step past the
# breakpoint short), not a new call.
SCRATCH_REGS = ("rax", "r8", "r9", "r10", "r11")
AT_ENTRY = 9
KERNEL_HOOKS = (("fork", "wake_up_new_task"), ("exec", "start_thread"), ("exit", "do_exit"))


class _Breakpoint(gdb.Breakpoint):
    """An internal, silent breakpoint whose stop() asks a handler whether to stop."""

    def __init__(self, address: int, handler: Callable[[int], bool]) -> None:
        super().__init__(f"*{address:#x}", gdb.BP_BREAKPOINT, internal=True)
        self.silent = True
        self.address, self.handler = address, handler

    def stop(self) -> bool:
        return self.handler(self.address)


@dataclass
class ProcessHooks:
    """Where the malloc family of one tracked process lives, and its start-up breakpoints."""

    pid: int
    family: dict[int, str] = field(default_factory=dict)     # address -> function
    allocator: str = ""             # the module that defines the family (libc, or a static executable)
    entry: int | None = None        # the program's entry point, while waiting for it after exec
    main: int | None = None         # main(), while waiting for it
    modules: ModuleMap | None = None
    exiting: set[int] = field(default_factory=set)           # threads that entered do_exit


class TrackingController:
    """Places and removes the tracking breakpoints and feeds their hits to the tracker."""

    def __init__(self) -> None:
        self.depth = 16                 # frames kept per allocation stack (set memcheck stack-depth)
        self.exit_report = "summary"    # what a tracked process's exit prints (set memcheck exit-report)
        self.reset()

    def reset(self) -> None:
        self.tracker = alloctrack.AllocationTracker()
        self.hooks: dict[int, ProcessHooks] = {}
        self.exec_paths: set[str] = set()
        self.user_bps: dict[int, _Breakpoint] = {}
        self.kernel_bps: list[_Breakpoint] = []
        self.return_sites: set[int] = set()
        self.unwinder = Unwinder()
        self.reports: list[leaks.LeakReport] = []
        self.untracked: list[str] = []          # processes that executed a program we cannot track
        self.frames: dict[int, dict[int, Frame]] = {}       # pid -> pc -> symbolized frame
        self.on_user_hit = self._guarded(self._user_hit)
        self.stops = self.errors = self.repeated_hits = 0
        self._last_entry: dict[int, tuple] = {}
        self.seconds = 0.0
        self.last_error = ""

    @property
    def active(self) -> bool:
        return bool(self.kernel_bps)

    # -- commands -------------------------------------------------------------
    def track_process(self, process: Task) -> str:
        """Start tracking a running process: its live blocks are taken from a heap scan."""
        system = SESSION.system()
        pid = process.tgid
        if pid in self.hooks:
            raise TargetError(f"pid {pid} ({process.comm}) is already tracked")
        modules = ModuleMap(system.vmas(process), SESSION.symbols())
        allocator, family = malloc_family(modules, process)
        self._start()
        hooks = self.hooks[pid] = ProcessHooks(pid, family, allocator, modules=modules)
        self.tracker.track(pid, in_main=True, complete=len(system.threads(process)) == 1, since="attach")
        for address in family:
            self._user_bp(address)
        seeded = self._seed(system, process, alloctrack.Origin.PREEXISTING)
        return f"tracking pid {pid} ({process.comm}): {len(hooks.family)} malloc-family entry points; {seeded}"

    def track_exec(self, path: str) -> str:
        """Track every process that executes `path` from now on, from its first instruction."""
        self._start()
        self.exec_paths.add(path)
        return f"tracking processes that execute {path}"

    def untrack(self) -> int:
        """Remove every tracking breakpoint; keep the reports."""
        count = len(self.user_bps) + len(self.kernel_bps)
        for bp in list(self.user_bps.values()) + self.kernel_bps:
            if bp.is_valid():
                bp.delete()
        reports, bad, frames = self.reports, self.tracker.bad_frees, self.frames
        self.reset()
        self.reports, self.tracker.bad_frees, self.frames = reports, bad, frames
        return count

    def _start(self) -> None:
        if self.active:
            return
        if SESSION.target.cpu_count() > 1:
            raise TargetError("tracking needs a 1-vCPU guest: on a multi-vCPU QEMU target gdb 13 stops "
                              "Python breakpoint handlers with 'Cannot execute this command while the "
                              "target is running'")
        addresses = []
        for kind, symbol in KERNEL_HOOKS:
            try:
                addresses.append((kind, SESSION.target.symbol_address(symbol)))
            except TargetError:
                raise TargetError(f"this kernel has no {symbol}, needed to follow {kind}") from None
        handlers = {"fork": self._on_fork, "exec": self._on_exec, "exit": self._on_exit}
        self.kernel_bps = [_Breakpoint(address, self._guarded(handlers[kind])) for kind, address in addresses]

    # -- breakpoint handlers (never raise into gdb; always resume the guest) ----
    def _guarded(self, handler: Callable[[System, Task, int], None]) -> Callable[[int], bool]:
        def stop(address: int) -> bool:
            t0 = time.perf_counter()
            self.stops += 1
            try:
                SESSION.on_cont(None)
                system = SESSION.system()
                handler(system, system.current(SESSION.selected_cpu()), address)
            except Exception as e:  # a broken read must not stop the guest or kill gdb
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
            finally:
                self.seconds += time.perf_counter() - t0
            return False
        return stop

    def _on_fork(self, system: System, current: Task, address: int) -> None:
        child = system.tasks.task(SESSION.target.register("rdi"))
        if child.pid != child.tgid or current.tgid not in self.hooks:
            return
        if self.tracker.forked(current.tgid, child.tgid):
            parent = self.hooks[current.tgid]
            self.hooks[child.tgid] = replace(parent, pid=child.tgid, family=dict(parent.family), exiting=set())

    def _on_exec(self, system: System, current: Task, address: int) -> None:
        """start_thread: the new image is mapped and its auxv written; libc is not yet."""
        pid = current.tgid
        if pid not in self.hooks and not exec_matches(system.exe_path(current), self.exec_paths):
            return
        self.tracker.forget(pid)
        self.tracker.track(pid, in_main=False, complete=True, since="exec")
        entry = self._auxv_entry(system, current)
        self.hooks[pid] = ProcessHooks(pid, entry=entry)
        self._user_bp(entry)

    def _on_exit(self, system: System, current: Task, address: int) -> None:
        pid = current.tgid
        hooks = self.hooks.get(pid)
        if hooks is None:
            return
        # The last thread to enter do_exit reports.  signal->live cannot tell: it drops later
        # in do_exit, so threads killed together by exit_group can each still count the others.
        threads = {t.pid for t in system.threads(current)}
        hooks.exiting = (hooks.exiting & threads) | {current.pid}
        if threads - hooks.exiting:
            self.tracker.thread_exited(pid, current.pid)
            return
        proc = self.tracker.processes.get(pid)
        if proc is not None:
            report = self._report(system, current, proc, "exited")
            self.reports.append(report)
            gdb.write(exit_report_text(report, self.exit_report))
        self.tracker.forget(pid)
        self.hooks.pop(pid)
        if not self.hooks:
            self._drop_user_breakpoints()

    def _drop_user_breakpoints(self) -> None:
        """No tracked process is left: its malloc-family, start-up and return-site breakpoints
        go, so a long --exec session does not pile up breakpoints gdb re-inserts at every stop.
        This runs inside a kernel breakpoint's stop(), where gdb's manual advises against
        changing breakpoints; creating (return sites) and deleting other breakpoints there is
        what the integration tests exercise on gdb 13 with QEMU 7.2."""
        for bp in self.user_bps.values():
            if bp.is_valid():
                bp.delete()
        self.user_bps.clear()
        self.return_sites.clear()
        self._last_entry.clear()

    def _user_hit(self, system: System, current: Task, address: int) -> None:
        hooks = self.hooks.get(current.tgid)
        if hooks is None:
            return
        if address in hooks.family:
            self._entry(system, current, hooks, address)
            return
        self._last_entry.pop(current.pid, None)       # the thread ran on: a next entry is a new call
        if address in self.return_sites:
            self._return(system, current)
        if address == hooks.entry:
            self._at_entry(system, current, hooks)
        if address == hooks.main:
            hooks.main = None
            self.tracker.processes[current.tgid].in_main = True

    def _entry(self, system: System, current: Task, hooks: ProcessHooks, address: int) -> None:
        reg = SESSION.target.register
        args = [reg(r) for r in ARG_REGS]
        rsp = reg("rsp")
        memory = self._memory(system, current)
        if self._repeated(current.pid, address, args, rsp, memory, hooks.family[address] == "free"):
            return
        modules = self._modules(system, current, hooks, [address])
        stack = tuple(self.unwinder.unwind({RA: address, RSP: rsp, RBP: reg("rbp")}, memory.read, modules,
                                           self.depth))
        site = memory.u64(rsp)
        caller = modules.module(site)
        wait, bad = self.tracker.entry(current.tgid, current.pid, hooks.family[address], args, rsp, stack,
                                       from_allocator=caller is not None and caller.path == hooks.allocator)
        if bad is not None:
            frames = self._symbolize(current.tgid, bad.stack + bad.freed_by + (bad.block.stack if bad.block else ()),
                                     modules)
            gdb.write("memcheck: " + bad_free_text(bad, frames) + "\n")
        if wait and site not in self.return_sites:
            self.return_sites.add(site)
            self._user_bp(site)

    def _repeated(self, tid: int, address: int, args: list[int], rsp: int, memory: UserMemory, free: bool) -> bool:
        """Whether this entry hit is the thread's last one reported again (see SCRATCH_REGS).
        A free writes into its block (tcache key or list link), so a free entered again with
        its block unchanged is the same call, even from a loop with equal registers."""
        block = memory.read(args[0], 16) if free and args[0] else b""
        signature = (address, rsp, *args, *(SESSION.target.register(r) for r in SCRATCH_REGS), block)
        if self._last_entry.get(tid) == signature:
            self.repeated_hits += 1
            return True
        self._last_entry[tid] = signature
        return False

    def _return(self, system: System, current: Task) -> None:
        reg = SESSION.target.register
        self.tracker.returned(current.tgid, current.pid, reg("rsp"), reg("rax"),
                              lambda address: self._memory(system, current).u64(address))

    def _at_entry(self, system: System, current: Task, hooks: ProcessHooks) -> None:
        """The program's first instruction: its libraries are mapped, main is not running yet."""
        hooks.entry = None
        try:
            self._place_family(system, current, hooks)
        except TargetError as e:                 # e.g. a static binary without symbols
            self.untracked.append(str(e))
            gdb.write(f"memcheck: not tracking {e}\n")
            self.tracker.forget(current.tgid)
            del self.hooks[current.tgid]
            return
        self._seed(system, current, alloctrack.Origin.TRANSITION)
        main = _main_address(hooks.modules, system.exe_path(current))
        if main is None:
            self.tracker.processes[current.tgid].in_main = True
        else:
            hooks.main = main
            self._user_bp(main)

    # -- helpers ----------------------------------------------------------------
    def _place_family(self, system: System, process: Task, hooks: ProcessHooks) -> None:
        hooks.modules = ModuleMap(system.vmas(process), SESSION.symbols())
        hooks.allocator, hooks.family = malloc_family(hooks.modules, process)
        for address in hooks.family:
            self._user_bp(address)

    def _seed(self, system: System, process: Task, origin: alloctrack.Origin) -> str:
        """Seed the map with the blocks a heap scan finds now; say what it found.  A heap
        that cannot be walked leaves the map incomplete: unknown frees are then counted,
        not reported as invalid."""
        mm = system.mm(process)
        if mm.brk == mm.start_brk:
            return "no heap yet"
        try:
            scan = heapscan.scan(system, process)
        except TargetError as e:
            self.tracker.processes[process.tgid].complete = False
            return f"the heap scan failed ({e}): frees of blocks it did not see are counted, not reported"
        blocks = [(b.address, b.size) for b in scan.index.blocks]
        self.tracker.seed(process.tgid, blocks, origin)
        return f"{len(blocks)} live blocks found by a heap scan"

    def _user_bp(self, address: int) -> None:
        if address not in self.user_bps:
            self.user_bps[address] = _Breakpoint(address, self.on_user_hit)

    def _memory(self, system: System, process: Task) -> UserMemory:
        return UserMemory(system.kmem.phys, system.task_pgd(process), system.kmem.levels)

    def _modules(self, system: System, process: Task, hooks: ProcessHooks, pcs: list[int]) -> ModuleMap:
        if hooks.modules is None or any(hooks.modules.by_address.find(pc) is None for pc in pcs):
            hooks.modules = ModuleMap(system.vmas(process), SESSION.symbols())
        return hooks.modules

    def _auxv_entry(self, system: System, task: Task) -> int:
        mm = system.kmem.read(task.mm + system.layout_offset("struct mm_struct", "saved_auxv"), 48 * 8)
        for i in range(0, len(mm), 16):
            key, value = u64(mm, i), u64(mm, i + 8)
            if key == AT_ENTRY:
                return value
            if key == 0:
                break
        raise TargetError(f"pid {task.tgid} has no AT_ENTRY in its auxiliary vector")

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

    def _report(self, system: System, process: Task, proc: alloctrack.ProcessAllocations,
                when: str) -> leaks.LeakReport:
        """Classify a tracked process's live blocks now and symbolize their stacks."""
        blocks = [leaks.Block(a.address, a.size, stack=a.stack, origin=a.origin.value, via=a.via)
                  for a in proc.live()]
        heapscan.classify_tracked(system, process, blocks)
        hooks = self.hooks.get(process.tgid)
        modules = hooks.modules if hooks and hooks.modules else ModuleMap(system.vmas(process), SESSION.symbols())
        frames = self._symbolize(process.tgid, tuple(pc for b in blocks for pc in b.stack), modules)
        bad = [b for b in self.tracker.bad_frees if b.pid == process.tgid]
        header = (f"{len(blocks)} live blocks tracked since {proc.since} ({proc.calls} calls), {when}; "
                  f"{proc.untracked_frees} frees of blocks the tracking never saw")
        return leaks.LeakReport(process.tgid, process.comm, "tracking", blocks, header,
                                system.exe_path(process), dict(frames), bad)

    def live_report(self, system: System, process: Task) -> leaks.LeakReport:
        """`memcheck leaks PID` of a tracked process: its map as it is at this stop."""
        return self._report(system, process, self.tracker.processes[process.tgid], "live")

    def status(self) -> dict:
        return {"active": self.active, "exec_paths": sorted(self.exec_paths), "stops": self.stops,
                "repeated_hits": self.repeated_hits,
                "handler_ms_per_stop": self.seconds / self.stops * 1e3 if self.stops else 0.0,
                "errors": self.errors, "last_error": self.last_error or None,
                "breakpoints": {"user": len(self.user_bps), "kernel": len(self.kernel_bps),
                                "return_sites": len(self.return_sites)},
                "processes": [{"pid": p.pid, "blocks": len(p.blocks), "calls": p.calls, "returns": p.returns,
                               "in_main": p.in_main, "complete": p.complete}
                              for p in self.tracker.processes.values()],
                "reports": [r.pid for r in self.reports], "untracked": self.untracked,
                "bad_frees": [bad_free_json(b, self.frames.get(b.pid, {})) for b in self.tracker.bad_frees]}


EXIT_REPORTS = ("summary", "text", "memcheck", "off")


def exit_report_text(report: leaks.LeakReport, style: str) -> str:
    """What a tracked process's exit prints: a line, the valgrind-style report, the
    emulator memcheck's per-block report, or nothing."""
    if style == "off":
        return ""
    if style == "text":
        return leak_report_text(report, [leaks.Kind.DEFINITE, leaks.Kind.INDIRECT, leaks.Kind.POSSIBLE])
    if style == "memcheck":
        return leak_report_memcheck(report)
    lost = sum(1 for b in report.reported(False) if b.kind is not leaks.Kind.REACHABLE)
    return (f"memcheck: pid {report.pid} ({report.comm}) exited: {lost} lost blocks, {len(report.bad_frees)} "
            f"bad frees; 'memcheck leaks report {report.pid}' shows them\n")


def _main_address(modules: ModuleMap, exe: str) -> int | None:
    """Where the executable's main() is, from its symbols; None when it has none."""
    for interval in modules.by_address:
        vma = interval.value
        if vma.name == exe and vma.offset == 0:
            module = modules.module(vma.start)
            found = module.elf.addresses_of(["main"]) if module else {}
            return _runtime(module, found["main"]) if "main" in found else None
    return None


def exec_matches(path: str, patterns: set[str]) -> bool:
    """`--exec` takes a full guest path, or a bare name that matches any directory."""
    return path in patterns or path.rsplit("/", 1)[-1] in {p for p in patterns if "/" not in p}


def malloc_family(modules: ModuleMap, process: Task) -> tuple[str, dict[int, str]]:
    """The module that defines malloc and free (libc, or the executable itself when it is
    static) and the run-time addresses of the malloc family in it."""
    tried = []
    seen = set()
    for interval in modules.by_address:
        vma = interval.value
        if vma.name in seen:
            continue
        seen.add(vma.name)
        module = modules.module(vma.start)
        if module is None:
            continue
        found = module.elf.addresses_of(alloctrack.FAMILY)
        if "malloc" in found and "free" in found:
            return module.path, {_runtime(module, vaddr): name for name, vaddr in sorted(found.items(), reverse=True)}
        tried.append(vma.name)
    raise TargetError(f"pid {process.tgid} ({process.comm}): no module defines malloc and free "
                      f"(looked in {', '.join(tried) or 'no readable module'}; a static binary without symbols?)")


def _runtime(module, vaddr: int) -> int:
    """The run-time address of an ELF virtual address of `module`."""
    base = module.vma.start - module.elf.vaddr_for_file_offset(module.vma.offset)
    return base + vaddr


CONTROLLER = TrackingController()
