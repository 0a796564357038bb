"""Leak tracking with address-space randomization on: two copies of the leak program run
at the same time, each with libc at its own base, and each is tracked exactly."""
from __future__ import annotations

import pytest

from labtools import guestlab, run_gdb
from test_leak_tracking import CATEGORY, ground_truth, program_pid

BOOT = guestlab.BootOptions(randmaps=True)
COPIES = 2

SCRIPT = r"""
gdb.execute("memcheck leaks track --exec wl-leak")
runs = " ".join(f"wl-leak > /tmp/log/aslr{i}.log &" for i in range(COPIES))
logs = while_running(f"{runs} wait; " + "; ".join(f"cat /tmp/log/aslr{i}.log; echo ====" for i in range(COPIES)))["text"]
status = q("memcheck leaks status --json")
reports = {pid: q(f"memcheck leaks report {pid} --json") for pid in status["reports"]}
emit({"logs": logs.split("====")[:COPIES], "status": status, "reports": reports})
"""


@pytest.fixture(scope="module")
def tracked(guest):
    assert guest.sh("cat /proc/sys/kernel/randomize_va_space").strip() == "2"
    run = run_gdb(guest, script=SCRIPT.replace("COPIES", str(COPIES)), timeout=600)
    assert "Traceback" not in run.output, run.output
    res = run.result()
    res["reports"] = {int(k): v for k, v in res["reports"].items()}
    return res


def libc_base(report: dict) -> int:
    frame = report["blocks"][0]["stack"][0]
    return int(frame["pc"], 16) - int(frame["offset"], 16)


def test_each_copy_has_libc_at_its_own_base(tracked):
    bases = {libc_base(r) for r in tracked["reports"].values()}
    assert len(bases) == COPIES


def test_two_copies_running_together_are_each_tracked_exactly(tracked):
    assert tracked["status"]["errors"] == 0, tracked["status"]["last_error"]
    assert len(tracked["reports"]) == COPIES
    for log in tracked["logs"]:
        report = tracked["reports"][program_pid(log, "wl-leak")]
        blocks = {int(b["address"], 16): b for b in report["blocks"]}
        lost = {a for a, b in blocks.items() if b["kind"] != "still reachable"}
        truth = [t for t in ground_truth(log) if t["kind"] in CATEGORY and t["kind"] != "reachable"]
        assert lost == {t["addr"] for t in truth}
        for t in truth:
            assert (blocks[t["addr"]]["kind"], blocks[t["addr"]]["size"]) == (CATEGORY[t["kind"]], t["size"])
            assert blocks[t["addr"]]["stack"][1]["function"] == t["fn"]
        assert report["bad_frees"] == []
