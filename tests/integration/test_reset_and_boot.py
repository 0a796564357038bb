"""A guest held at reset (-S): the plugin loads with paging off, follows the boot to
start_kernel (no user process exists yet) and to the first kernel thread, where the
kernel's own page tables are in CR3."""
from __future__ import annotations

import json

import pytest

from gdb_memcheck.report import schema
from gdb_memcheck.arch.x86_64.paging import cr3_table
from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions(halt=True)

KERNEL_INIT_SCRIPT = r"""
import gdb, json
from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.linux.kernel import current_task
from gdb_memcheck.target import read_u64
from gdb_memcheck.frontend.session import SESSION
at_reset = {c: gdb.execute(c, to_string=True) for c in ("memcheck pagetable", "memcheck vtop 0x1234",
                                                        "memcheck pagetable --json", "memcheck vtop --json 0x1234")}
gdb.execute("hbreak start_kernel")
gdb.execute("continue")
mid_boot = {"ps": json.loads(gdb.execute("memcheck ps -t --json", to_string=True))["tasks"],
            "pagetable": json.loads(gdb.execute("memcheck pagetable --json", to_string=True))}
try:
    gdb.execute("memcheck maps", to_string=True)
except gdb.error as e:
    mid_boot["maps_error"] = str(e)
gdb.execute("delete")
gdb.execute("break kernel_init")
gdb.execute("continue")
t = SESSION.target
SESSION.physical_path()
task = current_task(t, 0)
tl = t.layout("struct task_struct")
mm = read_u64(t, task + tl.offset("mm"))
comm = t.read_virtual(task + tl.offset("comm"), 16).split(b"\0")[0].decode()
init_mm_pgd = read_u64(t, t.symbol_address("init_mm") + t.layout("struct mm_struct").offset("pgd"))
cr3 = t.register("cr3")
tr = paging.translate(t.read_physical, paging.cr3_table(cr3), init_mm_pgd, 4)
emit({"mm": mm, "comm": comm, "cr3": cr3, "init_mm_pgd_pa": tr.physical, "at_reset": at_reset,
      "mid_boot": mid_boot})
gdb.execute("delete")
"""


@pytest.fixture(scope="module")
def boot_run(guest):
    return run_gdb(guest, script=KERNEL_INIT_SCRIPT)


def test_plugin_at_reset_says_paging_is_off(boot_run):
    lines = [l for l in boot_run.stdout.splitlines() if l.startswith("gdb_memcheck ")]
    assert "paging off" in lines[0]
    assert "Traceback" not in boot_run.output


def test_views_at_reset_say_paging_is_off_and_physical_is_linear(boot_run):
    at_reset = boot_run.result()["at_reset"]
    assert "paging off: no page tables are in use; physical addresses equal linear ones" in at_reset["memcheck pagetable"]
    assert "paging off: virtual 0x1234 is physical 0x1234" in at_reset["memcheck vtop 0x1234"]
    pagetable = json.loads(at_reset["memcheck pagetable --json"])
    walk = json.loads(at_reset["memcheck vtop --json 0x1234"])
    assert schema.validate(pagetable) == schema.validate(walk) == []
    assert (pagetable["root"], pagetable["levels"], pagetable["ranges"]) == (None, 0, [])
    assert (walk["virtual"], walk["physical"], walk["steps"]) == ("0x1234", "0x1234", [])


def test_mid_boot_before_init_exists_only_the_idle_task_is_listed(boot_run):
    mid = boot_run.result()["mid_boot"]
    assert [(r["pid"], r["comm"], r["kernel_thread"]) for r in mid["ps"]] == [(0, "swapper", True)] or \
        [(r["pid"], r["comm"]) for r in mid["ps"]] == [(0, "swapper/0")]
    assert mid["pagetable"]["ranges"], "the early page tables map the kernel"
    assert "a kernel thread with no memory map" in mid["maps_error"]


def test_plugin_announces_the_kernel_once_it_is_readable(boot_run, guest):
    lines = [l for l in boot_run.stdout.splitlines() if l.startswith("gdb_memcheck ")]
    assert len(lines) == 3, "at reset, at start_kernel, and once the slide is measurable"
    assert "Linux 6." in lines[1] and "KASLR unknown" in lines[1], "start_kernel: no IDT in the CPU entry area yet"
    assert "Linux 6." in lines[2] and "4-level paging, KASLR off" in lines[2]


def test_init_mm_pgd_translates_to_cr3_while_a_kernel_thread_runs(boot_run):
    res = boot_run.result()
    assert res["mm"] == 0, "kernel_init runs as a kernel thread without an mm"
    assert res["comm"] == "swapper/0", "not yet exec'd /init"
    assert res["init_mm_pgd_pa"] == cr3_table(res["cr3"])


def test_guest_finishes_booting_after_gdb_detaches(guest, boot_run):
    guest.wait_ready(timeout=120)
    assert guest.sh("echo alive").strip() == "alive"
