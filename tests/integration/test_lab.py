"""The lab and the plugin skeleton on a guest booted in the pass's configuration (normally
4-level paging, no KASLR)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from labtools import REPO, kallsyms, run_gdb

PAGE = 4096


def test_plugin_load_line_reports_the_guests_kernel_release(guest, expected_load_line):
    run = run_gdb(guest)
    line = next(l for l in run.stdout.splitlines() if l.startswith("gdb_memcheck "))
    assert expected_load_line in line
    assert "physical reads via qemu-mem" in line
    assert "Traceback" not in run.output


def test_the_labs_gdb_attaches_and_stops_quietly(guest):
    """One line for the stopped frame and the plugin's load line: no missing kernel source,
    at the attach nor at a later stop."""
    run = run_gdb(guest)
    assert run.stderr == ""
    frame, load, *rest = [l for l in run.stdout.splitlines() if not l.startswith("[Inferior")]
    assert re.match(r"0x[0-9a-f]+ in (\w+|\?\?) \(\)", frame), "?? before the symbols are moved for KASLR"
    assert load.startswith("gdb_memcheck ") and rest == []
    stopped = run_gdb(guest, script='while_running("true")\nemit("stopped")\n')
    assert stopped.results == ["stopped"] and "No such file or directory" not in stopped.output


def test_help_memcheck_lists_subcommands_and_dash_aliases_exist(guest):
    run = run_gdb(guest, "help memcheck", "help memcheck-info")
    assert re.search(r"^memcheck info -- ", run.stdout, re.M)
    assert "usage: memcheck info [-h] [--json]" in run.stdout


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
t = SESSION.target
addrs = [0x1000000, 0x100000, 0x1f000000 - 0x3000, SESSION.kmem().to_physical(t.symbol_address("init_uts_ns"))]
pages = {}
for name in physical.PATHS:
    path = physical.open_path(name, t, SESSION.arch)
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
from gdb_memcheck.frontend.session import SESSION
t = SESSION.target
SESSION.physical_path()
va = t.symbol_address("init_uts_ns")
root = SESSION.arch.root_for(va, SESSION.arch.current_spans(t, None))
tr = SESSION.regime().translate(t.read_physical, root, va)
emit({"va": va, "pa": tr.physical, "page_size": tr.page_size})
"""


def test_kernel_virtual_address_translates_like_qemus_gva2gpa(guest):
    res = run_gdb(guest, script=TRANSLATE_SCRIPT).result()
    answer = guest.hmp(f"gva2gpa {res['va']:#x}")
    assert f"gpa: {res['pa']:#x}" in answer


def nm_address(binary, symbol: str, dynamic: bool = False) -> int:
    args = ["nm", "-D" if dynamic else "--defined-only", str(binary)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return next(int(l.split()[0], 16) for l in out.splitlines() if l.split()[-1].split("@")[0] == symbol)


def addr2line(binary, vaddr: int) -> str:
    out = subprocess.run(["addr2line", "-e", str(binary), hex(vaddr)], capture_output=True, text=True).stdout
    path, line = out.strip().rsplit(":", 1)
    return f"{Path(path).name}:{line.split()[0]}"


def mapping_base(guest, pid: int, path: str) -> int:
    for line in guest.sh(f"cat /proc/{pid}/maps").splitlines():
        fields = line.split()
        if fields[-1] == path and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16)
    raise AssertionError(f"{path} not mapped at offset 0 in pid {pid}")


def addr_json(guest, *commands: str) -> list[dict]:
    run = run_gdb(guest, *commands)
    docs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert docs and not any("error" in d for d in docs), run.output
    return docs


def test_addr_names_function_and_source_line_in_a_static_binary(guest):
    binary = guest.sysroot / "bin/wl-maps-static"
    va = nm_address(binary, "make_data_file") + 0x10
    info, = addr_json(guest, f"memcheck addr -p wl-maps-static --json {va:#x}")
    assert info["symbol"] == "make_data_file+0x10"
    assert info["source"] == addr2line(binary, va)
    assert info["mapping"].endswith("/bin/wl-maps-static") and "r-xp" in info["mapping"]


def test_addr_in_a_pie_and_in_libc_accounts_for_the_load_address(guest):
    pid = int(guest.sh("pidof wl-maps").split()[0])
    exe, libc = guest.sysroot / "bin/wl-maps", guest.sysroot / "lib/x86_64-linux-gnu/libc.so.6"
    main = mapping_base(guest, pid, "/bin/wl-maps") + nm_address(exe, "main")
    malloc = mapping_base(guest, pid, "/lib/x86_64-linux-gnu/libc.so.6") + nm_address(libc, "malloc", dynamic=True)
    at_main, at_malloc = addr_json(guest, f"memcheck addr -p {pid} --json {main:#x}",
                                   f"memcheck addr -p {pid} --json {malloc:#x}")
    assert at_main["symbol"] == "main" and at_main["source"] == addr2line(exe, nm_address(exe, "main"))
    assert at_malloc["symbol"] in {"malloc", "__libc_malloc"}
    assert at_malloc["file_offset"] is not None and at_malloc["physical"] is not None


