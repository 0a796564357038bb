"""The scripts in examples/, run as their docstrings say, against guest ground truth:
the RSS sampler against smaps_rollup, the leak gate's exit status on a leaking and a clean
program, and "who maps this physical page" against every process's pagemap."""
from __future__ import annotations

import csv
import re
import subprocess
import threading
import time

from labtools import REPO, guestlab, run_gdb
from test_snapshot_views import read_pagemap

BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
EXAMPLES = REPO / "examples"
PAGE = 4096
IDLE = ("wl-maps", "wl-maps-static", "wl-leak")        # started by init, asleep


def rollup(guest, pid: int) -> tuple[int, int]:
    text = guest.sh(f"cat /proc/{pid}/smaps_rollup")
    field = lambda name: int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M).group(1))
    return field("Rss"), field("Anonymous")


def test_rss_to_csv_samples_every_process_n_times(guest, tmp_path):
    out = tmp_path / "rss.csv"
    run = run_gdb(guest, f"source {EXAMPLES / 'rss_to_csv.py'}", f"rss-csv {out} 3 0.5", timeout=300)
    assert f"rss-csv: 3 samples written to {out}" in run.stdout, run.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["sample", "time", "pid", "comm", "rss_kib", "anonymous_kib"]
    times = sorted({(int(r["sample"]), float(r["time"])) for r in rows})
    assert [s for s, _ in times] == [0, 1, 2]
    assert all(b - a >= 0.5 for (_, a), (_, b) in zip(times, times[1:])), "the guest ran between samples"
    for name in IDLE:
        pid = int(guest.sh(f"pidof {name}").split()[0])
        mine = [(int(r["rss_kib"]), int(r["anonymous_kib"])) for r in rows if int(r["pid"]) == pid]
        assert mine == [rollup(guest, pid)] * 3, name
    assert not {"0", "2"} & {r["pid"] for r in rows}, "kernel threads have no memory to sample"


def gate(guest, program: str, run_in_guest: str | None, seconds: int = 120) -> tuple[int, str]:
    """Run the leak gate as its docstring says; run `run_in_guest` once it is tracking."""
    argv = guest.gdb_argv("-x", str(EXAMPLES / "leak_gate.py"), "-ex", f"leak-gate {program} {seconds}")
    argv.insert(1, "-batch")                      # after the gdb binary (gdb-multiarch for arm64)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    tracking = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "leak-gate: tracking processes that execute" in line:
                tracking.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert tracking.wait(60), "".join(lines)
    if run_in_guest:
        time.sleep(0.5)
        guest.sh(run_in_guest, timeout=300)
    code = proc.wait(timeout=seconds + 60)
    reader.join()
    return code, "".join(lines)


def test_the_leak_gate_fails_a_leaking_program(guest):
    code, out = gate(guest, "wl-leak", "wl-leak > /dev/null")
    assert code == 1, out
    assert re.search(r"^leak-gate: pid \d+ \(wl-leak\): 10 lost blocks, \d+ bytes, 0 bad frees$", out, re.M)
    assert "leak-gate: FAIL" in out and "Fatal signal" not in out


def test_the_leak_gate_passes_a_program_that_frees_what_it_must(guest):
    code, out = gate(guest, "wl-churn", "wl-churn fork 2 > /dev/null")
    assert code == 0, out
    assert len(re.findall(r"^leak-gate: pid \d+ \(wl-churn\): 0 lost blocks", out, re.M)) == 3, "parent, 2 children"


def test_the_leak_gate_says_when_the_program_did_not_finish(guest):
    code, out = gate(guest, "wl-never-run", None, seconds=3)
    assert code == 2 and "leak-gate: wl-never-run did not finish within 3 s" in out


def user_libc_text(guest) -> dict[int, int]:
    """pid -> address of libc's first executable page, for every process that maps libc."""
    found = {}
    listing = guest.sh("grep -H ' r-xp .*/libc.so.6$' /proc/[0-9]*/maps || true")
    for line in listing.splitlines():
        pid = int(line.split("/")[2])
        found[pid] = int(line.split(":", 1)[1].split("-")[0], 16)
    return found


def test_who_maps_finds_every_process_on_a_physical_page(guest):
    libc = user_libc_text(guest)
    wl_maps = int(guest.sh("pidof wl-maps").split()[0])
    truth = {pid: read_pagemap(guest, pid, [va])[va] for pid, va in libc.items()}
    target = truth[wl_maps]
    run = run_gdb(guest, f"source {EXAMPLES / 'who_maps.py'}",
                  f'who-maps $memcheck_phys({libc[wl_maps]:#x}, "wl-maps")')
    assert f"physical page {target * PAGE:#x}" in run.stdout, run.output
    found = {(int(m[0]), int(m[1], 16)) for m in re.findall(r"^pid +(\d+) \S+ +(0x[0-9a-f]+)  ", run.stdout, re.M)}
    sharing = {(pid, libc[pid]) for pid, pfn in truth.items() if pfn == target}
    assert len(sharing) >= 2 and sharing <= found
    for pid, va in found - sharing:
        assert read_pagemap(guest, pid, [va])[va] == target, (pid, hex(va))
    kernel_va = re.search(r"^kernel +(0x[0-9a-f]+)$", run.stdout, re.M).group(1)
    assert guest.hmp(f"gva2gpa {kernel_va}").strip() == f"gpa: {target * PAGE:#x}"
    assert all(re.search(r"/lib/(x86_64|aarch64)-linux-gnu/libc\.so\.6$", line) for line in run.stdout.splitlines()
               if line.startswith("pid ") and int(line.split()[1]) in libc)
