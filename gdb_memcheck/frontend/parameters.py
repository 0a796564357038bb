"""Settings under `set memcheck ...` / `show memcheck ...`."""
from __future__ import annotations

import gdb

from ..leakcheck.malloc_tracker import MALLOC_STOPS
from ..report.views import EXIT_REPORTS
from . import physical
from .leak_tracking import CONTROLLER as TRACKING
from .session import SESSION
from .trace import CONTROLLER


class SetMemcheckPrefix(gdb.Command):
    """Settings of gdb_memcheck."""

    def __init__(self) -> None:
        super().__init__("set memcheck", gdb.COMMAND_DATA, prefix=True)


class ShowMemcheckPrefix(gdb.Command):
    """Settings of gdb_memcheck; with no name, every one of them."""

    def __init__(self) -> None:
        super().__init__("show memcheck", gdb.COMMAND_DATA, prefix=True)
        self.settings: list[gdb.Parameter] = []

    def invoke(self, arg: str, from_tty: bool) -> None:
        for setting in self.settings:
            value = "" if setting.value is None else str(setting.value)
            gdb.write(f"{setting.name}:  {setting.get_show_string(value)}\n")


class SysrootParameter(gdb.Parameter):
    """Directory holding the guest's files (binaries and libraries with their symbols)."""

    name = "memcheck sysroot"
    set_doc = "Set the directory that holds the guest's files."
    show_doc = "Show the directory that holds the guest's files."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_OPTIONAL_FILENAME)
        self.value = ""

    def get_show_string(self, svalue: str) -> str:
        return f"Guest files are looked up under {svalue or '(not set)'}."


class PhysicalReadParameter(gdb.Parameter):
    """How to read guest-physical memory: auto (fastest available), qemu-mem, phymemmode or directmap."""

    name = "memcheck physical-read"
    set_doc = "Set how guest-physical memory is read."
    show_doc = "Show how guest-physical memory is read."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_ENUM, ("auto",) + physical.PATHS)
        self.value = "auto"

    def get_set_string(self) -> str:
        SESSION.choose_physical(self.value)
        return ""

    def get_show_string(self, svalue: str) -> str:
        used = f" (in use: {SESSION.physical.name})" if SESSION.physical else ""
        return f"Guest-physical memory is read via {svalue}{used}."


class EventLogParameter(gdb.Parameter):
    """File that receives every traced event as a JSON line, flushed per event (empty: none)."""

    name = "memcheck event-log"
    set_doc = "Set the file that receives traced events as JSON lines."
    show_doc = "Show the file that receives traced events."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_OPTIONAL_FILENAME)
        self.value = ""

    def get_set_string(self) -> str:
        try:
            CONTROLLER.open_log(self.value or "")
        except OSError as e:
            self.value = ""
            raise gdb.GdbError(f"set memcheck event-log: {e.strerror}: {e.filename}") from None
        return ""

    def get_show_string(self, svalue: str) -> str:
        return f"Traced events are written to {svalue or '(no file)'}."


class StackDepthParameter(gdb.Parameter):
    """Frames kept for each allocation and bad free that leak tracking records (1 to 64)."""

    name = "memcheck stack-depth"
    set_doc = "Set how many frames leak tracking keeps per allocation stack."
    show_doc = "Show how many frames leak tracking keeps per allocation stack."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_ZUINTEGER)
        self.value = TRACKING.tracker.depth

    def get_set_string(self) -> str:
        if not 1 <= self.value <= 64:
            self.value = TRACKING.tracker.depth
            raise gdb.GdbError("set memcheck stack-depth: give a number of frames from 1 to 64")
        TRACKING.tracker.depth = self.value
        return ""

    def get_show_string(self, svalue: str) -> str:
        return f"Leak tracking keeps {svalue} frames per allocation stack."


class ExitReportParameter(gdb.Parameter):
    """What a tracked process prints when it exits: summary (one line), text (valgrind's
    loss records), memcheck (the emulator memcheck's per-block layout) or off."""

    name = "memcheck exit-report"
    set_doc = "Set what a tracked process's exit prints."
    show_doc = "Show what a tracked process's exit prints."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_ENUM, EXIT_REPORTS)
        self.value = TRACKING.output.exit_report

    def get_set_string(self) -> str:
        TRACKING.output.exit_report = self.value
        return ""

    def get_show_string(self, svalue: str) -> str:
        return f"A tracked process's exit prints: {svalue}."


class MallocStopsParameter(gdb.Parameter):
    """Where leak tracking stops for a call that hands out a block: call (at the entry and at
    the caller's return site: the exact request size), return (once, on the allocator's own
    return instructions: malloc's usable size; calloc, realloc and posix_memalign keep two
    stops) or watch (read watchpoints, which QEMU serves without flushing its translations:
    on the flag glibc's allocating functions read first, and on the return-address slot;
    needs glibc's symbols, libc6-dbg).  Applies to processes tracked from then on."""

    name = "memcheck malloc-stops"
    set_doc = "Set where leak tracking stops for an allocation."
    show_doc = "Show where leak tracking stops for an allocation."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_ENUM, MALLOC_STOPS)
        self.value = TRACKING.tracker.malloc_stops

    def get_set_string(self) -> str:
        TRACKING.tracker.malloc_stops = self.value
        return ""

    def get_show_string(self, svalue: str) -> str:
        where = {"call": "at its entry and at the caller's return site",
                 "return": "at the allocator's return instructions",
                 "watch": "at read watchpoints on malloc's flag and on the return address"}[svalue]
        return f"Leak tracking stops for an allocation {where} ({svalue})."


class FreeStopsParameter(gdb.Parameter):
    """Whether leak tracking stops at each free (on: invalid and double frees are reported as
    they happen) or finds frees by a heap scan when a report is made (off).  Applies to
    processes tracked from then on."""

    name = "memcheck free-stops"
    set_doc = "Set whether leak tracking stops at each free."
    show_doc = "Show whether leak tracking stops at each free."

    def __init__(self) -> None:
        super().__init__(self.name, gdb.COMMAND_DATA, gdb.PARAM_BOOLEAN)
        self.value = TRACKING.tracker.free_stops

    def get_set_string(self) -> str:
        TRACKING.tracker.free_stops = bool(self.value)
        return ""

    def get_show_string(self, svalue: str) -> str:
        if svalue == "on":
            return "Leak tracking stops at each free (bad frees are reported)."
        return "Leak tracking finds frees by a heap scan at each report (bad frees are not checked)."


def register() -> list[gdb.Command | gdb.Parameter]:
    prefixes = [SetMemcheckPrefix(), ShowMemcheckPrefix()]
    prefixes[1].settings = [SysrootParameter(), PhysicalReadParameter(), EventLogParameter(),
                            StackDepthParameter(), ExitReportParameter(), MallocStopsParameter(),
                            FreeStopsParameter()]
    return prefixes + prefixes[1].settings
