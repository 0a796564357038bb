"""Every leak-tracking check again with malloc-stops watch: allocating calls stop at a read
watchpoint on glibc's malloc flag and return through a watched return-address slot, with
no TB flush; sizes, stacks, reports and bad frees must be exactly as with the default stops."""
from __future__ import annotations

import test_leak_tracking
from labtools import guestlab
from test_leak_tracking import (  # noqa: F401  (the checks, rerun with this setting)
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

tracked = test_leak_tracking.tracked             # the fixture, which reads SETTINGS from this module
BOOT = guestlab.BootOptions()
SETTINGS = ["set memcheck malloc-stops watch"]


def test_the_watch_setting_was_in_force(tracked):
    assert tracked["status"]["malloc_stops"] == "watch"
