"""SLUB from outside: every cache on `slab_caches`, every slab found in the memmap (full
slabs sit on no list unless debugging is on), each CPU's slab, freelist and partial list,
each node's partial list, and every object's state.  Freelist links are decoded as
CONFIG_SLAB_FREELIST_HARDENED stores them (mm/slub.c freelist_ptr_decode).  Walks are
bounded and cycle-safe; a corrupt freelist ends in a TargetError that says where.

Read for reference: the kernel's scripts/gdb/linux/slab.py (lx-slabinfo), drgn's
helpers/linux/slab.py and crash's `kmem -s`; the code here is our own."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property

from ..target import MemoryReadError, PartialError, SymbolError, Target, TargetError, cstring, u32, u64
from .memory import PAGE, KernelMemory
from .rss import vmemmap

MAX_CACHES = 4096
MAX_OBJECT = 1 << 24            # larger kmallocs come from the page allocator
MAX_PARTIAL = 1 << 16           # slabs on one partial list
CHUNK_PAGES = 1 << 15           # struct pages read at once from the memmap (2 MiB of 64-byte pages)
SLAB_STORE_USER_6_1 = 0x0001_0000          # include/linux/slab.h before 6.9 (a #define, not in the debug info)
SLAB_RED_ZONE_6_1 = 0x0000_0400


def direct_map_base(kmem: KernelMemory) -> int:
    """Where physical 0 would be in the direct (linear) map of RAM: x86-64's page_offset_base;
    arm64's PAGE_OFFSET less memstart_addr."""
    if kmem.map.direct_map is None:
        raise TargetError("the kernel map has no direct map of RAM")
    return kmem.map.direct_map


def swab64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


class CorruptSlab(TargetError):
    """A freelist or slab list that cannot be what the kernel keeps."""


@dataclass(frozen=True)
class SlabLayout:
    """Offsets of the SLUB structures in this kernel, each choice probed in the debug info."""

    page_size: int              # sizeof(struct page) == sizeof(struct slab)
    flags: int
    compound_head: int
    slab_cache: int
    slab_list: int
    slab_next: int              # the per-CPU partial list's link
    freelist: int
    counters: int
    page_type: int | None       # 6.10+: slabs are a page type; before, the PG_slab flag
    slab_bit: int               # PG_slab's bit, or PGTY_slab when page_type is set
    head_bit: int
    reserved_bit: int
    lru_bit: int
    mapping: int
    order: int                  # of a compound page, in the struct page after its head
    cache: dict[str, int]
    cache_size: int
    cpu: dict[str, int]
    node: dict[str, int]
    max_nodes: int
    hardened: bool
    store_user: int
    red_zone: int
    track_size: int
    track: dict[str, int]

    @classmethod
    def from_target(cls, target: Target) -> "SlabLayout":
        page, slab = target.layout("struct page"), target.layout("struct slab")
        flags = target.enum_values("enum pageflags")
        if _has_enum(target, "enum pagetype"):
            # 6.10 made a slab a page type instead of PG_slab; 6.12 keeps the type in page_type's top
            # byte, one PGTY_* value each (enum pagetype)
            page_type, slab_bit = page.offset("page_type"), target.enum_values("enum pagetype")["PGTY_slab"]
        elif "PG_slab" in flags:
            page_type, slab_bit = None, flags["PG_slab"]
        else:
            raise SymbolError("this kernel has neither PG_slab nor enum pagetype: its slab pages cannot be found")
        cache = target.layout("struct kmem_cache")
        cpu = target.layout("struct kmem_cache_cpu")
        node = target.layout("struct kmem_cache_node")
        bits = _slab_flag_bits(target)
        track = target.layout("struct track")
        return cls(
            page_size=page.size, flags=page.offset("flags"), compound_head=page.offset("compound_head"),
            slab_cache=slab.offset("slab_cache"), slab_list=slab.offset("slab_list"),
            slab_next=slab.offset("next") if slab.has("next") else slab.offset("slab_list"),
            freelist=slab.offset("freelist"), counters=slab.offset("counters"),
            page_type=page_type, slab_bit=slab_bit, head_bit=flags["PG_head"],
            reserved_bit=flags["PG_reserved"], lru_bit=flags["PG_lru"], mapping=page.offset("mapping"),
            order=_order_offset(target, page.size),
            cache={m: cache.offset(m) for m in ("cpu_slab", "flags", "size", "object_size", "offset", "inuse",
                                                "red_left_pad", "name", "list", "node", "oo")}
            | ({"random": cache.offset("random")} if cache.has("random") else {}),
            cache_size=cache.size,
            # c->partial exists with CONFIG_SLUB_CPU_PARTIAL (Debian: yes)
            cpu={m: cpu.offset(m) for m in ("freelist", "slab") + (("partial",) if cpu.has("partial") else ())},
            node={m: node.offset(m) for m in ("nr_partial", "partial")}
            | ({"total_objects": node.offset("total_objects")} if node.has("total_objects") else {}),
            max_nodes=(cache.size - cache.offset("node")) // 8,
            # CONFIG_SLAB_FREELIST_HARDENED adds kmem_cache.random (Debian enables it)
            hardened=cache.has("random"), store_user=bits[0], red_zone=bits[1],
            track_size=track.size, track={m: track.offset(m) for m in ("addr", "cpu", "pid", "when")}
            | ({"handle": track.offset("handle")} if track.has("handle") else {}))


