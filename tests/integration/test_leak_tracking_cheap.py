"""The leak-tracking checks again with the cheaper settings together: one stop on the
allocator's own return instructions (malloc-stops return) and no stop at free (free-stops
off).  Where the documented differences apply, the checks are restated: a block malloc
handed out has its usable size, derived here from the program's own request by glibc's
chunk rule, and bad frees are not detected; everything else holds as in the default."""
from __future__ import annotations

import re

import pytest

import test_leak_tracking
from labtools import guestlab
from test_leaks import leak_summary, run_valgrind
from test_leak_tracking import (  # noqa: F401  (the checks, rerun with these settings)
    CATEGORY, children, ground_truth, program_pid,
    test_a_forked_child_leaking_inherited_blocks_reports_nothing_unless_all,
    test_a_program_without_malloc_symbols_executed_under_tracking_is_left_alone_with_a_note,
    test_a_tracked_running_process_is_reported_from_its_map_and_scan_mode_stays_available,
    test_attaching_to_a_running_process_forgives_what_it_had_before,
    test_every_tracked_process_left_a_report_and_no_handler_failed,
    test_leak_stacks_name_the_leaking_function_and_its_allocation_line)

tracked = test_leak_tracking.tracked             # the fixture, which reads SETTINGS from this module
BOOT = guestlab.BootOptions()
SETTINGS = ["set memcheck malloc-stops return", "set memcheck free-stops off"]
PAGE = 4096


def usable(request: int, via: str) -> int:
    """What malloc_usable_size() gives for a request (glibc 2.36 on x86-64): a chunk of the
    request plus its 8-byte header, 16-aligned and at least 32 bytes, owns all but that header;
    from 128 KiB a chunk is mmapped whole pages and keeps a 16-byte header.  Only blocks seen at
    malloc's return have it; calloc, realloc and posix_memalign keep their exact requests."""
    if via != "malloc":
        return request
    if request >= 128 * 1024:
        return (request + 16 + PAGE - 1) // PAGE * PAGE - 16
    return max(32, (request + 8 + 15) // 16 * 16) - 8


def sizes_and_vias(log: str) -> dict[int, str]:
    return {int(m[0], 16): m[1] for m in re.findall(r"^GT \w+ addr=(0x[0-9a-f]+) size=\d+ via=(\w+)", log, re.M)}


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_tracking_reports_exactly_the_programs_lost_blocks_with_malloc_blocks_at_their_usable_size(tracked, name):
    log = tracked["logs"][name]
    report = tracked["reports"][program_pid(log, name)]
    lost = {int(b["address"], 16): b for b in report["blocks"] if b["kind"] != "still reachable"}
    expected = {t["addr"]: t for t in ground_truth(log) if t["kind"] in ("definite", "indirect", "possible")}
    vias = sizes_and_vias(log)
    assert set(lost) == set(expected)
    for addr, t in expected.items():
        assert lost[addr]["kind"] == CATEGORY[t["kind"]], hex(addr)
        assert lost[addr]["size"] == usable(t["size"], vias.get(addr, "malloc")), hex(addr)


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_freed_blocks_found_by_the_heap_scan_are_never_lost(tracked, name):
    log = tracked["logs"][name]
    blocks = {int(b["address"], 16): b for b in tracked["reports"][program_pid(log, name)]["blocks"]}
    truth = ground_truth(log)
    live_again = {t["addr"] for t in truth if t["kind"] != "freed"}
    for t in truth:
        if t["kind"] == "reachable":
            assert blocks[t["addr"]]["kind"] == "still reachable"
        if t["kind"] == "freed" and t["addr"] not in live_again:
            assert t["addr"] not in blocks
    assert "frees found by heap scans, bad frees not checked" in tracked["reports"][program_pid(log, name)]["header"]


def test_tracked_lost_blocks_equal_valgrinds_and_bytes_are_at_least_its_requests(tracked, guest):
    report = tracked["reports"][program_pid(tracked["logs"]["wl-leak"], "wl-leak")]
    theirs = leak_summary(run_valgrind(guest.sysroot / "bin" / "wl-leak").stderr)
    for kind, (vbytes, vblocks) in theirs.items():
        assert report["summary"][kind]["blocks"] == vblocks, kind
        assert vbytes <= report["summary"][kind]["bytes"] < vbytes + 24 * vblocks + PAGE, kind


def test_threads_leaking_in_their_own_arenas_are_tracked(tracked):
    log = tracked["logs"]["wl-arenas"]
    blocks = {int(b["address"], 16): b for b in tracked["reports"][program_pid(log, "wl-arenas")]["blocks"]}
    for t in ground_truth(log):
        if t["kind"] == "freed":
            assert t["addr"] not in blocks
            continue
        block = blocks[t["addr"]]
        assert (block["kind"], block["size"]) == (CATEGORY[t["kind"]], usable(t["size"], "malloc")), hex(t["addr"])
        assert block["stack"][1]["function"] == t["fn"]


def test_blocks_allocated_before_main_are_forgiven_unless_all(tracked):
    log = tracked["logs"]["wl-badfree"]
    parent = program_pid(log, "wl-badfree")
    early = next(t for t in ground_truth(log) if t["kind"] == "transition")
    assert early["addr"] not in {int(b["address"], 16) for b in tracked["reports"][parent]["blocks"]}
    block = next(b for b in tracked["all"][parent]["blocks"] if int(b["address"], 16) == early["addr"])
    assert (block["origin"], block["size"], block["kind"]) == ("transition", usable(33, "malloc"), "definitely lost")


def test_bad_frees_are_not_detected_without_free_stops(tracked):
    """The documented loss: the double and the wild free the program makes pass unreported."""
    log = tracked["logs"]["wl-badfree"]
    assert {"double", "wild"} <= set(children(log))
    assert tracked["status"]["bad_frees"] == []
    assert (tracked["status"]["malloc_stops"], tracked["status"]["free_stops"]) == ("return", False)
