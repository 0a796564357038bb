"""The snapshot-view checks again on a guest with 5-level paging (-cpu qemu64,+la57).

QEMU 7.2's `info mem` does not handle 5-level tables (it runs for minutes and prints
nothing), so here the page-table oracles are gva2gpa and the guest's /proc/PID/pagemap.
"""
from __future__ import annotations

from labtools import guestlab, run_gdb
from test_snapshot_views import (  # noqa: F401  (the checks and their fixture, rerun on this guest)
    snap, test_maps_match_guest_proc_maps_for_every_user_process, test_ps_lists_the_same_pids_tids_and_comms_as_guest_proc,
    test_rss_and_anonymous_match_guest_smaps_for_every_mapping, test_varied_address_space_workload_is_among_them,
    test_vtop_agrees_with_guest_pagemap_across_processes, test_vtop_agrees_with_qemu_gva2gpa_for_sampled_addresses)

BOOT = guestlab.BootOptions(cpu="qemu64,+la57")


def test_plugin_reports_five_level_paging(guest):
    run = run_gdb(guest)
    assert "5-level paging" in run.stdout


def test_pagetable_walks_five_levels(snap):  # noqa: F811  (the imported fixture, as pytest passes it)
    assert snap["res"]["pagetable"]["levels"] == 5


def test_non_canonical_address_is_judged_by_57_bits(guest):
    run = run_gdb(guest, "memcheck vtop -p 1 0x0100000000000000", "memcheck vtop -p 1 0x00ff000000000000")
    assert "0x100000000000000 is not a canonical 5-level address" in run.output
    assert "0xff000000000000: PML5 entry 255 not present" in run.output