def _order_offset(target: Target, page_size: int) -> int:
    """Where a compound page's order is, from the start of the struct page after its head."""
    folio = target.layout("struct folio")
    # 6.1 has folio->_folio_order; 6.12 keeps the order in the low byte of folio->_flags_1
    member = "_folio_order" if folio.has("_folio_order") else "_flags_1"
    return folio.offset(member) - page_size


def _has_enum(target: Target, name: str) -> bool:
    try:
        target.enum_values(name)
    except TargetError:
        return False
    return True


def _slab_flag_bits(target: Target) -> tuple[int, int]:
    """SLAB_STORE_USER and SLAB_RED_ZONE: bits of enum _slab_flag_bits since 6.9 ("mm, slab: use
    an enum to define SLAB_ cache creation flags"); #defines, absent from the debug info, before."""
    if _has_enum(target, "enum _slab_flag_bits"):
        bits = target.enum_values("enum _slab_flag_bits")
        return 1 << bits["_SLAB_STORE_USER"], 1 << bits["_SLAB_RED_ZONE"]
    return SLAB_STORE_USER_6_1, SLAB_RED_ZONE_6_1


@dataclass(frozen=True)
class Cache:
    """One struct kmem_cache, the fields the walk needs."""

    address: int
    name: str
    size: int                   # object size with metadata: the stride between objects
    object_size: int
    offset: int                 # where a free object keeps its free pointer
    inuse: int                  # offset of the metadata (tracks follow here)
    red_left_pad: int
    flags: int
    random: int
    cpu_slab: int               # __percpu pointer
    nodes: tuple[int, ...]
    objects_per_slab: int
    order: int


@dataclass
class Slab:
    """One slab: the struct slab (in the memmap), its memory, and its counters."""

    address: int                # struct slab / struct page
    pfn: int
    base: int                   # the slab's memory in the direct map
    cache: int
    freelist: int
    inuse: int
    objects: int
    frozen: bool
    where: str = "full"         # "cpu N", "cpu N partial", "node N partial" or "full"
    free: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SlabObject:
    """One object of a cache."""

    address: int
    free: bool
    slab: int                   # struct slab address


@dataclass
class CacheStats:
    """What `memcheck slab` shows of one cache."""

    cache: Cache
    objects: int = 0
    free: int = 0
    slabs: int = 0
    cpu_slabs: int = 0
    cpu_partial_slabs: int = 0
    node_partial_slabs: int = 0
    node_partial_free: int = 0         # free objects on the nodes' partial lists
    nr_partial: int = 0                # kmem_cache_node.nr_partial, summed
    total_objects: int | None = None   # kmem_cache_node.total_objects (CONFIG_SLUB_DEBUG), summed
    error: str = ""

    @property
    def in_use(self) -> int:
        return self.objects - self.free

    @property
    def slabinfo_active(self) -> int:
        """/proc/slabinfo's active_objs: every object not free on a node's partial list
        (mm/slub.c get_slabinfo counts per-CPU slabs' free objects as active)."""
        return self.objects - self.node_partial_free


