"""IntervalMap: disjoint half-open intervals found by address."""
import random

import pytest

from gdb_memcheck.intervals import Interval, IntervalMap


def filled(*spans: tuple[int, int]) -> IntervalMap[str]:
    imap: IntervalMap[str] = IntervalMap()
    for start, end in spans:
        imap.add(start, end, f"{start:#x}")
    return imap


def test_find_returns_the_interval_holding_the_address():
    imap = filled((0x1000, 0x2000), (0x3000, 0x3100))
    assert imap.find(0x1000) == Interval(0x1000, 0x2000, "0x1000")
    assert imap.find(0x1fff).start == 0x1000
    assert imap.find(0x30ff).value == "0x3000"


def test_intervals_are_half_open_so_the_end_address_is_outside():
    imap = filled((0x1000, 0x2000), (0x2000, 0x2001))
    assert imap.find(0x2000).start == 0x2000
    assert imap.find(0x2001) is None


def test_find_returns_none_before_between_and_after_intervals():
    imap = filled((0x1000, 0x2000), (0x3000, 0x4000))
    assert [imap.find(a) for a in (0, 0xfff, 0x2000, 0x2fff, 0x4000, 1 << 64)] == [None] * 6


def test_find_on_an_empty_map_returns_none():
    assert IntervalMap().find(0x1234) is None


def test_floor_returns_the_last_interval_starting_at_or_before_the_address():
    imap = filled((0x1000, 0x2000), (0x3000, 0x4000))
    assert imap.floor(0x2fff).start == 0x1000
    assert imap.floor(0x3000).start == 0x3000
    assert imap.floor(0xfff) is None


@pytest.mark.parametrize("start, end", [(0x1800, 0x1900), (0xf00, 0x1001), (0x1fff, 0x2800), (0, 1 << 20)])
def test_add_refuses_an_interval_overlapping_an_existing_one(start, end):
    imap = filled((0x1000, 0x2000))
    with pytest.raises(ValueError, match="overlaps"):
        imap.add(start, end, "x")
    assert len(imap) == 1


@pytest.mark.parametrize("start, end", [(0x1000, 0x1000), (0x2000, 0x1000)])
def test_add_refuses_an_empty_interval(start, end):
    with pytest.raises(ValueError, match="empty"):
        IntervalMap().add(start, end, "x")


def test_add_accepts_intervals_that_only_touch():
    imap = filled((0x1000, 0x2000), (0x3000, 0x4000))
    imap.add(0x2000, 0x3000, "middle")
    assert imap.find(0x2fff).value == "middle"
    assert len(imap) == 3


def test_remove_drops_the_interval_starting_there_and_returns_it():
    imap = filled((0x1000, 0x2000), (0x3000, 0x4000))
    assert imap.remove(0x1000) == Interval(0x1000, 0x2000, "0x1000")
    assert imap.find(0x1800) is None
    assert len(imap) == 1


def test_remove_of_an_address_where_no_interval_starts_raises_key_error():
    imap = filled((0x1000, 0x2000))
    with pytest.raises(KeyError):
        imap.remove(0x1800)


def test_overlapping_lists_every_interval_sharing_an_address_in_address_order():
    imap = filled((0x1000, 0x2000), (0x2000, 0x2800), (0x3000, 0x4000), (0x5000, 0x6000))
    assert [i.start for i in imap.overlapping(0x1fff, 0x3001)] == [0x1000, 0x2000, 0x3000]
    assert [i.start for i in imap.overlapping(0x2800, 0x3000)] == []
    assert [i.start for i in imap.overlapping(0, 1 << 64)] == [0x1000, 0x2000, 0x3000, 0x5000]


def test_overlapping_an_empty_range_is_empty():
    assert filled((0x1000, 0x2000)).overlapping(0x1800, 0x1800) == []


def test_iteration_is_in_address_order_whatever_the_insertion_order():
    imap = filled((0x5000, 0x6000), (0x1000, 0x2000), (0x3000, 0x4000))
    assert [i.start for i in imap] == [0x1000, 0x3000, 0x5000]


def test_clear_forgets_every_interval():
    imap = filled((0x1000, 0x2000), (0x3000, 0x4000))
    imap.clear()
    assert len(imap) == 0 and imap.find(0x1000) is None


def test_lookups_agree_with_a_linear_scan_over_random_intervals():
    rng = random.Random(7)
    imap: IntervalMap[int] = IntervalMap()
    spans = []
    for index in range(300):
        start = rng.randrange(0, 1 << 20)
        end = start + rng.randrange(1, 4096)
        if not any(s < end and start < e for s, e in spans):
            imap.add(start, end, index)
            spans.append((start, end))
    for addr in (rng.randrange(0, 1 << 20) for _ in range(2000)):
        expected = [s for s, e in spans if s <= addr < e]
        found = imap.find(addr)
        assert (found.start if found else None) == (expected[0] if expected else None)
