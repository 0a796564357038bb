"""arm64's linear map from outside: physical = va - PAGE_OFFSET + memstart_addr, with the
PAGE_OFFSET of the build's VA_BITS, which a 52-bit build on 48-bit hardware does not show
in TCR_EL1; checked against where swapper_pg_dir maps mem_section's root array."""
from __future__ import annotations

import pytest

from gdb_memcheck.arch.arm64 import linux, paging as a64
from test_arm64_paging import LINUX_TCR, Tables

FULL = 1 << 64
RAM = 0x4000_0000                        # QEMU virt: RAM at 1 GiB
SWAPPER_SYM = 0xFFFF_8000_8200_0000      # swapper_pg_dir's link address; the fake's other variables follow it
ROOTS_PA = RAM + 0x123_4000              # mem_section's root array
VARIABLES = 0x10_0000                    # memstart_addr and mem_section, this far past swapper_pg_dir


def page_offset(va_bits: int) -> int:
    return FULL - (1 << va_bits)


def guest(build_va_bits: int, memstart: int, mapped: bool = True):
    """A 48-bit regime whose swapper_pg_dir maps the root array where a build of
    `build_va_bits` with this memstart_addr puts it."""
    t = Tables(high=True)
    roots_va = (ROOTS_PA - memstart + page_offset(build_va_bits)) % FULL
    if mapped:
        t.map(roots_va, ROOTS_PA, leaf_bits=0)
    t.mem.symbols.update({"swapper_pg_dir": SWAPPER_SYM, "memstart_addr": SWAPPER_SYM + VARIABLES,
                          "mem_section": SWAPPER_SYM + VARIABLES + 8})
    variables = t.root + VARIABLES               # the image is contiguous: physical as far from the table
    t.mem.add_ram(variables, 0x1000)
    t.mem.write_physical(variables, memstart.to_bytes(8, "little", signed=memstart < 0))
    t.mem.write_physical(variables + 8, roots_va.to_bytes(8, "little"))
    image = linux.KernelImage(t.root, 0)
    return t.mem, a64.Arm64Regime(a64.layout(1, LINUX_TCR)), image, roots_va


@pytest.mark.parametrize("build_va_bits, memstart", [
    (48, RAM),                                                        # Debian's 6.1
    (52, RAM - (page_offset(48) - page_offset(52))),                  # Debian's 6.12: memstart_addr below 0
    (52, RAM - (page_offset(48) - page_offset(52)) - 0xB33B_8000_0000),   # and the linear map randomized (KASLR)
])
def test_the_linear_map_offset_is_the_builds_and_translates_where_the_tables_do(build_va_bits, memstart):
    target, regime, image, roots_va = guest(build_va_bits, memstart)
    offset = linux.linear_offset(target, regime, image)
    assert offset is not None and (roots_va + offset) % FULL == ROOTS_PA
    assert (-offset % FULL) + ROOTS_PA == roots_va, "the direct-map base plus a physical address is its linear address"


def test_no_linear_window_when_neither_width_translates_like_the_tables():
    target, regime, image, _ = guest(52, RAM, mapped=False)
    assert linux.linear_offset(target, regime, image) is None