class SlabAllocator:
    """SLUB's state at one stop: build one per stop (it caches the memmap it read)."""

    def __init__(self, target: Target, kmem: KernelMemory, layout: SlabLayout | None = None) -> None:
        self.target, self.kmem = target, kmem
        self.direct_map = direct_map_base(kmem)
        self.layout = layout or SlabLayout.from_target(target)
        self.max_pfn = u64(kmem.read(target.symbol_address("max_pfn"), 8))
        # the first pfn of RAM (arm64's starts at 1 GiB on QEMU's virt machine); 0 where the kernel leaves it
        self.min_pfn = u64(kmem.read(target.symbol_address("min_low_pfn"), 8)) \
            if target.has_symbol("min_low_pfn") else 0
        self.per_cpu = [u64(kmem.read(target.symbol_address("__per_cpu_offset") + 8 * c, 8))
                        for c in range(target.cpu_count())]
        self.nr_nodes = (u32(kmem.read(target.symbol_address("nr_node_ids"), 4))
                         if target.has_symbol("nr_node_ids") else 1)
        self.vmemmap = vmemmap(target, kmem.read)

    # -- caches ---------------------------------------------------------------------
    @cached_property
    def caches(self) -> list[Cache]:
        """Every cache on slab_caches, in list order (as /proc/slabinfo lists them)."""
        head = self.target.symbol_address("slab_caches")
        off = self.layout.cache["list"]
        found, seen = [], {head}
        node = self.kmem.u64(head)
        while node != head:
            if node in seen or len(found) >= MAX_CACHES or not node:
                raise PartialError(f"slab_caches list is corrupt at {node:#x} after {len(found)} caches", found)
            seen.add(node)
            try:
                found.append(self.cache(node - off))
            except TargetError as e:
                raise PartialError(f"{e} (after {len(found)} caches)", found) from None
            node = self.kmem.u64(node)
        return found

    def cache(self, address: int) -> Cache:
        lay = self.layout
        c = lay.cache
        raw = self.kmem.read(address, lay.cache_size)
        name_ptr = u64(raw, c["name"])
        try:
            name = cstring(self.kmem.read(name_ptr, 64))
        except MemoryReadError:
            name = f"<name at {name_ptr:#x}>"
        nodes = tuple(u64(raw, c["node"] + 8 * i) for i in range(min(self.nr_nodes, lay.max_nodes)))
        oo, size = u32(raw, c["oo"]), u32(raw, c["size"])
        if not 0 < size <= MAX_OBJECT:
            raise CorruptSlab(f"the cache at {address:#x} ({name}) gives an object stride of {size}")
        return Cache(address, name, u32(raw, c["size"]), u32(raw, c["object_size"]), u32(raw, c["offset"]),
                     u32(raw, c["inuse"]), u32(raw, c["red_left_pad"]), u32(raw, c["flags"]),
                     u64(raw, c["random"]) if lay.hardened else 0, u64(raw, c["cpu_slab"]), nodes,
                     oo & 0xFFFF, oo >> 16)

    def find_cache(self, name: str) -> Cache:
        for c in self.caches:
            if c.name == name:
                return c
        raise TargetError(f"no slab cache named {name!r}")

    # -- the memmap -------------------------------------------------------------------
    @property
    def slabs(self) -> dict[int, list[Slab]]:
        """Cache address -> its slabs, from every head page of the memmap that is a slab."""
        return self._memmap_scan[0]

    def reserved_runs(self) -> list[tuple[int, int]]:
        """[first pfn, last pfn + 1) of each run of reserved pages (PG_reserved)."""
        return _runs(self._memmap_scan[1])

    def kernel_compound_pages(self) -> list[tuple[int, int]]:
        """[head pfn, head pfn + pages) of each compound page the kernel holds for itself:
        not a slab, not on an LRU list, no mapping (a large kmalloc is one such page)."""
        return self._memmap_scan[2]

    @cached_property
    def _memmap_scan(self) -> tuple[dict[int, list[Slab]], list[int], list[tuple[int, int]]]:
        by_cache: dict[int, list[Slab]] = {}
        reserved: list[int] = []
        compound: list[tuple[int, int]] = []
        for pfn_lo in range(self.min_pfn, self.max_pfn, CHUNK_PAGES):
            count = min(CHUNK_PAGES, self.max_pfn - pfn_lo)
            for slab in self._slabs_in(pfn_lo, count, reserved, compound):
                by_cache.setdefault(slab.cache, []).append(slab)
        return by_cache, reserved, compound

    def _slabs_in(self, pfn_lo: int, count: int, reserved: list[int], compound: list[tuple[int, int]]) -> list[Slab]:
        lay = self.layout
        data = self._memmap(pfn_lo, count)
        stride = lay.page_size
        flags = memoryview(data).cast("Q")[lay.flags // 8::stride // 8].tolist()
        bit = 1 << lay.reserved_bit
        reserved += [pfn_lo + i for i, w in enumerate(flags) if w & bit]
        if lay.page_type is not None:
            words = memoryview(data).cast("I")[lay.page_type // 4::stride // 4].tolist()
            heads = [i for i, w in enumerate(words) if w >> 24 == lay.slab_bit]
        else:
            mask = 1 << lay.slab_bit
            heads = [i for i, w in enumerate(flags) if w & mask]
        slabs = set(heads)
        plain = (1 << lay.head_bit) | (1 << lay.lru_bit) | bit
        for i, w in enumerate(flags):
            if w & plain == 1 << lay.head_bit and i not in slabs and i + 1 < count:
                if not u64(data, i * stride + lay.mapping):
                    compound.append((pfn_lo + i, pfn_lo + i + (1 << data[(i + 1) * stride + lay.order])))
        return [self._slab(pfn_lo + i, data, i * stride) for i in heads]

    def _memmap(self, pfn_lo: int, count: int) -> bytes:
        """struct pages [pfn_lo, pfn_lo + count); pages of the memmap that are not mapped
        (holes in sparse memory) read as zeros."""
        start, size = self.vmemmap + pfn_lo * self.layout.page_size, count * self.layout.page_size
        try:
            return self.kmem.read(start, size)
        except MemoryReadError:
            pass
        out = bytearray(size)
        for pos in range(0, size, PAGE):
            n = min(PAGE - (start + pos) % PAGE, size - pos)
            try:
                out[pos:pos + n] = self.kmem.read(start + pos, n)
            except MemoryReadError:
                continue
        return bytes(out)

    def _slab(self, pfn: int, data: bytes, at: int) -> Slab:
        lay = self.layout
        counters = u64(data, at + lay.counters)
        return Slab(self.vmemmap + pfn * lay.page_size, pfn, self.direct_map + pfn * PAGE,
                    u64(data, at + lay.slab_cache), u64(data, at + lay.freelist),
                    counters & 0xFFFF, (counters >> 16) & 0x7FFF, bool(counters >> 31 & 1))

    def slab_at(self, struct_slab: int) -> Slab:
        """The slab whose struct slab is at `struct_slab` (a pointer from a list)."""
        pfn, rest = divmod(struct_slab - self.vmemmap, self.layout.page_size)
        if rest or not 0 <= pfn < self.max_pfn:
            raise CorruptSlab(f"{struct_slab:#x} is not a struct slab in the memmap")
        return self._slab(pfn, self.kmem.read(struct_slab, self.layout.page_size), 0)

    def head_pfn(self, pfn: int) -> int:
        """The head page of the compound page that holds `pfn`."""
        raw = self.kmem.read(self.vmemmap + pfn * self.layout.page_size, self.layout.page_size)
        head = u64(raw, self.layout.compound_head)
        if head & 1:
            hpfn, rest = divmod((head - 1) - self.vmemmap, self.layout.page_size)
            if not rest and 0 <= hpfn < self.max_pfn:
                return hpfn
        return pfn

    def is_slab(self, pfn: int) -> bool:
        lay = self.layout
        raw = self.kmem.read(self.vmemmap + pfn * lay.page_size, lay.page_size)
        if lay.page_type is not None:
            return u32(raw, lay.page_type) >> 24 == lay.slab_bit
        return bool(u64(raw, lay.flags) >> lay.slab_bit & 1)

    # -- per-CPU and per-node state ------------------------------------------------------
    def cpu_state(self, cache: Cache) -> list[tuple[int, int, list[int]]]:
        """(c->slab, c->freelist, slabs on c->partial) of each CPU."""
        out = []
        for cpu, offset in enumerate(self.per_cpu):
            c = cache.cpu_slab + offset
            raw = self.kmem.read(c, max(self.layout.cpu.values()) + 8)
            partial = u64(raw, self.layout.cpu["partial"]) if "partial" in self.layout.cpu else 0
            out.append((u64(raw, self.layout.cpu["slab"]), u64(raw, self.layout.cpu["freelist"]),
                        self._cpu_partial(cache, cpu, partial)))
        return out

    def _cpu_partial(self, cache: Cache, cpu: int, first: int) -> list[int]:
        found, seen, slab = [], set(), first
        while slab:
            if slab in seen or len(found) >= MAX_PARTIAL:
                raise CorruptSlab(f"cache {cache.name}: CPU {cpu}'s partial list loops at {slab:#x}")
            seen.add(slab)
            found.append(slab)
            slab = self.kmem.u64(slab + self.layout.slab_next)
        return found

    def node_partial(self, cache: Cache) -> list[tuple[int, list[int], int, int | None]]:
        """(node, struct slabs on its partial list, nr_partial, total_objects) of each node."""
        out = []
        for n, node in enumerate(cache.nodes):
            if not node:
                continue
            raw = self.kmem.read(node, max(self.layout.node.values()) + 16)
            nr = u64(raw, self.layout.node["nr_partial"])
            total = u64(raw, self.layout.node["total_objects"]) if "total_objects" in self.layout.node else None
            head = node + self.layout.node["partial"]
            found, seen, entry = [], {head}, u64(raw, self.layout.node["partial"])
            while entry != head:
                if entry in seen or not entry or len(found) >= MAX_PARTIAL:
                    raise CorruptSlab(f"cache {cache.name}: node {n}'s partial list is corrupt at {entry:#x}")
                seen.add(entry)
                found.append(entry - self.layout.slab_list)
                entry = self.kmem.u64(entry)
            out.append((n, found, nr, total))
        return out

    # -- freelists ------------------------------------------------------------------------
    def chain(self, cache: Cache, slab: Slab, head: int, what: str) -> list[int]:
        """The free objects linked from `head`, decoded; bounded by the slab's objects."""
        found: list[int] = []
        seen: set[int] = set()
        pointer, stored_at = head, None
        first = slab.base + cache.red_left_pad
        end = first + slab.objects * cache.size
        while pointer:
            where = f"the {what} head" if stored_at is None else f"the free pointer at {stored_at:#x}"
            if not first <= pointer < end or (pointer - first) % cache.size:
                raise CorruptSlab(f"cache {cache.name}: slab {slab.address:#x} ({what}): {where} gives "
                                  f"{pointer:#x}, not an object of the slab {slab.base:#x}-{end:#x}")
            if pointer in seen or len(found) >= slab.objects:
                raise CorruptSlab(f"cache {cache.name}: slab {slab.address:#x} ({what}): {where} loops "
                                  f"back to {pointer:#x}")
            seen.add(pointer)
            found.append(pointer)
            stored_at = pointer + cache.offset
            raw = self.kmem.u64(stored_at)
            pointer = raw ^ cache.random ^ swab64(stored_at) if self.layout.hardened else raw
        return found

    def walk(self, cache: Cache) -> tuple[CacheStats, list[Slab]]:
        """Every slab of `cache` with its free objects and where it sits; a corrupt list or
        freelist, or unreadable memory, stops the walk with PartialError naming the cache and
        carrying (stats so far, slabs so far)."""
        stats = CacheStats(cache)
        slabs = {s.address: s for s in self.slabs.get(cache.address, [])}
        done: list[Slab] = []
        try:
            cpus = self.cpu_state(cache)
            for cpu, (cslab, freelist, partial) in enumerate(cpus):
                if cslab in slabs:
                    s = slabs[cslab]
                    s.where = f"cpu {cpu}"
                    s.free = self.chain(cache, s, freelist, f"CPU {cpu}'s freelist")
                    stats.cpu_slabs += 1
                for p in partial:
                    if p in slabs:
                        slabs[p].where = f"cpu {cpu} partial"
                        stats.cpu_partial_slabs += 1
            for n, partial, nr, total in self.node_partial(cache):
                stats.nr_partial += nr
                if total is not None:
                    stats.total_objects = (stats.total_objects or 0) + total
                for p in partial:
                    if p in slabs:
                        slabs[p].where = f"node {n} partial"
                        stats.node_partial_slabs += 1
            for s in sorted(slabs.values(), key=lambda s: s.address):
                s.free = s.free + self.chain(cache, s, s.freelist, "slab freelist")
                stats.slabs += 1
                stats.objects += s.objects
                stats.free += len(s.free)
                if s.where.startswith("node"):
                    stats.node_partial_free += len(s.free)
                done.append(s)
        except TargetError as e:
            prefix = f"cache {cache.name}: "
            stats.error = str(e) if str(e).startswith(prefix) else prefix + str(e)
            raise PartialError(stats.error, [(stats, done)]) from None
        return stats, done

    def objects(self, cache: Cache) -> list[SlabObject]:
        """Every object of `cache`, in use or free, in address order."""
        try:
            _, slabs = self.walk(cache)
        except PartialError as e:
            _, done = e.partial[0]
            raise PartialError(str(e), objects_of(cache, done)) from None
        return objects_of(cache, slabs)

    def all_stats(self) -> list[CacheStats]:
        """Every cache's counts; a cache whose walk fails keeps what it counted and its error,
        and the first error is raised at the end (PartialError with every cache's row)."""
        rows, errors = [], []
        try:
            caches = self.caches
        except PartialError as e:
            caches, errors = e.partial, [str(e)]
        for cache in caches:
            try:
                stats, _ = self.walk(cache)
            except PartialError as e:
                stats = e.partial[0][0]
                errors.append(str(e))
            rows.append(stats)
        if errors:
            more = f" (and {len(errors) - 1} more caches)" if len(errors) > 1 else ""
            raise PartialError(errors[0] + more, rows)
        return rows

    # -- one address --------------------------------------------------------------------
    def object_at(self, address: int) -> tuple[Cache, SlabObject, int] | None:
        """(cache, object, offset into it) for a direct-map address inside a slab, else None."""
        if not self.direct_map <= address < self.direct_map + self.max_pfn * PAGE:
            return None
        pfn = self.head_pfn((address - self.direct_map) // PAGE)
        if not self.is_slab(pfn):
            return None
        slab = self.slab_at(self.vmemmap + pfn * self.layout.page_size)
        cache = next((c for c in self.caches if c.address == slab.cache), None)
        if cache is None:
            cache = self.cache(slab.cache)
        index = (address - slab.base - cache.red_left_pad) // cache.size
        if not 0 <= index < slab.objects:
            return None
        start = slab.base + cache.red_left_pad + index * cache.size
        free = set(self.chain(cache, slab, slab.freelist, "slab freelist"))
        for cpu, (cslab, freelist, _) in enumerate(self.cpu_state(cache)):
            if cslab == slab.address:
                free |= set(self.chain(cache, slab, freelist, f"CPU {cpu}'s freelist"))
        return cache, SlabObject(start, start in free, slab.address), address - start

    # -- allocation tracks (slub_debug=U) ---------------------------------------------------
    def stores_tracks(self, cache: Cache) -> bool:
        return bool(cache.flags & self.layout.store_user)

    def track(self, cache: Cache, obj: int, free: bool = False) -> "Track | None":
        """The alloc (or free) track SLAB_STORE_USER keeps after the object (mm/slub.c get_track)."""
        if not self.stores_tracks(cache):
            return None
        info_end = cache.inuse + (8 if cache.offset >= cache.inuse else 0)     # freeptr_outside_object
        at = obj + info_end + (self.layout.track_size if free else 0)
        raw = self.kmem.read(at, self.layout.track_size)
        t = self.layout.track
        return Track(u64(raw, t["addr"]), u32(raw, t["handle"]) if "handle" in t else 0,
                     struct.unpack_from("<i", raw, t["cpu"])[0], struct.unpack_from("<i", raw, t["pid"])[0],
                     u64(raw, t["when"]))


@dataclass(frozen=True)
class Track:
    """struct track: the caller, the stack depot handle of the whole stack, cpu, pid, jiffies."""

    addr: int
    handle: int
    cpu: int
    pid: int
    when: int


def _runs(pfns: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for pfn in pfns:
        if runs and runs[-1][1] == pfn:
            runs[-1] = (runs[-1][0], pfn + 1)
        else:
            runs.append((pfn, pfn + 1))
    return runs


def objects_of(cache: Cache, slabs: list[Slab]) -> list[SlabObject]:
    """Every object of these slabs, in use or free."""
    out = []
    for s in slabs:
        free = set(s.free)
        first = s.base + cache.red_left_pad
        out += [SlabObject(a, a in free, s.address) for a in range(first, first + s.objects * cache.size, cache.size)]
    return out
