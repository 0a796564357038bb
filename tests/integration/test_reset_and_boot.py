"""A guest held at reset (-S): the plugin loads with paging off, then follows the boot
to the first kernel thread, where the kernel's own page tables are in CR3."""
from __future__ import annotations

import pytest

from gdb_memcheck.paging import cr3_table
from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions(halt=True)

KERNEL_INIT_SCRIPT = r"""
import gdb
from gdb_memcheck import paging
from gdb_memcheck.kernel import current_task
from gdb_memcheck.target import read_u64
from gdb_memcheck.frontend.session import SESSION
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
emit({"mm": mm, "comm": comm, "cr3": cr3, "init_mm_pgd_pa": tr.physical})
gdb.execute("delete")
"""


@pytest.fixture(scope="module")
def boot_run(guest):
    return run_gdb(guest, script=KERNEL_INIT_SCRIPT)


def test_plugin_at_reset_says_paging_is_off(boot_run):
    lines = [l for l in boot_run.stdout.splitlines() if l.startswith("gdb_memcheck ")]
    assert "paging off" in lines[0]
    assert "Traceback" not in boot_run.output


def test_plugin_announces_the_kernel_once_it_is_readable(boot_run, guest):
    lines = [l for l in boot_run.stdout.splitlines() if l.startswith("gdb_memcheck ")]
    assert len(lines) == 2
    assert "Linux 6." in lines[1] and "4-level paging, KASLR off" in lines[1]


def test_init_mm_pgd_translates_to_cr3_while_a_kernel_thread_runs(boot_run):
    res = boot_run.result()
    assert res["mm"] == 0, "kernel_init runs as a kernel thread without an mm"
    assert res["comm"] == "swapper/0", "not yet exec'd /init"
    assert res["init_mm_pgd_pa"] == cr3_table(res["cr3"])


def test_guest_finishes_booting_after_gdb_detaches(guest, boot_run):
    guest.wait_ready(timeout=120)
    assert guest.sh("echo alive").strip() == "alive"
