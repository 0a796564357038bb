"""Scan-mode leak checking against the leak program's own ground truth, and against
valgrind running the same binary natively on the host (for an arm64 guest, valgrind runs
the same source's amd64 build: it cannot run AArch64 code on this host)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
CATEGORY = {"definite": "definitely lost", "indirect": "indirectly lost", "possible": "possibly lost",
            "reachable": "still reachable"}
MMAP_THRESHOLD = 128 * 1024


def slack(requested: int) -> int:
    """How much a usable size may exceed the request: malloc's rounding and memalign's
    leftover, or page rounding for blocks mmapped on their own."""
    return 4096 + 16 if requested >= MMAP_THRESHOLD else 64 + 16


def ground_truth(log: str) -> list[dict]:
    """The GT lines a workload prints; `indirect` is what a definitely lost block's record
    adds as "(N direct, M indirect)" (0 when the line does not say)."""
    return [dict(kind=m[0], addr=int(m[1], 16), size=int(m[2]), indirect=int(m[3] or 0))
            for m in re.findall(r"^GT (\w+) addr=(0x[0-9a-f]+) size=(\d+)\b(?:.*\bindirect=(\d+))?", log, re.M)]


def leaks_json(guest, spec: str) -> dict:
    run = run_gdb(guest, f"memcheck leaks {spec} --json")
    docs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert docs, run.output
    return docs[0]


@pytest.fixture(scope="module", params=["wl-leak", "wl-leak-static"])
def leak_program(request, guest):
    name = request.param
    if name != "wl-leak":
        guest.sh(f"{name} --wait > /tmp/log/{name}.log 2>&1 &")
        guest.sh(f"sleep 0.5; grep -q done /tmp/log/{name}.log")
    pid = int(guest.sh(f"pidof {name}").split()[0])
    truth = ground_truth(guest.sh(f"cat /tmp/log/{name}.log"))
    return {"name": name, "pid": pid, "truth": truth, "report": leaks_json(guest, str(pid))}


def test_scan_reports_exactly_the_programs_lost_blocks(leak_program):
    blocks = {int(b["address"], 16): b for b in leak_program["report"]["blocks"]}
    lost = {a: b for a, b in blocks.items() if b["kind"] != "still reachable"}
    expected = {t["addr"]: t for t in leak_program["truth"] if t["kind"] in ("definite", "indirect", "possible")}
    assert set(lost) == set(expected)
    for addr, t in expected.items():
        assert lost[addr]["kind"] == CATEGORY[t["kind"]], hex(addr)
        assert t["size"] <= lost[addr]["size"] < t["size"] + slack(t["size"]), hex(addr)


def test_still_reachable_and_freed_blocks_are_not_lost(leak_program):
    blocks = {int(b["address"], 16): b for b in leak_program["report"]["blocks"]}
    for t in leak_program["truth"]:
        if t["kind"] == "reachable":
            assert blocks[t["addr"]]["kind"] == "still reachable"
        if t["kind"] == "freed":
            assert t["addr"] not in blocks or blocks[t["addr"]]["kind"] == "still reachable"


def test_freed_blocks_parked_in_tcache_are_not_live(leak_program):
    blocks = {int(b["address"], 16) for b in leak_program["report"]["blocks"]}
    freed = {t["addr"] for t in leak_program["truth"] if t["kind"] == "freed" and t["size"] <= 1032}
    reused = {t["addr"] for t in leak_program["truth"] if t["kind"] != "freed"}
    assert not (freed - reused) & blocks


def valgrind_binary(guest, name: str) -> Path:
    """The build of workload `name` valgrind runs natively here: the guest's own, or on an
    arm64 guest the amd64 build of the same source (same LP64 sizes, same glibc 2.36)."""
    if guest.options.arch == "amd64":
        return guest.sysroot / "bin" / name
    return guestlab.initramfs_dir("amd64") / "root" / "bin" / name


def run_valgrind(binary, stop_after: int | None = None) -> subprocess.CompletedProcess:
    """valgrind --leak-check=full on the guest's binary, run natively (a program that waits
    for SIGUSR1 gets it after `stop_after` seconds); its report is on stderr."""
    timer = ["timeout", "-s", "USR1", str(stop_after)] if stop_after else []
    return subprocess.run(timer + ["valgrind", "--leak-check=full", "--show-leak-kinds=all", str(binary)],
                          capture_output=True, text=True, timeout=300)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def leak_summary(report: str) -> dict[str, tuple[int, int]]:
    """(bytes, blocks) per lost kind from valgrind's LEAK SUMMARY."""
    out = {}
    for kind in ("definitely lost", "indirectly lost", "possibly lost"):
        m = re.search(rf"{kind}: ([\d,]+) bytes in ([\d,]+) blocks", report)
        out[kind] = (number(m.group(1)), number(m.group(2)))
    return out


