"""A guest booted with KASLR: the plugin measures the slide and relocates the symbols."""
from __future__ import annotations

import pytest

from labtools import guestlab, kallsyms, kaslr_slide, link_time, run_gdb
from smp import spin_on_every_vcpu

BOOT = guestlab.BootOptions(kaslr=True)
ARCHES = ("amd64", "arm64")
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}

AFTER_LOAD = r"""
from gdb_memcheck.linux.kernel import current_task, current_task_variable
from gdb_memcheck.frontend.session import SESSION
import gdb
t = SESSION.target
task = current_task(t, 0)
comm = t.read_virtual(task + t.layout("struct task_struct").offset("comm"), 16).split(b"\0")[0].decode()
per_cpu_name = current_task_variable(t)[0]
emit({"stext": t.symbol_address("_stext"), "per_cpu_name": per_cpu_name,
      "per_cpu_sym": t.symbol_address(per_cpu_name),
      "init_task_comm": gdb.parse_and_eval("init_task.comm").string(), "current_comm": comm})
"""


@pytest.fixture(scope="module")
def guest(guest, tmp_path_factory):
    """The module's KASLR guest; booted again (three tries) when its kernel drew the slot it
    was linked at, as KASLR now and then does, since nothing here could then be told apart."""
    stext, moved = link_time(guest)["_stext"], guest
    for _ in range(3):
        if kallsyms(moved, "_stext") != stext:
            break
        if moved is not guest:
            moved.stop()
        moved = guestlab.boot(guest.options, tmp_path_factory.mktemp("guest"))
    yield moved
    if moved is not guest:
        moved.stop()


@pytest.fixture(scope="module")
def link_addresses(guest) -> dict:
    return link_time(guest)


@pytest.fixture(scope="module")
def loaded(guest):
    return run_gdb(guest, script=AFTER_LOAD)


def test_load_line_reports_the_slide_the_guest_really_has(guest, loaded, uname_r):
    slide = kaslr_slide(guest)
    assert slide != 0, "the guest was booted with kaslr but did not move"
    line = next(l for l in loaded.stdout.splitlines() if l.startswith("gdb_memcheck "))
    assert f"Linux {uname_r} {MACHINE[guest.options.arch]}, 4-level paging, KASLR slide {slide:#x}" in line


def test_symbols_are_relocated_and_per_cpu_symbols_stay_where_the_architecture_links_them(guest, loaded,
                                                                                          link_addresses):
    """x86-64 links .data..percpu at 0 (its per-CPU symbols are offsets and must stay so);
    arm64's per-CPU section moves with the image."""
    res = loaded.result()
    assert res["stext"] == kallsyms(guest, "_stext")
    slide = kaslr_slide(guest)       # /proc/kallsyms lists no arm64 per-CPU symbol
    expected = link_addresses["per_cpu"] + (slide if guest.options.arch == "arm64" else 0)
    assert res["per_cpu_sym"] == expected, res["per_cpu_name"]


def test_kernel_data_reads_through_relocated_symbols(loaded, guest):
    res = loaded.result()
    assert res["init_task_comm"] == "swapper/0"
    comms = set(guest.sh("cat /proc/[0-9]*/comm").split()) | {"swapper/0"}
    assert res["current_comm"] in comms


USER_STOP = r"""
from gdb_memcheck.frontend.session import SESSION
leaks = q("memcheck leaks wl-leak --json")["summary"]
emit({"pc": int(gdb.parse_and_eval("(unsigned long)$pc")), "mismatch": SESSION.mismatch,
      "tasks": len(q("memcheck ps --json")["tasks"]), "maps": [m["line"] for m in q("memcheck maps 1 --json")["maps"]],
      "lost": leaks["definitely lost"]["blocks"]})
"""


def test_the_plugin_loads_and_reads_the_kernel_when_gdb_stops_the_guest_in_user_mode(guest, uname_r):
    """With a shell spinning in user space gdb's stop lands there (EL0, ring 3).  On arm64 with
    KASLR, hence KPTI, the gdbstub then cannot read kernel addresses and TTBR1 holds the
    trampoline's table: the banner check and the views (ps, maps, a leak scan) read through
    the kernel's own tables (a 6.12 arm64 run once called its own vmlinux another kernel's here)."""
    spinners = spin_on_every_vcpu(guest)
    try:
        runs = [run_gdb(guest, script=USER_STOP) for _ in range(3)]
    finally:
        guest.sh(f"kill {' '.join(map(str, spinners))}")
    results = [run.result() for run in runs]
    init_maps = guest.sh("cat /proc/1/maps").splitlines()
    assert any(r["pc"] < 1 << 63 for r in results), "no stop landed in user mode"
    for run, res in zip(runs, results):
        assert res["mismatch"] is None, res["mismatch"]
        assert res["tasks"] > 10 and res["maps"] == init_maps
        assert res["lost"] == 6, "wl-leak's six definitely lost blocks, found by a scan"
        assert f"Linux {uname_r} {MACHINE[guest.options.arch]}, 4-level paging, KASLR slide" in run.stdout
