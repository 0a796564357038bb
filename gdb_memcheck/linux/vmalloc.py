"""The kernel's vmalloc areas: every busy vmap_area with its vm_struct (range, flags,
caller, pages), from the address-sorted busy list.  Bounded and cycle-safe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..target import PartialError, Target, u32, u64

VM_IOREMAP, VM_ALLOC, VM_MAP = 0x1, 0x2, 0x4      # include/linux/vmalloc.h, unchanged since 2.6
VM_NO_GUARD = 0x40
MAX_AREAS = 1 << 20
PAGE = 4096

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class VmArea:
    """One busy vmap_area and what its vm_struct says (zeros for a vmap'ed area without one)."""

    start: int
    end: int
    vm: int                     # struct vm_struct, 0 for vm_map_ram areas
    area: int = 0               # struct vmap_area
    flags: int = 0
    caller: int = 0
    nr_pages: int = 0
    pages: int = 0              # struct page **
    size: int = 0               # the vm_struct's size, the guard page included

    @property
    def usable(self) -> int:
        """Bytes the allocation can use: the area without its guard page (get_vm_area_size)."""
        if not self.vm:
            return self.end - self.start
        return self.size - (0 if self.flags & VM_NO_GUARD else PAGE)


class VmallocReader:
    """Finds the busy list of this kernel's vmap areas, by probing."""

    def __init__(self, target: Target) -> None:
        va, vm = target.layout("struct vmap_area"), target.layout("struct vm_struct")
        self.va = {m: va.offset(m) for m in ("va_start", "va_end", "list", "vm")}
        self.vm = {m: vm.offset(m) for m in ("addr", "size", "flags", "pages", "nr_pages", "caller")}
        self.vm_size = vm.size
        if target.has_symbol("vmap_area_list"):
            self.heads = lambda read: [target.symbol_address("vmap_area_list")]
        else:
            # 6.9 split the busy tree per vmap_node ("mm: vmalloc: add a per-node ..."): vmap_nodes[i].busy.head
            node = target.layout("struct vmap_node")
            nodes, count = target.symbol_address("vmap_nodes"), target.symbol_address("nr_vmap_nodes")
            busy = node.offset("busy.head")
            self.heads = lambda read: [u64(read(nodes, 8)) + i * node.size + busy
                                       for i in range(u32(read(count, 4)))]

    def areas(self, read: Reader) -> list[VmArea]:
        """Every busy area in address order; PartialError on a broken list."""
        found: list[VmArea] = []
        for head in self.heads(read):
            seen, node = {head}, u64(read(head, 8))
            while node != head:
                if node in seen or not node or len(found) >= MAX_AREAS:
                    raise PartialError(f"vmap area list is corrupt at {node:#x} after {len(found)} areas", found)
                seen.add(node)
                found.append(self.area(read, node - self.va["list"]))
                node = u64(read(node, 8))
        return sorted(found, key=lambda a: a.start)

    def area(self, read: Reader, va: int) -> VmArea:
        raw = read(va, max(self.va.values()) + 8)
        start, end, vm = u64(raw, self.va["va_start"]), u64(raw, self.va["va_end"]), u64(raw, self.va["vm"])
        if not vm:
            return VmArea(start, end, 0, va)
        v = read(vm, self.vm_size)
        return VmArea(start, end, vm, va, u64(v, self.vm["flags"]), u64(v, self.vm["caller"]),
                      u32(v, self.vm["nr_pages"]), u64(v, self.vm["pages"]), u64(v, self.vm["size"]))