def valgrind_summary(binary, stop_after: int | None = None) -> dict[str, int]:
    """Blocks per lost kind as valgrind counts them, running the guest's binary natively."""
    return {k: v[1] for k, v in leak_summary(run_valgrind(binary, stop_after).stderr).items()}


def valgrind_definite_records(report: str) -> list[tuple[int, int, int]]:
    """(direct bytes, indirect bytes, blocks) of each definitely lost loss record valgrind printed."""
    pattern = r"([\d,]+) (?:\(([\d,]+) direct, ([\d,]+) indirect\) )?bytes in ([\d,]+) blocks are definitely lost"
    return sorted((number(direct or total), number(indirect or "0"), number(blocks))
                  for total, direct, indirect, blocks in re.findall(pattern, report))


def test_lost_block_counts_match_valgrind_on_the_same_binary(guest):
    report = leaks_json(guest, "wl-leak")
    ours = {k: v["blocks"] for k, v in report["summary"].items() if k != "still reachable"}
    assert ours == valgrind_summary(valgrind_binary(guest, "wl-leak"))


def test_the_text_report_has_loss_records_and_a_leak_summary(guest):
    out = run_gdb(guest, "memcheck leaks wl-leak").stdout
    assert re.search(r"^\d+ bytes in 3 blocks are indirectly lost in loss record \d+ of \d+$", out, re.M)
    assert "LEAK SUMMARY:" in out and re.search(r"definitely lost: +\d+ bytes in 6 blocks", out)


def test_a_corrupt_heap_gives_one_clear_line(guest):
    guest.sh("wl-leak --wait --corrupt > /tmp/log/corrupt.log 2>&1 &")
    guest.sh("sleep 0.5; grep -q done /tmp/log/corrupt.log")
    pid = int(guest.sh("pidof wl-leak").split()[0])
    run = run_gdb(guest, f"memcheck leaks {pid}")
    assert re.search(r"^memcheck leaks: heap chunk at 0x[0-9a-f]+ has an impossible size 0x0$", run.stderr, re.M)
    assert "Traceback" not in run.output


@pytest.mark.parametrize("spec, message", [
    ("99999", "memcheck leaks: no process with pid 99999"),
    ("2", "memcheck leaks: pid 2 (kthreadd) is a kernel thread: it has no memory map"),
])
def test_bad_targets_give_one_clear_line(guest, spec, message):
    run = run_gdb(guest, f"memcheck leaks {spec}")
    assert message in run.stderr and "Traceback" not in run.output


@pytest.fixture(scope="module")
def arenas(guest):
    """A program whose two threads leak in arenas of their own, scanned while it waits."""
    guest.sh("wl-arenas > /tmp/log/arenas.log 2>&1 &")
    guest.sh("while ! grep -q done /tmp/log/arenas.log; do sleep 0.2; done")
    pid = int(guest.sh("pidof wl-arenas").split()[0])
    truth = ground_truth(guest.sh("cat /tmp/log/arenas.log"))
    yield {"pid": pid, "truth": truth, "report": leaks_json(guest, str(pid))}
    guest.sh(f"kill -USR1 {pid}")


