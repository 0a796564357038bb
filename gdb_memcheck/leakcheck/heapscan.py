"""Scan mode of the leak checker: the live blocks of a process's glibc heap and the
roots that may point at them, read at a stop with no per-malloc breakpoint."""
from __future__ import annotations

from dataclasses import dataclass

from ..gcpause import gc_paused
from ..glibc import heap as glibc_heap
from ..linux.memory import UserMemory
from ..linux.system import System
from ..linux.tasks import Task
from ..linux.vmas import VM_EXEC, VM_READ, Vma
from ..symbols.elfsyms import SymbolCache
from ..symbols.unwind import ModuleMap
from ..target import TargetError, u64
from . import leaks
from .program_symbols import malloc_replacement

TCACHE_CHUNK_SIZE = 0x290        # sizeof(tcache_perthread_struct) + header, glibc 2.36


@dataclass
class HeapScan:
    """What one scan found: classified blocks and where they came from."""

    pid: int
    comm: str
    index: leaks.BlockIndex
    arena: glibc_heap.MainArena
    other_arenas: int
    free_listed: int
    mmapped: int
    roots: list[leaks.Region]

    def report(self) -> leaks.LeakReport:
        blocks = self.index.blocks
        header = (f"{len(blocks)} live heap blocks (main heap {self.arena.heap_start:#x}-{self.arena.heap_end:#x}, "
                  f"{self.other_arenas} other arenas, {self.mmapped} mmapped; "
                  f"{self.free_listed} freed chunks on tcache/fastbin lists)")
        return leaks.LeakReport(self.pid, self.comm, "scan", blocks, header)


@dataclass
class MallocState:
    """Where malloc keeps its state in one process: what the root scan must leave out."""

    arena: glibc_heap.MainArena
    others: list[int]
    heaps: list[glibc_heap.ArenaHeap]

    @property
    def holes(self) -> list[tuple[int, int]]:
        """The main heap, main_arena, and the other arenas' heaps (which hold their arenas)."""
        return [(self.arena.heap_start, self.arena.heap_end), self.arena.struct_range] + \
            [(h.start, h.end) for h in self.heaps]


def malloc_state(read: glibc_heap.Reader, vmas: list[Vma], start_brk: int, brk: int) -> MallocState:
    """main_arena, the other arenas and their heaps, found from the process's data."""
    arena = glibc_heap.find_main_arena(read, data_ranges(vmas), start_brk, brk)
    others = glibc_heap.other_arenas(read, arena)
    heaps = [h for a in others for h in glibc_heap.arena_heaps(read, a)]
    return MallocState(arena, others, heaps)


@gc_paused()
def scan(system: System, process: Task) -> HeapScan:
    """Find the live blocks of `process` and classify them by reachability."""
    mm = system.mm(process)
    vmas = system.vmas(process)
    user = UserMemory(system.kmem.phys, system.pgd(mm), system.kmem.paging)
    state = malloc_state(user.read, vmas, mm.start_brk, mm.brk)
    chunks = glibc_heap.main_heap_chunks(user.read, state.arena.heap_start, state.arena.heap_end)
    main_first = chunks[0]
    for arena in state.others:
        chunks += glibc_heap.arena_chunks(user.read, arena)
    tcaches = _tcaches(system, process, user.read, chunks, main_first)
    free = set().union(*(glibc_heap.fastbin_chunks(user.read, a) for a in [state.arena.address] + state.others),
                       *(glibc_heap.tcache_chunks(user.read, t + 2 * glibc_heap.SIZE_SZ) for t in tcaches))
    skip = free | tcaches
    blocks = [leaks.Block(c.user, c.usable) for c in chunks if c.in_use and c.address not in skip]
    holes = state.holes
    anon = [(v.start, v.end) for v in vmas if not v.name and v.flags & VM_READ and not v.inode]
    mapped = glibc_heap.mmapped_chunks(user.read, [piece for r in anon for piece in _cut(r, holes)])
    blocks += [leaks.Block(c.user, c.usable) for c in mapped]
    regions, words = roots(system, process, vmas, holes + [(c.address, c.address + c.size) for c in mapped])
    index = leaks.classify(blocks, user.read, regions, words, spans=True)
    return HeapScan(process.tgid, process.comm, index, state.arena, len(state.others), len(free), len(mapped),
                    regions)


def scan_report(system: System, process: Task, symbols: SymbolCache) -> leaks.LeakReport:
    """scan(...).report(); a scan that fails on a process whose malloc is not glibc's (a
    replacement such as jemalloc, preloaded or linked) says that is why."""
    try:
        return scan(system, process).report()
    except TargetError as e:
        replacement = malloc_replacement(ModuleMap(system.vmas(process), symbols), system.user_memory(process).read)
        if replacement is None:
            raise
        raise TargetError(f"pid {process.tgid} ({process.comm}) allocates with {replacement}, not glibc's malloc, "
                          f"whose heap scan mode reads ({e}): track it instead (memcheck leaks track)") from e


