#!/usr/bin/env python3
"""Run the integration suite as test.sh's passes: every module on each CI kernel in the
default boot configuration, the default-configuration modules again with KASLR and
5-level paging together, and the modules that name arm64 in ARCHES on arm64 guests (6.1
in the default configuration, 6.12 with KASLR).  Two passes run at a time (each boots one
guest at a time), each into its own log; a summary line per pass, exit status 1 if any
pass failed."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNELS = ("6.1-cloud", "6.12-cloud")
BOOTS = ("", "kaslr,la57")
PARALLEL = 2


@dataclass(frozen=True)
class Pass:
    kernel: str
    boot: str
    arch: str = "amd64"

    @property
    def name(self) -> str:
        return f"{self.kernel} {self.arch} {self.boot or 'default'}"


# arm64 has no 5-level paging in the lab (52-bit VAs need LPA2, which QEMU's cortex-a72 lacks)
PASSES = ([Pass(k, b) for b in BOOTS for k in KERNELS]
          + [Pass("6.1-cloud", "", "arm64"), Pass("6.12-cloud", "kaslr", "arm64")])


def log_path(logs: Path, p: Pass) -> Path:
    return logs / f"{p.kernel}-{p.arch}-{p.boot.replace(',', '+') or 'default'}.log"


def run(p: Pass, logs: Path, extra: list[str]) -> tuple[Pass, int, float, str]:
    env = dict(os.environ, GDB_MEMCHECK_KERNEL=p.kernel, GDB_MEMCHECK_BOOT=p.boot, GDB_MEMCHECK_ARCH=p.arch)
    t0 = time.monotonic()
    with log_path(logs, p).open("w") as out:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                             str(REPO / "tests" / "integration"), *extra],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO).returncode
    last = log_path(logs, p).read_text().rstrip().splitlines()[-1:] or [""]
    return p, rc, time.monotonic() - t0, last[0]


def main(argv: list[str]) -> int:
    logs = Path(os.environ.get("GDB_MEMCHECK_TEST_LOGS") or tempfile.mkdtemp(prefix="gdb-memcheck-test-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"integration logs in {logs}", flush=True)
    failed = []
    with ThreadPoolExecutor(PARALLEL) as pool:
        for p, rc, seconds, last in pool.map(lambda p: run(p, logs, argv), PASSES):
            print(f"integration {p.name:<28} {'passed' if rc == 0 else 'FAILED'} in {seconds:4.0f} s: {last}",
                  flush=True)
            if rc:
                failed.append(p)
    for p in failed:
        print(f"\n===== integration {p.name} =====\n{log_path(logs, p).read_text()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