def test_addr_refuses_a_sysroot_file_with_another_build_id(guest, tmp_path):
    (tmp_path / "bin").mkdir()
    shutil.copy(guest.sysroot / "bin/wl-leak", tmp_path / "bin/wl-maps")
    pid = int(guest.sh("pidof wl-maps").split()[0])
    main = mapping_base(guest, pid, "/bin/wl-maps") + nm_address(guest.sysroot / "bin/wl-maps", "main")
    info, = addr_json(guest, f"set memcheck sysroot {tmp_path}", f"memcheck addr -p {pid} --json {main:#x}")
    assert info["symbol"] is None
    assert "has build-id" in info["note"] and "but the guest's /bin/wl-maps has build-id" in info["note"]


def test_addr_outside_every_mapping_says_so(guest):
    pid = int(guest.sh("pidof wl-maps").split()[0])
    info, = addr_json(guest, f"memcheck addr -p {pid} --json 0x1000")
    assert info["mapping"] is None and info["note"] == f"no mapping of pid {pid} contains 0x1000"


def test_text_views_take_gdbs_own_styles_and_only_when_styling_is_on(guest):
    plain = run_gdb(guest, "set style enabled off", "memcheck maps 1").stdout
    default = run_gdb(guest, "set style enabled on", "memcheck maps 1").stdout
    changed = run_gdb(guest, "set style enabled on", "set style filename foreground red",
                      "set style address intensity bold", "memcheck maps 1").stdout
    assert "\x1b[" not in plain and "/bin/busybox" in plain
    assert "\x1b[32m/bin/busybox\x1b[m" in default, "file names green, as gdb prints them"
    assert re.search(r"^\x1b\[34m[0-9a-f]+-[0-9a-f]+\x1b\[m ", default, re.M), "addresses blue"
    assert "\x1b[31m/bin/busybox\x1b[m" in changed
    assert re.search(r"^\x1b\[1;34m[0-9a-f]+-[0-9a-f]+\x1b\[m ", changed, re.M)
    unstyled = lambda text: re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert unstyled(default) == unstyled(changed) == plain


def test_addr_source_shows_the_line_and_two_lines_of_context(guest):
    binary = guest.sysroot / "bin/wl-maps-static"
    va = nm_address(binary, "make_data_file") + 0x10
    run = run_gdb(guest, f"memcheck addr -p wl-maps-static --source {va:#x}")
    line = int(addr2line(binary, va).split(":")[1])
    source = (REPO / "workloads" / "wl-maps.c").read_text().splitlines()
    shown = run.stdout.split("  source\n", 1)[1].splitlines()[:5]
    assert shown == [f"  {n:>6}{' >' if n == line else '  '} {source[n - 1]}" for n in range(line - 2, line + 3)]


FD_SCRIPT = r"""
import os, gdb
def open_fds():
    return len(os.listdir("/proc/self/fd"))
gdb.execute("memcheck info")
before = open_fds()
for _ in range(10):
    gdb.execute("set memcheck physical-read qemu-mem")
    gdb.execute("memcheck info")
    gdb.execute("set memcheck physical-read directmap")
    gdb.execute("memcheck info")
emit({"before": before, "after": open_fds()})
"""


def test_switching_the_physical_read_path_leaks_no_file_descriptors(guest):
    res = run_gdb(guest, script=FD_SCRIPT).result()
    assert res["after"] <= res["before"]


def test_the_sysroot_stays_unset_unless_given_even_with_lab_trees_in_the_cache(guest):
    """The lab's launcher names its tree; a plain load must not guess one for another guest."""
    assert guest.sysroot.is_dir()
    pid = int(guest.sh("pidof wl-maps").split()[0])
    main = mapping_base(guest, pid, "/bin/wl-maps") + nm_address(guest.sysroot / "bin/wl-maps", "main")
    run = run_gdb(guest, f"source {REPO / 'gdb_memcheck' / 'gdbinit.py'}", "show memcheck sysroot",
                  f"memcheck addr -p {pid} --json {main:#x}", plugin=False)
    assert "Guest files are looked up under (not set)." in run.stdout
    info, = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert info["symbol"] is None and "no sysroot set" in info["note"]


KERNEL_LINE_SCRIPT = r"""
sal = gdb.find_pc_line(int(gdb.parse_and_eval("(unsigned long)schedule + 4")))
emit({"file": sal.symtab.filename, "line": sal.line,
      "addr": json.loads(gdb.execute("memcheck addr --json (char *)schedule + 4", to_string=True))})
"""


def test_addr_names_a_kernel_function_and_its_line_from_the_kernels_debug_info(guest):
    res = run_gdb(guest, script=KERNEL_LINE_SCRIPT).result()
    info = res["addr"]
    assert int(info["address"], 16) == kallsyms(guest, "schedule") + 4 and info["pid"] is None
    assert (info["symbol"], info["source"]) == ("schedule+0x4", f"{res['file']}:{res['line']}")
