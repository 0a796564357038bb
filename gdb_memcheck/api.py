"""The stable Python API of gdb_memcheck, for `gdb python` and `gdb -x script.py` once the
plugin is loaded.  Each function answers what the command of the same name shows, as the
core's dataclasses (tasks.Task, system.Mapping, paging.Translation, addrinfo.AddressInfo,
leaks.LeakReport, tracing.Event); failures raise Error with a one-line message.  A process
is a pid, a comm, a Task, or None for the one on the selected vCPU.  Names in __all__ keep
their meaning within a major version; the README's "Scripting" section describes them.

    from gdb_memcheck import api
    for p in api.processes():
        if p.mm:
            print(p.tgid, p.comm, sum(m.usage.rss for m in api.maps(p)))
"""
from __future__ import annotations

from .frontend.scripting import (Process, describe, events, exit_reports, maps, pagetable, process, processes,
                                 run_for, run_until, threads, track, tracked, translate, untrack)
from .frontend.scripting import leak_check as leaks
from .target import TargetError as Error

__all__ = ["Error", "Process", "describe", "events", "exit_reports", "leaks", "maps", "pagetable", "process",
           "processes", "run_for", "run_until", "threads", "track", "tracked", "translate", "untrack"]
