"""A leak scan of the kernel from outside, by kmemleak's method (mm/kmemleak.c,
Documentation/dev-tools/kmemleak.rst): the objects are the allocated slab objects and
vmalloc areas; the roots are the kernel image's data, bss and ro_after_init, the
per-CPU areas, every task's kernel stack above its saved stack pointer, each vCPU's
registers, loaded modules' data, and the memory the boot allocator handed out (memblock:
the memmap, the first per-CPU chunk, the large system hash tables), which kmemleak too
scans as always-referenced objects.  Objects are classified as valgrind classifies user
blocks (leaks.classify)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..arch.x86_64.linux import START_KERNEL_MAP
from ..linux.memory import PAGE
from ..linux.modules import ModuleReader
from ..linux.slab import Cache, SlabAllocator
from ..linux.stackdepot import StackDepot
from ..linux.system import System
from ..linux.vmalloc import VM_ALLOC, VmallocReader, VmArea
from ..target import MemoryReadError, PartialError, TargetError
from . import leaks

VMALLOC = "vmalloc"
KERNEL_SPACE = {4: 0xFFFF_8000_0000_0000, 5: 0xFF00_0000_0000_0000}     # the lowest canonical kernel address
PREVIEW = 32
UNREADABLE = 0x10                           # neither NULL nor a kernel address: no embedded node
IMAGE_DATA = (("_sdata", "_edata", "kernel data"), ("__bss_start", "__bss_stop", "kernel bss"),
              ("__start_ro_after_init", "__end_ro_after_init", "kernel ro_after_init"))


@dataclass
class KernelObject:
    """What the report shows of one object besides its leaks.Block."""

    cache: str
    preview: bytes = b""
    stack: tuple[int, ...] = ()


@dataclass
class KernelLeakScan:
    """Classified objects, where they came from, and what was scanned."""

    index: leaks.BlockIndex
    objects: dict[int, KernelObject]
    roots: list[leaks.Region]
    root_bytes: dict[str, int]
    caches: int
    vmalloc_areas: int
    seconds: float
    notes: list[str] = field(default_factory=list)


class KernelScanner:
    """One scan at one stop."""

    def __init__(self, system: System, slab: SlabAllocator) -> None:
        self.system, self.slab, self.kmem, self.target = system, slab, system.kmem, system.target
        self.notes: list[str] = []
        self.blank: dict[int, tuple[int, ...]] = {}     # object -> offsets of words not taken as pointers
        self._words: dict[int, int] = {}

    def scan(self) -> KernelLeakScan:
        t0 = time.monotonic()
        blocks, objects = self._slab_objects()
        stacks = self._stacks()
        regions, vm_objects = self._vmalloc_objects(blocks, objects, set(stacks) | self._cached_stacks())
        regions += self._image() + self._module_data() + self._boot_memory()
        regions += [leaks.Region(sp, top, "task stacks") for sp, top in stacks.values()]
        index = leaks.classify(blocks, self._read, regions, self._registers(), self._link)
        for b in index.blocks:
            if b.kind is not leaks.Kind.REACHABLE:
                objects[b.address].preview = self._preview(b)
        sizes: dict[str, int] = {}
        for r in regions:
            sizes[r.what] = sizes.get(r.what, 0) + r.end - r.start
        return KernelLeakScan(index, objects, regions, sizes, len(self.slab.caches), vm_objects,
                              time.monotonic() - t0, self.notes)

    def _vmalloc_objects(self, blocks: list[leaks.Block], objects: dict[int, KernelObject],
                         stacks: set[int]) -> tuple[list[leaks.Region], int]:
        """Add the vmalloc areas that are allocations to `blocks`; return the later per-CPU
        chunks (roots) and how many areas were added.  The allocator's own records of an area
        (each vmap_area's bounds, busy or free, and vm_struct.addr) are no reference to it:
        kmemleak asks two references of a vmalloc area for the same reason."""
        percpu = self.target.symbol_address("pcpu_get_vm_areas") if self.target.has_symbol("pcpu_get_vm_areas") \
            else None
        regions: list[leaks.Region] = []
        count = 0
        for record in self._idle_records():
            self.blank[record] = self._va_start
        for a in self._vmalloc_areas():
            self.blank[a.area] = self._va_start
            self.blank[a.vm] = self._vm_addr
            if a.start >= START_KERNEL_MAP or not a.vm or not a.flags & VM_ALLOC or a.start in stacks:
                continue                    # modules, vmap'ed and ioremapped memory, stacks
            if a.caller == percpu:
                regions.append(leaks.Region(a.start, a.start + a.usable, "per-CPU chunks"))
                continue
            blocks.append(leaks.Block(a.start, a.usable, via=VMALLOC))
            objects[a.start] = KernelObject(VMALLOC)
            count += 1
        return regions, count

    def _link(self, block: leaks.Block, pointer: int) -> bool:
        """An interior pointer that the kernel's own data structures make: a tagged pointer
        (low bits set: XArray and maple tree nodes, page->mapping), or a pointer to an embedded
        node (list_head, hlist_node, rb_node, rcu_head: a word that holds NULL or a kernel
        address).  Any other interior pointer leaves the object possibly lost."""
        if pointer & 7:
            return True
        word = self._words.get(pointer)
        if word is None:
            try:
                word = self._words[pointer] = self.kmem.u64(pointer)
            except MemoryReadError:
                word = self._words[pointer] = UNREADABLE
        # an rb_node keeps its colour in bit 0
        return word & ~3 == 0 or word & ~7 >= KERNEL_SPACE[self.kmem.levels]

    def _read(self, addr: int, size: int) -> bytes:
        """Object and root memory; a page that cannot be read scans as zeros."""
        data = self._read_raw(addr, size)
        if addr in self.blank:
            cut = bytearray(data)
            for off in self.blank[addr]:
                cut[off:off + 8] = bytes(min(8, max(0, len(cut) - off)))
            data = bytes(cut)
        return data

    def _read_raw(self, addr: int, size: int) -> bytes:
        try:
            return self.kmem.read(addr, size)
        except MemoryReadError:
            out = bytearray(size)
            pos = addr
            while pos < addr + size:
                n = min(addr + size, (pos // PAGE + 1) * PAGE) - pos
                try:
                    out[pos - addr:pos - addr + n] = self.kmem.read(pos, n)
                except MemoryReadError:
                    pass
                pos += n
            return bytes(out)

    # -- objects ----------------------------------------------------------------------
    @property
    def _vm_addr(self) -> tuple[int, ...]:
        return (self.target.layout("struct vm_struct").offset("addr"),)

    @property
    def _va_start(self) -> tuple[int, ...]:
        lay = self.target.layout("struct vmap_area")
        return (lay.offset("va_start"), lay.offset("va_end"))

    def _slab_objects(self) -> tuple[list[leaks.Block], dict[int, KernelObject]]:
        blocks, objects = [], {}
        depot = self._depot()
        for cache in self.slab.caches:
            try:
                found = self.slab.objects(cache)
            except PartialError as e:
                self.notes.append(f"{e}; its objects after that are left out")      # e names the cache
                found = e.partial
            tracks = depot is not None and self.slab.stores_tracks(cache)
            for o in found:
                if o.free:
                    continue
                blocks.append(leaks.Block(o.address, cache.object_size, via=cache.name))
                objects[o.address] = KernelObject(cache.name, stack=self._stack(depot, cache, o.address)
                                                  if tracks else ())
        return blocks, objects

    def _depot(self) -> StackDepot | None:
        try:
            return StackDepot(self.target)
        except TargetError:
            return None

    def _stack(self, depot: StackDepot, cache: Cache, address: int) -> tuple[int, ...]:
        try:
            track = self.slab.track(cache, address)
            if track is None or not track.addr:
                return ()
            return depot.stack(self.kmem.read, track.handle) or (track.addr,)
        except TargetError:
            return ()

    def _vmalloc_areas(self) -> list[VmArea]:
        try:
            return VmallocReader(self.target).areas(self.kmem.read)
        except PartialError as e:
            self.notes.append(str(e))
            return e.partial

    def _idle_records(self) -> list[int]:
        try:
            return VmallocReader(self.target).idle_records(self.kmem.read)
        except PartialError as e:
            self.notes.append(str(e))
            return e.partial

    def _preview(self, block: leaks.Block) -> bytes:
        try:
            return self.kmem.read(block.address, min(PREVIEW, block.size))
        except MemoryReadError:
            return b""

    # -- roots -------------------------------------------------------------------------
    def _image(self) -> list[leaks.Region]:
        out = []
        for start, end, what in IMAGE_DATA:
            if self.target.has_symbol(start) and self.target.has_symbol(end):
                out.append(leaks.Region(self.target.symbol_address(start), self.target.symbol_address(end), what))
        return out

    def _per_cpu_units(self) -> list[tuple[int, int]]:
        """Each CPU's unit of the first per-CPU chunk (static per-CPU variables and the first
        dynamic allocations), as pfn ranges; later chunks are vmalloc areas, taken above."""
        t = self.target
        base = self.kmem.u64(t.symbol_address("pcpu_base_addr"))
        unit = int.from_bytes(self.kmem.read(t.symbol_address("pcpu_unit_size"), 4), "little")
        offsets = self.kmem.u64(t.symbol_address("pcpu_unit_offsets"))
        out = []
        for cpu in range(t.cpu_count()):
            start = self.kmem.to_physical(base + self.kmem.u64(offsets + 8 * cpu)) // PAGE
            out.append((start, start + unit // PAGE))
        return out

    def _module_data(self) -> list[leaks.Region]:
        try:
            regions = ModuleReader(self.target).regions(self.kmem.read)
        except PartialError as e:
            self.notes.append(str(e))
            regions = e.partial
        return [leaks.Region(r.start, r.end, "module data") for r in regions if r.holds_pointers]

    def _boot_memory(self) -> list[leaks.Region]:
        """Runs of reserved pages (PG_reserved) outside the kernel image, read through the
        direct map: what memblock handed out at boot (the memmap, the first per-CPU chunk,
        the large system hash tables) and firmware's ranges; and the compound pages the kernel
        holds outside slabs (large kmallocs, which kmemleak tracks as objects and scans once
        they are referenced).  The per-CPU units are the part
        of the first chunk still reserved: what the kernel did not use of them went back to
        the page allocator."""
        image = (self.kmem.to_physical(self.target.symbol_address("_text")) // PAGE,
                 self.kmem.to_physical(self.target.symbol_address("_end")) // PAGE + 1)
        units = self._per_cpu_units()
        out = []
        for lo, hi in self.slab.reserved_runs():
            for a, b in _cut((lo, hi), [image]):
                for c, d in _cut((a, b), units):
                    out.append(self._pages("boot memory (reserved pages)", c, d))
                for u_lo, u_hi in units:
                    if max(a, u_lo) < min(b, u_hi):
                        out.append(self._pages("per-CPU areas", max(a, u_lo), min(b, u_hi)))
        out += [self._pages("large page allocations", lo, hi) for lo, hi in self.slab.kernel_compound_pages()]
        return out

    def _pages(self, what: str, lo: int, hi: int) -> leaks.Region:
        return leaks.Region(self.slab.direct_map + lo * PAGE, self.slab.direct_map + hi * PAGE, what)

    def _stacks(self) -> dict[int, tuple[int, int]]:
        """Stack base -> (lowest live address, top) of every task: the tasks that are slab
        objects in use (every thread, the other CPUs' idle tasks) and init_task.  A task running
        on a vCPU is scanned from that vCPU's stack pointer."""
        t = self.target
        lay = t.layout("struct task_struct")
        off_stack, off_sp = lay.offset("stack"), lay.offset("thread.sp")
        size = t.symbol_size("init_stack")                     # THREAD_SIZE
        running = {self.system.current_task.task(cpu, self.kmem.u64): cpu for cpu in range(t.cpu_count())}
        tasks = [t.symbol_address("init_task")]
        try:
            cache = self.slab.find_cache("task_struct")
            tasks += [o.address for o in self.slab.objects(cache) if not o.free]
        except TargetError as e:
            self.notes.append(f"task stacks: {e}")
        out = {}
        for task in tasks:
            try:
                stack, sp = self.kmem.u64(task + off_stack), self.kmem.u64(task + off_sp)
                if task in running:
                    sp = t.register("rsp", running[task])
            except TargetError:
                continue
            if stack:
                out[stack] = (sp if stack <= sp < stack + size else stack, stack + size)
        return out

    def _cached_stacks(self) -> set[int]:
        """Stacks of exited tasks kept for reuse in each CPU's cached_stacks[]: their stale
        contents are neither objects nor roots."""
        t = self.target
        if not t.has_symbol("cached_stacks"):
            return set()
        count = t.symbol_size("cached_stacks") // 8
        addr_off = t.layout("struct vm_struct").offset("addr")
        out = set()
        for offset in self.slab.per_cpu:
            for i in range(count):
                vm = self.kmem.u64(offset + t.symbol_address("cached_stacks") + 8 * i)
                if vm:
                    out.add(self.kmem.u64(vm + addr_off))
        return out

    def _registers(self) -> list[int]:
        names = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                 "r15")
        words = []
        for cpu in range(self.target.cpu_count()):
            for name in names:
                try:
                    words.append(self.target.register(name, cpu))
                except TargetError:
                    continue
        return words


def scan(system: System, slab: SlabAllocator) -> KernelLeakScan:
    """Classify every allocated slab object and vmalloc area of the stopped kernel."""
    return KernelScanner(system, slab).scan()


def _cut(span: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`span` without `holes`, as sorted pieces."""
    pieces = [span]
    for lo, hi in holes:
        pieces = [p for a, b in pieces for p in ((a, min(b, lo)), (max(a, hi), b)) if p[1] > p[0]]
    return pieces
