"""x86-64 paging: the mode from control registers, and translate() over synthetic 4- and 5-level tables."""
from __future__ import annotations

import pytest

from fakes import LEAF_LEVEL, NX, P, PAGE_1G, PAGE_2M, PAGE_4K, U, W, FakeTarget, PageTableBuilder, build_va
from gdb_memcheck.arch.x86_64.paging import (
    CR0_PG, CR4_LA57, CR4_PAE, EFER_LMA, LEVEL_NAMES, PagingMode, PageWalkError, cr3_table, is_canonical,
    paging_mode, translate)
from gdb_memcheck.target import MemoryReadError

CR0_PE = 1 << 0
EFER_LME = 1 << 8
PAGE_SIZES = pytest.mark.parametrize("page_size", [PAGE_4K, PAGE_2M, PAGE_1G], ids=["4K", "2M", "1G"])


@pytest.fixture(params=[4, 5], ids=["4-level", "5-level"])
def tables(request) -> PageTableBuilder:
    return PageTableBuilder(FakeTarget(), request.param)


def walk(tables: PageTableBuilder, va: int):
    return translate(tables.target.read_physical, tables.root, va, tables.levels)


# --- paging mode -------------------------------------------------------------------------

def test_paging_is_off_while_cr0_pg_is_clear_whatever_cr4_and_efer_say():
    assert paging_mode(CR0_PE, CR4_PAE | CR4_LA57, EFER_LME | EFER_LMA) is PagingMode.OFF
    assert paging_mode(0, 0, 0) is PagingMode.OFF


def test_paging_without_cr4_pae_is_32_bit_paging():
    assert paging_mode(CR0_PG | CR0_PE, 0, 0) is PagingMode.LEGACY_32


def test_pae_without_efer_lma_is_pae_paging_even_with_la57_set():
    assert paging_mode(CR0_PG | CR0_PE, CR4_PAE, EFER_LME) is PagingMode.PAE
    assert paging_mode(CR0_PG | CR0_PE, CR4_PAE | CR4_LA57, 0) is PagingMode.PAE


def test_long_mode_is_four_level_paging_without_la57_and_five_level_with_it():
    assert paging_mode(0x8005_0033, 0x0035_06F0, 0x0D01) is PagingMode.FOUR_LEVEL
    assert paging_mode(0x8005_0033, 0x0035_06F0 | CR4_LA57, 0x0D01) is PagingMode.FIVE_LEVEL


def test_only_four_and_five_level_modes_have_walkable_levels():
    assert {m: m.levels for m in PagingMode} == {
        PagingMode.OFF: 0, PagingMode.LEGACY_32: 0, PagingMode.PAE: 0,
        PagingMode.FOUR_LEVEL: 4, PagingMode.FIVE_LEVEL: 5}


# --- successful translations -------------------------------------------------------------

def test_four_kib_page_keeps_offset_within_the_page(tables):
    va = build_va([0x111, 2, 3, 4], levels=tables.levels)
    tables.map(va, 0x1234_5000)
    tr = walk(tables, va + 0xABC)
    assert (tr.virtual, tr.physical, tr.page_size) == (va + 0xABC, 0x1234_5ABC, PAGE_4K)


def test_two_mib_page_keeps_offset_within_the_page(tables):
    va = build_va([0x111, 2, 3], levels=tables.levels)
    tables.map(va, 0x4020_0000, PAGE_2M)
    tr = walk(tables, va + 0x1_2345)
    assert (tr.physical, tr.page_size) == (0x4021_2345, PAGE_2M)


def test_one_gib_page_keeps_offset_within_the_page(tables):
    va = build_va([0x111, 2], levels=tables.levels)
    tables.map(va, 0x1_C000_0000, PAGE_1G)
    tr = walk(tables, va + 0x3FFF_FFF8)
    assert (tr.physical, tr.page_size) == (0x1_FFFF_FFF8, PAGE_1G)


