"""Fast kernel-memory reads: direct-map and kernel-image addresses become physical
reads (one pread from QEMU instead of gdbstub packets); anything else is walked
through the kernel's page tables.  Physical pages are cached until the guest runs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..arch import KernelMap, Regime
from ..arch.pagetables import PageWalkError
from ..target import MemoryReadError, Target, u64

PAGE = 4096


@dataclass
class PageCache:
    """Guest-physical pages read during one stop; cleared whenever the guest runs."""

    target: Target
    pages: dict[int, bytes] = field(default_factory=dict)

    def clear(self) -> None:
        self.pages.clear()

    def read(self, addr: int, size: int) -> bytes:
        first, last = addr // PAGE, (addr + size - 1) // PAGE
        if first == last:
            off = addr - first * PAGE
            return self._page(first)[off:off + size]
        data = b"".join(self._page(p) for p in range(first, last + 1))
        off = addr - first * PAGE
        return data[off:off + size]

    def _page(self, pfn: int) -> bytes:
        page = self.pages.get(pfn)
        if page is None:
            page = self.pages[pfn] = self.target.read_physical(pfn * PAGE, PAGE)
        return page


class KernelMemory:
    """Reads kernel virtual memory through physical memory wherever the address allows:
    the architecture's kernel map translates the direct (linear) map and the image by an
    offset; anything else is walked through the kernel's own table."""

    def __init__(self, target: Target, paging: Regime, kernel: KernelMap, phys: PageCache | None = None) -> None:
        self.target = target
        self.phys = phys or PageCache(target)
        self.paging, self.map = paging, kernel
        self.kernel_pgd = kernel.kernel_root
        self._walked: dict[int, int] = {}

    @property
    def levels(self) -> int:
        return self.paging.levels

    def clear(self) -> None:
        self.phys.clear()
        self._walked.clear()

    def to_physical(self, va: int) -> int:
        """Physical address of a kernel virtual address (kernel map, or page walk)."""
        physical = self.map.physical(va)
        if physical is not None:
            return physical
        page = va & ~(PAGE - 1)
        if page not in self._walked:
            self._walked[page] = self.paging.translate(self.phys.read, self.kernel_pgd, page).physical
        return self._walked[page] | (va & (PAGE - 1))

    def read(self, va: int, size: int) -> bytes:
        """Bytes at a kernel virtual address; each page is translated on its own."""
        if (va & (PAGE - 1)) + size <= PAGE:
            try:
                return self.phys.read(self.to_physical(va), size)
            except (MemoryReadError, PageWalkError) as e:
                raise MemoryReadError("kernel virtual", va, size, str(e)) from None
        out = []
        pos, end = va, va + size
        while pos < end:
            n = min(end, (pos // PAGE + 1) * PAGE) - pos
            try:
                out.append(self.phys.read(self.to_physical(pos), n))
            except (MemoryReadError, PageWalkError) as e:
                raise MemoryReadError("kernel virtual", va, size, str(e)) from None
            pos += n
        return b"".join(out)

    def u64(self, va: int) -> int:
        return u64(self.read(va, 8))


class UserMemory:
    """Reads a process's memory through its own page tables, a page at a time, each page
    translated and read once per scan; pages not present read as zeros (swap is not
    followed), so a scan never stops at a hole.  A large read walks the tables once for its
    whole range and reads each physically contiguous run at once."""

    def __init__(self, phys: PageCache, pgd: int, paging: Regime) -> None:
        self.phys, self.pgd, self.paging = phys, pgd, paging
        self._pages: dict[int, bytes] = {}
        self._physical: dict[int, int] = {}        # page -> physical address, from map_range

    def map_range(self, start: int, end: int) -> None:
        """Translate the pages of [start, end) in one walk of the tables, for many reads to
        come there (the preload ring's records, a page or more each); a page read alone is
        walked from the top.  Pages the walk does not find are translated when read."""
        try:
            for leaf in self.paging.leaves(self.phys.read, self.pgd, start, end, merge_runs=True):
                first = max(leaf.virtual, start & ~(PAGE - 1))
                for page in range(first, min(leaf.virtual + leaf.size, end), PAGE):
                    self._physical[page] = leaf.physical + (page - leaf.virtual)
        except PageWalkError:
            pass

    def read(self, va: int, size: int) -> bytes:
        """Bytes of [va, va + size), zeros where nothing is mapped."""
        lo = va & (PAGE - 1)
        if lo + size <= PAGE:
            return self._page(va - lo)[lo:lo + size]
        if size >= BULK_READ:
            try:
                return self._read_mapped(va, size)
            except PageWalkError:
                pass            # corrupt tables: page by page, each page that fails reading as zeros
        out, pos, end = [], va, va + size
        while pos < end:
            page = pos & ~(PAGE - 1)
            n = min(end - pos, page + PAGE - pos)
            out.append(self._page(page)[pos - page:pos - page + n])
            pos += n
        return b"".join(out)

    def u64(self, va: int) -> int:
        return u64(self.read(va, 8))

    def _read_mapped(self, va: int, size: int) -> bytes:
        """[va, va + size) from the present leaves of the tables (runs of physically contiguous
        pages merged): one physical read a run, where page by page it is a walk and a read a page."""
        out, end = bytearray(size), va + size
        for leaf in self.paging.leaves(self.phys.read, self.pgd, va, end, merge_runs=True):
            lo, hi = max(leaf.virtual, va), min(leaf.virtual + leaf.size, end)
            out[lo - va:hi - va] = self.phys.target.read_physical(leaf.physical + lo - leaf.virtual, hi - lo)
        return bytes(out)

    def _page(self, page: int) -> bytes:
        data = self._pages.get(page)
        if data is None:
            phys = self._physical.get(page)
            try:
                if phys is None:
                    phys = self.paging.translate(self.phys.read, self.pgd, page).physical
            except PageWalkError:
                data = _ZERO_PAGE
            else:
                data = self.phys.read(phys, PAGE)
            self._pages[page] = data
        return data


_ZERO_PAGE = bytes(PAGE)
BULK_READ = 16 * PAGE           # from this size a read walks its range's tables once
