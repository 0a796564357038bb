"""`memcheck open` and `memcheck close`: the views served from a QEMU dump-guest-memory
file instead of the live guest."""
from __future__ import annotations

import argparse
import os

import gdb

from ..target import TargetError
from .breakpoints import SilentBreakpoint
from .commands import Subcommand
from .session import SESSION


class OpenCommand(Subcommand):
    """`memcheck open FILE`: every snapshot view reads the dump from now on."""

    name = "open"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        if SilentBreakpoint.placed:
            raise TargetError("tracing or leak tracking has breakpoints in the live guest, whose handlers read "
                              "the views: stop them first (memcheck trace off, memcheck leaks untrack)")
        path = os.path.expanduser(args.file)
        gdb.write(f"memcheck open: {SESSION.open_dump(path, args.cpu)}\n")


class CloseCommand(Subcommand):
    """`memcheck close`: the views read the live guest again."""

    name = "close"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        path = SESSION.close_dump()
        try:
            line = SESSION.detect()
        except TargetError as e:
            line = str(e)
        gdb.write(f"memcheck close: {path} closed; {line}\n")


DUMP_SUBCOMMANDS = (OpenCommand, CloseCommand)
