"""Sample the RSS of every guest process N times into a CSV file, letting the guest run
between samples.  Load it after the plugin, then run the command it defines:

    gdb -batch vmlinux -ex 'target remote :1234' -x gdb_memcheck/gdbinit.py \\
        -x examples/rss_to_csv.py -ex 'rss-csv rss.csv 10 1.0'

Columns: sample, time (Unix seconds), pid, comm, rss_kib, anonymous_kib; RSS is counted
from each process's page tables, as `memcheck maps --rss` counts it.  Kernel threads have
no memory map and are left out; a process that exits stops appearing."""
import csv
import time

import gdb

from gdb_memcheck import api

FIELDS = ("sample", "time", "pid", "comm", "rss_kib", "anonymous_kib")


def sample(n: int) -> list[list]:
    """One row per user process, read at this stop."""
    now, rows = time.time(), []
    for process in api.processes():
        if not process.mm:
            continue
        try:
            mappings = api.maps(process)
        except api.Error:            # exiting: its memory map is being torn down
            continue
        rss = sum(m.usage.rss for m in mappings) // 1024
        anonymous = sum(m.usage.anonymous for m in mappings) // 1024
        rows.append([n, f"{now:.3f}", process.tgid, process.comm, rss, anonymous])
    return rows


class RssCsv(gdb.Command):
    """rss-csv FILE [SAMPLES [SECONDS]]: sample every process's RSS SAMPLES times (default 10),
    letting the guest run SECONDS (default 1) between samples, into the CSV file FILE."""

    def __init__(self) -> None:
        super().__init__("rss-csv", gdb.COMMAND_USER)

    def invoke(self, arg: str, from_tty: bool) -> None:
        self.dont_repeat()
        words = gdb.string_to_argv(arg)
        if not 1 <= len(words) <= 3:
            raise gdb.GdbError("usage: rss-csv FILE [SAMPLES [SECONDS]]")
        path, samples, seconds = words[0], int(words[1]) if len(words) > 1 else 10, \
            float(words[2]) if len(words) > 2 else 1.0
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(FIELDS)
            for n in range(samples):
                if n:
                    api.run_for(seconds)
                out.writerows(sample(n))
        gdb.write(f"rss-csv: {samples} samples written to {path}\n")


RssCsv()
