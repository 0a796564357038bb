"""Resident and anonymous memory of a mapping, counted from the process's own page
tables the way /proc/PID/smaps does (fs/proc/task_mmu.c smaps_pte_entry): present
pages with a struct page behind them; anonymous when page->mapping has
PAGE_MAPPING_ANON (of the compound head)."""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

from ..arch import Regime
from ..target import Target, read_u64, u64

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
        raw = self.read(self.vmemmap + pfn * self.size, self.size)
        head = u64(raw, self.compound_head)
        if head & 1:
            raw = self.read(head - 1, self.size)
        return bool(u64(raw, self.mapping) & PAGE_MAPPING_ANON)


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
