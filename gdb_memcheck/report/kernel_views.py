"""Text and JSON renderings of the kernel's memory: `memcheck slab`, `memcheck kmem` and
`memcheck kleaks`.  The JSON follows schema.py: addresses are hex strings."""
from __future__ import annotations

from typing import Callable

from ..leakcheck.kleaks import KernelLeakScan
from ..leakcheck.leaks import Kind, summary
from ..linux.kmem import KernelAddress
from ..linux.slab import CacheStats, Slab, SlabObject
from .schema import hexa
from .style import PLAIN, Styler

Symbolizer = Callable[[int], str]
MIB = 1 << 20
LOST = (Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE)


# -- memcheck slab ---------------------------------------------------------------------------
def slab_text(rows: list[CacheStats], style: Styler = PLAIN) -> str:
    head = (f"{'CACHE':<26} {'OBJSIZE':>7} {'SIZE':>5} {'IN USE':>7} {'TOTAL':>7} {'SLABS':>6} {'CPU':>4} "
            f"{'CPU PARTIAL':>11} {'NODE PARTIAL':>12}")
    lines = [head]
    for r in rows:
        c = r.cache
        lines.append(f"{c.name:<26} {c.object_size:>7} {c.size:>5} {r.in_use:>7} {r.objects:>7} {r.slabs:>6} "
                     f"{r.cpu_slabs:>4} {r.cpu_partial_slabs:>11} {r.node_partial_slabs:>12}"
                     + (f"  {style.highlight('walk stops:')} {r.error}" if r.error else ""))
    used, total = sum(r.in_use for r in rows), sum(r.objects for r in rows)
    size = sum(r.in_use * r.cache.object_size for r in rows)
    lines.append(f"{len(rows)} caches: {used} objects in use of {total} ({size // 1024} kB of objects), "
                 f"{sum(r.slabs for r in rows)} slabs")
    return "\n".join(lines) + "\n"


def cache_text(stats: CacheStats, slabs: list[Slab], hardened: bool, style: Styler = PLAIN) -> str:
    c = stats.cache
    lines = [f"cache {c.name} at {style.address(hex(c.address))}: object size {c.object_size}, stride {c.size}, "
             f"{c.objects_per_slab} objects a slab (order {c.order}), free pointer at +{c.offset}"
             + (", hardened freelist" if hardened else ""),
             f"  {stats.in_use} in use of {stats.objects}, {stats.slabs} slabs: {stats.cpu_slabs} per-CPU, "
             f"{stats.cpu_partial_slabs} on per-CPU partial lists, {stats.node_partial_slabs} on node partial "
             f"lists, {stats.slabs - stats.cpu_slabs - stats.cpu_partial_slabs - stats.node_partial_slabs} "
             f"on no list (full)"]
    for s in slabs:
        free = set(s.free)
        lines.append(f"slab {style.address(hex(s.address))} (pfn {s.pfn:#x}, {s.where}): {s.objects - len(free)} "
                     f"in use, {len(free)} free")
        first = s.base + c.red_left_pad
        for a in range(first, first + s.objects * c.size, c.size):
            lines.append(f"  {style.address(hex(a))} {'free' if a in free else 'in use'}")
    return "\n".join(lines) + "\n"


def cache_json(r: CacheStats, hardened: bool, tracks: bool) -> dict:
    c = r.cache
    return {"name": c.name, "address": hexa(c.address), "object_size": c.object_size, "size": c.size,
            "objects_per_slab": c.objects_per_slab, "order": c.order, "objects": r.objects, "in_use": r.in_use,
            "free": r.free, "slabs": r.slabs, "cpu_slabs": r.cpu_slabs, "cpu_partial_slabs": r.cpu_partial_slabs,
            "node_partial_slabs": r.node_partial_slabs, "nr_partial": r.nr_partial,
            "slabinfo_active": r.slabinfo_active, "hardened": hardened, "stores_tracks": tracks,
            "error": r.error or None}


def slab_json(caches: list[dict], slabs: list[Slab] | None = None, objects: list[SlabObject] | None = None) -> dict:
    return {"caches": caches,
            "slabs": [{"address": hexa(s.address), "pfn": s.pfn, "base": hexa(s.base), "where": s.where,
                       "objects": s.objects, "free": len(s.free)} for s in slabs or []],
            "objects": [{"address": hexa(o.address), "free": o.free, "slab": hexa(o.slab)} for o in objects or []]}


# -- memcheck kmem -----------------------------------------------------------------------------
def kmem_text(info: KernelAddress, symbolize: Symbolizer, style: Styler = PLAIN) -> str:
    lines = [f"address {style.address(hex(info.address))}: {style.highlight(info.kind)}"
             + (f", {info.detail}" if info.detail else "")]
    if info.cache is not None:
        state = "free" if info.free else "in use"
        lines.append(f"  cache     {info.cache}, object {style.address(hex(info.object_start))} + {info.offset:#x} "
                     f"(object size {info.object_size}), {state}")
    if info.section is not None:
        symbol = symbolize(info.symbol_at) if info.symbol_at is not None else ""
        lines.append(f"  section   {info.section}" + (f", {style.function(symbol)}" if symbol else ""))
    if info.range is not None:
        lines.append(f"  range     {style.address(hex(info.range[0]))}-{style.address(hex(info.range[1]))}"
                     + (f" + {info.offset:#x}" if info.offset is not None and info.cache is None else ""))
    if info.caller is not None:
        lines.append(f"  caller    {style.function(symbolize(info.caller) or hex(info.caller))}")
    if info.page is not None:
        p = info.page
        head = "" if p.head_pfn == p.pfn else f" (head pfn {p.head_pfn:#x})"
        lines.append(f"  page      pfn {p.pfn:#x}{head}, order {p.order}, refcount {p.refcount}, mapping "
                     f"{p.mapping:#x}, flags {' '.join(p.flags) or '-'}")
    for pc in info.alloc_stack:
        lines.append(f"  allocated {style.function(symbolize(pc) or hex(pc))}")
    if info.physical is not None:
        lines.append(f"  physical  {style.address(hex(info.physical))}")
    return "\n".join(lines) + "\n"


