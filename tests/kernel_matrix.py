#!/usr/bin/env python3
"""The kernel matrix: the integration suite's ground-truth checks (guest /proc, smaps,
pagemap, QEMU's gva2gpa and info mem, the leak programs' own truth, the churn workload's
counts) run on each Debian kernel build in each boot configuration, one guest per module,
then a pass/fail table per command.

  tests/kernel_matrix.py [--arch amd64|arm64] [--builds 6.1-cloud,6.12 ...] [--configs default,la57 ...]
                         [--parallel 2]

On arm64 the configurations are default and kaslr+randmaps (5-level paging is x86-64's), and
the x86-64-only module (test_lab: info, addr) is deselected, so those columns read "-".

A cell is `pass` when every check of that command passed, else `FAIL a/b` (failed/all).
Each cell's pytest log and JUnit file go to --logs (default /tmp/gdb-memcheck-matrix)."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILDS = ("6.1-cloud", "6.1", "6.1-rt", "6.12-cloud", "6.12", "6.12-rt")
CONFIGS = {"default": "", "kaslr+randmaps": "kaslr,randmaps", "la57": "la57", "kaslr+la57": "kaslr,la57"}
ARCH_CONFIGS = {"amd64": tuple(CONFIGS), "arm64": ("default", "kaslr+randmaps")}
MODULES = ("test_lab.py", "test_snapshot_views.py", "test_vma_names.py", "test_leaks.py",
           "test_leak_tracking.py", "test_tracing.py", "test_slabinfo.py")
# (column, module pattern, test-name pattern): a test counts for the first column it matches
COLUMNS = (
    ("info", "test_lab", r"load_line|memcheck_info|physical"),
    ("ps", "test_snapshot_views", r"_ps_"),
    ("maps", "test_snapshot_views", r"maps_match|varied_address"),
    ("maps --rss", "test_snapshot_views", r"rss"),
    ("vma names", "test_vma_names", r"."),
    ("pagetable", "test_snapshot_views", r"pagetable"),
    ("vtop", "test_snapshot_views|test_lab", r"vtop|translates"),
    ("addr", "test_lab", r"addr"),
    ("leaks (scan)", "test_leaks", r"."),
    ("leaks track", "test_leak_tracking", r"."),
    ("trace", "test_tracing", r"."),
    ("slab", "test_slabinfo", r"."),
)


@dataclass
class Cell:
    build: str
    config: str
    arch: str = "amd64"
    results: dict[str, list[bool]] = field(default_factory=dict)    # column -> outcomes
    error: str = ""
    seconds: float = 0.0

    def text(self, column: str) -> str:
        outcomes = self.results.get(column, [])
        if not outcomes:
            return "-" if not self.error else "error"
        failed = outcomes.count(False)
        return "pass" if not failed else f"FAIL {failed}/{len(outcomes)}"


def column_of(module: str, name: str) -> str | None:
    for column, mod, pattern in COLUMNS:
        if re.fullmatch(mod, module) and re.search(pattern, name):
            return column
    return None


def run_cell(cell: Cell, logs: Path) -> Cell:
    stem = f"{cell.build}-{cell.arch}-{cell.config}"
    junit, log = logs / f"{stem}.xml", logs / f"{stem}.log"
    env = dict(os.environ, GDB_MEMCHECK_KERNEL=cell.build, GDB_MEMCHECK_BOOT=CONFIGS[cell.config],
               GDB_MEMCHECK_ARCH=cell.arch)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
            *(str(REPO / "tests" / "integration" / m) for m in MODULES)]
    t0 = time.monotonic()
    with log.open("w") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    cell.seconds = time.monotonic() - t0
    if not junit.exists():
        cell.error = f"no results: see {log}"
        return cell
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        column = column_of(module, case.get("name", ""))
        if column is not None:
            ok = not any(child.tag in ("failure", "error") for child in case)
            cell.results.setdefault(column, []).append(ok)
    return cell


def table(cells: list[Cell]) -> str:
    head = ["kernel", "boot"] + [c for c, _m, _p in COLUMNS]
    rows = [head, ["---"] * len(head)]
    rows += [[c.build + ("-arm64" if c.arch == "arm64" else ""), c.config] + [c.text(col) for col, _m, _p in COLUMNS]
             for c in cells]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="amd64", choices=tuple(ARCH_CONFIGS))
    ap.add_argument("--builds", default=",".join(BUILDS))
    ap.add_argument("--configs", default="", help="default: every configuration of the architecture")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--logs", default="/tmp/gdb-memcheck-matrix")
    a = ap.parse_args()
    logs = Path(a.logs)
    logs.mkdir(parents=True, exist_ok=True)
    for build in a.builds.split(","):                     # fetch every kernel first, one at a time
        name = build + ("-arm64" if a.arch == "arm64" else "")
        subprocess.run(["bash", str(REPO / "qemu-scripts" / "kernel.sh"), name], check=True, stdout=subprocess.DEVNULL)
    configs = a.configs.split(",") if a.configs else ARCH_CONFIGS[a.arch]
    cells = [Cell(b, c, a.arch) for b in a.builds.split(",") for c in configs]
    t0 = time.monotonic()
    with ThreadPoolExecutor(a.parallel) as pool:
        for cell in pool.map(lambda c: run_cell(c, logs), cells):
            print(f"{cell.build} {cell.config}: {cell.seconds:.0f} s {cell.error}", file=sys.stderr, flush=True)
    print(table(cells))
    print(f"\n{len(cells)} cells in {(time.monotonic() - t0) / 60:.0f} min; logs in {logs}")
    return 0 if all(c.text(col) in ("pass", "-") for c in cells for col, _m, _p in COLUMNS) else 1


if __name__ == "__main__":
    sys.exit(main())
