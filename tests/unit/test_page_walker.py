"""Whole-range page walks (leaves) over synthetic tables: order, range limits, merged
runs and coalesced ranges, kernel sign extension, tables outside RAM, cycles.
Single-address translation is specified in test_paging.py."""
from __future__ import annotations

import pytest

from gdb_memcheck.arch.x86_64 import paging
from pagetables import P, PAGE, U, W, PhysMemory, Tables

USER_VA = 0x0000_5555_5555_4000
KERNEL_VA = 0xFFFF_8880_0000_0000


@pytest.fixture(params=[4, 5], ids=["4-level", "5-level"])
def tables(request) -> Tables:
    return Tables(PhysMemory(), request.param)


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


def walk(tables: Tables, memo: paging.LeafMemo | None = None) -> list[paging.Leaf]:
    return list(paging.leaves(tables.mem.read, tables.root, tables.levels, merge_runs=True, memo=memo))


def test_a_remembered_walk_gives_the_same_leaves_without_decoding_again(tables):
    for i in range(6):
        tables.map(USER_VA + i * PAGE * 600, 0x300000 + i * PAGE)
    tables.map(KERNEL_VA, 0x40000000, page_size=1 << 21)
    memo = paging.LeafMemo()
    first = walk(tables, memo)
    tables_seen = memo.misses
    assert memo.hits == 0 and tables_seen == len(memo.subtrees)
    assert walk(tables, memo) == first == walk(tables)
    assert memo.misses == tables_seen and memo.hits == tables_seen     # every table checked, none decoded


def test_a_change_deep_in_the_tables_shows_in_the_next_remembered_walk(tables):
    tables.map(USER_VA, 0x300000)
    tables.map(USER_VA + PAGE, 0x301000)
    memo = paging.LeafMemo()
    walk(tables, memo)
    tables.map(USER_VA + 2 * PAGE, 0x302000, flags=P | U)          # same page table, one more entry
    after = walk(tables, memo)
    assert after == walk(tables)
    assert [(leaf.virtual, leaf.size, leaf.writable) for leaf in after] == [(USER_VA, 2 * PAGE, True),
                                                                          (USER_VA + 2 * PAGE, PAGE, False)]


def test_a_bounded_memo_forgets_rather_than_grows(tables):
    for i in range(20):
        tables.map(USER_VA + i * (1 << 21), 0x300000 + i * PAGE)
    memo = paging.LeafMemo(max_tables=8)
    assert walk(tables, memo) == walk(tables, memo) == walk(tables)
    assert len(memo.subtrees) <= 8
