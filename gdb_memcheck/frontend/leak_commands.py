"""`memcheck leaks`: scan mode on demand, tracking mode (track, untrack, status) and the
reports tracked processes leave when they exit."""
from __future__ import annotations

import argparse

import gdb

from .. import heapscan, leaks
from ..leaks import Kind
from ..target import TargetError
from ..views import leak_report_json, leak_report_memcheck, leak_report_text, to_json
from .commands import ArgParser, JsonSubcommand, UsageError, pick_process
from .breakpoints import event_path_text
from .leak_tracking import CONTROLLER
from .session import SESSION

ACTIONS = ("track", "untrack", "status", "report")


class LeaksCommand(JsonSubcommand):
    """Memory leaks of guest processes, classified as valgrind does.

Usage: memcheck leaks [PID|COMM] [--scan] [--show-reachable] [--all] [--format text|memcheck] [--json]
       memcheck leaks track PID|COMM | --exec PATH
       memcheck leaks untrack
       memcheck leaks status [--json]
       memcheck leaks report [PID] [--show-reachable] [--all] [--format text|memcheck] [--json]
A tracked process's blocks come from breakpoints on its malloc family, with exact sizes and
allocation stacks; any other process is scanned (its glibc heap walked from outside, sizes
rounded by malloc, no stacks; --scan forces this).  Both scan the roots (data, bss, live
stacks, registers) for pointers: definitely, indirectly and possibly lost blocks are
reported; --show-reachable adds still-reachable ones.  Blocks inherited across fork,
allocated before main or before tracking began are forgiven unless --all.
`track --exec PATH` follows every process that executes PATH from its first instruction;
tracked processes' forked children are tracked too.  When a tracked process exits, its
report is kept: `report PID` shows it (`report` alone: the latest)."""

    name = "leaks"

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("process", nargs="?")
        p.add_argument("pid", nargs="?")
        p.add_argument("--scan", action="store_true")
        p.add_argument("--show-reachable", action="store_true")
        p.add_argument("--all", action="store_true")
        p.add_argument("--format", choices=("text", "memcheck"), default="text")
        p.add_argument("--exec", dest="exec_path")
        return p

    def run(self, args: argparse.Namespace) -> None:
        if args.exec_path and args.process != "track":
            raise UsageError("--exec PATH goes with track")
        if args.process in ("untrack", "status") and args.pid is not None:
            raise UsageError(f"unrecognized arguments: {args.pid}")
        if args.process in ACTIONS:
            getattr(self, "_" + args.process)(args)
            return
        if args.pid is not None:
            raise UsageError(f"unrecognized arguments: {args.pid}")
        system = SESSION.system()
        process = pick_process(system, args.process)
        if CONTROLLER.tracker.tracks(process.tgid) and not args.scan:
            report = CONTROLLER.tracker.live_report(system, process)
        else:
            report = heapscan.scan(system, process).report()
        self._show(report, args)

    def _show(self, report: leaks.LeakReport, args: argparse.Namespace) -> None:
        if args.json:
            gdb.write(to_json(leak_report_json(report, args.all)) + "\n")
        elif args.format == "memcheck":
            gdb.write(leak_report_memcheck(report, args.all))
        else:
            kinds = [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE] + ([Kind.REACHABLE] if args.show_reachable else [])
            gdb.write(leak_report_text(report, kinds, args.all))

    def _track(self, args: argparse.Namespace) -> None:
        if args.exec_path:
            if args.pid:
                raise UsageError("give PID|COMM or --exec PATH, not both")
            gdb.write(f"memcheck leaks: {CONTROLLER.track_exec(args.exec_path)}\n")
            return
        if not args.pid:
            raise UsageError("track needs PID|COMM or --exec PATH")
        process = SESSION.system().find(args.pid)
        gdb.write(f"memcheck leaks: {CONTROLLER.track_process(process)}\n")

    def _untrack(self, args: argparse.Namespace) -> None:
        gdb.write(f"memcheck leaks: {CONTROLLER.untrack()} tracking breakpoints removed\n")

    def _status(self, args: argparse.Namespace) -> None:
        doc = CONTROLLER.status()
        if args.json:
            gdb.write(to_json(doc) + "\n")
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
            if not args.pid.isdigit():
                raise UsageError(f"report takes a PID, not {args.pid!r}")
            reports = [r for r in reports if r.pid == int(args.pid)]
        if not reports:
            which = f"pid {args.pid}" if args.pid else "any tracked process"
            raise TargetError(f"no exit report for {which} (tracked processes report when they exit)")
        self._show(reports[-1], args)


LEAK_SUBCOMMANDS = (LeaksCommand,)
