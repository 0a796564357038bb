"""What a kernel address is: a slab object (cache, object, offset, in use or free), a
page of the page allocator (flags, order, refcount, mapping), a vmalloc area (range,
caller), a task's kernel stack, a per-CPU area, a module's memory, the kernel image
(section; the symbol comes from the caller), the memmap, the fixmap or the CPU entry
area.  Ranges follow Documentation/arch/x86/x86_64/mm.rst."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..target import MemoryReadError, Target, TargetError, u32, u64
from ..arch.x86_64.linux import START_KERNEL_MAP
from .memory import PAGE
from .modules import ModuleReader
from .slab import Cache, SlabAllocator, SlabObject
from .stackdepot import StackDepot
from .system import System
from .vmalloc import VmallocReader

USER_TOP = {4: 1 << 47, 5: 1 << 56}
CPU_ENTRY_AREA = (0xFFFF_FE00_0000_0000, 0xFFFF_FE80_0000_0000)   # 4-level: 0.5 TB at -2 TB
FIXMAP = (0xFFFF_FFFF_FF00_0000, 0xFFFF_FFFF_FF60_0000)           # below the vsyscall page, above modules
VSYSCALL = (0xFFFF_FFFF_FF60_0000, 0xFFFF_FFFF_FF60_1000)
IMAGE_SECTIONS = (("_text", "_etext", ".text"), ("__start_rodata", "__end_rodata", ".rodata"),
                  ("__start_ro_after_init", "__end_ro_after_init", ".data..ro_after_init"),
                  ("_sdata", "_edata", ".data"), ("__init_begin", "__init_end", "init (freed after boot)"),
                  ("__bss_start", "__bss_stop", ".bss"), ("__brk_base", "__brk_limit", ".brk"))


@dataclass
class KernelAddress:
    """Everything `memcheck kmem` says about one address."""

    address: int
    kind: str                   # slab object, page, vmalloc, task stack, per-CPU, module, kernel image, ...
    detail: str = ""
    cache: str | None = None
    object_start: int | None = None
    offset: int | None = None
    object_size: int | None = None
    free: bool | None = None
    range: tuple[int, int] | None = None
    caller: int | None = None
    section: str | None = None
    pid: int | None = None
    comm: str | None = None
    physical: int | None = None
    symbol_at: int | None = None          # what names it: the address, or a per-CPU variable's offset
    page: "PageInfo | None" = None
    alloc_stack: tuple[int, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PageInfo:
    """struct page of a pfn: its flag names, the compound order, refcount and mapping."""

    pfn: int
    head_pfn: int
    flags: tuple[str, ...]
    order: int
    refcount: int
    mapping: int


class PageReader:
    """Decodes struct page: flag names from enum pageflags, the order of a compound page."""

    def __init__(self, target: Target, slab: SlabAllocator) -> None:
        self.slab = slab
        page = target.layout("struct page")
        self.refcount, self.mapping = page.offset("_refcount"), page.offset("mapping")
        self.order = slab.layout.page_size + slab.layout.order
        flags = target.enum_values("enum pageflags")
        count = flags.get("__NR_PAGEFLAGS", max(flags.values()) + 1)
        self.names: dict[int, str] = {}
        for name, bit in sorted(flags.items(), key=lambda kv: kv[1]):
            if 0 <= bit < count and bit not in self.names and not name.startswith("__"):
                self.names[bit] = name.removeprefix("PG_")

    def page(self, pfn: int) -> PageInfo:
        lay, kmem = self.slab.layout, self.slab.kmem
        head = self.slab.head_pfn(pfn)
        raw = kmem.read(self.slab.vmemmap + head * lay.page_size, 2 * lay.page_size)
        flags = u64(raw, lay.flags)
        names = tuple(name for bit, name in self.names.items() if flags >> bit & 1)
        if lay.page_type is not None and u32(raw, lay.page_type) >> 24 == lay.slab_bit:
            names += ("slab",)
        order = raw[self.order] if flags >> lay.head_bit & 1 else 0
        return PageInfo(pfn, head, names, order, u32(raw, self.refcount), u64(raw, self.mapping))


class AddressResolver:
    """Answers `memcheck kmem` at one stop."""

    def __init__(self, system: System, slab: SlabAllocator) -> None:
        self.system, self.slab, self.target, self.kmem = system, slab, system.target, system.kmem

    def describe(self, address: int) -> KernelAddress:
        if address < USER_TOP[self.kmem.levels]:
            raise TargetError(f"{address:#x} is a user address: `memcheck addr -p PID {address:#x}` says what it is")
        for probe in (self._stack, self._image, self._module, self._direct_map, self._vmalloc, self._memmap,
                      self._fixed):
            found = probe(address)
            if found is not None:
                return found
        return KernelAddress(address, "unknown", "in no kernel range this reader knows")

    # -- the ranges -----------------------------------------------------------------------
    def _image(self, address: int) -> KernelAddress | None:
        if not START_KERNEL_MAP <= address < self.target.symbol_address("_end"):
            return None
        section = "kernel image"
        for start, end, name in IMAGE_SECTIONS:
            if self.target.has_symbol(start) and self.target.has_symbol(end) and \
                    self.target.symbol_address(start) <= address < self.target.symbol_address(end):
                section = name
                break
        return KernelAddress(address, "kernel image", section=section, physical=self.kmem.to_physical(address),
                             symbol_at=address)

    def _module(self, address: int) -> KernelAddress | None:
        if address < START_KERNEL_MAP:
            return None
        for r in ModuleReader(self.target).regions(self.kmem.read):
            if r.start <= address < r.end:
                return KernelAddress(address, "module", f"module {r.module}, {r.kind} + {address - r.start:#x}",
                                     range=(r.start, r.end), section=r.kind)
        return None

    def _direct_map(self, address: int) -> KernelAddress | None:
        if not self.slab.direct_map <= address < self.slab.direct_map + self.slab.max_pfn * PAGE:
            return None
        physical = address - self.slab.direct_map
        cpu = self._per_cpu(physical)
        if cpu is not None:
            static = cpu[1] < self.target.symbol_address("__per_cpu_end")
            return KernelAddress(address, "per-CPU", f"CPU {cpu[0]}'s per-CPU area + {cpu[1]:#x}",
                                 physical=physical, offset=cpu[1],
                                 section=".data..percpu" if static else "dynamic per-CPU allocations",
                                 symbol_at=cpu[1] if static else None)
        found = self.slab.object_at(address)
        if found is not None:
            cache, obj, offset = found
            stack = self._alloc_stack(cache, obj) if not obj.free else ()
            return KernelAddress(address, "slab object", cache=cache.name, object_start=obj.address, offset=offset,
                                 object_size=cache.object_size, free=obj.free, physical=physical,
                                 page=PageReader(self.target, self.slab).page(physical // PAGE), alloc_stack=stack)
        return KernelAddress(address, "page", "direct map", physical=physical,
                             page=PageReader(self.target, self.slab).page(physical // PAGE))

    def _alloc_stack(self, cache: Cache, obj: SlabObject) -> tuple[int, ...]:
        """The allocation stack slub_debug=U stored with the object (its caller alone when the
        stack depot cannot be read)."""
        track = self.slab.track(cache, obj.address)
        if track is None or not track.addr:
            return ()
        try:
            return StackDepot(self.target).stack(self.kmem.read, track.handle) or (track.addr,)
        except TargetError:
            return (track.addr,)

    def _per_cpu(self, physical: int) -> tuple[int, int] | None:
        t = self.target
        base = self.kmem.u64(t.symbol_address("pcpu_base_addr"))
        unit = u32(self.kmem.read(t.symbol_address("pcpu_unit_size"), 4))
        offsets = self.kmem.u64(t.symbol_address("pcpu_unit_offsets"))
        for cpu in range(t.cpu_count()):
            start = self.kmem.to_physical(base + self.kmem.u64(offsets + 8 * cpu))
            if start <= physical < start + unit and self._reserved(physical // PAGE):
                return cpu, physical - start
        return None

    def _reserved(self, pfn: int) -> bool:
        raw = self.kmem.read(self.slab.vmemmap + pfn * self.slab.layout.page_size, 8)
        return bool(u64(raw) >> self.slab.layout.reserved_bit & 1)

    def _vmalloc(self, address: int) -> KernelAddress | None:
        for a in VmallocReader(self.target).areas(self.kmem.read):
            if a.start <= address < a.end:
                try:
                    physical = self.kmem.to_physical(address)
                except (TargetError, MemoryReadError):
                    physical = None
                return KernelAddress(address, "vmalloc", f"{a.nr_pages} pages" if a.vm else "vmap'ed (no vm_struct)",
                                     range=(a.start, a.end), caller=a.caller or None, offset=address - a.start,
                                     physical=physical)
        return None

    def _stack(self, address: int) -> KernelAddress | None:
        size = self.target.symbol_size("init_stack")
        off = self.target.layout("struct task_struct").offset("stack")
        for p in self.system.processes:
            for task in self.system.threads(p):
                stack = self.kmem.u64(task.addr + off)
                if stack and stack <= address < stack + size:
                    return KernelAddress(address, "task stack", f"kernel stack of pid {task.pid} ({task.comm})",
                                         range=(stack, stack + size), pid=task.pid, comm=task.comm,
                                         offset=address - stack)
        return None

    def _memmap(self, address: int) -> KernelAddress | None:
        lay = self.slab.layout
        end = self.slab.vmemmap + self.slab.max_pfn * lay.page_size
        if not self.slab.vmemmap <= address < end:
            return None
        pfn = (address - self.slab.vmemmap) // lay.page_size
        return KernelAddress(address, "memmap", f"struct page of pfn {pfn:#x}", offset=(address - self.slab.vmemmap)
                             % lay.page_size, page=PageReader(self.target, self.slab).page(pfn))

    def _fixed(self, address: int) -> KernelAddress | None:
        for (lo, hi), kind in ((CPU_ENTRY_AREA, "cpu entry area"), (FIXMAP, "fixmap"), (VSYSCALL, "vsyscall page")):
            if lo <= address < hi:
                return KernelAddress(address, kind, range=(lo, hi))
        return None
