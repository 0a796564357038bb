"""`memcheck trace`, `memcheck events` and `memcheck stop-on`."""
from __future__ import annotations

import argparse

import gdb

from .. import cli, tracing
from ..report.schema import hexa
from ..report.views import json_text, maps_json, maps_text
from .breakpoints import KERNEL_HOOKS, event_path, event_path_text
from .commands import Subcommand, current_style
from .session import SESSION
from .trace import CONTROLLER


class TraceCommand(Subcommand):
    """`memcheck trace`: on, off, status, table, maps."""

    name = "trace"

    def run(self, args: argparse.Namespace) -> None:
        getattr(self, "_" + args.action)(args)

    def _on(self, args: argparse.Namespace) -> None:
        groups = [g for g in args.only.split(",") if g]
        known = set(tracing.TRACED_GROUPS)
        if set(groups) - known:
            raise cli.UsageError(f"unknown hook group {', '.join(sorted(set(groups) - known))}; "
                                 f"groups: {' '.join(sorted(known))}")
        CONTROLLER.start(groups, args.hw)
        gdb.write(f"memcheck trace: {len(CONTROLLER.breakpoints)} hooks placed, "
                  f"{len(CONTROLLER.tracer.processes)} processes seeded\n")

    def _off(self, args: argparse.Namespace) -> None:
        gdb.write(f"memcheck trace: {CONTROLLER.stop_tracing()} hooks removed\n")

    def _status(self, args: argparse.Namespace) -> None:
        c, stats = CONTROLLER, CONTROLLER.stats
        doc = {"active": c.active, "hits": stats.hits, "events": c.tracer.seq, "repeated_hits": stats.repeated,
               "counts": c.tracer.counts, "handler_ms_per_hit": stats.ms_per_hit,
               "errors": stats.errors, "last_error": stats.last_error or None,
               "mapping_reads": c.tracer.mappings.reads, "mapping_cache_hits": c.tracer.mappings.hits,
               "hooks": [{"group": h.group, "symbol": h.symbol, "address": hexa(h.address), "reason": h.reason}
                         for h in c.hooks], "missing": KERNEL_HOOKS.missing if c.active else [],
               "stop_on": [vars(r) for r in c.tracer.rules], "event_path": event_path()}
        if args.json:
            gdb.write(json_text("trace status", doc))
            return
        lines = [f"tracing {'on' if c.active else 'off'}: {stats.hits} hits, {c.tracer.seq} events, "
                 f"{stats.ms_per_hit:.2f} ms handler time per hit, {stats.errors} errors; "
                 f"{event_path_text(doc['event_path'])}"]
        lines += [f"  {h.group:<9} {h.symbol:<20} {h.address:#x}  {h.reason}" for h in c.hooks]
        lines += [f"  missing   {m}" for m in doc["missing"]]
        if stats.last_error:
            lines.append(f"  last error: {stats.last_error}")
        gdb.write("\n".join(lines) + "\n")

    def _table(self, args: argparse.Namespace) -> None:
        CONTROLLER.tracer.prune(SESSION.system())
        procs = sorted(CONTROLLER.tracer.processes.values(), key=lambda p: p.pid)
        if args.json:
            rows = [{"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "image": p.image, "mm": hexa(p.mm or None),
                     "threads": sorted(p.threads), "execs": p.execs, "exiting": p.exiting} for p in procs]
            gdb.write(json_text("trace table", {"processes": rows}))
            return
        lines = [f"{'PID':>6} {'PPID':>6} {'THREADS':>7} {'EXECS':>5} COMMAND / IMAGE"]
        lines += [f"{p.pid:>6} {p.ppid:>6} {len(p.threads):>7} {p.execs:>5} {p.comm} {p.image}"
                  + (" (exiting)" if p.exiting else "") for p in procs]
        gdb.write("\n".join(lines) + "\n")

    def _maps(self, args: argparse.Namespace) -> None:
        vmas = CONTROLLER.tracer.traced_vmas(SESSION.system(), args.pid)
        if args.json:
            gdb.write(json_text("trace maps", {"pid": args.pid, "maps": maps_json(vmas)}))
        else:
            gdb.write(maps_text(vmas, style=current_style()))


class EventsCommand(Subcommand):
    """`memcheck events`: the event log."""

    name = "events"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        events = CONTROLLER.tracer.last(args.last, args.pid)
        if args.json:
            gdb.write(json_text("events", {"events": [e.as_dict() for e in events]}))
        elif events:
            style = current_style()
            gdb.write("".join(e.text(style) + "\n" for e in events))
        else:
            gdb.write("no events traced" + ("" if CONTROLLER.active else " (memcheck trace on starts tracing)") + "\n")


class StopOnCommand(Subcommand):
    """`memcheck stop-on`: add, list or clear the rules."""

    name = "stop-on"
    needs_guest = False

    def run(self, args: argparse.Namespace) -> None:
        rules = CONTROLLER.tracer.rules
        if args.event == "clear":
            rules.clear()
        elif args.event:
            rules.append(tracing.StopRule(args.event, args.pattern))
            if not CONTROLLER.active:
                gdb.write("memcheck stop-on: rule kept; it applies once `memcheck trace on` runs\n")
        gdb.write("".join(f"stop on {r.kind} {r.pattern}\n" for r in rules) or "no stop-on rules\n")


TRACE_SUBCOMMANDS = (TraceCommand, EventsCommand, StopOnCommand)
