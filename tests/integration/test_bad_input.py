"""A catalogue of bad input for every command: each answer is one line that starts with
the command's name, never a Python traceback, and gdb stays usable afterwards."""
from __future__ import annotations

import re
import subprocess

import pytest

from labtools import REPO, guestlab, run_gdb, untranslatable

ARCHES = ("amd64", "arm64")

ON_GUEST = [
    ("memcheck info --bogus", "memcheck info: unrecognized arguments: --bogus"),
    ("memcheck ps extra", "memcheck ps: unrecognized arguments: extra"),
    ("memcheck ps --json --json --nope", "memcheck ps: unrecognized arguments: --nope"),
    ("memcheck maps 1 2", "memcheck maps: unrecognized arguments: 2"),
    ("memcheck maps 99999", "memcheck maps: no process with pid 99999"),
    ("memcheck maps no-such-comm", "memcheck maps: no process named 'no-such-comm'"),
    ("memcheck maps 2", "memcheck maps: pid 2 (kthreadd) is a kernel thread: it has no memory map"),
    ("memcheck maps", "memcheck maps: vCPU 0 runs"),
    ("memcheck maps --rss 99999", "memcheck maps: no process with pid 99999"),
    ("memcheck pagetable 99999", "memcheck pagetable: no process with pid 99999"),
    ("memcheck pagetable --cr3 zz_not_a_symbol", "memcheck pagetable: 'zz_not_a_symbol' is not an address"),
    ("memcheck pagetable --range 0x2000-0x1000", "memcheck pagetable: --range 0x2000-0x1000: END must be above START"),
    ("memcheck pagetable --range 0x2000", "memcheck pagetable: --range wants START-END, not '0x2000'"),
    ("memcheck pagetable --perm q", "memcheck pagetable: --perm takes letters from 'uwxk', not 'q'"),
    ("memcheck vtop", "memcheck vtop: the following arguments are required: ADDRESS"),
    ("memcheck vtop -p 99999 0x1000", "memcheck vtop: no process with pid 99999"),
    ("memcheck vtop $nonsense_convenience", "memcheck vtop: '$nonsense_convenience' is not an address"),
    ("memcheck vtop UNTRANSLATABLE", "memcheck vtop: UNTRANSLATABLE"),
    ("memcheck addr", "memcheck addr: the following arguments are required: ADDRESS"),
    ("memcheck addr 0x1000", "memcheck addr: vCPU 0 runs"),
    ("memcheck addr -p 99999 0x1000", "memcheck addr: no process with pid 99999"),
    ("memcheck addr garbage!!", "memcheck addr: 'garbage!!' is not an address"),
    ("memcheck leaks 99999", "memcheck leaks: no process with pid 99999"),
    ("memcheck leaks 2", "memcheck leaks: pid 2 (kthreadd) is a kernel thread"),
    ("memcheck leaks 1 2", "memcheck leaks: unrecognized arguments: 2"),
    ("memcheck trace", "memcheck trace: the following arguments are required: ACTION"),
    ("memcheck trace sideways", "memcheck trace: argument ACTION: invalid choice: 'sideways'"),
    ("memcheck trace on --only nothing", "memcheck trace: unknown hook group nothing"),
    ("memcheck trace maps", "memcheck trace: the following arguments are required: PID"),
    ("memcheck trace maps 99999", "memcheck trace: the trace has no process 99999"),
    ("memcheck events --last x", "memcheck events: argument --last: invalid int value: 'x'"),
    ("memcheck stop-on teleport", "memcheck stop-on: argument EVENT: invalid choice: 'teleport'"),
    ("set memcheck physical-read sideways", "Undefined item: \"sideways\"."),
    ("set memcheck event-log /nonexistent/dir/log", "set memcheck event-log: No such file or directory"),
]


def one_line_answer(run, command: str, message: str) -> None:
    lines = [l for l in run.stderr.splitlines() if message in l]
    assert lines, f"{command!r} said:\n{run.output}"
    assert "Traceback" not in run.output and "Python Exception" not in run.output


@pytest.mark.parametrize("command, message", ON_GUEST, ids=[c for c, _ in ON_GUEST])
def test_bad_input_on_a_guest_gives_one_line(guest, command, message):
    address, why = untranslatable(guest.options)
    command, message = command.replace("UNTRANSLATABLE", address), message.replace("UNTRANSLATABLE", why)
    run = run_gdb(guest, command, "memcheck info")
    one_line_answer(run, command, message)
    assert "Linux 6." in run.stdout.splitlines()[-2] or "Linux 6." in run.stdout, "gdb still works afterwards"


def test_addr_with_an_unset_sysroot_says_how_to_set_it(guest):
    pid = guest.sh("pidof wl-maps").split()[0]
    text = int(guest.sh(f"head -1 /proc/{pid}/maps").split("-")[0], 16) + 0x189     # in the program's own ELF
    run = run_gdb(guest, "set memcheck sysroot", f"memcheck addr -p {pid} {text:#x}")
    assert "no sysroot set: use 'set memcheck sysroot DIR'" in run.stdout
    assert "Traceback" not in run.output


EVERY_COMMAND = ["memcheck info", "memcheck ps", "memcheck maps 1", "memcheck pagetable", "memcheck vtop 0x1000",
                 "memcheck addr -p 1 0x1000", "memcheck leaks 1", "memcheck trace on", "memcheck trace status",
                 "memcheck slab", "memcheck kmem 0xffff888000000000", "memcheck kleaks"]


