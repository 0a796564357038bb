"""Definitely and indirectly lost as valgrind splits them, over synthetic heaps of cycles,
trees and chains.

valgrind's manual ("Memory leak detection") defines the kinds for chains and trees; for
cycles it leaves open which block of a lost cycle is the definitely lost one, and what
happens when lost cycles point into each other.  Its clique walk (mc_leakcheck.c) visits
the unreached blocks in address order: each block not yet taken leads a clique and takes
every untaken block it reaches, a former leader taken this way becomes indirectly lost
and hands over its bytes, and an already taken block stops the walk.

Verified against valgrind 3.19 run natively on workloads/wl-cliques.c, with each
structure allocated in both orders (the workload picks its roles by address; blocks are
24..424 bytes there, records quoted as valgrind printed them):
- cycle into the leader of a lower cycle: "192 (40 direct, 152 indirect) bytes in 1 blocks
  are definitely lost"; the lower cycle's three blocks indirectly lost.
- cycle into a non-leader block of a lower cycle: both leaders stay, "168 (56 direct,
  112 indirect)" and "216 (72 direct, 144 indirect)".
- chain of three cycles into the next one's leader: one record, "936 (120 direct, 816
  indirect)"; the other order "(88 direct, 848 indirect)".
- two cycles pointing into each other: one record, "864 (136 direct, 728 indirect)".
- tree hanging off a cycle: "1,056 (168 direct, 888 indirect)", either order.
- cycle into an inner tree node: cycle first "1,112 (216 direct, 896 indirect)" and
  root "464 (232 direct, 232 indirect)"; tree first "(216 direct, 432 indirect)" and
  "(232 direct, 696 indirect)".
- tree leaf into a non-leader cycle block: cycle first "792 (264 direct, 528 indirect)"
  and "744 (248 direct, 496 indirect)"; tree first one record "(248 direct, 1,288
  indirect)".
- lost cycle with an interior pointer to a lower cycle's leader: "1,824 (312 direct,
  1,512 indirect)".
- an interior pointer from the roots, or from a still reachable block, into a cycle: all
  three blocks possibly lost; a start pointer from a still reachable block: all reachable.
- self loops: "392 bytes in 1 blocks are definitely lost"; pointed at by a lost block,
  "832 (408 direct, 424 indirect)".
"""
from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdb_memcheck.leakcheck import leaks
from gdb_memcheck.leakcheck.leaks import Kind

ROOT, HEAP, SLOT, SIZE = 0x1000, 0x10000, 0x100, 0x80
DEFINITE, INDIRECT, POSSIBLE, REACHABLE = Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE, Kind.REACHABLE


