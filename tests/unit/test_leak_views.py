"""Leak reports as text (valgrind's loss records), in the emulator memcheck's per-block
layout, and as JSON; forgiven blocks only with --all."""
from __future__ import annotations

from gdb_memcheck.leakcheck.alloctrack import Allocation, BadFree, Origin
from gdb_memcheck.leakcheck.leaks import Block, Kind, LeakReport, Region, classify
from gdb_memcheck.symbols.stackframes import Frame
from gdb_memcheck.report.views import leak_report_json, leak_report_memcheck, leak_report_text

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
MALLOC = Frame(0x7FFF_F7E7_8930, LIBC, 0x98930, "malloc")
CALLER = Frame(0x5555_5555_526B, "/bin/prog", 0x126B, "leak_here", "prog.c", 31, "/src")
STACK = (MALLOC.pc, CALLER.pc)
FRAMES = {MALLOC.pc: MALLOC, CALLER.pc: CALLER}
LOST = [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE]


def report(*blocks: Block, bad=()) -> LeakReport:
    return LeakReport(7, "prog", "tracking", list(blocks), "header", "/bin/prog", dict(FRAMES), list(bad))


def block(address: int, size: int, kind: Kind, origin: str = "own", stack=STACK) -> Block:
    return Block(address, size, kind, stack=stack, origin=origin, via="malloc")


def test_blocks_with_one_stack_make_one_loss_record_with_its_frames():
    text = leak_report_text(report(block(0x1000, 40, Kind.DEFINITE), block(0x2000, 40, Kind.DEFINITE)), LOST)
    assert ("80 bytes in 2 blocks are definitely lost in loss record 1 of 1\n"
            f"   at {MALLOC.pc:#x}: malloc [{LIBC}+0x98930]\n"
            f"   by {CALLER.pc:#x}: leak_here (prog.c:31) [/bin/prog+0x126b]\n") in text
    assert "definitely lost:  80 bytes in 2 blocks" in text


def test_records_are_ordered_by_bytes_smallest_first():
    text = leak_report_text(report(block(0x1000, 400, Kind.DEFINITE, stack=(1,)),
                                   block(0x2000, 40, Kind.POSSIBLE, stack=(2,))), LOST)
    assert text.index("40 bytes in 1 blocks are possibly lost in loss record 1 of 2") < \
        text.index("400 bytes in 1 blocks are definitely lost in loss record 2 of 2")


def test_hidden_still_reachable_records_keep_their_numbers_as_in_valgrind():
    """valgrind --leak-check=full on malloc(10) kept, malloc(100) and malloc(200) dropped and
    malloc(5000) kept printed "100 bytes ... in loss record 2 of 4" and "200 ... 3 of 4"."""
    text = leak_report_text(report(block(0x1000, 10, Kind.REACHABLE, stack=(1,)), block(0x2000, 100, Kind.DEFINITE,
                                                                                      stack=(2,)),
                                   block(0x3000, 200, Kind.DEFINITE, stack=(3,)),
                                   block(0x4000, 5000, Kind.REACHABLE, stack=(4,))), LOST)
    assert [line.split(" are ")[1] for line in text.splitlines() if " in loss record " in line] == [
        "definitely lost in loss record 2 of 4", "definitely lost in loss record 3 of 4"]


def test_forgiven_blocks_are_counted_but_shown_only_with_all():
    r = report(block(0x1000, 40, Kind.DEFINITE), block(0x2000, 24, Kind.DEFINITE, origin="inherited"))
    assert "24 bytes" not in leak_report_text(r, LOST)
    assert "forgiven:         1 blocks" in leak_report_text(r, LOST)
    assert "24 bytes in 1 blocks are definitely lost (inherited) in loss record" in leak_report_text(r, LOST, True)
    assert [b["origin"] for b in leak_report_json(r, True)["blocks"]] == ["own", "inherited"]
    assert leak_report_json(r)["summary"]["definitely lost"] == {"bytes": 40, "blocks": 1}


def test_still_reachable_blocks_appear_only_when_asked():
    r = report(block(0x1000, 48, Kind.REACHABLE))
    assert "loss record" not in leak_report_text(r, LOST)
    assert "48 bytes in 1 blocks are still reachable" in leak_report_text(r, LOST + [Kind.REACHABLE])


def test_memcheck_format_gives_each_lost_block_its_frames_relative_to_their_modules():
    text = leak_report_memcheck(report(block(0x1000, 40, Kind.DEFINITE), block(0x3000, 8, Kind.REACHABLE)))
    assert text == (
        "memcheck: Process /bin/prog[pid=7] is exiting leaking allocated blocks:\n"
        " Leaked block 1:\n"
        "   Block 0x1000 size 40 (definitely lost) allocated by malloc\n"
        " Call stack:\n"
        f"   Frame 0: PC={MALLOC.pc:#010x} (relative 0x00098930) in module {LIBC}\n"
        "   Routine malloc\n"
        f"   Frame 1: PC={CALLER.pc:#010x} (relative 0x0000126b) in module /bin/prog\n"
        "   Routine leak_here @ /src/prog.c:31\n"
        "memcheck: Process /bin/prog[pid=7] is leaking 1 allocated blocks.\n")


