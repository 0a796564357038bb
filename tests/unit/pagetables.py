"""Synthetic x86-64 page tables in a sparse physical memory, for walker tests."""
from __future__ import annotations

import struct

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.target import MemoryReadError

PAGE = 4096
P, W, U, PS = paging.PRESENT, paging.WRITABLE, paging.USER, paging.HUGE
NX = paging.NX


class PhysMemory:
    """Sparse guest-physical memory: 4 KiB frames allocated on demand, reads of the rest fail."""

    def __init__(self, ram_end: int = 1 << 32) -> None:
        self.frames: dict[int, bytearray] = {}
        self.next_frame = 0x100000
        self.ram_end = ram_end

    def alloc(self) -> int:
        frame = self.next_frame
        self.next_frame += PAGE
        self.frames[frame] = bytearray(PAGE)
        return frame

    def read(self, addr: int, size: int) -> bytes:
        frame = addr & ~(PAGE - 1)
        if frame not in self.frames or (addr - frame) + size > PAGE:
            raise MemoryReadError("physical", addr, size, "not in the test's RAM")
        return bytes(self.frames[frame][addr - frame:addr - frame + size])

    def set_entry(self, table: int, index: int, value: int) -> None:
        struct.pack_into("<Q", self.frames[table], 8 * index, value)

    def entry(self, table: int, index: int) -> int:
        return struct.unpack_from("<Q", self.frames[table], 8 * index)[0]


class Tables:
    """Builds mappings under one root table, creating intermediate tables as needed."""

    def __init__(self, mem: PhysMemory, levels: int = 4) -> None:
        self.mem, self.levels = mem, levels
        self.root = mem.alloc()

    def map(self, va: int, pa: int, page_size: int = PAGE, flags: int = P | W | U,
            table_flags: int = P | W | U) -> None:
        leaf_level = {PAGE: 1, 1 << 21: 2, 1 << 30: 3}[page_size]
        table = self.root
        for level in range(self.levels, leaf_level, -1):
            index = (va >> paging.LEVEL_SHIFT[level]) & 0x1FF
            entry = self.mem.entry(table, index)
            if not entry & P:
                entry = self.mem.alloc() | table_flags
                self.mem.set_entry(table, index, entry)
            table = entry & paging.ADDR_MASK
        huge = PS if leaf_level > 1 else 0
        self.mem.set_entry(table, (va >> paging.LEVEL_SHIFT[leaf_level]) & 0x1FF, pa | flags | huge)
