"""A guest booted with KASLR: the plugin measures the slide and relocates the symbols."""
from __future__ import annotations

import re

import pytest

from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions(kaslr=True)

AFTER_LOAD = r"""
from gdb_memcheck.kernel import current_task
from gdb_memcheck.frontend.session import SESSION
import gdb
t = SESSION.target
task = current_task(t, 0)
comm = t.read_virtual(task + t.layout("struct task_struct").offset("comm"), 16).split(b"\0")[0].decode()
emit({"stext": t.symbol_address("_stext"), "current_task_sym": t.symbol_address("current_task"),
      "init_task_comm": gdb.parse_and_eval("init_task.comm").string(), "current_comm": comm})
"""


def kallsyms(guest, name: str) -> int:
    line = guest.sh(f"grep ' {name}$' /proc/kallsyms").split()
    return int(line[0], 16)


@pytest.fixture(scope="module")
def link_addresses(guest) -> dict:
    run = run_gdb(guest, "p/x (unsigned long)&_stext", "p/x (unsigned long)&current_task", plugin=False)
    values = re.findall(r"^\$\d+ = (0x[0-9a-f]+)", run.stdout, re.M)
    return {"_stext": int(values[0], 16), "current_task": int(values[1], 16)}


@pytest.fixture(scope="module")
def loaded(guest):
    return run_gdb(guest, script=AFTER_LOAD)


def test_load_line_reports_the_slide_the_guest_really_has(guest, loaded, link_addresses, uname_r):
    slide = kallsyms(guest, "_stext") - link_addresses["_stext"]
    assert slide != 0, "the guest was booted with kaslr but did not move"
    line = next(l for l in loaded.stdout.splitlines() if l.startswith("gdb_memcheck "))
    assert f"Linux {uname_r} x86_64, 4-level paging, KASLR slide {slide:#x}" in line


def test_symbols_are_relocated_and_per_cpu_symbols_stay_zero_based(guest, loaded, link_addresses):
    res = loaded.result()
    assert res["stext"] == kallsyms(guest, "_stext")
    assert res["current_task_sym"] == link_addresses["current_task"]


def test_kernel_data_reads_through_relocated_symbols(loaded, guest):
    res = loaded.result()
    assert res["init_task_comm"] == "swapper/0"
    comms = set(guest.sh("cat /proc/[0-9]*/comm").split()) | {"swapper/0"}
    assert res["current_comm"] in comms
