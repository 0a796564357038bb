"""The tracking-mode allocation map: what each malloc-family call does to it, as the
debugger reports entries (arguments, rsp, stack) and returns (rsp, rax)."""
from __future__ import annotations

import pytest

from gdb_memcheck.leakcheck.alloctrack import RECENT_FREES, AllocationTracker, Origin

PID, TID = 100, 100
RSP = 0x7FFF_F000
STACK = (0x7000_1000, 0x5555_1234)
NO_MEMORY = {}.__getitem__


def call(tracker: AllocationTracker, via: str, args: list[int], result: int | None = None, *,
         rsp: int = RSP, memory=NO_MEMORY, tid: int = TID, stack=STACK):
    """One call: its entry, and its return when `result` is given.  Returns the bad free, if any."""
    args = args + [0] * (4 - len(args))
    wait, bad = tracker.entry(PID, tid, via, args, rsp, stack)
    if result is not None:
        assert wait
        assert tracker.returned(PID, tid, rsp, result, memory)
    return bad


@pytest.fixture
def tracker() -> AllocationTracker:
    t = AllocationTracker()
    t.track(PID)
    return t


def blocks(tracker: AllocationTracker) -> dict[int, int]:
    return {a.address: a.size for a in tracker.processes[PID].live()}


def test_malloc_records_the_exact_size_and_the_stack_at_entry(tracker):
    call(tracker, "malloc", [40], 0x1000)
    block = tracker.processes[PID].blocks[0x1000]
    assert (block.size, block.via, block.stack, block.origin) == (40, "malloc", STACK, Origin.OWN)


@pytest.mark.parametrize("via, args, size", [
    ("calloc", [10, 24], 240), ("memalign", [64, 96], 96), ("aligned_alloc", [64, 100], 100),
    ("valloc", [10], 10), ("pvalloc", [10], 4096), ("reallocarray", [0, 3, 8], 24),
])
def test_each_allocator_takes_its_size_from_its_own_arguments(tracker, via, args, size):
    call(tracker, via, args, 0x2000)
    assert blocks(tracker) == {0x2000: size}


def test_posix_memalign_stores_the_block_through_its_first_argument(tracker):
    call(tracker, "posix_memalign", [0x7FFF_0010, 64, 96], 0, memory={0x7FFF_0010: 0x3000}.__getitem__)
    assert blocks(tracker) == {0x3000: 96}


def test_a_failed_call_records_nothing(tracker):
    call(tracker, "malloc", [1 << 60], 0)
    call(tracker, "posix_memalign", [0x7FFF_0010, 64, 96], 12)
    assert blocks(tracker) == {}


def test_free_forgets_the_block_and_free_of_null_is_nothing(tracker):
    call(tracker, "malloc", [8], 0x1000)
    assert call(tracker, "free", [0x1000]) is None
    assert call(tracker, "free", [0]) is None
    assert blocks(tracker) == {} and tracker.bad_frees == []


def test_realloc_moves_the_block_and_realloc_to_zero_frees_it(tracker):
    call(tracker, "malloc", [16], 0x1000)
    call(tracker, "realloc", [0x1000, 200], 0x2000)
    assert blocks(tracker) == {0x2000: 200}
    call(tracker, "realloc", [0x2000, 300], 0x2000)
    assert blocks(tracker) == {0x2000: 300}
    call(tracker, "realloc", [0x2000, 0], 0)
    assert blocks(tracker) == {}


def test_a_failed_realloc_keeps_the_old_block(tracker):
    call(tracker, "malloc", [16], 0x1000)
    call(tracker, "realloc", [0x1000, 1 << 60], 0)
    assert blocks(tracker) == {0x1000: 16}


def test_calls_made_inside_a_tracked_call_are_not_counted_twice(tracker):
    wait, _ = tracker.entry(PID, TID, "realloc", [0, 64, 0, 0], RSP, STACK)
    assert wait
    nested, _ = tracker.entry(PID, TID, "malloc", [64, 0, 0, 0], RSP - 0x40, STACK, from_allocator=True)
    assert not nested
    assert tracker.returned(PID, TID, RSP, 0x1000, NO_MEMORY)
    assert blocks(tracker) == {0x1000: 64}


def test_a_call_that_never_returned_is_replaced_by_the_threads_next_call(tracker):
    tracker.entry(PID, TID, "malloc", [64, 0, 0, 0], RSP, STACK)     # left by longjmp or a signal
    wait, _ = tracker.entry(PID, TID, "malloc", [16, 0, 0, 0], RSP - 0x100, STACK)
    assert wait
    assert tracker.returned(PID, TID, RSP - 0x100, 0x2000, NO_MEMORY)
    assert blocks(tracker) == {0x2000: 16}


