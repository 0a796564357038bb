"""The --delta side of `ps`, `maps` and `leaks`: each look is remembered in the session's
history, and --delta shows what changed since the look before (live or in another
dump).  Without a look before, it says so and the full view follows."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import gdb

from ..changes.history import Checkpoint
from ..changes.leaks import LeakLook, increased_records, leak_look
from ..changes.mappings import everything_added, map_changes
from ..changes.processes import ProcessRecord, everything_new, process_changes
from ..leakcheck.leaks import Kind, LeakReport
from ..linux.system import Mapping
from ..linux.tasks import Task
from ..report.deltas import (leak_delta_json, leak_delta_text, maps_delta_json, maps_delta_text, previous_json,
                             ps_delta_json, ps_delta_text)
from ..report.style import Styler
from ..report.views import json_text
from ..symbols.sources import SourceFinder
from .session import SESSION


@dataclass(frozen=True)
class MapLook:
    """One look at a process's map: its comm (a pid reused by another program is not the
    same process) and its mappings with their Rss."""

    comm: str
    mappings: list[Mapping]


def since(previous: Checkpoint) -> str:
    return previous.describe(SESSION.history.clock())


def _note(line: str) -> None:
    gdb.write(line + "\n")


def process_changes_shown(records: list[ProcessRecord], previous: Checkpoint | None, args: argparse.Namespace,
                          style: Styler) -> bool:
    """Show what changed in the process list; False when there was no look before (the
    caller shows the full view after the note)."""
    wanted = lambda c: not ((args.user and c.record.kernel_thread) or (args.kernel and not c.record.kernel_thread))
    changes = process_changes(previous.value, records) if previous else everything_new(records)
    changes = [c for c in changes if wanted(c)]
    if args.json:
        gdb.write(json_text("ps --delta", {"previous": previous_json(previous, SESSION.history.clock()),
                                           "changes": ps_delta_json(changes)}))
        return True
    if previous is None:
        _note("memcheck ps: no previous ps to compare with: showing every process")
        return False
    gdb.write(ps_delta_text(changes, f"the previous ps ({since(previous)})", style))
    return True


def map_changes_shown(process: Task, look: MapLook, previous: Checkpoint | None, args: argparse.Namespace,
                      style: Styler) -> bool:
    """Show what changed in a process's map; False when there was no look before."""
    if previous is not None and previous.value.comm != look.comm:
        _note(f"memcheck maps: pid {process.tgid} was {previous.value.comm} at the previous maps, now {look.comm}")
        previous = None
    changes = map_changes(previous.value.mappings, look.mappings) if previous else everything_added(look.mappings)
    if args.json:
        gdb.write(json_text("maps --delta", {"pid": process.tgid, "comm": process.comm,
                                             "previous": previous_json(previous, SESSION.history.clock()),
                                             "changes": maps_delta_json(changes)}))
        return True
    if previous is None:
        _note(f"memcheck maps: no previous maps of pid {process.tgid} ({process.comm}) to compare with: "
              "showing the whole map")
        return False
    if not all(m.usage for m in previous.value.mappings):
        _note("memcheck maps: the previous maps had no --rss: Rss changes are not known")
    gdb.write(f"pid {process.tgid} ({process.comm}) " +
              maps_delta_text(changes, f"the previous maps ({since(previous)})", style))
    return True


def leak_changes_shown(report: LeakReport, look: LeakLook, previous: Checkpoint | None, args: argparse.Namespace,
                       style: Styler, source: SourceFinder | None) -> bool:
    """Show the loss records new or grown since the process's previous check, as valgrind's
    `leak_check full increased` does; False when there was no check before."""
    if previous is not None and previous.value.comm != look.comm:
        _note(f"memcheck leaks: pid {report.pid} was {previous.value.comm} at the previous check, now {look.comm}")
        previous = None
    kinds = [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE] + ([Kind.REACHABLE] if args.show_reachable else [])
    deltas = [d for d in increased_records(report.records(args.all), previous.value if previous else None)
              if args.json or d.record.kind in kinds]
    summaries = (look.summaries[args.all], previous.value.summaries[args.all] if previous else {})
    if args.json:
        body = leak_delta_json(report, deltas, summaries)
        gdb.write(json_text("leaks check --delta", {**body, "previous": previous_json(previous,
                                                                                      SESSION.history.clock())}))
        return True
    if previous is None:
        _note(f"memcheck leaks: no previous {report.mode}-mode check of pid {report.pid} ({report.comm}) to "
              "compare with: showing the full report")
        return False
    gdb.write(leak_delta_text(report, deltas, summaries, f"the previous check ({since(previous)})", style, source))
    return True


def remember_leaks(report: LeakReport) -> tuple[LeakLook, Checkpoint | None]:
    """Remember this check of the process in its mode; return it and the check before."""
    look = leak_look(report)
    return look, SESSION.history.swap(("leaks", report.pid, report.mode), look, SESSION.source)
