"""A synthetic SLUB allocator in sparse kernel memory, with 6.1's or 6.12's layouts: caches,
slabs in a memmap, per-CPU slabs and partial lists, node partial lists, hardened
freelists.  Each slab's free objects are chosen by the test, so the truth is known."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from fakes import FakeTarget
from gdb_memcheck.arch.base import FULL, KernelMap
from gdb_memcheck.linux.slab import SlabAllocator, swab64
from gdb_memcheck.target import Field, MemoryReadError, StructLayout

PAGE = 4096
DIRECT_MAP = 0xFFFF_8880_0000_0000
VMEMMAP = 0xFFFF_EA00_0000_0000
MAX_PFN = 64
SYMBOLS = 0xFFFF_FFFF_8200_0000         # where the fake kernel's variables live
PG_LRU, PG_SLAB, PG_RESERVED, PG_HEAD = 4, 9, 12, 16
SECTION_ROOTS = SYMBOLS + 0x10000        # mem_section's root array (SPARSEMEM_EXTREME)
SECTION_PRESENT_WITH_MAP = 0b11          # SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP
PGTY_SLAB = 0xF5


def layout(name: str, size: int, /, **members: int) -> StructLayout:
    return StructLayout(name, size, {k.replace("__", "."): Field(v, 8) for k, v in members.items()})


def layouts(version: str) -> dict[str, StructLayout]:
    if version == "6.1":
        slab = layout("struct slab", 64, slab_list=8, next=8, slab_cache=0x18, freelist=0x20, counters=0x28)
        folio = layout("struct folio", 256, _folio_order=0x70)
    else:
        slab = layout("struct slab", 64, slab_cache=8, slab_list=0x10, next=0x10, freelist=0x20, counters=0x28)
        folio = layout("struct folio", 256, _flags_1=0x40)
    return {lay.name: lay for lay in (
        slab, folio,
        layout("struct page", 64, flags=0, compound_head=8, mapping=0x18, page_type=0x30, _refcount=0x34),
        layout("struct kmem_cache", 0xE8, cpu_slab=0, flags=8, size=0x18, object_size=0x1C, offset=0x28, oo=0x34,
               inuse=0x50, red_left_pad=0x58, name=0x60, list=0x68, random=0xB8, node=0xD8),
        layout("struct kmem_cache_cpu", 0x28, freelist=0, tid=8, slab=0x10, partial=0x18),
        layout("struct kmem_cache_node", 0x40, nr_partial=8, partial=0x10, total_objects=0x28),
        layout("struct track", 0x20, addr=0, handle=8, cpu=0xC, pid=0x10, when=0x18),
        layout("struct mem_section", 16, section_mem_map=0, usage=8))}


class KernelRam:
    """Sparse kernel virtual memory; reads of pages never written fail."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self.levels = 4
        self.map = KernelMap(((DIRECT_MAP, DIRECT_MAP + MAX_PFN * PAGE, FULL - DIRECT_MAP),), 0, DIRECT_MAP)

    def write(self, va: int, data: bytes) -> None:
        for i in range(0, len(data)):
            page = self.pages.setdefault((va + i) & ~(PAGE - 1), bytearray(PAGE))
            page[(va + i) & (PAGE - 1)] = data[i]

    def u64_at(self, va: int, value: int) -> None:
        self.write(va, struct.pack("<Q", value & (1 << 64) - 1))

    def read(self, va: int, size: int) -> bytes:
        out = bytearray()
        pos = va
        while pos < va + size:
            page = self.pages.get(pos & ~(PAGE - 1))
            if page is None:
                raise MemoryReadError("kernel virtual", va, size, f"{pos:#x} is not in the test's memory")
            n = min(va + size, (pos | (PAGE - 1)) + 1) - pos
            out += page[pos & (PAGE - 1):(pos & (PAGE - 1)) + n]
            pos += n
        return bytes(out)

    def u64(self, va: int) -> int:
        return struct.unpack("<Q", self.read(va, 8))[0]