def every_command(*before: str, gdb: str = "gdb") -> str:
    """stderr of one gdb that runs every command after `before` (gdb arguments)."""
    argv = [gdb, "-nx", "-batch", *before, "-x", str(REPO / "gdb_memcheck" / "gdbinit.py")]
    for c in EVERY_COMMAND:
        argv += ["-ex", c]
    stderr = subprocess.run(argv, capture_output=True, text=True, timeout=120).stderr
    assert "Traceback" not in stderr
    return stderr


def test_every_command_without_a_connection_says_so():
    stderr = every_command()
    for c in EVERY_COMMAND:
        assert f"{' '.join(c.split()[:2])}: not connected to a guest (target remote HOST:PORT)" in stderr, c


def test_every_command_without_kernel_symbols_says_so(guest):
    stderr = every_command("-ex", f"target remote 127.0.0.1:{guest.gdb_port}", gdb=guest.arch.gdb)
    for c in EVERY_COMMAND:
        assert f"{' '.join(c.split()[:2])}: no kernel symbols" in stderr, c


def test_slabs_are_read_everywhere_and_kmem_and_kleaks_refused_in_one_line_off_x86_64(guest):
    run = run_gdb(guest, "memcheck slab", "memcheck kmem $sp", "memcheck kleaks")
    refused = [l for l in run.stderr.splitlines() if "reads x86-64 guests only" in l]
    assert re.search(r"^task_struct +\d+ +\d+ +\d+ ", run.stdout, re.M), run.output
    if guest.options.arch == "amd64":
        assert not refused and "LEAK SUMMARY:" in run.stdout and "task stack" in run.stdout, run.output
    else:
        assert refused == [f"memcheck {c}: memcheck {c} reads x86-64 guests only, not aarch64; memcheck slab reads both"
                           for c in ("kmem", "kleaks")], run.output
    assert "Traceback" not in run.output


CORRUPT_MAPLE_SCRIPT = r"""
import gdb, struct
from gdb_memcheck.linux import maple
from gdb_memcheck.frontend.session import SESSION
system = SESSION.system()
proc = system.find("wl-maps")
mm = system.mm(proc)
tree = mm.addr + system.vma_reader.tree_off
root = struct.unpack("<Q", system.kmem.read(tree + system.vma_reader.maple.ma_root, 8))[0]
node = root & ~maple.NODE_MASK
fmt = system.vma_reader.maple.arange64 if (root >> 3) & 0xF == maple.ARANGE_64 else system.vma_reader.maple.range64
victim = node + fmt.slot + 8                       # the root's second child
inferior = gdb.selected_inferior()
saved = bytes(inferior.read_memory(victim, 8))
inferior.write_memory(victim, struct.pack("<Q", root))     # the child now points back at the root
SESSION.on_cont(None)
try:
    gdb.execute(f"memcheck maps {proc.tgid}")
except gdb.error as e:
    print("ERROR-LINE", e)
finally:
    inferior.write_memory(victim, saved)           # give the guest its tree back
    SESSION.on_cont(None)
print("RESTORED", len(gdb.execute(f"memcheck maps {proc.tgid}", to_string=True).splitlines()))
"""


def test_a_corrupt_maple_tree_in_guest_memory_gives_partial_maps_and_one_error_line(guest):
    pid = guest.sh("pidof wl-maps").strip()
    expected = guest.sh(f"cat /proc/{pid}/maps").splitlines()
    run = run_gdb(guest, script=CORRUPT_MAPLE_SCRIPT)
    lines = run.stdout.splitlines()
    error = next(l for l in lines if l.startswith("ERROR-LINE"))
    assert re.search(r"memcheck maps: maple node 0x[0-9a-f]+ is reached twice \(cycle\) \(after \d+ mappings\)", error)
    shown = [l for l in lines if re.match(r"^[0-9a-f]{8,}-[0-9a-f]{8,} ", l)]
    assert 0 < len(shown) < len(expected) and shown == expected[:len(shown)], "partial maps come first"
    assert f"RESTORED {len(expected)}" in run.stdout
    assert "Traceback" not in run.output


def test_a_vmlinux_of_another_kernel_gets_one_line_and_page_walks_still_work(guest):
    """The other lab kernel's vmlinux (6.12 for a 6.1 guest, and the reverse) is loaded on purpose."""
    arch = guest.options.arch
    other = guestlab.kernel_dir("6.1-cloud" if guest.kernel == guestlab.kernel_dir("6.12-cloud", arch) else "6.12-cloud",
                                arch)
    argv = ["timeout", "120", guest.arch.gdb, "-nx", "-batch", "-ex", f"file {other / 'vmlinux-indexed'}",
            "-ex", f"target remote 127.0.0.1:{guest.gdb_port}", "-x", str(REPO / "gdb_memcheck" / "gdbinit.py"),
            "-ex", "memcheck ps", "-ex", "memcheck maps 1", "-ex", "memcheck vtop $sp", "-ex", "memcheck pagetable"]
    run = subprocess.run(argv, capture_output=True, text=True)
    uname = guest.sh("uname -r").strip()
    load = next(l for l in run.stdout.splitlines() if l.startswith("gdb_memcheck "))
    assert "the loaded vmlinux is not the running kernel" in load and f"the guest runs 'Linux {uname} #" in load
    for command in ("memcheck ps", "memcheck maps"):
        assert f"{command}: the loaded vmlinux is not the running kernel" in run.stderr
    assert re.search(r"^  physical 0x[0-9a-f]+$", run.stdout, re.M), "vtop by CR3 needs no kernel structures"
    assert re.search(r"^# [45]-level tables at 0x", run.stdout, re.M)
    assert "Traceback" not in run.stdout + run.stderr