def _tcaches(system: System, process: Task, read, chunks: list[glibc_heap.Chunk],
             main_first: glibc_heap.Chunk) -> set[int]:
    """Chunk addresses of the threads' tcache_perthread_structs: found from each thread's
    TLS; the main heap's first chunk is the main thread's even when its TLS cannot be read."""
    candidates = [c for c in chunks if c.in_use and c.size == TCACHE_CHUNK_SIZE]
    arch = system.arch
    tp = system.layout_offset("struct task_struct", arch.thread_pointer)
    pointers = [system.kmem.u64(t.addr + tp) for t in system.threads(process)]
    found = glibc_heap.thread_tcaches(read, pointers, candidates, arch.tls_below, arch.tls_above)
    if main_first.size == TCACHE_CHUNK_SIZE and main_first.in_use:
        found.add(main_first.address)
    return found


def _cut(span: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(r.start, r.end) for r in _minus(leaks.Region(span[0], span[1], ""), holes)]


def data_ranges(vmas: list[Vma]) -> list[tuple[int, int]]:
    """Writable data of every module: its rw file mapping and the bss mapping after it."""
    out = []
    for i, v in enumerate(vmas):
        if v.inode and v.perms.startswith("rw"):
            end = v.end
            if i + 1 < len(vmas) and vmas[i + 1].start == v.end and not vmas[i + 1].inode and not vmas[i + 1].name:
                end = vmas[i + 1].end
            out.append((v.start, end))
    return out


def roots(system: System, process: Task, vmas: list[Vma],
          holes: list[tuple[int, int]]) -> tuple[list[leaks.Region], list[int]]:
    """Readable, non-code memory outside `holes` (the heap, the mmapped blocks; stacks
    only above each thread's stack pointer), and every thread's saved registers.
    Threads already past exit_mm (no kernel stack) have no registers to give."""
    words, stack_tops = [], {}
    for thread in system.threads(process):
        try:
            regs = user_registers(system, thread)
        except TargetError:
            continue
        words += list(regs.values())
        stack_tops[regs["sp"]] = thread.pid
    regions = []
    for v in vmas:
        if not v.flags & VM_READ or v.flags & VM_EXEC or v.name in ("[vvar]", "[vdso]"):
            continue
        start = max([sp for sp in stack_tops if v.start <= sp < v.end], default=v.start)
        regions += _minus(leaks.Region(start, v.end, v.name or "anonymous"), holes)
    return regions, words


def _minus(region: leaks.Region, holes: list[tuple[int, int]]) -> list[leaks.Region]:
    pieces = [region]
    for lo, hi in holes:
        out = []
        for p in pieces:
            if hi <= p.start or lo >= p.end:
                out.append(p)
                continue
            if p.start < lo:
                out.append(leaks.Region(p.start, lo, p.what))
            if hi < p.end:
                out.append(leaks.Region(hi, p.end, p.what))
        pieces = out
    return pieces


def user_registers(system: System, thread: Task) -> dict[str, int]:
    """A thread's user registers as saved on entry to the kernel (task_pt_regs)."""
    stack = system.kmem.u64(thread.addr + system.layout_offset("struct task_struct", "stack"))
    if not stack:
        raise TargetError(f"thread {thread.pid} has no kernel stack (exiting?)")
    regs_layout = system.target.layout("struct pt_regs")
    top = stack + system.target.symbol_size("init_stack")          # THREAD_SIZE
    raw = system.kmem.read(top - regs_layout.size, regs_layout.size)
    return {name: u64(raw, offset) for name, offset in system.arch.user_registers(regs_layout).items()}


@gc_paused()
def classify_tracked(system: System, process: Task, blocks: list[leaks.Block],
                     not_roots: list[tuple[int, int]] = ()) -> leaks.BlockIndex:
    """Classify the blocks tracking mode knows (exact sizes) by the same root scan: the
    brk heap, the arenas and their heaps, every block outside the heap, and `not_roots`
    (the preload library's record of every call) are left out of the roots."""
    mm = system.mm(process)
    vmas = system.vmas(process)
    user = UserMemory(system.kmem.phys, system.pgd(mm), system.kmem.paging)
    holes = [(mm.start_brk, mm.brk)]
    try:
        holes += malloc_state(user.read, vmas, mm.start_brk, mm.brk).holes
    except TargetError:
        pass                        # no brk heap (yet), or arenas we cannot read: the blocks still count
    heaps = list(holes)                 # a few ranges: the heaps and main_arena
    holes += [(b.address - 2 * glibc_heap.SIZE_SZ, b.address + b.size) for b in blocks
              if not any(lo <= b.address < hi for lo, hi in heaps)]     # blocks malloc mmapped on their own
    holes += list(not_roots)
    regions, words = roots(system, process, vmas, holes)
    return leaks.classify(blocks, user.read, regions, words, spans=True)
