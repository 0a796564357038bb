"""What changed between two looks: map changes by address range (an mmap, a munmap and an
mprotect show as exactly the range each touched; a mapping that grew or shrank is one
resize), processes new, gone and resized, and loss records new or grown as valgrind's
`leak_check full increased` selects and prints them."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gdb_memcheck.changes.history import History
from gdb_memcheck.changes.leaks import Amounts, increased_records, leak_look
from gdb_memcheck.changes.mappings import (ADDED, CHANGED, REMOVED, RESIZED, RSS, attributes, everything_added,
                                           map_changes)
from gdb_memcheck.changes.processes import ProcessRecord, process_changes
from gdb_memcheck.leakcheck.leaks import Block, Kind, LeakReport, loss_records
from gdb_memcheck.linux.rss import Usage
from gdb_memcheck.linux.system import Mapping
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, VM_WRITE, Vma
from gdb_memcheck.report.deltas import leak_delta_text, maps_delta_text, ps_delta_text, record_delta_line

PAGE = 4096
RW, RO, RX = VM_READ | VM_WRITE, VM_READ, VM_READ | VM_EXEC
FILE_DEV, FILE_INODE = (0x2 << 20), 22


def vma(start: int, pages: int, flags: int = RW, name: str = "", offset: int | None = None) -> Vma:
    file = name.startswith("/")
    return Vma(0, start, start + pages * PAGE, flags, (offset or 0) if file else 0, FILE_DEV if file else 0,
               FILE_INODE if file else 0, name)


def maps(*vmas: Vma, rss: dict[int, int] | None = None) -> list[Mapping]:
    return [Mapping(v, Usage((rss or {}).get(v.start, 0))) for v in vmas]


def kinds(changes) -> list[tuple[str, int, int]]:
    return [(c.kind, c.start, c.end) for c in changes if c.kind != RSS]


A, B, C, HEAP, STACK = 0x7E00_0000_0000, 0x7E00_0010_0000, 0x7E00_0020_0000, 0x5555_5555_9000, 0x7FFF_FFFD_E000


def test_an_mmap_a_munmap_and_an_mprotect_of_a_middle_page_show_as_exactly_the_ranges_they_touched():
    before = maps(vma(A, 4), vma(B, 3))
    after = maps(vma(B, 1), vma(B + PAGE, 1, RO), vma(B + 2 * PAGE, 1), vma(C, 2))
    assert kinds(map_changes(before, after)) == [(REMOVED, A, A + 4 * PAGE), (CHANGED, B + PAGE, B + 2 * PAGE),
                                                 (ADDED, C, C + 2 * PAGE)]
    changed = map_changes(before, after)[1]
    assert changed.before.perms == "rw-p" and changed.now.perms == "r--p"


def test_a_mapping_that_grew_or_shrank_keeping_its_attributes_is_one_resize():
    before = maps(vma(HEAP, 33, name="[heap]"), vma(A, 8), vma(STACK, 33, name="[stack]"), rss={HEAP: 8 * PAGE})
    after = maps(vma(HEAP, 49, name="[heap]"), vma(A, 5), vma(STACK - 2 * PAGE, 35, name="[stack]"),
                 rss={HEAP: 24 * PAGE})
    changes = map_changes(before, after)
    assert kinds(changes) == [(RESIZED, HEAP, HEAP + 49 * PAGE), (RESIZED, A, A + 5 * PAGE),
                              (RESIZED, STACK - 2 * PAGE, STACK + 33 * PAGE)]
    assert changes[0].before.end == HEAP + 33 * PAGE and changes[0].rss_change == 16 * PAGE


def test_memory_mapped_next_to_a_mapping_and_merged_into_it_is_a_resize_of_that_mapping():
    assert kinds(map_changes(maps(vma(A, 2)), maps(vma(A - 2 * PAGE, 4)))) == [(RESIZED, A - 2 * PAGE, A + 2 * PAGE)]


def test_a_munmap_in_the_middle_of_a_mapping_is_the_range_removed_not_two_resizes():
    assert kinds(map_changes(maps(vma(A, 5)), maps(vma(A, 2), vma(A + 3 * PAGE, 2)))) == \
        [(REMOVED, A + 2 * PAGE, A + 3 * PAGE)]


def test_an_mprotect_that_lets_the_kernel_merge_the_neighbours_is_one_changed_range():
    before = maps(vma(A, 1), vma(A + PAGE, 1, RO), vma(A + 2 * PAGE, 1))
    assert kinds(map_changes(before, maps(vma(A, 3)))) == [(CHANGED, A + PAGE, A + 2 * PAGE)]


def test_the_same_file_at_another_offset_is_a_changed_range():
    before = maps(vma(A, 2, RO, "/bin/prog", offset=0))
    after = maps(vma(A, 2, RO, "/bin/prog", offset=0x3000))
    assert kinds(map_changes(before, after)) == [(CHANGED, A, A + 2 * PAGE)]
    assert attributes(before[0].vma, A + PAGE)[4] == PAGE


def test_a_mapping_whose_range_stayed_shows_its_rss_change_and_one_that_did_not_change_shows_nothing():
    before = maps(vma(A, 4), vma(B, 4), rss={A: PAGE, B: PAGE})
    after = maps(vma(A, 4), vma(B, 4), rss={A: 3 * PAGE, B: PAGE})
    changes = map_changes(before, after)
    assert [(c.kind, c.start, c.rss_change) for c in changes] == [(RSS, A, 2 * PAGE)]
    assert map_changes(before, before) == []


def test_with_no_look_before_every_mapping_is_added():
    assert kinds(everything_added(maps(vma(A, 1), vma(B, 2)))) == [(ADDED, A, A + PAGE), (ADDED, B, B + 2 * PAGE)]


PERMS = st.sampled_from([RW, RO, RX])


def random_map(draw_pages: list[tuple[int, int, int]]) -> list[Mapping]:
    """Non-overlapping VMAs from (gap pages, size pages, flags) triples."""
    out, at = [], A
    for gap, size, flags in draw_pages:
        at += gap * PAGE
        out.append(vma(at, size, flags))
        at += size * PAGE
    return maps(*out)


def page_attributes(mappings: list[Mapping]) -> dict[int, tuple]:
    return {page: attributes(m.vma, page) for m in mappings for page in range(m.vma.start, m.vma.end, PAGE)}


LAYOUT = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), PERMS), max_size=6)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(before=LAYOUT, after=LAYOUT)
def test_applying_the_changes_to_the_map_before_gives_the_map_after(before, after):
    """Page by page: removed and resized-away memory goes, added, changed and resized memory
    takes the attributes it has now; nothing else moves."""
    old, new = random_map(before), random_map(after)
    pages = page_attributes(old)
    for c in map_changes(old, new):
        if c.kind in (REMOVED, RESIZED):
            for page in range(c.before.start, c.before.end, PAGE):
                pages.pop(page, None)
        if c.kind in (ADDED, CHANGED, RESIZED):
            pages.update(page_attributes([Mapping(c.now)]))
    assert pages == page_attributes(new)


# -- processes ---------------------------------------------------------------------------

def proc(pid: int, comm: str, vsz: int, rss: int, exe: str = "") -> ProcessRecord:
    return ProcessRecord(pid, 1, "S", comm, exe or f"/bin/{comm}", vsz, rss, False)


def test_processes_new_gone_and_resized_and_a_pid_reused_by_another_program():
    before = [proc(1, "init", 2260, 1720), proc(85, "wl-maps", 10944, 1740), proc(90, "sh", 2260, 900),
              proc(95, "sleep", 2260, 1440)]
    after = [proc(1, "init", 2260, 1720), proc(85, "wl-maps", 11968, 1800), proc(95, "wl-leak", 2672, 1612),
             proc(99, "sleep", 2260, 1440)]
    changes = process_changes(before, after)
    assert [(c.kind, c.record.pid, c.record.comm) for c in changes] == [
        ("resized", 85, "wl-maps"), ("new", 95, "wl-leak"), ("new", 99, "sleep"), ("gone", 90, "sh"),
        ("gone", 95, "sleep")]
    assert (changes[0].vsz_change, changes[0].rss_change) == (1024, 60)
    assert changes[-1].rss_change == -1440


def test_the_process_delta_marks_new_gone_and_resized_rows():
    text = ps_delta_text(process_changes([proc(90, "sh", 2048, 1024)], [proc(91, "sh", 4096, 2048)]), "the previous ps")
    assert text.splitlines()[0] == "processes since the previous ps: 1 new, 1 gone"
    assert text.splitlines()[2].startswith("+     91      1 S        4        2       +4       +2 /bin/sh")
    assert text.splitlines()[3].startswith("-     90      1 S        2        1       -2       -1 /bin/sh")


def test_the_map_delta_says_what_each_range_was():
    text = maps_delta_text(map_changes(maps(vma(HEAP, 1, name="[heap]"), vma(A, 2)),
                                       maps(vma(HEAP, 2, name="[heap]"), vma(A, 1), vma(A + PAGE, 1, RO))), "then")
    assert "mappings since then: 1 changed, 1 resized" in text
    assert "was rw-p 00000000 00:00 0" in text and f"was {HEAP:08x}-{HEAP + PAGE:08x}" in text


# -- loss records ------------------------------------------------------------------------

MALLOC, LEAK_A, LEAK_GROW, LEAK_C = 0x7FFF_F7E7_8930, 0x5555_5555_521D, 0x5555_5555_5339, 0x5555_5555_52AB


def block(address: int, size: int, site: int, kind: Kind = Kind.DEFINITE, indirect: int = 0) -> Block:
    return Block(address, size, kind, stack=(MALLOC, site) if site else (), indirect=indirect)


def report(blocks: list[Block], mode: str = "tracking") -> LeakReport:
    return LeakReport(102, "wl-phases", mode, blocks, "header")


def test_only_records_new_or_grown_since_the_previous_check_are_shown_with_their_amounts_before():
    first = report([block(0x1000, 100, LEAK_A), block(0x2000, 48, LEAK_GROW), block(0x3000, 4096, 0, Kind.REACHABLE)])
    second = report(first.blocks + [block(0x4000, 48, LEAK_GROW), block(0x5000, 300, LEAK_C)])
    deltas = increased_records(loss_records(second.reported(False)), leak_look(first))
    assert [(d.record.stack[1], d.now, d.before, d.is_new) for d in deltas] == [
        (LEAK_GROW, Amounts(96, 0, 2), Amounts(48, 0, 1), False), (LEAK_C, Amounts(300, 0, 1), Amounts(), True)]
    assert [d.number for d in deltas] == [1, 3] and deltas[0].of == 4, "the still-reachable record counts"


def test_a_record_that_shrank_or_stayed_is_not_shown_and_indirect_growth_is():
    first = report([block(0x1000, 56, LEAK_A, indirect=56), block(0x2000, 48, LEAK_GROW), block(0x2100, 48, LEAK_GROW)])
    second = report([block(0x1000, 56, LEAK_A, indirect=168), block(0x2000, 48, LEAK_GROW)])
    records = loss_records(second.reported(False))
    assert [d.record.stack[1] for d in increased_records(records, leak_look(first))] == [LEAK_A]


def test_without_stacks_records_are_matched_by_block_size_and_kind():
    first = report([block(0x1000, 56, 0), block(0x2000, 104, 0)], mode="scan")
    second = report(first.blocks + [block(0x3000, 56, 0), block(0x4000, 104, 0, Kind.POSSIBLE)], mode="scan")
    deltas = increased_records(loss_records(second.reported(False)), leak_look(first))
    assert [(d.record.kind, d.record.blocks[0].size, d.now.blocks, d.before.blocks) for d in deltas] == [
        (Kind.POSSIBLE, 104, 1, 0), (Kind.DEFINITE, 56, 2, 1)]


def test_a_record_line_reads_as_valgrinds_leak_check_full_increased():
    first = report([block(0x2000, 48, LEAK_GROW), block(0x9000, 56, LEAK_A, indirect=112)])
    second = report([block(0x2000, 48, LEAK_GROW), block(0x2100, 48, LEAK_GROW),
                     block(0x9000, 56, LEAK_A, indirect=168)])
    records = loss_records(second.reported(False))
    lines = [record_delta_line(d) for d in increased_records(records, leak_look(first))]
    assert lines == ["96 (+48) bytes in 2 (+1) blocks are definitely lost in loss record 1 of 2",
                     "224 (+56) (56 (+0) direct, 168 (+56) indirect) bytes in 1 (+0) blocks are definitely lost in "
                     "loss record 2 of 2"]


def test_the_leak_summary_gives_each_amounts_change_as_valgrind_does():
    first, second = report([block(0x1000, 100, LEAK_A)]), report([block(0x1000, 100, LEAK_A), block(0x2000, 48, LEAK_GROW)])
    look_first, look_second = leak_look(first), leak_look(second)
    deltas = increased_records(loss_records(second.reported(False)), look_first)
    text = leak_delta_text(second, deltas, (look_second.summaries[False], look_first.summaries[False]), "then")
    assert "   definitely lost:  148 (+48) bytes in 2 (+1) blocks" in text
    assert "   still reachable:  0 (+0) bytes in 0 (+0) blocks" in text


def test_the_history_gives_back_the_look_before_and_where_it_was_taken():
    clock = iter([10.0, 12.5, 20.0])
    history = History(lambda: next(clock))
    assert history.swap("ps", [1], "live") is None
    before = history.swap("ps", [2], "/tmp/a.elf")
    assert (before.value, before.source, before.describe(20.0)) == ([1], "live", "live, 10.0 s ago")
    assert history.swap("ps", [3], "live").describe(21.0) == "dump /tmp/a.elf, 8.5 s ago"
