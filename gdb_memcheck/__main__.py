"""The launcher: start gdb with the kernel's symbols, attached to a QEMU gdbstub, with the
plugin loaded (the plugin itself runs inside gdb; this module only builds gdb's command line).

    python3 -m gdb_memcheck VMLINUX [--remote HOST:PORT] [--sysroot DIR] [-- GDB ARGUMENTS]
    gdb-memcheck VMLINUX ...          (the same, as installed by pip)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

LOADER = Path(__file__).resolve().parent / "gdbinit.py"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m gdb_memcheck", usage="%(prog)s [-h] [--remote HOST:PORT] "
                                "[--sysroot DIR] [--gdb GDB] VMLINUX [-- GDB ARGUMENTS]",
                                description="Start gdb on a QEMU gdbstub with the kernel's symbols and gdb_memcheck "
                                "loaded.  Arguments after -- go to gdb (e.g. -batch -ex 'memcheck ps').")
    p.add_argument("vmlinux", metavar="VMLINUX", help="the guest kernel's vmlinux, with debug info")
    p.add_argument("--remote", default="localhost:1234", metavar="HOST:PORT",
                   help="QEMU's gdbstub, HOST:PORT (default: localhost:1234, what QEMU's -s opens)")
    p.add_argument("--sysroot", metavar="DIR", help="the directory that holds the guest's files (set memcheck sysroot)")
    p.add_argument("--gdb", default="gdb", help="the gdb to run (default: gdb)")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The launcher's own arguments, and in `gdb_args` everything after --."""
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:cut])
    args.gdb_args = argv[cut + 1:]
    return args


def gdb_argv(args: argparse.Namespace) -> list[str]:
    """gdb's arguments: symbols, the remote target, the plugin, its sysroot, then the rest."""
    argv = [args.gdb, "-q", "-ex", f"file {args.vmlinux}", "-ex", f"target remote {args.remote}",
            "-x", str(LOADER)]
    if args.sysroot:
        argv += ["-ex", f"set memcheck sysroot {args.sysroot}"]
    return argv + args.gdb_args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not Path(args.vmlinux).is_file():
        print(f"gdb-memcheck: no such file: {args.vmlinux}", file=sys.stderr)
        return 2
    if shutil.which(args.gdb) is None:
        print(f"gdb-memcheck: {args.gdb} not found (Debian: apt-get install gdb)", file=sys.stderr)
        return 2
    command = gdb_argv(args)
    os.execvp(command[0], command)
    return 0     # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
