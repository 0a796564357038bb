"""A 2-vCPU guest with a different process on each vCPU: views follow the selected vCPU."""
from __future__ import annotations


import pytest

from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions(smp=2)
ARCHES = ("amd64", "arm64")

SPIN = "sh -c 'while :; do :; done'"

PER_CPU_SCRIPT = r"""
import gdb, json
from gdb_memcheck.frontend.session import SESSION
ps = json.loads(gdb.execute("memcheck ps --json", to_string=True))["tasks"]
per_cpu = {}
for thread in sorted(gdb.selected_inferior().threads(), key=lambda t: t.num):
    thread.switch()
    cpu = SESSION.selected_cpu()
    try:
        doc = json.loads(gdb.execute("memcheck maps --json", to_string=True))
        per_cpu[cpu] = {"pid": doc["pid"], "lines": [m["line"] for m in doc["maps"]]}
    except gdb.error as e:
        per_cpu[cpu] = {"error": str(e)}
emit({"ps": ps, "per_cpu": per_cpu})
"""


@pytest.fixture(scope="module")
def spinning(guest):
    guest.sh(f"({SPIN} &); ({SPIN} &)")
    pids = sorted(int(p) for p in guest.sh("ps -o pid,args | grep '[w]hile :' | awk '{print $1}'").split())
    maps = {pid: guest.sh(f"cat /proc/{pid}/maps") for pid in pids}
    res = run_gdb(guest, script=PER_CPU_SCRIPT).result()
    return {"pids": pids, "maps": maps, **res}


def test_each_vcpu_runs_a_different_spinner(spinning):
    running = {r["cpu"]: r["pid"] for r in spinning["ps"] if r["cpu"] is not None}
    assert sorted(running) == [0, 1]
    assert sorted(running.values()) == spinning["pids"], "both spinners on the two vCPUs"


def test_maps_without_a_pid_follows_the_selected_vcpu(spinning):
    running = {r["cpu"]: r["pid"] for r in spinning["ps"] if r["cpu"] is not None}
    for cpu, view in spinning["per_cpu"].items():
        assert view["pid"] == running[int(cpu)]
        assert view["lines"] == spinning["maps"][view["pid"]].splitlines()
