"""`memcheck watch`: run the guest and sample the chosen processes at each interval, each
sample taken at a stop that an interrupt makes (never a breakpoint); then draw them.

gdb prints every stop ("Program received signal SIGINT, Interrupt." and where), which a
watch at 0.1 s would turn into a flood.  gdb 13 offers no switch for the first line, so
while the guest runs gdb's standard output goes to a file; the stop notice is dropped
from it (the summary says when a stop that was not the watch's ended it) and anything
else (a tracked process's exit report) is shown."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import tempfile
import threading
import time
from typing import Callable, Iterator

import gdb

from .. import cli
from ..report import charts
from ..report.views import json_text
from ..timeline.sampling import Sample, Sampler, wanted
from ..timeline.watch import WatchResult, watch
from ..target import TargetError
from .commands import Subcommand
from .session import SESSION

# QEMU 7.2's gdbstub drops an interrupt that arrives while it waits for gdb's ack of a
# breakpoint stop (qemu-scripts/gdbdrive.py): one not answered is sent again.
RESEND_SECONDS = 1.0
STOP_NOTICE = re.compile(r"\n?(?:Program|Thread \d+[^\n]*?) received signal SIGINT, Interrupt\.\n")
QUIET = {"pagination": "off", "suppress-cli-notifications": "on"}


class WatchCommand(Subcommand):
    """`memcheck watch [PID|COMM ...] --every S --for S [--csv F] [--plot F]`."""

    name = "watch"

    def run(self, args: argparse.Namespace) -> None:
        SESSION.require_live("watch")
        check_outputs(args)
        sampler = Sampler(args.processes)
        say_missing(args.processes)

        def take(number: int, when: float, seconds: float) -> Sample:
            return sampler.sample(SESSION.system(), number, when, seconds)

        with quiet_stops(), GuestRunner(gdb.STDERR if args.json else gdb.STDOUT).connected() as runner:
            result = watch(runner.run_until, take, args.every, args.duration)
        written = write_outputs(args, result)
        if args.json:
            gdb.write(json_text("watch", {"every": args.every, "duration": args.duration,
                                          "interrupted": result.interrupted, "elapsed": round(result.elapsed, 3),
                                          "running": round(result.running, 3), "skipped": result.skipped,
                                          "csv": args.csv, "plot": args.plot,
                                          "samples": [charts.sample_json(s) for s in result.samples]}))
            return
        gdb.write("memcheck watch: " + charts.timeline_text(result, args.every) + written)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse before the watch what could only fail after it: an unknown picture format,
    PNG without matplotlib, a directory that does not exist."""
    if args.plot:
        suffix = os.path.splitext(args.plot)[1].lower()
        if suffix not in (".svg", ".png"):
            raise cli.UsageError(f"--plot {args.plot}: the picture is .svg or .png")
        if suffix == ".png" and not charts.png_available():
            raise cli.UsageError(f"--plot {args.plot}: PNG needs matplotlib (python3-matplotlib); .svg needs nothing")
    for path in filter(None, (args.csv, args.plot)):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise cli.UsageError(f"{path}: no directory {directory}")


def say_missing(specs: list[str]) -> None:
    """A pid that is not running is an error; a comm may start later."""
    procs = SESSION.system().processes
    for spec in specs:
        if wanted(procs, [spec]):
            continue
        if spec.isdigit():
            raise TargetError(f"no user process with pid {spec}")
        gdb.write(f"memcheck watch: no process named {spec!r} yet: it is watched once it runs\n")


class GuestRunner:
    """Runs the guest with `continue` and interrupts it at a given time; the time of each
    stop is taken when gdb reports it.  What gdb printed meanwhile, less the stop notice,
    goes to `stream` (standard error when standard output carries JSON)."""

    def __init__(self, stream: int = gdb.STDOUT) -> None:
        self.stream = stream
        self.stopped_at = 0.0

    def on_stop(self, _event) -> None:
        self.stopped_at = time.monotonic()

    def run_until(self, when: float) -> float | None:
        """Continue the guest and interrupt it at `when` (monotonic); the time it stopped,
        or None when it stopped before for another reason (Ctrl-C, a breakpoint)."""
        stopped, sent = threading.Event(), threading.Event()

        def interrupt() -> None:
            if not stopped.is_set():            # a late resend must not stop the next run
                sent.set()
                gdb.execute("interrupt")

        def timer() -> None:
            if stopped.wait(max(0.0, when - time.monotonic())):
                return
            while not stopped.is_set():
                gdb.post_event(interrupt)
                stopped.wait(RESEND_SECONDS)

        worker = threading.Thread(target=timer, daemon=True)
        worker.start()
        self.stopped_at = 0.0
        try:
            output = captured_stdout(lambda: gdb.execute("continue"))
        finally:
            stopped.set()
            worker.join()
        ours = sent.is_set()
        shown = STOP_NOTICE.sub("", output, count=1)          # the summary says when a stop ended the watch
        if shown.strip():
            gdb.write(shown, self.stream)
        return (self.stopped_at or time.monotonic()) if ours else None

    @contextlib.contextmanager
    def connected(self) -> Iterator["GuestRunner"]:
        gdb.events.stop.connect(self.on_stop)
        try:
            yield self
        finally:
            gdb.events.stop.disconnect(self.on_stop)


def captured_stdout(run: Callable[[], None]) -> str:
    """What gdb wrote to its standard output (file descriptor 1) while `run` ran."""
    gdb.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            run()
        finally:
            gdb.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace")


@contextlib.contextmanager
def quiet_stops() -> Iterator[None]:
    """No pager prompt and no stop location while the watch runs; the settings come back."""
    before = {name: gdb.parameter(name) for name in QUIET}
    for name, value in QUIET.items():
        gdb.execute(f"set {name} {value}", to_string=True)
    try:
        yield
    finally:
        for name, value in before.items():
            gdb.execute(f"set {name} {'on' if value is True else 'off' if value is False else value}",
                        to_string=True)


def write_outputs(args: argparse.Namespace, result: WatchResult) -> str:
    """Write the CSV and the picture asked for; say what was written."""
    lines = []
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(charts.csv_text(result.samples))
        rows = sum(len(s.processes) for s in result.samples)
        lines.append(f"csv: {args.csv} ({rows} rows)")
    if args.plot:
        title = f"memcheck watch: every {args.every:g} s, {len(result.samples)} samples"
        if args.plot.lower().endswith(".png"):
            charts.write_png(args.plot, result.samples, title)
        else:
            with open(args.plot, "w") as f:
                f.write(charts.svg(result.samples, title))
        lines.append(f"plot: {args.plot}")
    return "".join(line + "\n" for line in lines)


WATCH_SUBCOMMANDS = (WatchCommand,)
