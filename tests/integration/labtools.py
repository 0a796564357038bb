"""Helpers the integration tests and benchmarks share: boot a lab guest, run gdb on it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "qemu-scripts"))

import guestlab  # noqa: E402  (lives in qemu-scripts/)

RESULT_TAG = "@@RESULT "

# What every gdb script of the tests and benchmarks starts with.
SCRIPT_PRELUDE = r"""
import json, sys
import gdb
sys.path[:0] = [REPO, REPO + "/qemu-scripts"]
import gdbdrive, guestlab
guest = guestlab.Guest.load(RUN_DIR)

def emit(obj):
    print(RESULT_TAG + json.dumps(obj), flush=True)

def q(cmd):
    return json.loads(gdb.execute(cmd, to_string=True))

def while_running(command, timeout=300):
    return gdbdrive.while_running(guest, command, timeout)
"""


@dataclass
class GdbRun:
    """What one batch gdb printed, with the JSON results its script emitted."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    results: list = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def result(self):
        assert self.results, f"gdb printed no result.\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self.results[-1]


def run_gdb(guest: "guestlab.Guest", *commands: str, script: str | None = None,
            plugin: bool = True, timeout: float = 180, connect: bool = True) -> GdbRun:
    """Run gdb in batch mode against `guest`: each command with -ex, then `script` as a Python file.

    The script reports results with `emit(obj)`, which prints one tagged JSON line; it
    also has `guest` (this guest), `q(cmd)` (a --json command's answer) and
    `while_running(command)` (qemu-scripts/gdbdrive.py).  Without `connect`, gdb has the
    guest's vmlinux and sysroot but no connection (to read its dumps with QEMU gone).
    """
    extra: list[str] = []
    for c in commands:
        extra += ["-ex", c]
    tmp = None
    if script is not None:
        prelude = (SCRIPT_PRELUDE.replace("REPO", repr(str(REPO))).replace("RESULT_TAG", repr(RESULT_TAG))
                   .replace("RUN_DIR", repr(str(guest.run_dir))))
        tmp = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        tmp.write(prelude + script)
        tmp.close()
        extra += ["-x", tmp.name]
    gdb, *args = guest.gdb_argv(*extra, plugin=plugin, connect=connect)
    argv = ["timeout", "-k", "5", str(int(timeout)), gdb, "-batch", *args]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    if proc.returncode == 124 and connect:      # timed out: free the guest for the module's next checks
        guest.release_debugger()
    if tmp:
        os.unlink(tmp.name)
    results = [json.loads(line[len(RESULT_TAG):]) for line in proc.stdout.splitlines()
               if line.startswith(RESULT_TAG)]
    return GdbRun(argv, proc.returncode, proc.stdout, proc.stderr, took, results)


def untranslatable(options: "guestlab.BootOptions") -> tuple[str, str]:
    """An address no page table of the guest can translate, and the reason the plugin gives.
    x86-64: bits 63:47 (63:56 with 5 levels) must copy bit 47 (56).  AArch64: bit 55 picks
    TTBR0, whose 48-bit range ends below bit 48 (and 0x8000000000000000 is a tagged user
    pointer there: Linux sets TCR_EL1.TBI0)."""
    if options.arch == "arm64":
        return "0x1000000000000", "0x1000000000000 is outside the 48-bit TTBR0 range"
    levels = 5 if "+la57" in options.cpu else 4
    return "0x8000000000000000", f"0x8000000000000000 is not a canonical {levels}-level address"


def kallsyms(guest: "guestlab.Guest", name: str) -> int:
    """Where the guest's own /proc/kallsyms says the kernel symbol `name` is."""
    return int(guest.sh(f"grep ' {name}$' /proc/kallsyms").split()[0], 16)


LINKED: dict = {}                # kernel directory -> its link-time addresses (one gdb run each)


def link_time(guest: "guestlab.Guest") -> dict:
    """Link-time addresses, without the plugin: _stext, and the per-CPU variable that holds
    the running task (current_task up to 6.1, pcpu_hot since 6.2, __entry_task on arm64),
    whichever exists.  They are the vmlinux's, so a guest booted again reuses them."""
    if guest.kernel not in LINKED:
        run = run_gdb(guest, "p/x (unsigned long)&_stext", "p/x (unsigned long)&current_task",
                      "p/x (unsigned long)&pcpu_hot", "p/x (unsigned long)&__entry_task", plugin=False)
        values = re.findall(r"^\$\d+ = (0x[0-9a-f]+)", run.stdout, re.M)
        assert len(values) == 2, run.output
        LINKED[guest.kernel] = {"_stext": int(values[0], 16), "per_cpu": int(values[1], 16)}
    return LINKED[guest.kernel]


def kaslr_slide(guest: "guestlab.Guest") -> int:
    """How far the guest's kernel really moved: its /proc/kallsyms against the vmlinux.
    A KASLR boot now and then draws the slot the kernel was linked at, and this is 0 then."""
    return kallsyms(guest, "_stext") - link_time(guest)["_stext"]
