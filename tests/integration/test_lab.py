"""The lab and the plugin skeleton on a guest booted normally (4-level paging, no KASLR)."""
from __future__ import annotations

import re

import pytest

from labtools import run_gdb

PAGE = 4096


def test_plugin_load_line_reports_the_guests_kernel_release(guest, uname_r):
    run = run_gdb(guest)
    line = next(l for l in run.stdout.splitlines() if l.startswith("gdb_memcheck "))
    assert f"Linux {uname_r} x86_64, 4-level paging, KASLR off" in line
    assert "physical reads via qemu-mem" in line
    assert "Traceback" not in run.output


def test_help_memcheck_lists_subcommands_and_dash_aliases_exist(guest):
    run = run_gdb(guest, "help memcheck", "help memcheck-info")
    assert re.search(r"^memcheck info -- ", run.stdout, re.M)
    assert "Usage: memcheck info" in run.stdout


def test_memcheck_info_json_matches_guest_uname(guest, uname_r):
    run = run_gdb(guest, "memcheck info --json")
    doc = next(l for l in run.stdout.splitlines() if l.startswith("{"))
    assert f'"release": "{uname_r}"' in doc
    assert '"machine": "x86_64"' in doc


def test_bad_arguments_give_one_error_line_naming_the_command(guest):
    run = run_gdb(guest, "memcheck info --nonsense")
    errors = [l for l in run.stderr.splitlines() if "memcheck" in l or "Python" in l]
    assert errors == ["memcheck info: unrecognized arguments: --nonsense (see: help memcheck info)"]
    assert "Traceback" not in run.output


PATHS_SCRIPT = r"""
from gdb_memcheck.frontend import physical
from gdb_memcheck.frontend.session import SESSION
from gdb_memcheck.kernel import page_offset_base
t = SESSION.target
addrs = [0x1000000, 0x100000, 0x1f000000 - 0x3000, t.symbol_address("init_uts_ns") - 0xffffffff80000000]
pages = {}
for name in physical.PATHS:
    path = physical.open_path(name, t)
    pages[name] = [path.read(a & ~0xfff, 4096).hex() for a in addrs]
emit({"addrs": addrs, "pages": pages})
"""


def test_a_page_reads_the_same_through_every_physical_path_and_qemus_xp(guest):
    res = run_gdb(guest, script=PATHS_SCRIPT).result()
    pages = res["pages"]
    assert pages["qemu-mem"] == pages["phymemmode"] == pages["directmap"]
    for addr, page_hex in zip(res["addrs"], pages["qemu-mem"]):
        page = bytes.fromhex(page_hex)
        assert len(page) == PAGE
        xp = guest.hmp(f"xp /8gx {addr & ~0xfff:#x}")
        words = [int(w, 16) for w in re.findall(r"0x[0-9a-f]{16}", xp.split(":", 1)[1])][:2]
        assert words == [int.from_bytes(page[i:i + 8], "little") for i in (0, 8)]
    assert any(p.strip("0") for p in pages["qemu-mem"]), "all pages read as zeros"


TRANSLATE_SCRIPT = r"""
from gdb_memcheck import paging
from gdb_memcheck.frontend.session import SESSION
t = SESSION.target
SESSION.physical_path()
cr3 = t.register("cr3")
va = t.symbol_address("init_uts_ns")
tr = paging.translate(t.read_physical, paging.cr3_table(cr3), va, 4)
emit({"va": va, "pa": tr.physical, "page_size": tr.page_size})
"""


def test_kernel_virtual_address_translates_like_qemus_gva2gpa(guest):
    res = run_gdb(guest, script=TRANSLATE_SCRIPT).result()
    answer = guest.hmp(f"gva2gpa {res['va']:#x}")
    assert f"gpa: {res['pa']:#x}" in answer
