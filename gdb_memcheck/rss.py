"""Resident and anonymous memory of a mapping, counted from the process's own page
tables the way /proc/PID/smaps does (fs/proc/task_mmu.c smaps_pte_entry): present
pages with a struct page behind them; anonymous when page->mapping has
PAGE_MAPPING_ANON (of the compound head)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import paging
from .target import Target, read_u64, u64

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
        self.vmemmap = read_u64(target, target.symbol_address("vmemmap_base"))
        self.size = page.size
        self.mapping = page.offset("mapping")
        self.compound_head = page.offset("compound_head")

    def is_anon(self, pfn: int) -> bool:
        page = self.vmemmap + pfn * self.size
        head = u64(self.read(page + self.compound_head, 8))
        if head & 1:
            page = head - 1
        return bool(u64(self.read(page + self.mapping, 8)) & PAGE_MAPPING_ANON)


def usage(read_phys: Reader, pgd_phys: int, levels: int, start: int, end: int, pages: PageInfo) -> Usage:
    """Rss and Anonymous of [start, end) in the address space rooted at `pgd_phys`."""
    rss = anon = 0
    for leaf in paging.leaves(read_phys, pgd_phys, levels, start, end):
        if leaf.entry & paging.SPECIAL:
            continue
        lo, hi = max(leaf.virtual, start), min(leaf.virtual + leaf.size, end)
        rss += hi - lo
        if pages.is_anon(leaf.physical >> 12):
            anon += hi - lo
    return Usage(rss, anon)
