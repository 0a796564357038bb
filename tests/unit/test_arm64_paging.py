"""AArch64 translation with the 4 KiB granule over synthetic tables: every level, blocks,
pages, invalid and reserved descriptors, permissions combined down the levels, both
halves of the address space, and tables that loop or lie outside RAM."""
from __future__ import annotations

import struct

import pytest

from fakes import FakeTarget
from gdb_memcheck.arch.arm64 import paging as a64
from gdb_memcheck.arch.pagetables import PageWalkError, coalesce

PAGE, BLOCK_2M, BLOCK_1G = 1 << 12, 1 << 21, 1 << 30
TABLE_DESC = a64.VALID | a64.TABLE
PAGE_DESC = a64.VALID | a64.TABLE | a64.AF
BLOCK_DESC = a64.VALID | a64.AF
USER_RW = a64.AP_EL0
KERNEL_HIGH = (1 << 64) - (1 << 48)


class Tables:
    """AArch64 tables built in a FakeTarget's physical memory, one 4 KiB table a page."""

    def __init__(self, va_bits: int = 48, high: bool = False) -> None:
        self.mem = FakeTarget()
        self.va_bits, self.high = va_bits, high
        self.levels = a64.levels_for(va_bits)
        self.next = 0x40_0000
        self.root = self.table()

    def table(self) -> int:
        at = self.next
        self.next += PAGE
        self.mem.add_ram(at, PAGE)
        return at

    def set(self, table: int, index: int, entry: int) -> None:
        self.mem.write_physical(table + 8 * index, struct.pack("<Q", entry))

    def get(self, table: int, index: int) -> int:
        return struct.unpack("<Q", self.mem.read_physical(table + 8 * index, 8))[0]

    def map(self, va: int, pa: int, size: int = PAGE, leaf_bits: int = USER_RW, table_bits: int = 0) -> None:
        """Map one page or block; intermediate tables get `table_bits` added."""
        leaf_level = {PAGE: 1, BLOCK_2M: 2, BLOCK_1G: 3}[size]
        table = self.root
        for level in range(self.levels, leaf_level, -1):
            index = (va >> (12 + 9 * (level - 1))) & 0x1FF
            entry = self.get(table, index)
            if not entry & a64.VALID:
                entry = self.table() | TABLE_DESC
            entry |= table_bits
            self.set(table, index, entry)
            table = entry & a64.ADDR_MASK
        desc = PAGE_DESC if leaf_level == 1 else BLOCK_DESC
        self.set(table, (va >> (12 + 9 * (leaf_level - 1))) & 0x1FF, pa | desc | leaf_bits)

    def translate(self, va: int):
        return a64.translate(self.mem.read_physical, self.root, va, self.va_bits)

    def leaves(self, **kw):
        return list(a64.leaves(self.mem.read_physical, self.root, self.va_bits, self.high, **kw))


@pytest.mark.parametrize("va_bits, names", [(48, ["L0", "L1", "L2", "L3"]), (39, ["L1", "L2", "L3"])])
def test_a_page_is_reached_through_every_level_of_the_walk(va_bits, names):
    t = Tables(va_bits)
    t.map(0x55_5555_5000, 0x1234_5000)
    tr = t.translate(0x55_5555_5678)
    assert (tr.physical, tr.page_size) == (0x1234_5678, PAGE)
    assert [s.name for s in tr.steps] == names
    assert tr.steps[-1].flags.startswith("page")


@pytest.mark.parametrize("size, level_name", [(BLOCK_2M, "L2"), (BLOCK_1G, "L1")])
def test_a_block_maps_its_whole_size_and_ends_the_walk(size, level_name):
    t = Tables()
    t.map(0x40_0000_0000, 0x8000_0000, size)
    tr = t.translate(0x40_0000_0000 + size - 8)
    assert (tr.physical, tr.page_size) == (0x8000_0000 + size - 8, size)
    assert tr.steps[-1].name == level_name and tr.steps[-1].flags.startswith("block")


def test_kernel_addresses_are_walked_through_the_high_half_table():
    t = Tables(high=True)
    va = KERNEL_HIGH + 0x8_0020_0000
    t.map(va, 0x4020_0000, BLOCK_2M, leaf_bits=0)
    tr = t.translate(va + 0x123)
    assert tr.physical == 0x4020_0123 and not tr.user and tr.writable and tr.executable
    assert [leaf.virtual for leaf in t.leaves()] == [va]


