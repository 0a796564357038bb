"""`memcheck open` and `memcheck close`: the views served from a QEMU dump-guest-memory
file instead of the live guest; `memcheck diff`: what changed between two dumps."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import gdb

from .. import cli
from ..changes.leaks import LeakLook, increased_records, leak_look
from ..changes.mappings import map_changes
from ..changes.processes import ProcessRecord, process_changes, process_records
from ..leakcheck import heapscan
from ..leakcheck.leaks import Kind, LeakReport
from ..linux.system import Mapping
from ..report.deltas import (leak_delta_json, leak_delta_text, maps_delta_json, maps_delta_text, ps_delta_json,
                             ps_delta_text)
from ..report.views import json_text
from ..target import TargetError
from .breakpoints import SilentBreakpoint
from .commands import Subcommand, current_style
from .delta_views import MapLook
from .session import SESSION


class OpenCommand(Subcommand):
    """`memcheck open FILE`: every snapshot view reads the dump from now on."""

    name = "open"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        refuse_while_tracing()
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


@dataclass
class DumpLook:
    """What `diff` reads from one dump: every process, and the maps (and leak scans) of
    the processes compared, by identity (pid, comm, exe)."""

    path: str
    records: list[ProcessRecord]
    maps: dict[tuple, MapLook] = field(default_factory=dict)
    leaks: dict[tuple, tuple[LeakReport, LeakLook]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def look_at(path: str, specs: list[str], with_leaks: bool) -> DumpLook:
    """Serve the dump at `path` while reading it, then what was served before."""
    with SESSION.serving(path):
        system = SESSION.system()
        look = DumpLook(path, process_records(system))
        identity = {r.pid: r.identity for r in look.records}
        for proc in chosen(system, specs, look):
            mm, vmas = system.mm(proc), system.vmas(proc)
            look.maps[identity[proc.tgid]] = MapLook(proc.comm, [Mapping(v, u) for v, u in
                                                                 zip(vmas, system.usages(mm, vmas))])
            if with_leaks:
                try:
                    report = heapscan.scan(system, proc).report()
                except TargetError as e:
                    look.notes.append(f"pid {proc.tgid} ({proc.comm}) in {path}: {e}")
                    continue
                look.leaks[identity[proc.tgid]] = (report, leak_look(report))
    return look


def chosen(system, specs: list[str], look: DumpLook) -> list:
    """The user processes `specs` name (pids or comms; a comm may name several), or all."""
    procs = [p for p in system.processes if p.mm]
    if not specs:
        return procs
    found = [p for p in procs if str(p.tgid) in specs or p.comm in specs]
    missing = [s for s in specs if not any(str(p.tgid) == s or p.comm == s for p in found)]
    look.notes += [f"no process {s} in {look.path}" for s in missing]
    return found


class DiffCommand(Subcommand):
    """`memcheck diff DUMP_A DUMP_B`: processes and mappings that changed between two dumps."""

    name = "diff"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        if args.leaks and not args.processes:
            raise cli.UsageError("--leaks needs the processes to scan (PID|COMM ...)")
        refuse_while_tracing()
        a, b = (look_at(os.path.expanduser(p), args.processes, args.leaks) for p in (args.dump_a, args.dump_b))
        processes = process_changes(a.records, b.records)
        maps = [(key, map_changes(a.maps[key].mappings, b.maps[key].mappings)) for key in b.maps if key in a.maps]
        maps = [(key, changes) for key, changes in maps if changes or args.processes]
        leaks = [(key, *self._leak_delta(a.leaks[key][1], *b.leaks[key])) for key in b.leaks if key in a.leaks]
        if args.json:
            previous = {"source": a.path, "seconds_ago": None}
            gdb.write(json_text("diff", {
                "a": a.path, "b": b.path, "processes": ps_delta_json(processes),
                "maps": [{"pid": key[0], "comm": key[1], "previous": previous, "changes": maps_delta_json(c)}
                         for key, c in maps],
                "leaks": [{**leak_delta_json(report, deltas, summaries), "previous": previous}
                          for _key, report, deltas, summaries in leaks]}))
            return
        style = current_style()
        against = f"dump {a.path}"
        out = [f"memcheck diff: {a.path} -> {b.path}", *(f"note: {n}" for n in a.notes + b.notes),
               ps_delta_text(processes, against, style).rstrip()]
        out += [f"pid {key[0]} ({key[1]}) " + maps_delta_text(c, against, style).rstrip() for key, c in maps]
        out += [leak_delta_text(report, deltas, summaries, against, style).rstrip()
                for _key, report, deltas, summaries in leaks]
        gdb.write("\n".join(out) + "\n")

    @staticmethod
    def _leak_delta(before: LeakLook, report: LeakReport, look: LeakLook):
        deltas = [d for d in increased_records(report.records(False), before) if d.record.kind is not Kind.REACHABLE]
        return report, deltas, (look.summaries[False], before.summaries[False])


def refuse_while_tracing() -> None:
    """Breakpoint handlers read the views: they must keep reading the live guest."""
    if SilentBreakpoint.placed:
        raise TargetError("tracing or leak tracking has breakpoints in the live guest, whose handlers read "
                          "the views: stop them first (memcheck trace off, memcheck leaks untrack)")


DUMP_SUBCOMMANDS = (OpenCommand, CloseCommand, DiffCommand)