def kmem_json(info: KernelAddress, symbolize: Symbolizer) -> dict:
    p = info.page
    return {"address": hexa(info.address), "kind": info.kind, "detail": info.detail, "cache": info.cache,
            "object_start": hexa(info.object_start), "offset": info.offset, "object_size": info.object_size,
            "free": info.free, "range_start": hexa(info.range[0]) if info.range else None,
            "range_end": hexa(info.range[1]) if info.range else None, "caller": hexa(info.caller),
            "caller_symbol": symbolize(info.caller) or None if info.caller else None, "section": info.section,
            "symbol": symbolize(info.symbol_at) or None if info.symbol_at is not None else None,
            "pid": info.pid, "comm": info.comm, "physical": hexa(info.physical),
            "page": None if p is None else {"pfn": p.pfn, "head_pfn": p.head_pfn, "flags": list(p.flags),
                                            "order": p.order, "refcount": p.refcount, "mapping": hexa(p.mapping)},
            "alloc_stack": [{"pc": hexa(pc), "function": symbolize(pc) or None} for pc in info.alloc_stack]}


# -- memcheck kleaks ---------------------------------------------------------------------------
def _preview(data: bytes) -> str:
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
    return f"{data.hex(' ')}  |{text}|"


def _by_cache(scan: KernelLeakScan, kinds: tuple[Kind, ...], cache: str | None) -> dict[str, list]:
    groups: dict[str, list] = {}
    for b in scan.index.blocks:
        if b.kind in kinds and (cache is None or b.via == cache):
            groups.setdefault(b.via, []).append(b)
    return groups


def _size(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size // 1024} kB"


def kleaks_header(scan: KernelLeakScan) -> str:
    slab = len(scan.index.blocks) - scan.vmalloc_areas
    roots = ", ".join(f"{what} {_size(size)}" for what, size in scan.root_bytes.items())
    return (f"{len(scan.index.blocks)} objects ({slab} slab objects in {scan.caches} caches, {scan.vmalloc_areas} "
            f"vmalloc areas) classified in {scan.seconds:.1f} s; roots: {roots}")


def kleaks_text(scan: KernelLeakScan, show_reachable: bool, cache: str | None, symbolize: Symbolizer,
                style: Styler = PLAIN) -> str:
    kinds = LOST + ((Kind.REACHABLE,) if show_reachable else ())
    lines = [f"==kleaks== {kleaks_header(scan)}"]
    lines += [f"==kleaks== note: {n}" for n in scan.notes]
    for name, blocks in sorted(_by_cache(scan, kinds, cache).items()):
        counts = [f"{sum(1 for b in blocks if b.kind is k)} {k.value}" for k in kinds
                  if any(b.kind is k for b in blocks)]
        lines.append(f"{name}: {', '.join(counts)}")
        for b in sorted(blocks, key=lambda b: (list(Kind).index(b.kind), b.address)):
            extra = f" (+{b.indirect} indirect)" if b.indirect else ""
            obj = scan.objects[b.address]
            lines.append(f"   {style.address(hex(b.address))} {b.size} bytes {style.highlight(b.kind.value)}{extra}"
                         + (f"  {_preview(obj.preview)}" if obj.preview else ""))
            for i, pc in enumerate(obj.stack):
                lines.append(f"      {'at' if i == 0 else 'by'} {hex(pc)}: {style.function(symbolize(pc) or '??')}")
    blocks = [b for b in scan.index.blocks if cache is None or b.via == cache]
    lines.append("LEAK SUMMARY:")
    for kind, (size, count) in summary(blocks).items():
        lines.append(f"   {kind.value + ':':<17} {size} bytes in {count} objects")
    return "\n".join(lines) + "\n"


def kleaks_json(scan: KernelLeakScan, show_reachable: bool, cache: str | None, symbolize: Symbolizer) -> dict:
    kinds = LOST + ((Kind.REACHABLE,) if show_reachable else ())
    groups = _by_cache(scan, kinds, cache)
    objects = []
    for name, blocks in sorted(groups.items()):
        for b in blocks:
            obj = scan.objects[b.address]
            objects.append({"address": hexa(b.address), "size": b.size, "cache": name, "kind": b.kind.value,
                            "indirect_bytes": b.indirect, "preview": obj.preview.hex(),
                            "stack": [{"pc": hexa(pc), "function": symbolize(pc) or None} for pc in obj.stack]})
    blocks = [b for b in scan.index.blocks if cache is None or b.via == cache]
    return {"header": kleaks_header(scan), "seconds": round(scan.seconds, 3), "objects": objects,
            "caches": [{"cache": name, **{k.value: sum(1 for b in blocks if b.kind is k) for k in LOST}}
                       for name, blocks in sorted(_by_cache(scan, LOST, cache).items())],
            "roots": dict(scan.root_bytes), "notes": list(scan.notes),
            "summary": {k.value: {"bytes": size, "blocks": count} for k, (size, count) in summary(blocks).items()}}