@pytest.mark.parametrize("missing", ["L0", "L1", "L2", "L3"])
def test_a_walk_stops_at_the_first_invalid_descriptor_and_says_which(missing):
    t = Tables()
    va = 0x12_3456_7000
    t.map(va, 0x9000)
    tr = t.translate(va)
    at = [s.name for s in tr.steps].index(missing)
    t.set(tr.steps[at].table, tr.steps[at].index, 0)
    with pytest.raises(PageWalkError, match=rf"{va:#x}: {missing} entry \d+ not present") as err:
        t.translate(va)
    assert len(err.value.steps) == at + 1


def test_an_l3_descriptor_with_bit_1_clear_is_reserved_not_a_page():
    t = Tables()
    t.map(0x7000, 0x9000)
    last = t.translate(0x7000).steps[-1]
    t.set(last.table, last.index, 0x9000 | a64.VALID | a64.AF)
    with pytest.raises(PageWalkError, match="L3 entry 7 not present"):
        t.translate(0x7000)
    assert t.leaves() == []


def test_an_l0_block_descriptor_is_not_valid_with_the_4k_granule():
    t = Tables()
    t.set(t.root, 1, 0x8000_0000 | BLOCK_DESC)
    with pytest.raises(PageWalkError, match="L0 entry 1 not present"):
        t.translate(1 << 39)


@pytest.mark.parametrize("leaf_bits, table_bits, expected", [
    (USER_RW, 0, (True, True, True)),
    (USER_RW | a64.AP_RDONLY, 0, (False, True, True)),
    (USER_RW | a64.UXN, 0, (True, True, False)),
    (USER_RW | a64.PXN, 0, (True, True, True)),                 # PXN binds the kernel, not EL0
    (USER_RW, a64.AP_TABLE_NO_EL0, (True, False, True)),          # kernel-only below: PXN decides
    (USER_RW, a64.AP_TABLE_RDONLY, (False, True, True)),
    (USER_RW, a64.UXN_TABLE, (True, True, False)),
    (0, a64.PXN_TABLE, (True, False, False)),
    (0, 0, (True, False, True)),
])
def test_access_combines_the_leaf_with_every_table_above_it(leaf_bits, table_bits, expected):
    t = Tables()
    t.map(0x1000, 0x5000, leaf_bits=leaf_bits, table_bits=table_bits)
    tr = t.translate(0x1000)
    assert (tr.writable, tr.user, tr.executable) == expected
    [leaf] = t.leaves()
    assert (leaf.writable, leaf.user, leaf.executable) == expected


def test_the_contiguous_hint_is_shown_and_changes_no_translation():
    t = Tables()
    for i in range(16):
        t.map(0x10_0000 + i * PAGE, 0x20_0000 + i * PAGE, leaf_bits=USER_RW | a64.CONTIGUOUS)
    assert t.translate(0x10_5010).physical == 0x20_5010
    assert "CONT" in t.translate(0x10_5010).steps[-1].flags
    assert [(r.virtual, r.size) for r in coalesce(t.leaves(merge_runs=True))] == [(0x10_0000, 16 * PAGE)]


def test_pages_that_differ_only_in_access_and_dirty_bits_merge_into_one_run():
    t = Tables()
    t.map(0x10_0000, 0x20_0000)
    t.map(0x10_1000, 0x20_1000, leaf_bits=USER_RW | a64.PTE_DIRTY)
    t.map(0x10_2000, 0x20_2000, leaf_bits=USER_RW | a64.AP_RDONLY)
    runs = t.leaves(merge_runs=True)
    assert [(leaf.virtual, leaf.size) for leaf in runs] == [(0x10_0000, 2 * PAGE), (0x10_2000, PAGE)]


def test_a_table_that_points_at_itself_ends_with_results_or_one_error():
    t = Tables()
    t.map(0x1000, 0x5000)
    t.set(t.root, 5, t.root | TABLE_DESC)               # L0 entry 5 -> the L0 table itself
    try:
        t.translate((5 << 39) | 0x1000)                  # bounded by the levels: an answer or one error
    except PageWalkError:
        pass
    try:
        found = t.leaves(max_tables=64)
    except PageWalkError as e:
        assert "more than 64 tables" in str(e)
    else:
        assert (0x1000, 0x5000) in [(leaf.virtual, leaf.physical) for leaf in found]


def test_a_table_outside_ram_stops_the_walk_with_the_level_named():
    t = Tables()
    t.set(t.root, 0, 0x7_0000_0000 | TABLE_DESC)
    with pytest.raises(PageWalkError, match="L1 table at 0x700000000 cannot be read"):
        t.translate(0x1000)


