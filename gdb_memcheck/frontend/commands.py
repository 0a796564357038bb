"""The `memcheck` prefix command, its subcommands and their dash aliases.

Every subcommand turns any failure into one gdb error line that starts with the
command's name: no Python traceback reaches the user.
"""
from __future__ import annotations

import argparse
import json
import shlex

import gdb

from ..target import TargetError
from .session import SESSION


class UsageError(Exception):
    """Bad arguments; the message is the usage problem."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:
        raise UsageError(message or "")


class MemcheckPrefix(gdb.Command):
    """Whole-system memory checking of a Linux guest behind QEMU's gdbstub."""

    def __init__(self) -> None:
        super().__init__("memcheck", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, prefix=True)

    def invoke(self, arg: str, from_tty: bool) -> None:
        gdb.execute("help memcheck", from_tty)


class Subcommand(gdb.Command):
    """Base of `memcheck NAME`: parse arguments, run, report errors in one line."""

    name = ""

    def __init__(self, command_name: str) -> None:
        super().__init__(command_name, gdb.COMMAND_DATA)
        self.command_name = command_name

    def parser(self) -> ArgParser:
        return ArgParser(prog=f"memcheck {self.name}", add_help=False)

    def invoke(self, arg: str, from_tty: bool) -> None:
        try:
            self.run(self.parser().parse_args(shlex.split(arg)))
        except UsageError as e:
            raise gdb.GdbError(f"memcheck {self.name}: {e} (see: help memcheck {self.name})") from None
        except (TargetError, gdb.error, ValueError) as e:
            raise gdb.GdbError(f"memcheck {self.name}: {e}") from None
        except gdb.GdbError:
            raise
        except Exception as e:  # a bug of ours must not take gdb down; say what it was
            raise gdb.GdbError(f"memcheck {self.name}: internal error: {type(e).__name__}: {e}") from None

    def run(self, args: argparse.Namespace) -> None:
        raise UsageError("no action")


class InfoCommand(Subcommand):
    """What gdb_memcheck found: kernel release, machine, paging mode, KASLR slide, physical path.

Usage: memcheck info [--json]"""

    name = "info"

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("--json", action="store_true")
        return p

    def run(self, args: argparse.Namespace) -> None:
        line = SESSION.detect()
        if not args.json:
            gdb.write(line + "\n")
            return
        k = SESSION.kernel
        doc = {"summary": line}
        if k is not None:
            path = SESSION.physical_path()
            doc.update(release=k.release, machine=k.machine, paging=k.paging.value, kaslr_slide=k.slide,
                       vcpus=SESSION.target.cpu_count(), physical_path=path.name)
        gdb.write(json.dumps(doc) + "\n")


SUBCOMMANDS = (InfoCommand,)


def register() -> list[gdb.Command]:
    """Create `memcheck`, each `memcheck NAME` and its alias `memcheck-NAME`."""
    commands: list[gdb.Command] = [MemcheckPrefix()]
    for cls in SUBCOMMANDS:
        commands.append(cls(f"memcheck {cls.name}"))
        commands.append(cls(f"memcheck-{cls.name}"))
    return commands
