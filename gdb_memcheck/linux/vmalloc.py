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
        free = [target.symbol_address(n) for n in ("free_vmap_area_list", "purge_vmap_area_list")
                if target.has_symbol(n)]
        if target.has_symbol("vmap_area_list"):
            self.heads = lambda read: [target.symbol_address("vmap_area_list")]
            self.other_heads = lambda read: free
        else:
            # 6.9 split the busy tree per vmap_node ("mm: vmalloc: add a per-node ..."): vmap_nodes[i].busy.head
            node = target.layout("struct vmap_node")
            nodes, count = target.symbol_address("vmap_nodes"), target.symbol_address("nr_vmap_nodes")
            busy, lazy = node.offset("busy.head"), node.offset("lazy.head")

            def each(read, member):
                return [u64(read(nodes, 8)) + i * node.size + member for i in range(u32(read(count, 4)))]
            self.heads = lambda read: each(read, busy)
            self.other_heads = lambda read: free + each(read, lazy)

    def areas(self, read: Reader) -> list[VmArea]:
        """Every busy area in address order; PartialError on a broken list."""
        found: list[VmArea] = []
        for head in self.heads(read):
            for va in self._list(read, head, found):
                found.append(self.area(read, va))
        return sorted(found, key=lambda a: a.start)

    def idle_records(self, read: Reader) -> list[int]:
        """The vmap_area structs of free, lazily freed and purged ranges."""
        found: list[int] = []
        for head in self.other_heads(read):
            found += self._list(read, head, found)
        return found

    def _list(self, read: Reader, head: int, partial: list) -> list[int]:
        out, seen, node = [], {head}, u64(read(head, 8))
        while node != head:
            if node in seen or not node or len(partial) + len(out) >= MAX_AREAS:
                raise PartialError(f"vmap area list at {head:#x} is corrupt at {node:#x}", partial)
            seen.add(node)
            out.append(node - self.va["list"])
            node = u64(read(node, 8))
        return out

    def area(self, read: Reader, va: int) -> VmArea:
        raw = read(va, max(self.va.values()) + 8)
        start, end, vm = u64(raw, self.va["va_start"]), u64(raw, self.va["va_end"]), u64(raw, self.va["vm"])
        if not vm:
            return VmArea(start, end, 0, va)
        v = read(vm, self.vm_size)
        return VmArea(start, end, vm, va, u64(v, self.vm["flags"]), u64(v, self.vm["caller"]),
                      u32(v, self.vm["nr_pages"]), u64(v, self.vm["pages"]), u64(v, self.vm["size"]))