class Heap:
    """Named blocks of SIZE bytes at chosen slots (slot order is address order), the
    pointers they hold, and a root region."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.at: dict[str, int] = {}
        self.used: dict[int, int] = {}          # block or root address -> words written

    def block(self, name: str, slot: int) -> None:
        self.at[name] = HEAP + slot * SLOT

    def _store(self, where: int, value: int) -> None:
        n = self.used.get(where, 0)
        self.words[where + 8 * n] = value
        self.used[where] = n + 1

    def point(self, source: str, target: str, offset: int = 0) -> None:
        self._store(self.at[source], self.at[target] + offset)

    def root(self, target: str, offset: int = 0) -> None:
        self._store(ROOT, self.at[target] + offset)

    def read(self, addr: int, size: int) -> bytes:
        return b"".join(struct.pack("<Q", self.words.get(a, 0)) for a in range(addr, addr + size, 8))

    def classify(self) -> dict[str, tuple[Kind, int]]:
        """name -> (kind, indirect bytes)."""
        blocks = [leaks.Block(a, SIZE) for a in self.at.values()]
        leaks.classify(blocks, self.read, [leaks.Region(ROOT, ROOT + SLOT, "data")], [])
        by_address = {b.address: b for b in blocks}
        return {name: (by_address[a].kind, by_address[a].indirect) for name, a in self.at.items()}


def cycle(heap: Heap, name: str, slots: list[int]) -> list[str]:
    """Blocks name1..nameN at `slots`, each pointing at the next, the last at the first."""
    names = [f"{name}{i + 1}" for i in range(len(slots))]
    for n, slot in zip(names, slots):
        heap.block(n, slot)
    for a, b in zip(names, names[1:] + names[:1]):
        heap.point(a, b)
    return names


def tree(heap: Heap, name: str, slots: list[int]) -> list[str]:
    """A root (the first slot) with two children, leaves."""
    names = [name, f"{name}.left", f"{name}.right"]
    for n, slot in zip(names, slots):
        heap.block(n, slot)
    heap.point(name, names[1])
    heap.point(name, names[2])
    return names


def only_definite(kinds: dict[str, tuple[Kind, int]], **definite: int) -> dict[str, tuple[Kind, int]]:
    """The expected answer: the named blocks definitely lost with these indirect bytes,
    every other block indirectly lost."""
    return {name: (DEFINITE, definite[name]) if name in definite else (INDIRECT, 0) for name in kinds}


# -- cycles pointing into cycles ---------------------------------------------------------

def test_a_cycle_reaching_the_leader_of_a_lower_cycle_takes_it_in_with_its_bytes():
    heap = Heap()
    lower = cycle(heap, "b", [0, 1, 2])
    cycle(heap, "a", [3, 4, 5])
    heap.point("a2", lower[0])
    assert heap.classify() == only_definite(heap.at, a1=5 * SIZE)


def test_a_lower_cycle_reaching_a_higher_one_takes_all_of_it_whichever_block_it_hits():
    for target in ("b1", "b2", "b3"):
        heap = Heap()
        cycle(heap, "a", [0, 1, 2])
        cycle(heap, "b", [3, 4, 5])
        heap.point("a2", target)
        assert heap.classify() == only_definite(heap.at, a1=5 * SIZE), target


def test_a_pointer_to_a_block_a_lower_clique_already_took_leaves_both_leaders_definite():
    heap = Heap()
    cycle(heap, "b", [0, 1, 2])
    cycle(heap, "a", [3, 4, 5])
    heap.point("a2", "b2")
    assert heap.classify() == only_definite(heap.at, a1=2 * SIZE, b1=2 * SIZE)


def test_valgrinds_leak_cycle_program_has_4_definitely_and_14_indirectly_lost_blocks():
    # memcheck/tests/leak-cycle.c, the acceptance case of issue 15: six cycles of three,
    # allocated in order; two stand alone, then the higher of a pair points at the lower's
    # first block, then a pair whose first blocks point at each other
    heap = Heap()
    rings = [cycle(heap, f"r{n}.", [3 * n, 3 * n + 1, 3 * n + 2]) for n in range(6)]
    heap.point(rings[3][0], rings[2][0])
    heap.point(rings[4][0], rings[5][0])
    heap.point(rings[5][0], rings[4][0])
    kinds = [kind for kind, _ in heap.classify().values()]
    assert (kinds.count(DEFINITE), kinds.count(INDIRECT)) == (4, 14)


def test_a_cycle_is_led_by_its_lowest_block_not_by_its_first():
    heap = Heap()
    cycle(heap, "c", [2, 0, 1])
    assert heap.classify() == only_definite(heap.at, c2=2 * SIZE)


@pytest.mark.parametrize("placement", list(itertools.permutations(range(3))))
def test_a_chain_of_cycles_through_their_leaders_has_one_definite_block_in_any_order(placement):
    heap = Heap()
    rings = [cycle(heap, name, [3 * p, 3 * p + 1, 3 * p + 2]) for name, p in zip("xyz", placement)]
    heap.point(rings[0][1], rings[1][0])          # x -> y's leader -> z's leader
    heap.point(rings[1][1], rings[2][0])
    assert heap.classify() == only_definite(heap.at, x1=8 * SIZE)


@pytest.mark.parametrize("targets", [("a1", "b1"), ("a2", "b2"), ("a1", "b3")])
@pytest.mark.parametrize("b_lower", [False, True])
def test_two_cycles_pointing_into_each_other_are_one_clique_led_by_the_lowest_block(targets, b_lower):
    heap = Heap()
    cycle(heap, "a", [3, 4, 5] if b_lower else [0, 1, 2])
    cycle(heap, "b", [0, 1, 2] if b_lower else [3, 4, 5])
    heap.point("a2", targets[1])
    heap.point("b2", targets[0])
    leader = "b1" if b_lower else "a1"
    assert heap.classify() == only_definite(heap.at, **{leader: 5 * SIZE})


# -- cycles and trees -------------------------------------------------------------------

@pytest.mark.parametrize("tree_slots", [[0, 1, 2], [6, 7, 8], [2, 0, 8]])
def test_a_tree_hanging_off_a_cycle_is_indirectly_lost_wherever_it_lies(tree_slots):
    heap = Heap()
    cycle(heap, "c", [3, 4, 5])
    root = tree(heap, "t", tree_slots)[0]
    heap.point("c2", root)
    assert heap.classify() == only_definite(heap.at, c1=5 * SIZE)


@pytest.mark.parametrize("tree_first", [True, False])
def test_a_cycle_pointing_at_an_inner_tree_node_shares_the_tree_with_its_root(tree_first):
    heap = Heap()
    cycle(heap, "c", [4, 5, 6] if tree_first else [0, 1, 2])
    tree(heap, "t", [3, 7, 8] if tree_first else [7, 3, 8])
    heap.block("t.left.child", 9)
    heap.point("t.left", "t.left.child")
    heap.point("c2", "t.left")
    # the inner node and its child go to whichever leader valgrind meets first
    expected = dict(c1=2 * SIZE, t=3 * SIZE) if tree_first else dict(c1=4 * SIZE, t=SIZE)
    assert heap.classify() == only_definite(heap.at, **expected)


@pytest.mark.parametrize("cycle_first", [True, False])
def test_a_tree_pointing_at_a_non_leader_cycle_block_takes_the_cycle_only_if_it_comes_first(cycle_first):
    heap = Heap()
    cycle(heap, "c", [0, 1, 2] if cycle_first else [3, 4, 5])
    tree(heap, "t", [3, 4, 5] if cycle_first else [0, 1, 2])
    heap.point("t.right", "c2")
    expected = dict(c1=2 * SIZE, t=2 * SIZE) if cycle_first else dict(t=5 * SIZE)
    assert heap.classify() == only_definite(heap.at, **expected)


def test_a_leaf_below_the_cycle_takes_it_before_the_cycle_can_lead_itself():
    heap = Heap()
    tree(heap, "t", [5, 0, 6])
    cycle(heap, "c", [1, 2, 3])
    heap.point("t.left", "c2")
    assert heap.classify() == only_definite(heap.at, t=5 * SIZE)


# -- interior pointers and reachable blocks --------------------------------------------

def test_an_interior_pointer_from_the_roots_makes_the_whole_cycle_possibly_lost():
    heap = Heap()
    cycle(heap, "c", [0, 1, 2])
    heap.root("c2", 16)
    assert heap.classify() == {n: (POSSIBLE, 0) for n in heap.at}


def test_an_interior_pointer_from_a_lost_cycle_takes_a_leader_in_like_a_start_pointer():
    heap = Heap()
    cycle(heap, "b", [0, 1, 2])
    cycle(heap, "a", [3, 4, 5])
    heap.point("a2", "b1", 16)
    assert heap.classify() == only_definite(heap.at, a1=5 * SIZE)


def test_a_reachable_block_pointing_into_a_lost_cycle_makes_it_reachable():
    heap = Heap()
    cycle(heap, "c", [0, 1, 2])
    heap.block("holder", 3)
    heap.root("holder")
    heap.point("holder", "c2")
    assert heap.classify() == {n: (REACHABLE, 0) for n in heap.at}


def test_a_reachable_blocks_interior_pointer_into_a_cycle_leaves_it_possibly_lost():
    heap = Heap()
    cycle(heap, "c", [0, 1, 2])
    heap.block("holder", 3)
    heap.root("holder")
    heap.point("holder", "c2", 16)
    assert heap.classify() == {"holder": (REACHABLE, 0), **{n: (POSSIBLE, 0) for n in ("c1", "c2", "c3")}}


def test_a_lost_block_pointing_into_a_possibly_lost_cycle_takes_none_of_it():
    heap = Heap()
    cycle(heap, "c", [1, 2, 3])
    heap.root("c2", 16)
    heap.block("lost", 0)
    heap.point("lost", "c1")
    assert heap.classify() == {"lost": (DEFINITE, 0), **{n: (POSSIBLE, 0) for n in ("c1", "c2", "c3")}}


def test_a_self_loop_is_definitely_lost_until_another_lost_block_points_at_it():
    heap = Heap()
    heap.block("loop", 0)
    heap.point("loop", "loop")
    assert heap.classify() == {"loop": (DEFINITE, 0)}
    heap.block("holder", 1)
    heap.point("holder", "loop")
    assert heap.classify() == {"loop": (INDIRECT, 0), "holder": (DEFINITE, SIZE)}


# -- the accounting on any graph ---------------------------------------------------------

@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 12), edges=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=30),
       rooted=st.lists(st.integers(0, 11), max_size=2))
def test_every_lost_byte_is_counted_once_under_one_definitely_lost_leader(n, edges, rooted):
    heap = Heap()
    for i in range(n):
        heap.block(str(i), i)
    pointers = {(a % n, b % n) for a, b in edges}
    for a, b in sorted(pointers):
        heap.point(str(a), str(b))
    for r in rooted:
        heap.root(str(r % n))
    kinds = heap.classify()
    lost = {name for name, (kind, _) in kinds.items() if kind in (DEFINITE, INDIRECT)}
    leaders = {name for name in lost if kinds[name][0] is DEFINITE}
    assert sum(SIZE + kinds[name][1] for name in leaders) == SIZE * len(lost)
    assert all(kinds[name][1] == 0 for name in kinds if name not in leaders)
    pointed_from_lost = {str(b) for a, b in pointers if str(a) in lost and a != b}
    assert lost - pointed_from_lost <= leaders
    assert lost - leaders <= pointed_from_lost