@pytest.mark.parametrize("high, va, why", [
    (False, KERNEL_HIGH, "is in the high half: the other TTBR translates it"),
    (True, 0x1000, "is in the low half: the other TTBR translates it"),
    (False, 1 << 48, "outside the 48-bit TTBR0 range"),
    (True, KERNEL_HIGH - (1 << 40) | (1 << 55), "outside the 48-bit TTBR1 range"),
])
def test_an_address_a_half_cannot_translate_is_refused_with_the_reason(high, va, why):
    assert why in a64.entries(high, 48).reject(va, 4)


def test_a_walk_of_an_address_outside_the_range_is_refused_in_one_line():
    with pytest.raises(PageWalkError, match="outside the 48-bit TTBR0 range"):
        Tables().translate(1 << 48)


def test_a_tagged_user_pointer_is_translated_by_its_untagged_address():
    t = Tables()
    t.map(0x7000, 0x9000)
    assert t.translate((0x0B << 56) | 0x7010).physical == 0x9010


@pytest.mark.parametrize("sctlr, tcr, expected", [
    (0, 0, (a64.Mmu.OFF, 0, 0)),
    (1, (16 << 16) | 16 | (0b10 << 30), (a64.Mmu.FOUR_LEVEL, 48, 48)),
    (1, (25 << 16) | 25 | (0b10 << 30), (a64.Mmu.THREE_LEVEL, 39, 39)),
])
def test_the_regime_is_read_from_sctlr_and_tcr(sctlr, tcr, expected):
    regime = a64.layout(sctlr, tcr)
    assert (regime.mmu, regime.va_bits_low, regime.va_bits_high) == expected


def test_a_granule_other_than_4k_is_refused_in_one_line():
    with pytest.raises(PageWalkError, match="only the 4 KiB translation granule"):
        a64.layout(1, (16 << 16) | 16 | (0b01 << 14) | (0b10 << 30))      # TG0 = 64 KiB


def test_52_bit_virtual_addresses_are_refused_in_one_line():
    with pytest.raises(PageWalkError, match="52-bit virtual addresses"):
        a64.layout(1, (12 << 16) | 12 | (0b10 << 30))                       # T0SZ = T1SZ = 12: LPA2's layout


def test_ttbr_table_drops_the_asid_and_the_cnp_bit():
    assert a64.ttbr_table((0x2A << 48) | 0x4123_4000 | 1) == 0x4123_4000


LINUX_TCR = (16 << 16) | 16 | (0b10 << 30) | a64.TCR_TBI0          # 48-bit halves; user pointers may be tagged


def test_the_regime_reads_which_halves_ignore_the_top_byte():
    regime = a64.layout(1, LINUX_TCR | a64.TCR_TBI1)
    assert (regime.tbi_low, regime.tbi_high) == (True, True)
    assert (a64.layout(1, LINUX_TCR).tbi_high, a64.layout(1, LINUX_TCR & ~a64.TCR_TBI0).tbi_low) == (False, False)


def test_the_regime_translates_a_tagged_user_pointer_where_tbi0_is_on():
    t = Tables()
    t.map(0x7000, 0x9000)
    regime = a64.Arm64Regime(a64.layout(1, LINUX_TCR))
    tagged = (0xB4 << 56) | 0x7010                                    # an Android HWASan-style tag
    assert regime.reject(tagged) is None
    assert regime.untag(tagged) == 0x7010
    assert regime.translate(t.mem.read_physical, t.root, tagged).physical == 0x9010


@pytest.mark.parametrize("tcr, va, why", [
    (LINUX_TCR, 1 << 55, "is in neither half: bits 63:56 must copy bit 55 where the top byte is not a tag "
                         "(TCR_EL1.TBI1 is off)"),
    (LINUX_TCR & ~a64.TCR_TBI0, (0xB4 << 56) | 0x7010, "(TCR_EL1.TBI0 is off)"),
    (LINUX_TCR, (0xFF << 56) | (1 << 55) | 0x1000, "outside the 48-bit TTBR1 range"),
])
def test_the_regime_refuses_an_address_neither_ttbr_translates(tcr, va, why):
    assert why in a64.Arm64Regime(a64.layout(1, tcr)).reject(va)


def test_a_refused_tagged_address_is_named_as_given_and_untagged():
    regime = a64.Arm64Regime(a64.layout(1, LINUX_TCR | a64.TCR_TBI1))
    assert regime.reject((0x7F << 56) | (1 << 55)) == \
        "0x7f80000000000000 (untagged 0xff80000000000000) is outside the 48-bit TTBR1 range"
