"""`memcheck leaks`: scan mode on demand, tracking mode (track, untrack, status) and the
reports tracked processes leave when they exit."""
from __future__ import annotations

import argparse

import gdb

from ..gcpause import gc_paused
from ..leakcheck import leaks
from ..leakcheck.leaks import Kind
from ..report.views import leak_report_json, leak_report_memcheck, leak_report_text, json_text
from ..target import TargetError
from .breakpoints import event_path_text
from .commands import Subcommand, current_style, pick_process, source_finder
from .delta_views import leak_changes_shown, remember_leaks
from .leak_tracking import CONTROLLER
from .session import SESSION


class LeaksCommand(Subcommand):
    """`memcheck leaks`: check (the default), track, untrack, status, report."""

    name = "leaks"

    @gc_paused()             # a report of 10^6 blocks: see gcpause
    def run(self, args: argparse.Namespace) -> None:
        getattr(self, "_" + args.action)(args)

    def _check(self, args: argparse.Namespace) -> None:
        system = SESSION.system()
        report = CONTROLLER.check(system, pick_process(system, args.process), args.scan)
        look, previous = remember_leaks(report)
        source = source_finder() if args.source else None
        if args.delta and leak_changes_shown(report, look, previous, args, current_style(), source):
            return
        self._show(report, args)

    def _show(self, report: leaks.LeakReport, args: argparse.Namespace) -> None:
        if args.json:
            gdb.write(json_text(f"leaks {args.action}", leak_report_json(report, args.all)))
            return
        source = source_finder() if args.source else None
        if args.format == "memcheck":
            gdb.write(leak_report_memcheck(report, args.all, current_style(), source))
        else:
            kinds = [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE] + ([Kind.REACHABLE] if args.show_reachable else [])
            gdb.write(leak_report_text(report, kinds, args.all, current_style(), source))

    def _track(self, args: argparse.Namespace) -> None:
        if args.exec_path:
            gdb.write(f"memcheck leaks: {CONTROLLER.track_exec(args.exec_path)}\n")
            return
        process = SESSION.system().find(args.process)
        gdb.write(f"memcheck leaks: {CONTROLLER.track_process(process)}\n")

    def _untrack(self, args: argparse.Namespace) -> None:
        gdb.write(f"memcheck leaks: {CONTROLLER.untrack()} tracking breakpoints removed\n")

    def _status(self, args: argparse.Namespace) -> None:
        doc = CONTROLLER.status()
        if args.json:
            gdb.write(json_text("leaks status", doc))
            return
        gdb.write(f"tracking {'on' if doc['active'] else 'off'}; --exec {', '.join(doc['exec_paths']) or '(none)'}\n"
                  f"stops {doc['stops']}, {doc['handler_ms_per_stop']:.2f} ms handler time a stop, "
                  f"errors {doc['errors']}{' (' + doc['last_error'] + ')' if doc['last_error'] else ''}; "
                  f"{event_path_text(doc['event_path'])}\n")
        for p in doc["processes"]:
            gdb.write(f"  pid {p['pid']}: {p['blocks']} live blocks, {p['calls']} calls, {p['returns']} returns"
                      f"{'' if p['in_main'] else ', before main'}\n")
        gdb.write(f"exit reports: {', '.join(str(r.pid) for r in CONTROLLER.tracker.reports) or '(none)'}; "
                  f"bad frees: {len(doc['bad_frees'])}\n")
        for line in doc["untracked"]:
            gdb.write(f"  not tracked: {line}\n")

    def _report(self, args: argparse.Namespace) -> None:
        reports = CONTROLLER.tracker.reports
        if args.pid is not None:
            reports = [r for r in reports if r.pid == args.pid]
        if not reports:
            which = f"pid {args.pid}" if args.pid is not None else "any tracked process"
            raise TargetError(f"no exit report for {which} (tracked processes report when they exit)")
        self._show(reports[-1], args)


LEAK_SUBCOMMANDS = (LeaksCommand,)
