"""The tracing checks again on a 4-vCPU guest with a shell spinning on every vCPU: events
come from any vCPU, each read with that vCPU's running task."""
from __future__ import annotations

import pytest

from labtools import guestlab
from smp import spin_on_every_vcpu
from test_tracing import (  # noqa: F401  (the checks and their fixture, rerun on this guest)
    test_event_counts_match_what_the_workload_did,
    test_event_log_file_has_every_event_as_a_json_line_with_a_time_and_the_schema_version,
    test_exactly_one_debug_stop_per_event, test_guest_runs_normally_after_gdb_quits,
    test_trace_off_removes_every_hook_and_the_guest_runs_without_debug_stops,
    test_traced_mappings_equal_fresh_maps_and_come_from_the_cache,
    test_traced_process_table_equals_a_fresh_snapshot, test_traced_table_matches_the_guests_proc_after_detach, traced)

BOOT = guestlab.BootOptions(smp=4)


@pytest.fixture(scope="module", autouse=True)
def spinners(guest):
    return spin_on_every_vcpu(guest)