@PAGE_SIZES
def test_steps_name_every_level_from_the_root_down_to_the_leaf(tables, page_size):
    indices = [0x1A3, 0x0B7, 0x1FF, 0x001, 0x042][:tables.levels - LEAF_LEVEL[page_size] + 1]
    va = build_va(indices, levels=tables.levels)
    tables.map(va, 0x8000_0000, page_size)
    tr = walk(tables, va)
    expected_levels = list(range(tables.levels, LEAF_LEVEL[page_size] - 1, -1))
    assert [(s.level, s.index) for s in tr.steps] == list(zip(expected_levels, indices))
    assert [s.name for s in tr.steps] == [LEVEL_NAMES[level] for level in expected_levels]
    assert tr.steps[0].table == tables.root
    for upper, lower in zip(tr.steps, tr.steps[1:]):
        assert lower.table == upper.entry & 0x000F_FFFF_FFFF_F000


def test_the_leaf_step_holds_the_entry_that_maps_the_page(tables):
    va = build_va([3, 4, 5], levels=tables.levels)
    tables.map(va, 0x60_0000, PAGE_2M, writable=False)
    leaf = walk(tables, va).steps[-1]
    assert leaf.entry == 0x60_0000 | P | U | (1 << 7)


def test_kernel_half_addresses_translate_with_the_top_index(tables):
    va = 0xFFFF_FFFF_8100_0000 if tables.levels == 4 else 0xFFFF_FFFF_FFE0_0000
    tables.map(va, 0x100_0000, PAGE_2M, user=False)
    tr = walk(tables, va + 0x10)
    assert tr.physical == 0x100_0010 and tr.steps[0].index == 0x1FF


def test_translate_accepts_a_raw_cr3_with_pcid_bits(tables):
    tables.map(0x40_0000, 0x9000)
    cr3 = tables.root | 0x0AB | (1 << 63)
    assert translate(tables.target.read_physical, cr3, 0x40_0123, tables.levels).physical == 0x9123


def test_the_pat_bit_of_a_four_kib_entry_does_not_make_it_huge(tables):
    tables.map(0x40_0000, 0x9000)
    tables.update(0x40_0000, 1, set_bits=1 << 7)              # bit 7 is PAT in a PT entry, not PS
    tr = walk(tables, 0x40_0010)
    assert (tr.physical, tr.page_size) == (0x9010, PAGE_4K)


@pytest.mark.parametrize("page_size", [PAGE_2M, PAGE_1G], ids=["2M", "1G"])
def test_the_pat_bit_of_a_huge_entry_is_not_part_of_the_address(tables, page_size):
    tables.map(page_size, 4 * page_size, page_size)
    tables.update(page_size, LEAF_LEVEL[page_size], set_bits=1 << 12)   # bit 12 is PAT in a PD/PDPT leaf
    assert walk(tables, page_size + 0x10).physical == 4 * page_size + 0x10


def test_protection_key_and_software_bits_are_not_part_of_the_address(tables):
    tables.map(0x40_0000, 0x9000)
    tables.update(0x40_0000, 1, set_bits=(0xF << 59) | (0x7F << 52) | (0x7 << 9))
    assert walk(tables, 0x40_0010).physical == 0x9010


# --- permissions combined over the levels ------------------------------------------------

PERMISSION_CASES = [pytest.param(levels, size, level, id=f"{levels}-level-{name}-{LEVEL_NAMES[level]}")
                    for levels in (4, 5)
                    for size, name in ((PAGE_4K, "4K"), (PAGE_2M, "2M"), (PAGE_1G, "1G"))
                    for level in range(levels, LEAF_LEVEL[size] - 1, -1)]


def mapped_page(levels: int, page_size: int) -> tuple[PageTableBuilder, int]:
    """Tables with one fully permissive page of `page_size` mapped, and its address."""
    tables = PageTableBuilder(FakeTarget(), levels)
    va = build_va([1, 1, 1, 1, 1], levels=levels) & ~(page_size - 1)
    tables.map(va, page_size, page_size)
    return tables, va


@pytest.mark.parametrize("levels", [4, 5])
@PAGE_SIZES
def test_a_fully_permissive_walk_is_writable_user_and_executable(levels, page_size):
    tables, va = mapped_page(levels, page_size)
    tr = walk(tables, va)
    assert (tr.writable, tr.user, tr.executable) == (True, True, True)


