"""The launcher builds gdb's command line: symbols, QEMU's gdbstub, the plugin's loader."""
from __future__ import annotations

from pathlib import Path

from gdb_memcheck.__main__ import LOADER, gdb_argv, main, parse


def test_the_launcher_loads_the_kernel_attaches_and_loads_the_plugin():
    args = parse(["/boot/vmlinux", "--sysroot", "/srv/guest", "--", "-batch", "-ex", "memcheck ps"])
    assert gdb_argv(args) == ["gdb", "-q", "-ex", "file /boot/vmlinux", "-ex", "target remote localhost:1234",
                              "-x", str(LOADER), "-ex", "set memcheck sysroot /srv/guest",
                              "-batch", "-ex", "memcheck ps"]
    assert LOADER == Path(__file__).resolve().parents[2] / "gdb_memcheck" / "gdbinit.py" and LOADER.is_file()


def test_the_default_remote_is_what_qemu_s_opens_and_another_can_be_given():
    assert "target remote localhost:1234" in gdb_argv(parse(["vmlinux"]))
    assert "target remote 10.0.0.2:5555" in gdb_argv(parse(["vmlinux", "--remote", "10.0.0.2:5555"]))


def test_a_missing_vmlinux_is_one_line_and_status_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"gdb-memcheck: no such file: {tmp_path / 'nope'}\n"
