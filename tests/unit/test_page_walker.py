"""The x86-64 page walker over synthetic page tables: every level, huge pages,
permissions combined across levels, non-present entries, cycles, tables outside RAM."""
from __future__ import annotations

import pytest

from gdb_memcheck import paging
from pagetables import NX, P, PAGE, U, W, PhysMemory, Tables

USER_VA = 0x0000_5555_5555_4000
KERNEL_VA = 0xFFFF_8880_0000_0000


@pytest.fixture(params=[4, 5], ids=["4-level", "5-level"])
def tables(request) -> Tables:
    return Tables(PhysMemory(), request.param)


def test_paging_mode_is_decoded_from_control_registers():
    assert paging.paging_mode(0, 0, 0) is paging.PagingMode.OFF
    assert paging.paging_mode(paging.CR0_PG, 0, 0) is paging.PagingMode.LEGACY_32
    assert paging.paging_mode(paging.CR0_PG, paging.CR4_PAE, 0) is paging.PagingMode.PAE
    assert paging.paging_mode(paging.CR0_PG, paging.CR4_PAE, paging.EFER_LMA) is paging.PagingMode.FOUR_LEVEL
    five = paging.paging_mode(paging.CR0_PG, paging.CR4_PAE | paging.CR4_LA57, paging.EFER_LMA)
    assert five is paging.PagingMode.FIVE_LEVEL and five.levels == 5


@pytest.mark.parametrize("size", [PAGE, 1 << 21, 1 << 30], ids=["4K", "2M", "1G"])
def test_translation_keeps_the_offset_within_the_page(tables, size):
    va = (KERNEL_VA if tables.levels == 4 else 0xFF11_0000_0000_0000) + 3 * size
    tables.map(va, 0x4000_0000, size)
    offset = size - 8
    tr = paging.translate(tables.mem.read, tables.root, va + offset, tables.levels)
    assert tr.physical == 0x4000_0000 + offset and tr.page_size == size
    expected_levels = {PAGE: 1, 1 << 21: 2, 1 << 30: 3}[size]
    assert [s.level for s in tr.steps] == list(range(tables.levels, expected_levels - 1, -1))


def test_permissions_combine_over_every_level(tables):
    tables.map(USER_VA, 0x200000, flags=P | W | U, table_flags=P | U)          # a read-only upper level
    tables.map(USER_VA + PAGE, 0x201000, flags=P | W | U | NX)
    tables.map(USER_VA + 2 * PAGE, 0x202000, flags=P | W)                       # supervisor leaf
    first, second, third = (paging.translate(tables.mem.read, tables.root, USER_VA + i * PAGE, tables.levels)
                            for i in range(3))
    assert not first.writable and first.user and first.executable
    assert not second.executable
    assert not third.user


@pytest.mark.parametrize("missing_level", [4, 3, 2, 1])
def test_a_non_present_entry_stops_the_walk_naming_its_level(missing_level):
    tables = Tables(PhysMemory(), 4)
    tables.map(USER_VA, 0x200000)
    tr = paging.translate(tables.mem.read, tables.root, USER_VA, 4)
    step = next(s for s in tr.steps if s.level == missing_level)
    tables.mem.set_entry(step.table, step.index, 0)
    with pytest.raises(paging.PageWalkError, match=f"{paging.LEVEL_NAMES[missing_level]} entry {step.index} "
                                                   "not present") as err:
        paging.translate(tables.mem.read, tables.root, USER_VA, 4)
    assert [s.level for s in err.value.steps] == list(range(4, missing_level - 1, -1))


def test_non_canonical_addresses_are_refused():
    tables = Tables(PhysMemory(), 4)
    with pytest.raises(paging.PageWalkError, match="not a canonical 4-level address"):
        paging.translate(tables.mem.read, tables.root, 0x0000_8000_0000_0000, 4)
    assert paging.is_canonical(0xFFFF_8000_0000_0000, 4) and not paging.is_canonical(0xFF00_8000_0000_0000, 4)
    assert paging.is_canonical(0xFF00_0000_0000_0000, 5) and not paging.is_canonical(0x0100_0000_0000_0000, 5)


def test_a_table_outside_ram_gives_a_walk_error_not_a_read_error():
    tables = Tables(PhysMemory(), 4)
    tables.mem.set_entry(tables.root, 0, 0x7_0000_0000 | P | W | U)
    with pytest.raises(paging.PageWalkError, match="PDPT table at 0x700000000 cannot be read"):
        paging.translate(tables.mem.read, tables.root, 0x1000, 4)
    with pytest.raises(paging.PageWalkError):
        list(paging.leaves(tables.mem.read, tables.root, 4))


def test_a_table_that_points_to_itself_ends_with_a_bounded_walk():
    tables = Tables(PhysMemory(), 4)
    for i in range(512):
        tables.mem.set_entry(tables.root, i, tables.root | P | W | U)
    with pytest.raises(paging.PageWalkError, match="visited more than"):
        list(paging.leaves(tables.mem.read, tables.root, 4, max_tables=2000))
    tr = paging.translate(tables.mem.read, tables.root, 0x1000, 4)   # self-map: the root is its own PT
    assert tr.physical == tables.root


def test_cr3_table_drops_pcid_and_flag_bits():
    assert paging.cr3_table(0x1234_5000 | 0x18 | 0xABC) == 0x1234_5000


def test_leaves_are_in_address_order_within_the_range_and_runs_merge(tables):
    for i in range(8):
        tables.map(USER_VA + i * PAGE, 0x300000 + i * PAGE)
    tables.map(USER_VA + 16 * PAGE, 0x900000)
    pages = list(paging.leaves(tables.mem.read, tables.root, tables.levels, USER_VA + PAGE, USER_VA + 17 * PAGE))
    assert [l.virtual for l in pages] == [USER_VA + i * PAGE for i in range(1, 8)] + [USER_VA + 16 * PAGE]
    runs = list(paging.leaves(tables.mem.read, tables.root, tables.levels, merge_runs=True))
    assert [(l.virtual, l.size) for l in runs] == [(USER_VA, 8 * PAGE), (USER_VA + 16 * PAGE, PAGE)]
    ranges = paging.coalesce(runs)
    assert ranges[0].perms() == "urwx" and ranges[0].size == 8 * PAGE


def test_leaves_sign_extend_kernel_addresses(tables):
    va = KERNEL_VA if tables.levels == 4 else 0xFF11_0000_0000_0000
    tables.map(va, 0x1000000, 1 << 21, flags=P | W)
    (leaf,) = paging.leaves(tables.mem.read, tables.root, tables.levels)
    assert leaf.virtual == va and leaf.page_size == 1 << 21 and not leaf.user
