"""Every leak-tracking check again in the cooperative mode: the dynamic leak programs run with
LD_PRELOAD=/lib/libmemcheck-preload.so, which records their malloc-family calls in a ring
that gdb_memcheck drains at its own stops, with no stop per call.  Reports, exact sizes,
stacks and bad frees must be exactly as with breakpoints; the static programs cannot load
the library and are tracked by breakpoints in the same session."""
from __future__ import annotations

import re

import test_leak_tracking
from labtools import guestlab, run_gdb
from test_leak_tracking import (  # noqa: F401  (the checks, rerun with the library preloaded)
    program_pid,
    test_a_double_free_is_reported_with_both_stacks_and_the_allocation,
    test_a_forked_child_leaking_inherited_blocks_reports_nothing_unless_all,
    test_a_free_of_a_wild_pointer_is_reported_with_its_stack,
    test_a_program_without_malloc_symbols_executed_under_tracking_is_left_alone_with_a_note,
    test_a_tracked_running_process_is_reported_from_its_map_and_scan_mode_stays_available,
    test_attaching_to_a_running_process_forgives_what_it_had_before,
    test_blocks_allocated_before_main_are_forgiven_unless_all,
    test_every_tracked_process_left_a_report_and_no_handler_failed,
    test_freed_and_still_reachable_blocks_are_never_lost, test_leak_stacks_name_the_leaking_function_and_its_allocation_line,
    test_memcheck_format_prints_each_block_with_module_relative_frames, test_no_other_process_reports_a_bad_free,
    test_source_shows_each_records_allocating_line_with_two_lines_of_context,
    test_text_report_has_valgrind_loss_records_with_symbolized_frames,
    test_threads_leaking_in_their_own_arenas_are_tracked_exactly,
    test_tracked_leak_summary_equals_valgrinds_on_the_same_binary,
    test_tracking_reports_exactly_the_programs_lost_blocks_with_exact_sizes)

tracked = test_leak_tracking.tracked             # the fixture, which reads PROGRAM_PREFIX from this module
BOOT = guestlab.BootOptions()
PRELOAD = "LD_PRELOAD=/lib/libmemcheck-preload.so "
PROGRAM_PREFIX = PRELOAD
ARENAS_COMMAND = PRELOAD + "wl-arenas"
RING_NOTE = "calls recorded by the preload library, 0 dropped (ring full)"


def test_the_dynamic_programs_were_tracked_through_the_ring_and_the_static_one_by_breakpoints(tracked):
    header = {name: tracked["reports"][program_pid(tracked["logs"][name], name)]["header"]
              for name in ("wl-leak", "wl-badfree", "wl-arenas", "wl-leak-static")}
    assert all(RING_NOTE in header[name] for name in ("wl-leak", "wl-badfree", "wl-arenas")), header
    assert "preload" not in header["wl-leak-static"]


OVERFLOW_SCRIPT = r"""
gdb.execute("memcheck leaks track --exec wl-blocks")
log = while_running("PRELOADwl-blocks CALLS --exit")["text"]
pid = q("memcheck leaks status --json")["reports"][-1]
emit({"log": log, "report": q(f"memcheck leaks report {pid} --json"), "status": q("memcheck leaks status --json")})
"""


def test_a_ring_that_fills_up_is_drained_at_the_librarys_call_and_nothing_is_dropped(guest):
    """wl-blocks makes 5000 mallocs, more than the ring's 4096 records: the library stops at
    memcheck_preload_full, gdb_memcheck drains the ring there and moves its tail on."""
    calls = 5000
    run = run_gdb(guest, script=OVERFLOW_SCRIPT.replace("PRELOAD", PRELOAD).replace("CALLS", str(calls)), timeout=600)
    res = run.result()
    report = res["report"]
    assert RING_NOTE in report["header"], report["header"]
    made = int(re.search(r"\((\d+) calls\)", report["header"]).group(1))
    assert made >= calls
    assert report["summary"]["definitely lost"]["blocks"] == calls // 10
    assert report["summary"]["still reachable"]["blocks"] >= calls - calls // 10
    assert res["status"]["errors"] == 0, res["status"]["last_error"]