@pytest.mark.parametrize("levels, page_size, level", PERMISSION_CASES)
def test_writable_only_if_every_level_is_writable(levels, page_size, level):
    tables, va = mapped_page(levels, page_size)
    tables.update(va, level, clear_bits=W)
    tr = walk(tables, va)
    assert (tr.writable, tr.user, tr.executable) == (False, True, True)


@pytest.mark.parametrize("levels, page_size, level", PERMISSION_CASES)
def test_user_only_if_every_level_allows_user_access(levels, page_size, level):
    tables, va = mapped_page(levels, page_size)
    tables.update(va, level, clear_bits=U)
    tr = walk(tables, va)
    assert (tr.writable, tr.user, tr.executable) == (True, False, True)


@pytest.mark.parametrize("levels, page_size, level", PERMISSION_CASES)
def test_executable_unless_some_level_has_nx(levels, page_size, level):
    tables, va = mapped_page(levels, page_size)
    tables.update(va, level, set_bits=NX)
    tr = walk(tables, va)
    assert (tr.writable, tr.user, tr.executable) == (True, True, False)


def test_nx_in_an_upper_level_does_not_leak_into_the_physical_address(tables):
    tables.map(0x20_0000, 0x7000, nx=True)
    tables.update(0x20_0000, tables.levels, set_bits=NX)
    tr = walk(tables, 0x20_0008)
    assert tr.physical == 0x7008 and not tr.executable


# --- where a walk stops -------------------------------------------------------------------

@pytest.mark.parametrize("levels, missing", [(4, 4), (4, 3), (4, 2), (4, 1), (5, 5), (5, 4), (5, 3), (5, 2),
                                             (5, 1)])
def test_a_non_present_entry_raises_naming_the_level_with_the_steps_so_far(levels, missing):
    tables = PageTableBuilder(FakeTarget(), levels)
    va = build_va([7, 6, 5, 4, 3], 0x10, levels)
    tables.map(va & ~0xFFF, 0x5_0000)
    tables.update(va, missing, clear_bits=P)
    with pytest.raises(PageWalkError, match=rf"{va:#x}: {LEVEL_NAMES[missing]} entry \d+ not present") as err:
        walk(tables, va)
    steps = err.value.steps
    assert [s.level for s in steps] == list(range(levels, missing - 1, -1))
    assert not steps[-1].entry & P and steps[-1].index == [7, 6, 5, 4, 3][levels - missing]


def test_an_empty_root_table_stops_at_the_top_level(tables):
    with pytest.raises(PageWalkError, match=f"{LEVEL_NAMES[tables.levels]} entry 0 not present") as err:
        walk(tables, 0x1000)
    assert len(err.value.steps) == 1


def test_a_non_present_entry_with_a_stale_address_is_not_followed(tables):
    tables.map(0x1000, 0x3000)
    tables.update(0x1000, 2, clear_bits=P)     # the PD entry still holds the PT's address
    with pytest.raises(PageWalkError, match="PD entry 0 not present"):
        walk(tables, 0x1000)


@pytest.mark.parametrize("levels, va", [
    (4, 0x0000_8000_0000_0000), (4, 0xFFFF_7FFF_FFFF_F000), (4, 0x0001_0000_0000_0000),
    (5, 0x0100_0000_0000_0000), (5, 0xFEFF_FFFF_FFFF_F000), (5, 0x8000_0000_0000_0000)])
def test_a_non_canonical_address_raises_before_reading_any_table(levels, va):
    target = FakeTarget()                        # no memory at all: any read would fail differently
    with pytest.raises(PageWalkError, match=f"{va:#x} is not a canonical {levels}-level address") as err:
        translate(target.read_physical, 0x1000, va, levels)
    assert err.value.steps == []


@pytest.mark.parametrize("levels", [2, 3, 6])
def test_only_four_and_five_level_tables_can_be_walked(levels):
    with pytest.raises(PageWalkError, match=f"cannot walk {levels}-level"):
        translate(FakeTarget().read_physical, 0x1000, 0x1000, levels)


