"""Whose malloc a tracked process's calls reach: the first module in the dynamic linker's
link_map order that defines malloc and free, read from `_r_debug` in guest memory."""
from __future__ import annotations

import struct

import pytest

from gdb_memcheck.leakcheck.program_symbols import (L_NEXT, R_MAP, link_map_bases, load_order, malloc_family,
                                                    malloc_replacement)
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, Vma
from gdb_memcheck.symbols.unwind import ModuleMap
from gdb_memcheck.target import MemoryReadError, TargetError

EXE, LIBC, JEMALLOC, LD_SO = "/bin/prog", "/lib/libc.so.6", "/lib/libjemalloc.so.2", "/lib64/ld-linux-x86-64.so.2"
# load bases as a top-down mmap lays them out: ld.so first and highest, a preloaded
# library above libc, which is loaded after it
BASES = {EXE: 0x5555_5555_4000, LIBC: 0x7FFF_F7D0_0000, JEMALLOC: 0x7FFF_F7E0_0000, LD_SO: 0x7FFF_F7FC_0000}
R_DEBUG = 0x3_A118                 # _r_debug's ELF address in ld.so
ALLOCATORS = {"malloc": 0x1000, "free": 0x2000, "calloc": 0x3000}
GLIBC = {**ALLOCATORS, "__libc_malloc": 0x1000}


class Elf:
    def __init__(self, symbols: dict[str, int]) -> None:
        self.symbols = symbols

    def addresses_of(self, names) -> dict[str, int]:
        return {n: self.symbols[n] for n in names if n in self.symbols}

    def vaddr_for_file_offset(self, offset: int) -> int:
        return offset


class Symbols:
    def __init__(self, elves: dict[str, Elf]) -> None:
        self.elves = elves

    def get(self, path: str) -> Elf:
        return self.elves[path]


class Memory:
    """Guest words at addresses; a read of anything else fails as an unmapped read does."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def read(self, address: int, size: int) -> bytes:
        if any(address + i not in self.words for i in range(0, size, 8)):
            raise MemoryReadError("user", address, size)
        return b"".join(struct.pack("<Q", self.words[address + i]) for i in range(0, size, 8))

    def link_maps(self, bases: list[int], at: int = 0x7FFF_F7FF_E000) -> None:
        """ld.so's list: _r_debug.r_map -> one link_map per base, chained by l_next."""
        self.words[BASES[LD_SO] + R_DEBUG + R_MAP] = at if bases else 0
        for i, base in enumerate(bases):
            entry = at + 0x100 * i
            self.words.update({entry: base, entry + 8: 0, entry + 16: 0,
                               entry + L_NEXT: entry + 0x100 if i + 1 < len(bases) else 0})


def module_map(with_jemalloc: bool = True, static: bool = False) -> ModuleMap:
    files = [EXE] if static else [EXE, LIBC, LD_SO] + ([JEMALLOC] if with_jemalloc else [])
    elves = {EXE: Elf(GLIBC if static else {"main": 0x1139}), LIBC: Elf(GLIBC),
             JEMALLOC: Elf(ALLOCATORS), LD_SO: Elf({"_r_debug": R_DEBUG})}
    vmas = [Vma(0, BASES[f], BASES[f] + 0x10_0000, VM_READ | VM_EXEC, 0, 0x801, 7 + i, f) for i, f in enumerate(files)]
    return ModuleMap(vmas, Symbols(elves))


class Process:
    tgid, comm = 100, "prog"


def test_an_ld_preload_malloc_loaded_above_libc_is_the_one_calls_reach():
    memory = Memory()
    memory.link_maps([BASES[EXE], BASES[JEMALLOC], BASES[LIBC], BASES[LD_SO]])
    path, family = malloc_family(module_map(), Process(), memory.read)
    assert path == JEMALLOC
    assert family == {BASES[JEMALLOC] + a: name for name, a in ALLOCATORS.items()}


def test_without_a_replacement_libc_defines_the_family():
    memory = Memory()
    memory.link_maps([BASES[EXE], BASES[LIBC], BASES[LD_SO]])
    assert malloc_family(module_map(with_jemalloc=False), Process(), memory.read)[0] == LIBC


def test_the_link_map_order_wins_over_the_address_order():
    memory = Memory()
    memory.link_maps([BASES[EXE], BASES[JEMALLOC], BASES[LIBC], BASES[LD_SO]])
    assert [m.path for m in load_order(module_map(), memory.read)] == [EXE, JEMALLOC, LIBC, LD_SO]


def test_a_replacement_is_named_and_glibc_is_not():
    memory = Memory()
    memory.link_maps([BASES[EXE], BASES[JEMALLOC], BASES[LIBC], BASES[LD_SO]])
    assert malloc_replacement(module_map(), memory.read) == JEMALLOC
    memory.link_maps([BASES[EXE], BASES[LIBC], BASES[LD_SO]])
    assert malloc_replacement(module_map(with_jemalloc=False), memory.read) is None
    assert malloc_replacement(module_map(static=True), Memory().read) is None


def test_a_static_program_has_no_list_and_defines_the_family_itself():
    assert link_map_bases(list(load_order(module_map(static=True), Memory().read)), Memory().read) == []
    assert malloc_family(module_map(static=True), Process(), Memory().read)[0] == EXE


@pytest.mark.parametrize("damage", ["unreadable r_map", "looping list", "wild l_next"])
def test_a_damaged_list_keeps_the_entries_read_and_the_rest_in_address_order(damage):
    memory = Memory()
    memory.link_maps([BASES[EXE], BASES[JEMALLOC], BASES[LIBC], BASES[LD_SO]])
    head = 0x7FFF_F7FF_E000
    if damage == "unreadable r_map":
        memory.words[BASES[LD_SO] + R_DEBUG + R_MAP] = 0xDEAD_0000
    elif damage == "looping list":
        memory.words[head + 0x100 + L_NEXT] = head
    else:
        memory.words[head + 0x100 + L_NEXT] = 0xBAD0_0000
    order = [m.path for m in load_order(module_map(), memory.read)]
    assert sorted(order) == sorted([EXE, JEMALLOC, LIBC, LD_SO])
    expected_first = {"unreadable r_map": [EXE, LIBC], "looping list": [EXE, JEMALLOC], "wild l_next": [EXE, JEMALLOC]}
    assert order[:2] == expected_first[damage]


def test_no_module_with_malloc_and_free_is_one_error_naming_where_it_looked():
    memory = Memory()
    with pytest.raises(TargetError, match=r"no module defines malloc and free \(looked in /bin/prog, "):
        malloc_family(_without_allocators(), Process(), memory.read)


def _without_allocators() -> ModuleMap:
    vmas = [Vma(0, BASES[EXE], BASES[EXE] + 0x1000, VM_READ | VM_EXEC, 0, 0x801, 7, EXE),
            Vma(0, BASES[LD_SO], BASES[LD_SO] + 0x1000, VM_READ | VM_EXEC, 0, 0x801, 8, LD_SO)]
    return ModuleMap(vmas, Symbols({EXE: Elf({}), LD_SO: Elf({"_r_debug": R_DEBUG})}))
