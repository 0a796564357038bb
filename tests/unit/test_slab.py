"""The SLUB walker over synthetic caches built with 6.1's and 6.12's layouts: objects found
through the memmap, freelists decoded, counts, and corrupt lists and freelists."""
from __future__ import annotations

import pytest

from gdb_memcheck.linux.slab import swab64
from gdb_memcheck.target import PartialError
from slab_objects import DIRECT_MAP, PAGE, standard

VERSIONS = ["6.1", "6.12"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("hardened", [True, False])
def test_every_object_is_found_with_the_state_its_slab_gives_it(version, hardened):
    slub, cache = standard(version, hardened)
    allocator = slub.allocator()
    objects = allocator.objects(allocator.find_cache("test_cache"))
    mine = {a: free for a, free in slub.truth.items() if (a - DIRECT_MAP) // PAGE in (8, 9, 10, 11)}
    assert {o.address: o.free for o in objects} == mine
    assert len(objects) == 4 * (PAGE // cache.size) and sum(mine.values()) == 11


@pytest.mark.parametrize("version", VERSIONS)
def test_counts_split_slabs_by_where_slub_keeps_them(version):
    slub, cache = standard(version)
    stats = {s.cache.name: s for s in slub.allocator().all_stats()}
    s = stats["test_cache"]
    assert (s.slabs, s.cpu_slabs, s.cpu_partial_slabs, s.node_partial_slabs) == (4, 1, 1, 1)
    assert s.objects == 4 * 64 and s.free == 5 + 2 + 4
    assert s.in_use == s.objects - 11
    assert s.slabinfo_active == s.objects - 4          # only free objects on node partial lists are inactive
    assert s.total_objects == s.objects
    assert stats["other"].in_use == 32 - 1


def test_a_full_slab_on_no_list_is_found_through_the_memmap():
    slub, cache = standard()
    _, slabs = slub.allocator().walk(slub.allocator().find_cache("test_cache"))
    full = [s for s in slabs if s.where == "full"]
    assert [s.pfn for s in full] == [11] and full[0].free == []


def test_hardened_freelist_pointers_are_the_pointer_xor_random_xor_swabbed_storage_address():
    slub, cache = standard()
    first = slub.ram.u64(DIRECT_MAP + 10 * PAGE + 10 * 64 + cache.offset)
    stored_at = DIRECT_MAP + 10 * PAGE + 10 * 64 + cache.offset
    assert first ^ cache.random ^ swab64(stored_at) == DIRECT_MAP + 10 * PAGE + 20 * 64
    assert swab64(0x0102030405060708) == 0x0807060504030201


@pytest.mark.parametrize("version", VERSIONS)
def test_a_corrupt_freelist_pointer_gives_partial_results_and_says_where(version):
    slub, cache = standard(version)
    slot = DIRECT_MAP + 10 * PAGE + 20 * 64 + cache.offset
    slub.ram.u64_at(slot, 0xDEAD_BEEF)
    allocator = slub.allocator()
    with pytest.raises(PartialError) as e:
        allocator.objects(allocator.find_cache("test_cache"))
    assert f"{slot:#x}" in str(e.value) and "test_cache" in str(e.value)
    assert e.value.partial, "the slabs walked before the bad one are kept"
    with pytest.raises(PartialError) as every:
        slub.allocator().all_stats()
    assert [r.cache.name for r in every.value.partial] == ["test_cache", "other"]
    assert every.value.partial[1].error == ""


def test_an_unreadable_slab_ends_the_walk_with_an_error_that_names_the_cache_once():
    slub, cache = standard()
    del slub.ram.pages[DIRECT_MAP + 10 * PAGE]
    allocator = slub.allocator()
    with pytest.raises(PartialError) as e:
        allocator.walk(allocator.find_cache("test_cache"))
    assert str(e.value).startswith("cache test_cache: ") and str(e.value).count("test_cache") == 1, str(e.value)
    slub.ram.u64_at(DIRECT_MAP + 10 * PAGE + 20 * 64 + cache.offset, 0xDEAD_BEEF)
    with pytest.raises(PartialError) as e:
        slub.allocator().walk(allocator.find_cache("test_cache"))
    assert str(e.value).count("test_cache") == 1, str(e.value)


def test_a_freelist_that_loops_ends_in_an_error():
    slub, cache = standard()
    first = DIRECT_MAP + 10 * PAGE + 10 * 64
    second = first + 10 * 64
    slub.ram.u64_at(second + cache.offset, slub.encode(cache, first, second + cache.offset))
    allocator = slub.allocator()
    with pytest.raises(PartialError, match="loops"):
        allocator.walk(allocator.find_cache("test_cache"))


def test_a_looping_partial_list_ends_in_an_error():
    slub, cache = standard()
    entry = slub.ram.u64(cache.node + 0x10)
    slub.ram.u64_at(entry, entry)
    allocator = slub.allocator()
    with pytest.raises(PartialError, match="partial list"):
        allocator.walk(allocator.find_cache("test_cache"))


def test_an_address_inside_an_object_names_its_cache_object_offset_and_state():
    slub, cache = standard()
    allocator = slub.allocator()
    base = DIRECT_MAP + 8 * PAGE
    found, obj, offset = allocator.object_at(base + 3 * 64 + 17)
    assert (found.name, obj.address, offset, obj.free) == ("test_cache", base + 3 * 64, 17, True)
    _, obj, _ = allocator.object_at(base + 2 * 64)
    assert not obj.free
    _, obj, _ = allocator.object_at(base + 64)                 # on the CPU's own freelist
    assert obj.free
    assert allocator.object_at(DIRECT_MAP + 20 * PAGE) is None


def test_reserved_pages_come_in_runs():
    slub, _ = standard()
    assert slub.allocator().reserved_runs() == [(0, 2)]


def test_an_unknown_cache_is_one_clear_error():
    slub, _ = standard()
    with pytest.raises(Exception, match="no slab cache named 'nope'"):
        slub.allocator().find_cache("nope")
