"""Test doubles: a `Target` over sparse synthetic memory, and x86-64 page tables built in it."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.target import MemoryReadError, StructLayout, SymbolError, TargetError

PAGE_4K, PAGE_2M, PAGE_1G = 1 << 12, 1 << 21, 1 << 30
LEAF_LEVEL = {PAGE_4K: 1, PAGE_2M: 2, PAGE_1G: 3}
P, W, U, PS, NX = paging.PRESENT, paging.WRITABLE, paging.USER, paging.HUGE, paging.NX

# Register values of a booted x86-64 Linux guest (CR0.PG, CR4.PAE, EFER.LMA set).
CR0_BOOTED, CR4_BOOTED, EFER_BOOTED = 0x8005_0033, 0x0035_06F0, 0x0D01
CR0_AT_RESET = 0x6000_0010


@dataclass
class FakeTarget:
    """A stopped guest made of dicts: sparse 4 KiB physical pages, registers, symbols, layouts."""

    registers: list[dict[str, int]] = field(default_factory=lambda: [{}])
    symbols: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    layouts: dict[str, StructLayout] = field(default_factory=dict)
    identity: bool = True
    selected_cpu: int = 0
    pages: dict[int, bytearray] = field(default_factory=dict)
    windows: list[tuple[int, int, int]] = field(default_factory=list)   # (virtual, size, physical)
    inline_functions: set[str] = field(default_factory=set)             # only inlined: no address
    enums: dict[str, dict[str, int]] = field(default_factory=dict)

    # --- building the guest -------------------------------------------------------------
    def add_ram(self, addr: int, size: int) -> None:
        """Back [addr, addr + size) with zeroed pages (rounded out to whole pages)."""
        for frame in range(addr & ~(PAGE_4K - 1), addr + size, PAGE_4K):
            self.pages.setdefault(frame, bytearray(PAGE_4K))

    def write_physical(self, addr: int, data: bytes) -> None:
        """Store bytes at a physical address, adding the pages they need."""
        self.add_ram(addr, len(data))
        for i, byte in enumerate(data):
            pa = addr + i
            self.pages[pa & ~(PAGE_4K - 1)][pa & (PAGE_4K - 1)] = byte

    def map_virtual(self, virtual: int, physical: int, size: int) -> None:
        """Make [virtual, virtual + size) read [physical, physical + size)."""
        self.windows.append((virtual, size, physical))

    def write_virtual(self, addr: int, data: bytes) -> None:
        """Store bytes at a virtual address through the current mapping."""
        for i, byte in enumerate(data):
            self.write_physical(self.virt_to_phys(addr + i), bytes([byte]))

    def write_u64(self, addr: int, value: int) -> None:
        """Store a little-endian u64 at a virtual address."""
        self.write_virtual(addr, struct.pack("<Q", value))

    def virt_to_phys(self, va: int) -> int:
        """The physical address behind `va`: a mapped window first, else identity (if enabled)."""
        for virtual, size, physical in self.windows:
            if virtual <= va < virtual + size:
                return physical + (va - virtual)
        if self.identity:
            return va
        raise MemoryReadError("virtual", va, 1, "not mapped in the fake")

    # --- the Target protocol ----------------------------------------------------------
    def read_physical(self, addr: int, size: int) -> bytes:
        out = bytearray()
        for pa in range(addr, addr + size):
            page = self.pages.get(pa & ~(PAGE_4K - 1))
            if page is None:
                raise MemoryReadError("physical", addr, size, f"{pa:#x} is not in the fake's RAM")
            out.append(page[pa & (PAGE_4K - 1)])
        return bytes(out)

    def read_virtual(self, addr: int, size: int) -> bytes:
        try:
            return b"".join(self.read_physical(self.virt_to_phys(va), 1) for va in range(addr, addr + size))
        except MemoryReadError as e:
            raise MemoryReadError("virtual", addr, size, str(e)) from e

    def register(self, name: str, cpu: int | None = None) -> int:
        regs = self.registers[self.selected_cpu if cpu is None else cpu]
        if name not in regs:
            raise TargetError(f"no register {name!r} in the fake")
        return regs[name]

    def symbol_address(self, name: str) -> int:
        if name not in self.symbols:
            raise SymbolError(f"no symbol {name!r}")
        return self.symbols[name]

    def function_pointer(self, name: str) -> int:
        return self.symbol_address(name)

    def layout(self, type_name: str) -> StructLayout:
        if type_name not in self.layouts:
            raise SymbolError(f"no type {type_name!r}")
        return self.layouts[type_name]

    def symbol_size(self, name: str) -> int:
        if name not in self.sizes:
            raise SymbolError(f"no size for {name!r}")
        return self.sizes[name]

    def has_symbol(self, name: str) -> bool:
        return name in self.symbols

    def has_function(self, name: str) -> bool:
        return name in self.symbols or name in self.inline_functions

    def cpu_count(self) -> int:
        return len(self.registers)

    def enum_values(self, type_name: str) -> dict[str, int]:
        if type_name not in self.enums:
            raise SymbolError(f"no type {type_name!r}")
        return self.enums[type_name]


class PageTableBuilder:
    """Synthetic 4- or 5-level x86-64 page tables allocated as 4 KiB pages in a FakeTarget."""

    def __init__(self, target: FakeTarget, levels: int = 4, first_table: int = 0x10_0000) -> None:
        self.target, self.levels = target, levels
        self.next_table = first_table
        self.root = self.alloc_table()

    def alloc_table(self) -> int:
        """A zeroed 4 KiB table at the next free physical page."""
        table = self.next_table
        self.next_table += PAGE_4K
        self.target.add_ram(table, PAGE_4K)
        return table

    def read_entry(self, table: int, index: int) -> int:
        """Entry `index` of the table at physical `table`."""
        return struct.unpack("<Q", self.target.read_physical(table + 8 * index, 8))[0]

    def write_entry(self, table: int, index: int, value: int) -> None:
        """Overwrite entry `index` of the table at physical `table`."""
        self.target.write_physical(table + 8 * index, struct.pack("<Q", value))

    def map(self, va: int, pa: int, page_size: int = PAGE_4K, *, writable: bool = True, user: bool = True,
            nx: bool = False) -> None:
        """Map one page; intermediate tables are created present, writable and user."""
        assert va % page_size == 0 and pa % page_size == 0, "page not aligned"
        leaf_level = LEAF_LEVEL[page_size]
        table = self.root
        for level in range(self.levels, leaf_level, -1):
            index = index_at(va, level)
            entry = self.read_entry(table, index)
            if not entry & P:
                entry = self.alloc_table() | P | W | U
                self.write_entry(table, index, entry)
            assert not (level in (2, 3) and entry & PS), "a huge page is already mapped here"
            table = entry & paging.ADDR_MASK
        flags = P | (W if writable else 0) | (U if user else 0) | (NX if nx else 0) | (PS if leaf_level > 1 else 0)
        self.write_entry(table, index_at(va, leaf_level), pa | flags)

    def slot(self, va: int, level: int) -> tuple[int, int]:
        """(table, index) of the entry that translates `va` at `level`, following present entries."""
        table = self.root
        for upper in range(self.levels, level, -1):
            entry = self.read_entry(table, index_at(va, upper))
            assert entry & P, f"{paging.LEVEL_NAMES[upper]} entry for {va:#x} is not present"
            table = entry & paging.ADDR_MASK
        return table, index_at(va, level)

    def update(self, va: int, level: int, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Clear, then set, bits in the entry translating `va` at `level`."""
        table, index = self.slot(va, level)
        self.write_entry(table, index, (self.read_entry(table, index) & ~clear_bits) | set_bits)


def index_at(va: int, level: int) -> int:
    """The 9-bit table index `va` uses at `level` (5: PML5 ... 1: PT)."""
    return (va >> paging.LEVEL_SHIFT[level]) & 0x1FF


def build_va(indices: list[int], offset: int = 0, levels: int = 4) -> int:
    """A canonical virtual address from table indices (top level first) and a byte offset."""
    va = offset
    for level, index in zip(range(levels, 0, -1), indices):
        va |= index << paging.LEVEL_SHIFT[level]
    top = 57 if levels == 5 else 48
    if va >> (top - 1) & 1:
        va |= ((1 << 64) - 1) & ~((1 << top) - 1)
    return va
