"""Where struct page for pfn 0 lives, decoded from the memory sections as the kernel encodes it."""
from __future__ import annotations

import struct

import pytest

from fakes import FakeTarget
from gdb_memcheck.linux.rss import vmemmap
from gdb_memcheck.target import Field, StructLayout, TargetError

MEM_SECTION = StructLayout("struct mem_section", 16, {"section_mem_map": Field(0, 8), "usage": Field(8, 8)})
ROOTS, ROOT0 = 0x10000, 0x20000
PRESENT, HAS_MEM_MAP, ONLINE, EARLY = 1, 2, 4, 8


def _guest(sections: dict[int, int]) -> FakeTarget:
    """mem_section -> one root of 256 sections; `sections` maps a section number to its encoded map."""
    target = FakeTarget(symbols={"mem_section": 0x1000}, layouts={"struct mem_section": MEM_SECTION})
    target.write_u64(0x1000, ROOTS)
    target.write_u64(ROOTS, ROOT0)
    target.add_ram(ROOT0, 4096)
    for number, encoded in sections.items():
        target.write_physical(ROOT0 + 16 * number, struct.pack("<Q", encoded))
    return target


def _read(target: FakeTarget):
    return target.read_virtual


@pytest.mark.parametrize("vmemmap_start, first_section", [
    (0xFFFFEA0000000000, 0),           # x86-64 without KASLR, RAM from 0
    (0xFFFFFBFFFF000000, 8),           # arm64 48-bit: VMEMMAP_START - (memstart_addr >> PAGE_SHIFT), RAM at 1 GiB
])
def test_vmemmap_is_the_first_present_sections_map_without_its_flags(vmemmap_start, first_section):
    encoded = vmemmap_start | PRESENT | HAS_MEM_MAP | ONLINE | EARLY
    target = _guest({first_section: encoded, first_section + 1: encoded})
    assert vmemmap(target, _read(target)) == vmemmap_start


def test_a_section_marked_present_without_a_map_is_passed_over():
    target = _guest({0: 0xDEAD000 | PRESENT, 3: 0xFFFFEA0000000000 | PRESENT | HAS_MEM_MAP})
    assert vmemmap(target, _read(target)) == 0xFFFFEA0000000000


def test_no_section_with_a_map_is_one_error_naming_the_vmemmap_array():
    target = _guest({})
    with pytest.raises(TargetError, match="vmemmap"):
        vmemmap(target, _read(target))