def test_bad_frees_lead_the_report_with_both_stacks():
    first = Allocation(0x1000, 24, "malloc", STACK, Origin.OWN, 1)
    bad = BadFree(7, 7, "double free", "free", 0x1000, STACK, first, STACK)
    text = leak_report_text(report(bad=[bad]), LOST)
    assert text.splitlines()[1] == ("Invalid free: free(0x1000) by pid 7/7: double free; 0x1000 is 0 bytes "
                                    "inside a block of size 24 free'd before")
    assert " Block was free'd at" in text
    doc = leak_report_json(report(bad=[bad]))["bad_frees"][0]
    assert doc["allocated_by"][1]["function"] == "leak_here" and doc["block_size"] == 24


def test_scan_blocks_without_stacks_are_grouped_by_size_and_listed_by_address():
    r = LeakReport(7, "prog", "scan", [Block(0x1000, 32, Kind.DEFINITE), Block(0x2000, 32, Kind.DEFINITE)], "h")
    text = leak_report_text(r, LOST)
    assert "64 bytes in 2 blocks are definitely lost in loss record 1 of 1" in text
    assert "allocation stack unknown (scan mode); blocks at 0x1000, 0x2000" in text


def two_lost_cycles() -> LeakReport:
    """Issue 15's shape, classified: two cycles of three 16-byte blocks, a block of the higher
    one pointing at the first block of the lower one, nothing else pointing into either."""
    lower, higher = [0x1000, 0x1020, 0x1040], [0x2000, 0x2020, 0x2040]
    words = {a: b for ring in (lower, higher) for a, b in zip(ring, ring[1:] + ring[:1])}
    words[higher[1] + 8] = lower[0]
    read = lambda addr, size: b"".join(words.get(a, 0).to_bytes(8, "little") for a in range(addr, addr + size, 8))
    blocks = [Block(a, 16) for a in lower + higher]
    classify(blocks, read, [Region(0x100, 0x200, "data")], [])
    return LeakReport(7, "prog", "scan", blocks, "h")


def test_a_definitely_lost_record_shows_the_bytes_lost_through_it_as_valgrind_does():
    text = leak_report_text(two_lost_cycles(), LOST)
    assert "80 bytes in 5 blocks are indirectly lost in loss record 1 of 2\n" in text
    assert "96 (16 direct, 80 indirect) bytes in 1 blocks are definitely lost in loss record 2 of 2\n" in text
    assert "definitely lost:  16 bytes in 1 blocks\n   indirectly lost:  80 bytes in 5 blocks\n" in text


def test_json_carries_direct_and_indirect_bytes_per_record_and_per_block():
    doc = leak_report_json(two_lost_cycles())
    definite = [r for r in doc["loss_records"] if r["kind"] == "definitely lost"]
    assert definite == [{"kind": "definitely lost", "origin": "own", "blocks": 1, "total_bytes": 96,
                         "direct_bytes": 16, "indirect_bytes": 80, "addresses": ["0x2000"]}]
    assert {b["address"]: b["indirect_bytes"] for b in doc["blocks"] if b["indirect_bytes"]} == {"0x2000": 80}
    assert doc["summary"]["indirectly lost"] == {"bytes": 80, "blocks": 5}


def test_memcheck_format_lists_every_lost_block_with_its_own_kind():
    text = leak_report_memcheck(two_lost_cycles())
    assert text.count("(indirectly lost)") == 5 and text.count("(definitely lost)") == 1
    assert "Block 0x2000 size 16 (definitely lost)" in text
    assert text.endswith("is leaking 6 allocated blocks.\n")


def test_records_are_ordered_by_total_bytes_indirect_ones_included():
    r = report(Block(0x1000, 16, Kind.DEFINITE, stack=(1,), indirect=80), block(0x2000, 90, Kind.POSSIBLE, stack=(2,)))
    text = leak_report_text(r, LOST)
    assert text.index("90 bytes in 1 blocks are possibly lost in loss record 1 of 2") < \
        text.index("96 (16 direct, 80 indirect) bytes in 1 blocks are definitely lost in loss record 2 of 2")


def test_records_of_equal_size_follow_valgrinds_kind_order():
    kinds = [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE, Kind.REACHABLE]
    r = report(*(block(0x1000 * (i + 1), 40, kind, stack=(i,)) for i, kind in enumerate(kinds)))
    records = [line for line in leak_report_text(r, kinds).splitlines() if "loss record" in line]
    assert [line.split(" are ")[1].split(" in loss")[0] for line in records] == \
        ["still reachable", "possibly lost", "indirectly lost", "definitely lost"]