@dataclass
class FakeCache:
    address: int
    name: str
    size: int
    random: int
    offset: int
    cpu: int                            # its kmem_cache_cpu (CPU 0's per-CPU offset is 0)
    node: int
    slabs: list[int] = field(default_factory=list)


class Slub:
    """Builds caches and slabs; `truth` maps each object to True when it is free."""

    def __init__(self, version: str = "6.12", hardened: bool = True) -> None:
        lays = layouts(version)
        if not hardened:
            cache = lays["struct kmem_cache"]
            lays["struct kmem_cache"] = StructLayout(cache.name, cache.size,
                                                     {k: v for k, v in cache.fields.items() if k != "random"})
        enums = {"enum pageflags": {"PG_locked": 0, "PG_lru": PG_LRU, "PG_reserved": PG_RESERVED, "PG_head": PG_HEAD,
                                    "__NR_PAGEFLAGS": 22}}
        if version == "6.1":
            enums["enum pageflags"]["PG_slab"] = PG_SLAB
        else:
            enums["enum pagetype"] = {"PGTY_buddy": 0xF0, "PGTY_slab": PGTY_SLAB}
        symbols = {name: SYMBOLS + 0x100 * i for i, name in enumerate(
            ("mem_section", "max_pfn", "__per_cpu_offset", "nr_node_ids", "slab_caches"))}
        self.version, self.hardened = version, hardened
        self.target = FakeTarget(symbols=symbols, layouts=lays, enums=enums)
        self.ram = KernelRam()
        self.truth: dict[int, bool] = {}
        self.caches: list[FakeCache] = []
        self.next_meta = DIRECT_MAP + 0x1000            # pfn 1 holds the caches' structures
        for name, value in (("mem_section", SECTION_ROOTS), ("max_pfn", MAX_PFN), ("__per_cpu_offset", 0),
                            ("nr_node_ids", 1)):
            self.ram.u64_at(symbols[name], value)
        self.ram.u64_at(SECTION_ROOTS, SECTION_ROOTS + PAGE)           # one root; its section 0 has the memmap
        self.ram.u64_at(SECTION_ROOTS + PAGE, VMEMMAP | SECTION_PRESENT_WITH_MAP)
        head = symbols["slab_caches"]
        self.ram.u64_at(head, head)
        self.ram.u64_at(head + 8, head)
        for pfn in range(MAX_PFN):
            self.ram.u64_at(VMEMMAP + pfn * 64, 1 << PG_RESERVED if pfn < 2 else 0)

    def _meta(self, size: int) -> int:
        addr, self.next_meta = self.next_meta, self.next_meta + (size + 63) // 64 * 64
        self.ram.write(addr, bytes(size))
        return addr

    def cache(self, name: str, size: int = 64, offset: int = 32, random: int = 0x1234_5678_9ABC_DEF0) -> FakeCache:
        lay = self.target.layout("struct kmem_cache")
        s, cpu, node, text = self._meta(lay.size), self._meta(0x28), self._meta(0x40), self._meta(32)
        self.ram.write(text, name.encode() + b"\0")
        for member, value, width in (("size", size, 4), ("object_size", size, 4), ("offset", offset, 4),
                                     ("inuse", size, 4), ("oo", PAGE // size, 4), ("name", text, 8),
                                     ("cpu_slab", cpu, 8), ("node", node, 8)):
            self.ram.write(s + lay.offset(member), value.to_bytes(width, "little"))
        if self.hardened:
            self.ram.u64_at(s + lay.offset("random"), random)
        partial = node + 0x10
        self.ram.u64_at(partial, partial)
        self.ram.u64_at(partial + 8, partial)
        head = self.target.symbols["slab_caches"]                   # append to slab_caches
        last = self.ram.u64(head + 8)
        entry = s + lay.offset("list")
        self.ram.u64_at(entry, head)
        self.ram.u64_at(entry + 8, last)
        self.ram.u64_at(last, entry)
        self.ram.u64_at(head + 8, entry)
        c = FakeCache(s, name, size, random if self.hardened else 0, offset, cpu, node)
        self.caches.append(c)
        return c

    def encode(self, cache: FakeCache, pointer: int, stored_at: int) -> int:
        return pointer ^ cache.random ^ swab64(stored_at) if self.hardened else pointer

    def chain(self, cache: FakeCache, objects: list[int]) -> int:
        """Link `objects` into a freelist; its head (0 when empty)."""
        for obj, nxt in zip(objects, objects[1:] + [0]):
            self.ram.u64_at(obj + cache.offset, self.encode(cache, nxt, obj + cache.offset))
        return objects[0] if objects else 0

    def slab(self, cache: FakeCache, pfn: int, free: list[int], where: str = "full",
             cpu_free: list[int] = ()) -> int:
        """A one-page slab at `pfn`; `free` object indexes on its freelist; where: "cpu", "cpu partial",
        "node partial" or "full"; `cpu_free`: indexes on the CPU's freelist (a CPU slab)."""
        base = DIRECT_MAP + pfn * PAGE
        objects = [base + i * cache.size for i in range(PAGE // cache.size)]
        self.ram.write(base, bytes(PAGE))
        for i, obj in enumerate(objects):
            self.truth[obj] = i in free or i in cpu_free
        page = VMEMMAP + pfn * 64
        lay = self.target.layout("struct slab")
        if self.version == "6.1":
            self.ram.u64_at(page, 1 << PG_SLAB)
        else:
            self.ram.write(page + 0x30, struct.pack("<I", PGTY_SLAB << 24))
        self.ram.u64_at(page + lay.offset("slab_cache"), cache.address)
        self.ram.u64_at(page + lay.offset("freelist"), self.chain(cache, [objects[i] for i in free]))
        inuse = len(objects) if where == "cpu" else len(objects) - len(free)
        frozen = where.startswith("cpu")
        self.ram.u64_at(page + lay.offset("counters"), inuse | len(objects) << 16 | frozen << 31)
        if where == "cpu":
            self.ram.u64_at(cache.cpu + 0x10, page)
            self.ram.u64_at(cache.cpu, self.chain(cache, [objects[i] for i in cpu_free]))
        elif where == "cpu partial":
            self.ram.u64_at(page + lay.offset("next"), self.ram.u64(cache.cpu + 0x18))
            self.ram.u64_at(cache.cpu + 0x18, page)
        elif where == "node partial":
            head = cache.node + 0x10
            last, entry = self.ram.u64(head + 8), page + lay.offset("slab_list")
            self.ram.u64_at(entry, head)
            self.ram.u64_at(entry + 8, last)
            self.ram.u64_at(last, entry)
            self.ram.u64_at(head + 8, entry)
            self.ram.u64_at(cache.node + 8, self.ram.u64(cache.node + 8) + 1)
        self.ram.u64_at(cache.node + 0x28, self.ram.u64(cache.node + 0x28) + len(objects))
        cache.slabs.append(page)
        return page

    def allocator(self) -> SlabAllocator:
        return SlabAllocator(self.target, self.ram)


def standard(version: str = "6.12", hardened: bool = True) -> tuple[Slub, FakeCache]:
    """One cache of 64-byte objects with a slab in each place SLUB keeps them."""
    slub = Slub(version, hardened)
    cache = slub.cache("test_cache")
    slub.slab(cache, 8, [3, 5, 7], "cpu", cpu_free=[0, 1])
    slub.slab(cache, 9, [2, 4], "cpu partial")
    slub.slab(cache, 10, [10, 20, 30, 40], "node partial")
    slub.slab(cache, 11, [], "full")
    slub.slab(slub.cache("other", size=128), 12, [1], "node partial")
    return slub, cache
