"""Reading a process's memory through its page tables: a large read, which walks its range's
tables once and reads physically contiguous runs at once, gives the bytes that reading the
same range page by page gives."""
from __future__ import annotations

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.linux.memory import BULK_READ, PageCache, UserMemory
from pagetables import PAGE, PhysMemory, Tables

VA = 0x5555_5555_0000


class Ram:
    """The test's physical memory as a Target's read_physical sees it: reads may cross frames."""

    def __init__(self, mem: PhysMemory) -> None:
        self.mem, self.reads = mem, []

    def read_physical(self, addr: int, size: int) -> bytes:
        self.reads.append((addr, size))
        out = b""
        while len(out) < size:
            at = addr + len(out)
            n = min(size - len(out), PAGE - at % PAGE)
            out += self.mem.read(at, n)
        return out


def mapped_process() -> tuple[UserMemory, int, Ram, list[int]]:
    """40 pages from VA: a physically contiguous run of 16, a page elsewhere, a hole, and the
    rest contiguous again; every byte tells its frame and offset.  Returns the memory, its size,
    the physical memory under it and the data frames."""
    mem = PhysMemory()
    frames = [mem.alloc() for _ in range(40)]
    for f in frames:
        mem.frames[f][:] = bytes((f // PAGE + i) % 251 for i in range(PAGE))
    tables = Tables(mem)
    for i in range(40):
        if i == 17:
            continue                                    # a hole: reads as zeros
        frame = frames[39] if i == 16 else frames[i]    # page 16 borrows the last frame
        tables.map(VA + i * PAGE, frame)
    regime, ram = paging.X86Regime(paging.PagingMode.FOUR_LEVEL), Ram(mem)
    return UserMemory(PageCache(ram), tables.root, regime), 40 * PAGE, ram, frames


def page_by_page(user: UserMemory, va: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        at = va + len(out)
        out += user.read(at, min(size - len(out), PAGE // 2 - at % (PAGE // 2)))
    return out


def test_a_large_read_gives_the_bytes_of_reading_page_by_page():
    user, size, _, _ = mapped_process()
    reference, _, _, _ = mapped_process()
    for start, length in ((0, size), (100, size - 300), (5 * PAGE + 8, BULK_READ), (16 * PAGE - 8, BULK_READ + 24)):
        assert length >= BULK_READ
        assert user.read(VA + start, length) == page_by_page(reference, VA + start, length), (start, length)


def test_a_hole_in_a_large_read_reads_as_zeros():
    user, size, _, _ = mapped_process()
    assert user.read(VA, size)[17 * PAGE:18 * PAGE] == bytes(PAGE)


def test_a_large_read_reads_each_physically_contiguous_run_once():
    user, size, ram, frames = mapped_process()
    user.read(VA, size)
    data = [(addr, n) for addr, n in ram.reads if frames[0] <= addr <= frames[-1]]
    assert data == [(frames[0], 16 * PAGE), (frames[39], PAGE), (frames[18], 22 * PAGE)]
