"""Leak tracking without gdb: the MallocTracker over a fake guest whose process maps a real
static program (built here, so its malloc family, main and CFI are real), fed kernel
events and breakpoint hits as the frontend would feed them."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fake_system import SAVED_AUXV, FakeSystem
from gdb_memcheck.arch import AARCH64
from gdb_memcheck.glibc import heap as glibc_heap
from gdb_memcheck.linux import kevents
from gdb_memcheck.leakcheck import leaks
from gdb_memcheck.symbols.disasm import instructions
from gdb_memcheck.symbols.elfsyms import ElfFile, SymbolCache
from gdb_memcheck.symbols.unwind import CallFrameTable
from gdb_memcheck.linux.kevents import KernelEvent
from gdb_memcheck.leakcheck.malloc_tracker import MallocTracker
from gdb_memcheck.leakcheck.program_symbols import AT_ENTRY
from gdb_memcheck.report.views import bad_free_text, exit_report_text
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, VM_WRITE, Vma

SOURCE = Path(__file__).with_name("programs") / "mallocs.c"
STACK_TOP = 0x7FFF_F000
HOOK = {g: kevents.ChosenHook(g, g, 0, kevents.REGS, 1, "") for g in kevents.GROUPS}


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prog")
    exe = out / "mallocs"
    subprocess.run(["gcc", "-g", "-O0", "-static", "-no-pie", "-o", str(exe), str(SOURCE)], check=True)
    subprocess.run(["strip", "-o", str(out / "mallocs-stripped"), str(exe)], check=True)
    return exe


def symbols_of(exe: Path) -> dict[str, int]:
    with exe.open("rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".symtab")
        return {s.name: s["st_value"] for s in table.iter_symbols() if s["st_value"]} | {"_entry": elf["e_entry"]}


def load_segments(exe: Path) -> list[Vma]:
    """The program's PT_LOAD segments mapped at their link addresses, as the kernel maps them."""
    vmas = []
    with exe.open("rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            start, end = seg["p_vaddr"] & ~0xFFF, (seg["p_vaddr"] + seg["p_filesz"] + 0xFFF) & ~0xFFF
            flags = (VM_READ if seg["p_flags"] & 4 else 0) | (VM_WRITE if seg["p_flags"] & 2 else 0) | \
                    (VM_EXEC if seg["p_flags"] & 1 else 0)
            vmas.append(Vma(0, start, end, flags, seg["p_offset"] & ~0xFFF, 0x801, 7, str(exe)))
    return vmas


class FakeHeap:
    """Heap scans see `live`; classification marks every block definitely lost but `reachable`."""

    def __init__(self) -> None:
        self.live: list[tuple[int, int]] = []
        self.reachable: set[int] = set()

    def live_blocks(self, system, process):
        return list(self.live)

    def classify(self, system, process, blocks, not_roots=()):
        for b in blocks:
            b.kind = leaks.Kind.REACHABLE if b.address in self.reachable else leaks.Kind.DEFINITE

    def usable_size(self, system, process, block):
        return glibc_heap.usable_size(system.user_memory(process).read, block)


class Output:
    """What the tracker told, printed as the frontend prints it."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def bad_free(self, bad, frames) -> None:
        self.said.append("memcheck: " + bad_free_text(bad, frames) + "\n")

    def exited(self, report) -> None:
        self.said.append(exit_report_text(report, "summary"))

    def not_tracking(self, reason: str) -> None:
        self.said.append(f"memcheck: not tracking {reason}\n")


class Breakpoints:
    def __init__(self) -> None:
        self.placed: set[int] = set()
        self.watched: dict[int, int] = {}

    def insert(self, address: int) -> None:
        assert address not in self.placed, "each address is placed once"
        self.placed.add(address)

    def watch(self, address: int, length: int) -> None:
        assert address not in self.watched, "each address is watched once"
        self.watched[address] = length

    def remove_all(self) -> None:
        self.placed.clear()
        self.watched.clear()


class Guest:
    """A fake guest, a tracker over it, and the frontend's side of the conversation."""

    def __init__(self, exe: Path) -> None:
        self.system = FakeSystem()
        self.sym = symbols_of(exe)
        self.exe = exe
        self.heap, self.bps, self.output = FakeHeap(), Breakpoints(), Output()
        self.said = self.output.said
        self.tracker = MallocTracker(self.bps, lambda: SymbolCache("/"), self.output, self.heap)

    def process(self, pid: int, exe: Path | None = None, threads: int = 1, ppid: int = 1):
        exe = exe or self.exe
        task = self.system.spawn(pid, ppid=ppid, comm=exe.name[:15], exe=str(exe), threads=threads)
        proc = self.system.procs[pid]
        proc.vmas = load_segments(exe)
        auxv = proc.mm.addr + SAVED_AUXV
        self.system.kmem.write(auxv, bytes(48 * 8))
        self.system.kmem.write_u64(auxv, AT_ENTRY)
        self.system.kmem.write_u64(auxv + 8, symbols_of(exe)["_entry"] if exe == self.exe else 0x401000)
        return task

    def event(self, kind: str, task, child=None) -> None:
        group = {"fork": "new-task", "clone": "new-task", "thread-exit": "exit"}.get(kind, kind)
        self.system.run_on(0, task, rsp=0x100)
        self.tracker.on_event(KernelEvent(kind, HOOK[group], 0, task, (), child), self.system)

    def at(self, symbol_or_address, task, **regs) -> None:
        """The thread `task` hits the breakpoint at a symbol (or address) with these registers."""
        address = self.sym[symbol_or_address] if isinstance(symbol_or_address, str) else symbol_or_address
        assert address in self.bps.placed, f"no breakpoint at {symbol_or_address}"
        regs = {"rsp": STACK_TOP - 0x100, "rbp": 0, "rax": 0, **{r: 0 for r in
                ("rdi", "rsi", "rdx", "rcx", "r8", "r9", "r10", "r11")}, **regs}
        self.system.run_on(0, task, **regs)
        assert self.tracker.user_hit(address, 0, lambda: self.system) is False
        assert self.tracker.stats.errors == 0, self.tracker.stats.last_error

    def call(self, function: str, task, args: tuple = (), result: int = 0, rsp: int = STACK_TOP - 0x100) -> None:
        """A whole call from main: entry (return address main+9 on the stack), then its return."""
        site = self.sym["main"] + 9
        self.system.procs[task.tgid].memory.write_u64(rsp, site)
        self.at(function, task, rsp=rsp, **dict(zip(("rdi", "rsi", "rdx", "rcx"), args)))
        if function != "free":
            self.at(site, task, rsp=rsp + 8, rax=result)

    def started(self, pid: int = 100, threads: int = 1):
        """A process that executed the program, reached its entry and main."""
        self.tracker.track_exec(self.exe.name)
        task = self.process(pid, threads=threads)
        self.event("exec-ready", task)
        self.at("_entry", task)
        self.at("main", task)
        return task


@pytest.fixture
def guest(program) -> Guest:
    return Guest(program)


def live(guest: Guest, pid: int = 100) -> dict[int, tuple[int, str]]:
    return {a.address: (a.size, a.origin.value) for a in guest.tracker.tracker.processes[pid].live()}


def test_an_exec_of_a_tracked_program_waits_for_its_entry_then_places_the_malloc_family(guest):
    guest.tracker.track_exec("mallocs")
    task = guest.process(100)
    guest.event("exec-ready", task)
    assert guest.bps.placed == {guest.sym["_entry"]}, "nothing but the entry before the program runs"
    guest.at("_entry", task)
    for name in ("malloc", "calloc", "realloc", "free", "main"):
        assert guest.sym[name] in guest.bps.placed, name


def test_a_process_executing_another_program_is_left_alone(guest, program):
    guest.tracker.track_exec("/bin/other")
    guest.event("exec-ready", guest.process(100))
    assert guest.bps.placed == set() and not guest.tracker.tracks(100)


def test_a_call_becomes_a_block_of_its_exact_size_when_it_returns_with_its_stack(guest):
    task = guest.started()
    guest.call("malloc", task, (40,), result=0x4C_0010)
    guest.call("calloc", task, (3, 8), result=0x4C_0050)
    assert live(guest) == {0x4C_0010: (40, "own"), 0x4C_0050: (24, "own")}
    stack = guest.tracker.tracker.processes[100].blocks[0x4C_0010].stack
    assert stack[:2] == (guest.sym["malloc"], guest.sym["main"] + 9), "allocator entry, then its caller"


def test_a_free_removes_the_block_and_a_second_free_is_reported_with_both_stacks(guest):
    task = guest.started()
    guest.call("malloc", task, (40,), result=0x4C_0010)
    guest.call("free", task, (0x4C_0010,))
    assert live(guest) == {}
    guest.call("free", task, (0x4C_0010,), rsp=STACK_TOP - 0x200)
    [bad] = guest.tracker.tracker.bad_frees
    assert (bad.kind, bad.address, bad.block.size) == ("double free", 0x4C_0010, 40)
    said = "".join(guest.said)
    assert "Invalid free: free(0x4c0010) by pid 100/100: double free" in said
    free_frame = f"{guest.sym['free']:#x}: free"
    assert said.count(free_frame) == 2, "the second free's stack, then the first free's"
    assert " Block was free'd at" in said and "main (mallocs.c:" in said


def test_a_free_of_a_pointer_never_allocated_is_an_invalid_free(guest):
    task = guest.started()
    guest.call("free", task, (0x4D_0000,))
    assert [b.kind for b in guest.tracker.tracker.bad_frees] == ["invalid free"]


def test_the_same_entry_hit_twice_with_equal_registers_is_one_call(guest):
    task = guest.started()
    guest.system.procs[100].memory.write_u64(STACK_TOP - 0x100, guest.sym["main"] + 9)
    guest.at("malloc", task, rdi=40)
    guest.at("malloc", task, rdi=40)
    assert guest.tracker.stats.repeated == 1
    assert guest.tracker.tracker.processes[100].calls == 1


def test_blocks_allocated_before_main_are_transition_and_forgiven_in_the_report(guest):
    guest.tracker.track_exec("mallocs")
    task = guest.process(100)
    guest.event("exec-ready", task)
    guest.at("_entry", task)
    guest.call("malloc", task, (33,), result=0x4C_0010)           # a constructor, before main
    guest.at("main", task)
    guest.call("malloc", task, (40,), result=0x4C_0050)
    assert live(guest) == {0x4C_0010: (33, "transition"), 0x4C_0050: (40, "own")}
    guest.event("exit", task)
    [report] = guest.tracker.reports
    assert [b.address for b in report.reported(all_origins=False)] == [0x4C_0050]


def test_a_forked_child_is_tracked_with_an_inherited_copy_of_the_map(guest):
    parent = guest.started()
    guest.call("malloc", parent, (40,), result=0x4C_0010)
    child = guest.process(101, ppid=100)
    guest.event("fork", parent, child=child)
    assert live(guest, 101) == {0x4C_0010: (40, "inherited")}
    guest.call("malloc", child, (8,), result=0x4C_0090)
    assert live(guest, 101) == {0x4C_0010: (40, "inherited"), 0x4C_0090: (8, "own")}
    assert live(guest, 100) == {0x4C_0010: (40, "own")}


def test_a_thread_exit_keeps_tracking_and_the_last_exit_reports_and_clears_breakpoints(guest):
    task = guest.started(threads=2)
    guest.call("malloc", task, (40,), result=0x4C_0010)
    guest.heap.reachable = set()
    guest.event("thread-exit", guest.system.procs[100].threads[1])
    assert guest.tracker.reports == [] and guest.tracker.tracks(100)
    guest.event("exit", task)
    [report] = guest.tracker.reports
    assert [(b.address, b.size, b.kind) for b in report.blocks] == [(0x4C_0010, 40, leaks.Kind.DEFINITE)]
    assert guest.said[-1].startswith("memcheck: pid 100 (mallocs) exited: 1 lost blocks, 0 bad frees")
    assert guest.bps.placed == set() and guest.tracker.user_addresses == set()


def test_attaching_seeds_the_live_blocks_of_a_heap_scan_as_preexisting(guest):
    task = guest.process(100)
    guest.system.procs[100].mm = guest.system.procs[100].mm.__class__(
        **{**guest.system.procs[100].mm.__dict__, "brk": 0x1002_1000})
    guest.heap.live = [(0x1000_0010, 24), (0x1000_0030, 100)]
    said = guest.tracker.track_process(guest.system, task)
    assert "2 live blocks found by a heap scan" in said
    assert live(guest) == {0x1000_0010: (24, "preexisting"), 0x1000_0030: (100, "preexisting")}


def test_tracking_a_process_twice_is_refused(guest):
    task = guest.process(100)
    guest.tracker.track_process(guest.system, task)
    with pytest.raises(kevents.TargetError, match="already tracked"):
        guest.tracker.track_process(guest.system, task)


def test_a_program_without_malloc_symbols_is_left_alone_with_a_note(guest, program):
    stripped = program.with_name("mallocs-stripped")
    guest.tracker.track_exec("mallocs-stripped")
    task = guest.process(100, exe=stripped)
    guest.system.kmem.write_u64(task.mm + SAVED_AUXV + 8, symbols_of(program)["_entry"])
    guest.event("exec-ready", task)
    guest.at(symbols_of(program)["_entry"], task)
    assert not guest.tracker.tracks(100)
    assert "no module defines malloc and free" in guest.tracker.untracked[0]
    assert guest.said[-1].startswith("memcheck: not tracking pid 100")


def test_a_hit_that_cannot_be_handled_is_counted_as_an_error_not_raised(guest):
    task = guest.started()
    guest.system.run_on(0, task)                    # no registers at all
    assert guest.tracker.user_hit(guest.sym["malloc"], 0, lambda: guest.system) is False
    assert guest.tracker.stats.errors == 1
    assert "no register" in guest.tracker.stats.last_error


def objdump_returns(exe: Path, start: int, size: int) -> set[int]:
    """The ret instructions binutils prints inside [start, start + size)."""
    out = subprocess.run(["objdump", "-d", f"--start-address={start:#x}", f"--stop-address={start + size:#x}",
                          str(exe)], capture_output=True, text=True, check=True).stdout
    return {int(line.split(":")[0], 16) for line in out.splitlines() if line.rstrip().endswith("\tret")
            or "\tret " in line or line.rstrip().endswith(" ret")}


def symbol_size(exe: Path, name: str) -> int:
    with exe.open("rb") as f:
        table = ELFFile(f).get_section_by_name(".symtab")
        return next(s["st_size"] for s in table.iter_symbols() if s.name == name)


def test_return_stops_put_mallocs_breakpoints_on_its_return_instructions_instead_of_its_entry(guest, program):
    guest.tracker.malloc_stops = "return"
    guest.started()
    rets = objdump_returns(program, guest.sym["malloc"], symbol_size(program, "malloc"))
    assert rets and rets <= guest.bps.placed
    assert guest.sym["malloc"] not in guest.bps.placed
    assert guest.sym["realloc"] in guest.bps.placed, "realloc's old block needs its entry"


def test_a_return_stop_makes_a_block_of_its_usable_size_with_the_callers_stack(guest, program):
    guest.tracker.malloc_stops = "return"
    task = guest.started()
    ret = min(objdump_returns(program, guest.sym["malloc"], symbol_size(program, "malloc")))
    memory = guest.system.procs[100].memory
    memory.write_u64(STACK_TOP - 0x100, guest.sym["main"] + 9)
    memory.write_u64(0x4C_0010 - 8, 0x30 | glibc_heap.PREV_INUSE)        # a 48-byte chunk: 40 usable
    guest.at(ret, task, rsp=STACK_TOP - 0x100, rax=0x4C_0010)
    assert live(guest) == {0x4C_0010: (40, "own")}
    stack = guest.tracker.tracker.processes[100].blocks[0x4C_0010].stack
    assert stack[:2] == (guest.sym["malloc"], guest.sym["main"] + 9), "named by the allocator's entry"


def test_a_return_into_the_allocator_itself_is_not_a_call(guest, program):
    guest.tracker.malloc_stops = "return"
    task = guest.started()
    ret = min(objdump_returns(program, guest.sym["malloc"], symbol_size(program, "malloc")))
    memory = guest.system.procs[100].memory
    memory.write_u64(STACK_TOP - 0x100, guest.sym["malloc"] + 1)         # malloc calling into itself
    guest.at(ret, task, rsp=STACK_TOP - 0x100, rax=0x4C_0010)
    assert live(guest) == {} and guest.tracker.tracker.processes[100].calls == 0


def test_without_free_stops_a_report_drops_the_blocks_a_heap_scan_no_longer_finds(guest):
    guest.tracker.free_stops = False
    task = guest.started()
    assert guest.sym["free"] not in guest.bps.placed
    guest.call("malloc", task, (40,), result=0x4C_0010)
    guest.call("malloc", task, (24,), result=0x4C_0050)
    guest.heap.live = [(0x4C_0050, 24)]
    guest.event("exit", task)
    [report] = guest.tracker.reports
    assert [(b.address, b.size) for b in report.blocks] == [(0x4C_0050, 24)]
    assert "1 frees found by heap scans, bad frees not checked" in report.header


def test_without_free_stops_a_threads_exit_drops_the_blocks_its_scan_no_longer_finds(guest):
    """A block freed into an exiting thread's tcache is known free only while that thread
    exists: the scan at the thread's exit drops it, a later scan cannot."""
    guest.tracker.free_stops = False
    task = guest.started(threads=2)
    guest.call("malloc", task, (40,), result=0x4C_0010)
    guest.call("malloc", task, (24,), result=0x4C_0050)
    guest.heap.live = [(0x4C_0050, 24)]
    guest.event("thread-exit", guest.system.procs[100].threads[1])
    guest.heap.live = [(0x4C_0010, 40), (0x4C_0050, 24)]        # the dead thread's tcache looks live
    guest.event("exit", task)
    [report] = guest.tracker.reports
    assert [(b.address, b.size) for b in report.blocks] == [(0x4C_0050, 24)]


def test_an_attached_process_has_its_calls_tracked(guest):
    task = guest.process(100)
    guest.tracker.track_process(guest.system, task)
    guest.call("malloc", task, (40,), result=0x4C_0010)
    assert live(guest) == {0x4C_0010: (40, "own")}


def enter_watched_malloc(guest: Guest, program: Path, task, size: int) -> int:
    """With malloc-stops watch: the thread called malloc(size) from main+9 and is just past
    malloc's read of its flag; returns the stack pointer at malloc's entry (the slot that
    holds the return address)."""
    pc = next(p for p, name in guest.tracker.hooks[100].watched.items() if name == "malloc")
    entry_sp = STACK_TOP - 0x100
    cfa_offset = CallFrameTable(ElfFile(program)).row(pc).cfa_offset
    guest.system.procs[100].memory.write_u64(entry_sp, guest.sym["main"] + 9)
    guest.system.run_on(0, task, rip=pc, rsp=entry_sp + 8 - cfa_offset, rbp=0, rdi=size, rsi=0, rdx=0, rcx=0)
    return entry_sp


def test_watch_stops_put_a_read_watchpoint_on_mallocs_flag_instead_of_a_breakpoint_at_its_entry(guest):
    guest.tracker.malloc_stops = "watch"
    guest.started()
    assert guest.bps.watched == {guest.sym["__malloc_initialized"]: 1}
    assert guest.sym["malloc"] not in guest.bps.placed
    for name, pc in ((name, pc) for pc, name in guest.tracker.hooks[100].watched.items()):
        read = instructions(str(guest.exe), guest.sym[name], pc)[-1]
        assert read.reference == guest.sym["__malloc_initialized"], f"{name}: {read} is not the flag's read"
    assert guest.sym["free"] in guest.bps.placed, "free reads no flag: it keeps its breakpoint"


def test_a_watched_call_keeps_its_exact_size_and_returns_through_its_watched_slot(guest, program):
    guest.tracker.malloc_stops = "watch"
    task = guest.started()
    entry_sp = enter_watched_malloc(guest, program, task, 40)
    assert guest.tracker.watch_hit(guest.sym["__malloc_initialized"], 0, lambda: guest.system) is False
    assert guest.bps.watched.get(entry_sp) == 8, "the return-address slot is watched"
    guest.system.run_on(0, task, rip=guest.sym["main"] + 9, rsp=entry_sp + 8, rbp=0, rax=0x4C_0010)
    assert guest.tracker.watch_hit(entry_sp, 0, lambda: guest.system) is False
    assert guest.tracker.stats.errors == 0, guest.tracker.stats.last_error
    assert live(guest) == {0x4C_0010: (40, "own")}
    stack = guest.tracker.tracker.processes[100].blocks[0x4C_0010].stack
    assert stack[:2] == (guest.sym["malloc"], guest.sym["main"] + 9)


def test_another_read_of_a_watched_slot_is_not_a_return(guest, program):
    guest.tracker.malloc_stops = "watch"
    task = guest.started()
    entry_sp = enter_watched_malloc(guest, program, task, 40)
    guest.tracker.watch_hit(guest.sym["__malloc_initialized"], 0, lambda: guest.system)
    guest.system.run_on(0, task, rip=guest.sym["main"] + 20, rsp=entry_sp - 0x40, rbp=0, rax=0x4C_0010)
    guest.tracker.watch_hit(entry_sp, 0, lambda: guest.system)
    assert live(guest) == {} and 100 in guest.tracker.tracker.processes
    assert guest.tracker.tracker.processes[100].pending, "the call still waits for its return"


@pytest.mark.parametrize("stops", ["return", "watch"])
def test_the_cheaper_stops_are_refused_in_one_line_on_an_arm64_guest(program, stops):
    guest = Guest(program)
    guest.system.arch = AARCH64
    guest.tracker.malloc_stops = stops
    with pytest.raises(kevents.TargetError, match=f"^malloc-stops {stops} works on x86-64 guests only "
                                                  "\\(this one is aarch64\\): set memcheck malloc-stops call$"):
        guest.tracker.track_process(guest.system, guest.process(100))
    guest.tracker.malloc_stops = "call"
    guest.tracker.check_arch(AARCH64)


def test_the_preload_ring_is_refused_on_an_arm64_guest(guest):
    with pytest.raises(kevents.TargetError, match="preload ring of /lib/libmemcheck-preload.so is read on x86-64"):
        guest.tracker.check_arch(AARCH64, "/lib/libmemcheck-preload.so")


def test_a_block_freed_twice_from_one_loop_with_watched_mallocs_between_is_freed_both_times(guest, program):
    """malloc(24); free(p); malloc(24) hands p out again; free(p): the second free enters with
    the same registers and block as the first, but the thread stopped at watchpoints between."""
    guest.tracker.malloc_stops = "watch"
    task = guest.started()
    for _ in range(2):
        entry_sp = enter_watched_malloc(guest, program, task, 24)
        guest.tracker.watch_hit(guest.sym["__malloc_initialized"], 0, lambda: guest.system)
        guest.system.run_on(0, task, rip=guest.sym["main"] + 9, rsp=entry_sp + 8, rbp=0, rax=0x4C_0010)
        guest.tracker.watch_hit(entry_sp, 0, lambda: guest.system)
        assert live(guest) == {0x4C_0010: (24, "own")}
        guest.at("free", task, rsp=entry_sp, rdi=0x4C_0010)
        assert live(guest) == {}
    assert guest.tracker.stats.repeated == 0