def test_a_root_table_outside_ram_raises_a_walk_error_naming_the_top_level(tables):
    with pytest.raises(PageWalkError, match=f"{LEVEL_NAMES[tables.levels]} table at 0x7000000000 cannot be read") \
            as err:
        translate(tables.target.read_physical, 0x70_0000_0000, 0x1000, tables.levels)
    assert err.value.steps == []
    assert isinstance(err.value.__cause__, MemoryReadError)


@pytest.mark.parametrize("bad_level", [3, 2, 1])
def test_a_lower_table_outside_ram_raises_a_walk_error_not_a_read_error(tables, bad_level):
    tables.map(0x40_0000, 0x5000)
    tables.update(0x40_0000, bad_level + 1, clear_bits=0x000F_FFFF_FFFF_F000, set_bits=0x7_0000_0000)
    with pytest.raises(PageWalkError) as err:
        walk(tables, 0x40_0000)
    assert not isinstance(err.value, MemoryReadError)
    assert f"{LEVEL_NAMES[bad_level]} table at 0x700000000 cannot be read" in str(err.value)
    assert [s.level for s in err.value.steps] == list(range(tables.levels, bad_level, -1))


def test_a_self_referencing_top_entry_ends_at_the_root_page(tables):
    tables.write_entry(tables.root, 0x1FF, tables.root | P | W)
    va = build_va([0x1FF] * tables.levels, 0x18, tables.levels)      # recursive slot at every level
    tr = walk(tables, va)
    assert tr.physical == tables.root + 0x18 and tr.page_size == PAGE_4K
    assert len(tr.steps) == tables.levels and {s.table for s in tr.steps} == {tables.root}


def test_a_self_referencing_top_entry_with_an_empty_slot_ends_with_a_walk_error(tables):
    tables.write_entry(tables.root, 0, tables.root | P | W | U)
    with pytest.raises(PageWalkError, match="PT entry 1 not present") as err:
        walk(tables, 0x1000)
    assert len(err.value.steps) == tables.levels


# --- cr3 and canonical addresses ----------------------------------------------------------

@pytest.mark.parametrize("cr3, table", [
    (0x0000_0000_1234_5000, 0x1234_5000),
    (0x0000_0000_1234_5018, 0x1234_5000),                  # PWT | PCD
    (0x0000_0000_1234_5FFF, 0x1234_5000),                  # a 12-bit PCID
    (0x8000_0000_1234_5001, 0x1234_5000),                  # CR3 bit 63: no TLB flush on switch
    (0x000F_FFFF_FFFF_F000, 0x000F_FFFF_FFFF_F000),        # the highest table address
])
def test_cr3_table_drops_the_low_flag_bits(cr3, table):
    assert cr3_table(cr3) == table


@pytest.mark.parametrize("va, canonical", [
    (0, True),
    (0x0000_7FFF_FFFF_FFFF, True),
    (0x0000_8000_0000_0000, False),
    (0xFFFF_7FFF_FFFF_FFFF, False),
    (0xFFFF_8000_0000_0000, True),
    (0xFFFF_FFFF_FFFF_FFFF, True),
    (0x7FFF_FFFF_FFFF_FFFF, False),
    (0x8000_0000_0000_0000, False),
])
def test_four_level_canonical_addresses_copy_bit_47_upwards(va, canonical):
    assert is_canonical(va, 4) is canonical


@pytest.mark.parametrize("va, canonical", [
    (0, True),
    (0x0000_8000_0000_0000, True),
    (0x00FF_FFFF_FFFF_FFFF, True),
    (0x0100_0000_0000_0000, False),
    (0xFEFF_FFFF_FFFF_FFFF, False),
    (0xFF00_0000_0000_0000, True),
    (0xFFFF_8000_0000_0000, True),
    (0xFFFF_FFFF_FFFF_FFFF, True),
    (0x8000_0000_0000_0000, False),
])
def test_five_level_canonical_addresses_copy_bit_56_upwards(va, canonical):
    assert is_canonical(va, 5) is canonical
