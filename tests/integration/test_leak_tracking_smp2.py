"""The leak-tracking checks again on a 2-vCPU guest with a shell spinning on every vCPU;
wl-arenas runs its two threads at once, pinned to different vCPUs, so two threads of one
process call malloc at the same moment."""
from __future__ import annotations

import pytest

from labtools import guestlab
from smp import spin_on_every_vcpu
from test_leak_tracking import (  # noqa: F401  (the checks and their fixture, rerun on this guest)
    test_a_double_free_is_reported_with_both_stacks_and_the_allocation,
    test_a_forked_child_leaking_inherited_blocks_reports_nothing_unless_all,
    test_a_free_of_a_wild_pointer_is_reported_with_its_stack,
    test_attaching_to_a_running_process_forgives_what_it_had_before,
    test_blocks_allocated_before_main_are_forgiven_unless_all,
    test_every_tracked_process_left_a_report_and_no_handler_failed,
    test_freed_and_still_reachable_blocks_are_never_lost, test_leak_stacks_name_the_leaking_function_and_its_allocation_line,
    test_no_other_process_reports_a_bad_free, test_threads_leaking_in_their_own_arenas_are_tracked_exactly,
    test_tracked_leak_summary_equals_valgrinds_on_the_same_binary,
    test_tracking_reports_exactly_the_programs_lost_blocks_with_exact_sizes, tracked)

BOOT = guestlab.BootOptions(smp=2)
ARENAS_COMMAND = "wl-arenas --together"


@pytest.fixture(scope="module", autouse=True)
def spinners(guest):
    return spin_on_every_vcpu(guest)
