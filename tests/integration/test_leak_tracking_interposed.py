"""The leak-tracking checks again with the dynamic programs allocating from a malloc
replacement, LD_PRELOAD=/lib/libwl-malloc.so (loaded as jemalloc or tcmalloc would be; it
lies above libc in memory, so the first malloc by address is glibc's, which no call
reaches).  Tracking must hook the module the dynamic linker's lookup order gives, and scan
mode, which reads glibc's heap, must say why it cannot help.  The static programs are
tracked through their own malloc in the same session."""
from __future__ import annotations

import re

import test_leak_tracking
from labtools import guestlab, run_gdb
from test_leak_tracking import (  # noqa: F401  (the checks, rerun on the replacement)
    program_pid,
    test_a_double_free_is_reported_with_both_stacks_and_the_allocation,
    test_a_forked_child_leaking_inherited_blocks_reports_nothing_unless_all,
    test_a_free_of_a_wild_pointer_is_reported_with_its_stack,
    test_attaching_to_a_running_process_forgives_what_it_had_before,
    test_blocks_allocated_before_main_are_forgiven_unless_all,
    test_every_tracked_process_left_a_report_and_no_handler_failed,
    test_freed_and_still_reachable_blocks_are_never_lost, test_leak_stacks_name_the_leaking_function_and_its_allocation_line,
    test_memcheck_format_prints_each_block_with_module_relative_frames, test_no_other_process_reports_a_bad_free,
    test_source_shows_each_records_allocating_line_with_two_lines_of_context,
    test_threads_leaking_in_their_own_arenas_are_tracked_exactly,
    test_tracked_leak_summary_equals_valgrinds_on_the_same_binary,
    test_tracking_reports_exactly_the_programs_lost_blocks_with_exact_sizes)

tracked = test_leak_tracking.tracked             # the fixture, which reads PROGRAM_PREFIX from this module
BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
REPLACEMENT = "/lib/libwl-malloc.so"
PROGRAM_PREFIX = f"LD_PRELOAD={REPLACEMENT} "
ARENAS_COMMAND = PROGRAM_PREFIX + "wl-arenas"


def test_the_dynamic_programs_blocks_come_from_the_replacement_and_the_static_ones_from_glibc(tracked, guest):
    wl_maps = guest.sh("cat /proc/$(pidof wl-maps)/maps")      # a dynamic program init started
    libc_start = min(int(line.split("-")[0], 16) for line in wl_maps.splitlines() if line.endswith("libc.so.6"))
    for name in ("wl-leak", "wl-badfree", "wl-arenas", "wl-leak-static"):
        report = tracked["reports"][program_pid(tracked["logs"][name], name)]
        allocators = {b["stack"][0]["module"] for b in report["blocks"]}
        assert allocators == ({"/bin/wl-leak-static"} if name.endswith("static") else {REPLACEMENT}), name
    malloc_pc = int(tracked["reports"][program_pid(tracked["logs"]["wl-leak"], "wl-leak")]["blocks"][0]["stack"][0]
                    ["pc"], 16)
    assert malloc_pc > libc_start, "the replacement lies above libc: the first malloc by address is glibc's"


SCAN_SCRIPT = r"""
started = while_running("LD_PRELOAD=REPLACEMENT wl-leak --wait > /tmp/log/replaced.log 2>&1 & echo $!; "
                        "until grep -q done /tmp/log/replaced.log; do sleep 0.1; done")
pid = int(started["text"].split()[0])
try:
    out = gdb.execute(f"memcheck leaks {pid}", to_string=True)
except gdb.error as e:
    out = str(e)
while_running(f"kill -USR1 {pid}")
emit({"pid": pid, "out": out})
"""


def test_scan_mode_of_a_process_on_a_replacement_says_in_one_line_to_track_it(guest):
    run = run_gdb(guest, script=SCAN_SCRIPT.replace("REPLACEMENT", REPLACEMENT))
    res = run.result()
    pid = res["pid"]
    lines = res["out"].splitlines()
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert re.fullmatch(rf"memcheck leaks: pid {pid} \(wl-leak\) allocates with {REPLACEMENT}, not glibc's malloc, "
                        r"whose heap scan mode reads \(.+\): track it instead \(memcheck leaks track\)", lines[0])
