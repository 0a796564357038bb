"""A CI gate: wait until PROGRAM has run and exited in the guest, then quit gdb with
status 1 if it leaked, 0 if it did not, and 2 if it did not finish in time.

    gdb -batch vmlinux -ex 'target remote :1234' -x gdb_memcheck/gdbinit.py \\
        -x examples/leak_gate.py -ex 'leak-gate /usr/bin/myprog 600'

Start it before the guest runs the program: every process that executes PROGRAM is
tracked from its first instruction, with its forked children.  Blocks inherited across
fork or allocated before main are forgiven, as `memcheck leaks report` forgives them."""
import gdb

from gdb_memcheck import api
from gdb_memcheck.leakcheck.leaks import Kind, summary

LOST = (Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE)


def verdict(report) -> tuple[int, int]:
    """Lost blocks and bytes of one exit report."""
    totals = summary(report.reported(all_origins=False))
    return sum(totals[k][1] for k in LOST), sum(totals[k][0] for k in LOST)


class LeakGate(gdb.Command):
    """leak-gate PROGRAM [SECONDS]: let the guest run until every process that executed
    PROGRAM has exited (at most SECONDS, default 600), then quit: 1 if any leaked, else 0."""

    def __init__(self) -> None:
        super().__init__("leak-gate", gdb.COMMAND_USER)

    def invoke(self, arg: str, from_tty: bool) -> None:
        self.dont_repeat()
        words = gdb.string_to_argv(arg)
        if not 1 <= len(words) <= 2:
            raise gdb.GdbError("usage: leak-gate PROGRAM [SECONDS]")
        timeout = float(words[1]) if len(words) > 1 else 600.0
        gdb.write(f"leak-gate: {api.track(exec_path=words[0])}\n")
        gdb.flush()
        finished = api.run_until(lambda: bool(api.exit_reports()) and not api.tracked(), timeout)
        if not finished:
            gdb.write(f"leak-gate: {words[0]} did not finish within {timeout:g} s\n")
            gdb.execute("quit 2")
        leaked = False
        for report in api.exit_reports():
            blocks, size = verdict(report)
            leaked |= blocks > 0
            gdb.write(f"leak-gate: pid {report.pid} ({report.comm}): {blocks} lost blocks, {size} bytes, "
                      f"{len(report.bad_frees)} bad frees\n")
        api.untrack()
        gdb.write(f"leak-gate: {'FAIL' if leaked else 'pass'}\n")
        gdb.execute(f"quit {1 if leaked else 0}")


LeakGate()