def test_a_return_site_reached_at_another_depth_or_by_another_thread_is_not_the_return(tracker):
    tracker.entry(PID, TID, "malloc", [8, 0, 0, 0], RSP, STACK)
    assert not tracker.returned(PID, TID, RSP + 0x100, 0x1000, NO_MEMORY)
    assert not tracker.returned(PID, TID + 1, RSP, 0x1000, NO_MEMORY)
    assert not tracker.returned(PID + 1, TID, RSP, 0x1000, NO_MEMORY)
    assert tracker.returned(PID, TID, RSP, 0x1000, NO_MEMORY)


def test_a_second_free_is_a_double_free_that_names_the_block_and_its_first_free(tracker):
    call(tracker, "malloc", [24], 0x1000, stack=(1, 2))
    call(tracker, "free", [0x1000], stack=(3, 4))
    bad = call(tracker, "free", [0x1000], stack=(5, 6))
    assert (bad.kind, bad.address, bad.block.size, bad.block.stack, bad.freed_by, bad.stack) == \
        ("double free", 0x1000, 24, (1, 2), (3, 4), (5, 6))
    assert tracker.bad_frees == [bad]


def test_a_block_allocated_again_at_a_freed_address_can_be_freed(tracker):
    call(tracker, "malloc", [24], 0x1000)
    call(tracker, "free", [0x1000])
    call(tracker, "malloc", [24], 0x1000)
    assert call(tracker, "free", [0x1000]) is None


def test_a_free_of_a_pointer_never_allocated_is_invalid(tracker):
    bad = call(tracker, "free", [0x5555_8000])
    assert (bad.kind, bad.block) == ("invalid free", None)
    assert "is not malloc'd or (recently) free'd" in bad.text()


def test_realloc_of_a_wild_pointer_is_invalid_too(tracker):
    bad = call(tracker, "realloc", [0x5555_8000, 10], None)
    assert bad.kind == "invalid free" and bad.via == "realloc"


def test_unknown_frees_are_only_counted_when_the_map_may_be_incomplete():
    t = AllocationTracker()
    t.track(PID, complete=False)
    assert call(t, "free", [0x5555_8000]) is None
    assert t.processes[PID].untracked_frees == 1 and t.bad_frees == []


def test_fork_gives_the_child_the_parents_blocks_marked_inherited(tracker):
    call(tracker, "malloc", [24], 0x1000)
    assert tracker.forked(PID, PID + 1)
    child = tracker.processes[PID + 1]
    assert [(a.address, a.size, a.origin) for a in child.live()] == [(0x1000, 24, Origin.INHERITED)]
    assert tracker.processes[PID].blocks[0x1000].origin == Origin.OWN
    assert not tracker.forked(PID + 5, PID + 6)


def test_blocks_before_main_are_transition_and_seeded_blocks_keep_their_origin():
    t = AllocationTracker()
    t.track(PID, in_main=False, since="exec")
    t.seed(PID, [(0x500, 32)], Origin.TRANSITION)
    call(t, "malloc", [8], 0x1000)
    t.processes[PID].in_main = True
    call(t, "malloc", [8], 0x2000)
    origins = {a.address: a.origin for a in t.processes[PID].live()}
    assert origins == {0x500: Origin.TRANSITION, 0x1000: Origin.TRANSITION, 0x2000: Origin.OWN}


def test_the_memory_of_frees_is_bounded(tracker):
    for i in range(RECENT_FREES + 10):
        call(tracker, "malloc", [8], 0x1000 + 16 * i)
        call(tracker, "free", [0x1000 + 16 * i])
    assert len(tracker.processes[PID].freed) == RECENT_FREES


def test_a_thread_that_exits_inside_a_call_leaves_nothing_pending(tracker):
    tracker.entry(PID, TID + 1, "malloc", [8, 0, 0, 0], RSP, STACK)
    tracker.thread_exited(PID, TID + 1)
    assert tracker.processes[PID].pending == {}


def test_a_child_freeing_what_its_parent_freed_before_fork_frees_it_twice(tracker):
    call(tracker, "malloc", [24], 0x1000)
    call(tracker, "free", [0x1000])
    tracker.forked(PID, PID + 1)
    wait, bad = tracker.entry(PID + 1, PID + 1, "free", [0x1000, 0, 0, 0], RSP, STACK)
    assert bad.kind == "double free" and bad.pid == PID + 1
