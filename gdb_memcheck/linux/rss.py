"""Resident and anonymous memory of a mapping, counted from the process's own page
tables the way /proc/PID/smaps does (fs/proc/task_mmu.c smaps_pte_entry): present
pages with a struct page behind them; anonymous when page->mapping has
PAGE_MAPPING_ANON (of the compound head)."""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

from ..arch import Regime
from ..target import Target, TargetError, u64

PAGE_MAPPING_ANON = 0x1

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Usage:
    """Bytes resident and, of those, anonymous."""

    rss: int = 0
    anonymous: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.rss + other.rss, self.anonymous + other.anonymous)


class PageInfo:
    """Reads struct page fields through the vmemmap array."""

    def __init__(self, target: Target, read_kernel: Reader) -> None:
        page = target.layout("struct page")
        self.read = read_kernel
        self.vmemmap = vmemmap(target, read_kernel)
        self.size = page.size
        self.mapping = page.offset("mapping")
        self.compound_head = page.offset("compound_head")

    def is_anon(self, pfn: int) -> bool:
        raw = self.read(self.vmemmap + pfn * self.size, self.size)
        head = u64(raw, self.compound_head)
        if head & 1:
            raw = self.read(head - 1, self.size)
        return bool(u64(raw, self.mapping) & PAGE_MAPPING_ANON)


SECTION_HAS_MEM_MAP = 1 << 1
SECTION_FLAGS = 0x3F            # below the map's alignment (sizeof(struct page) is 64)
MAX_SECTION_ROOTS = 64


def vmemmap(target: Target, read_kernel: Reader) -> int:
    """The virtual address of struct page for pfn 0 in the vmemmap array.  With
    SPARSEMEM_VMEMMAP every present section's section_mem_map encodes it (mm/sparse.c
    sparse_encode_mem_map), on every architecture: x86-64's vmemmap_base moves with KASLR
    and arm64's is a constant of the build, and the name vmemmap_base alone is ambiguous
    (arm64's KVM hypervisor has a static variable of that name)."""
    return _vmemmap_from_sections(target, read_kernel)


def _vmemmap_from_sections(target: Target, read_kernel: Reader) -> int:
    section = target.layout("struct mem_section")
    per_root = 4096 // section.size                      # SECTIONS_PER_ROOT (SPARSEMEM_EXTREME)
    roots = u64(read_kernel(target.symbol_address("mem_section"), 8))
    for r in range(MAX_SECTION_ROOTS):
        root = u64(read_kernel(roots + 8 * r, 8))
        if not root:
            continue
        raw = read_kernel(root, per_root * section.size)
        for i in range(per_root):
            encoded = u64(raw, i * section.size + section.offset("section_mem_map"))
            if encoded & SECTION_HAS_MEM_MAP:
                return encoded & ~SECTION_FLAGS
    raise TargetError("no memory section has a struct page map: the vmemmap array cannot be found")


def usages(read_phys: Reader, pgd_phys: int, paging: Regime, ranges: Sequence[tuple[int, int]],
           pages: PageInfo) -> list[Usage]:
    """Rss and Anonymous of each sorted, disjoint [start, end) range in the address space
    rooted at `pgd_phys`, from one walk over their whole span."""
    if not ranges:
        return []
    starts = [lo for lo, _ in ranges]
    rss, anon = [0] * len(ranges), [0] * len(ranges)
    for leaf in paging.leaves(read_phys, pgd_phys, ranges[0][0], ranges[-1][1]):
        if leaf.entry & paging.special:
            continue
        is_anon = None
        i = max(0, bisect.bisect_right(starts, leaf.virtual) - 1)
        while i < len(ranges) and ranges[i][0] < leaf.virtual + leaf.size:
            lo, hi = max(leaf.virtual, ranges[i][0]), min(leaf.virtual + leaf.size, ranges[i][1])
            if hi > lo:
                if is_anon is None:
                    is_anon = pages.is_anon(leaf.physical >> 12)
                rss[i] += hi - lo
                anon[i] += (hi - lo) if is_anon else 0
            i += 1
    return [Usage(r, a) for r, a in zip(rss, anon)]
