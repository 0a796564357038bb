"""The thin gdb frontend: the live Target, the `memcheck` commands and settings.

This is the only package that imports gdb; everything it shows is computed by
the gdb-free core.
"""

from __future__ import annotations

import gdb

from ..target import TargetError
from . import commands, functions, parameters
from .breakpoints import taken_at_stop
from .dump_commands import DUMP_SUBCOMMANDS
from .kernel_commands import KERNEL_SUBCOMMANDS
from .leak_commands import LEAK_SUBCOMMANDS
from .session import SESSION
from .trace_commands import TRACE_SUBCOMMANDS
from .watch_command import WATCH_SUBCOMMANDS

_REGISTERED: list = []


def load() -> None:
    """Register commands and settings once, hook gdb's events, and say what was found."""
    if not _REGISTERED:
        subcommands = (LEAK_SUBCOMMANDS + TRACE_SUBCOMMANDS + KERNEL_SUBCOMMANDS + DUMP_SUBCOMMANDS
                       + WATCH_SUBCOMMANDS)
        _REGISTERED.extend(commands.register(subcommands) + parameters.register() + functions.register())
        SESSION.connect_events()
        gdb.events.stop.connect(taken_at_stop)
    try:
        line = SESSION.detect()
    except TargetError as e:
        line = f"loaded; {e}"
    SESSION.announce(line)