def test_scan_finds_the_lost_blocks_of_threads_arenas(arenas):
    blocks = {int(b["address"], 16): b for b in arenas["report"]["blocks"]}
    expected = {t["addr"]: t for t in arenas["truth"] if t["kind"] in ("definite", "indirect")}
    assert {a for a, b in blocks.items() if b["kind"] in ("definitely lost", "indirectly lost")} == set(expected)
    for addr, t in expected.items():
        assert blocks[addr]["kind"] == CATEGORY[t["kind"]]
        assert t["size"] <= blocks[addr]["size"] < t["size"] + slack(t["size"])
    assert "2 other arenas" in arenas["report"]["header"]


def test_blocks_freed_into_a_threads_own_tcache_are_not_live(arenas):
    blocks = {int(b["address"], 16): b for b in arenas["report"]["blocks"]}
    for t in arenas["truth"]:
        if t["kind"] == "reachable":
            assert blocks[t["addr"]]["kind"] == "still reachable"
        if t["kind"] == "freed":
            assert t["addr"] not in blocks


def test_thread_arena_lost_block_counts_match_valgrind(guest, arenas):
    ours = {k: v["blocks"] for k, v in arenas["report"]["summary"].items() if k != "still reachable"}
    assert ours == valgrind_summary(valgrind_binary(guest, "wl-arenas"), stop_after=5)


CLIQUES = ("wl-cliques", "wl-cliques-static")


@pytest.fixture(scope="module")
def cliques(guest) -> dict[str, dict]:
    """Lost cycles pointing into cycles and trees (wl-cliques, dynamic and static), scanned
    while the programs wait: name -> pid, ground truth, JSON report."""
    programs = {}
    for name in CLIQUES:
        guest.sh(f"{name} --wait > /tmp/log/{name}.log 2>&1 &")
        log = guest.sh(f"while ! grep -q done /tmp/log/{name}.log; do sleep 0.2; done; cat /tmp/log/{name}.log")
        pid = int(re.search(r"pid=(\d+)", log).group(1))
        programs[name] = {"pid": pid, "truth": ground_truth(log), "report": leaks_json(guest, str(pid))}
    yield programs
    for program in programs.values():
        guest.sh(f"kill -USR1 {program['pid']}")


@pytest.mark.parametrize("name", CLIQUES)
def test_scan_splits_lost_cliques_as_the_program_says_valgrind_does(cliques, name):
    blocks = {int(b["address"], 16): b for b in cliques[name]["report"]["blocks"]}
    truth = {t["addr"]: t for t in cliques[name]["truth"]}
    assert {a for a, b in blocks.items() if b["kind"] != "still reachable"} == \
        {a for a, t in truth.items() if t["kind"] != "reachable"}
    for addr, t in truth.items():
        got = blocks[addr]
        assert (got["kind"], got["size"], got["indirect_bytes"]) == (CATEGORY[t["kind"]], t["size"], t["indirect"]), \
            hex(addr)


@pytest.fixture(scope="module")
def valgrind_cliques(guest) -> subprocess.CompletedProcess:
    return run_valgrind(valgrind_binary(guest, "wl-cliques"))


def test_wl_cliques_truth_is_what_valgrind_prints_natively(valgrind_cliques):
    truth = ground_truth(valgrind_cliques.stdout)
    assert valgrind_definite_records(valgrind_cliques.stderr) == \
        sorted((t["size"], t["indirect"], 1) for t in truth if t["kind"] == "definite")
    summary = leak_summary(valgrind_cliques.stderr)
    for kind in ("definite", "indirect", "possible"):
        lost = [t["size"] for t in truth if t["kind"] == kind]
        assert summary[CATEGORY[kind]] == (sum(lost), len(lost)), kind


def test_scan_records_and_summary_of_lost_cliques_match_valgrind(cliques, valgrind_cliques):
    report = cliques["wl-cliques"]["report"]
    records = sorted((r["direct_bytes"], r["indirect_bytes"], r["blocks"])
                     for r in report["loss_records"] if r["kind"] == "definitely lost")
    assert records == valgrind_definite_records(valgrind_cliques.stderr)
    ours = {k: (v["bytes"], v["blocks"]) for k, v in report["summary"].items() if k != "still reachable"}
    assert ours == leak_summary(valgrind_cliques.stderr)
