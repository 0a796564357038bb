"""VMA names against the guest's own /proc/PID/maps, on the kernel GDB_MEMCHECK_KERNEL names.

wl-names and wl-names-static each map pseudo files that d_path() names through their
dentry's d_dname (memfds, a SysV shm segment, MAP_SHARED|MAP_ANONYMOUS memory, a perf
event ring, a packet socket ring, a dma-buf where the kernel has a heap for one), a
deleted file, a file with a newline in its name and prctl-named anonymous memory where
the kernel keeps such names; each starts three children for the [heap] edge cases.
The processes sit in pause(), so their maps read while the guest runs are the maps gdb
sees when it stops the guest.
"""
from __future__ import annotations

import re

import pytest

from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
WORKLOADS = ("wl-names", "wl-names-static")
MODES = ("main", "no-heap", "brk-shrunk", "page-at-brk")
READY = re.compile(r"^wl-names (\S+) pid=(\d+) ready$", re.M)

MAPS_SCRIPT = r"""
emit({pid: q(f"memcheck maps {pid} --json")["maps"] for pid in PIDS})
"""


@pytest.fixture(scope="module")
def names(guest):
    guest.sh(" ".join(f"{w} > /tmp/log/{w}.log 2>&1 &" for w in WORKLOADS))
    wanted = len(WORKLOADS) * len(MODES)
    guest.sh(f"for i in $(seq 100); do [ $(cat /tmp/log/wl-names*.log | grep -c ready) -ge {wanted} ] && break; "
             "sleep 0.1; done")
    logs = {w: guest.sh(f"cat /tmp/log/{w}.log") for w in WORKLOADS}
    pids = {(w, mode): int(pid) for w, log in logs.items() for mode, pid in READY.findall(log)}
    assert len(pids) == wanted, logs
    proc_maps = {key: guest.sh(f"cat /proc/{pid}/maps").splitlines() for key, pid in pids.items()}
    run = run_gdb(guest, script=MAPS_SCRIPT.replace("PIDS", repr(sorted(pids.values()))))
    ours = run.result()
    return {"logs": logs, "proc": proc_maps,
            "ours": {key: [m["line"] for m in ours[str(pid)]] for key, pid in pids.items()},
            "json": {key: ours[str(pid)] for key, pid in pids.items()}}


@pytest.mark.parametrize("workload", WORKLOADS)
def test_memfd_shm_and_named_mappings_match_guest_proc_maps(names, workload):
    assert names["ours"][(workload, "main")] == names["proc"][(workload, "main")]


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("mode", MODES[1:])
def test_heap_edge_cases_match_guest_proc_maps(names, workload, mode):
    assert names["ours"][(workload, mode)] == names["proc"][(workload, mode)]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_workload_maps_every_pseudo_file_and_odd_name_it_promises(names, workload):
    text = "\n".join(names["proc"][(workload, "main")])
    for pattern in (r" /memfd:wl-names-memfd \(deleted\)$", r" /memfd:wl-names\\012memfd \(deleted\)$",
                    r" /SYSV5a[0-9a-f]{6} \(deleted\)$", r" /dev/zero \(deleted\)$", r" anon_inode:\[perf_event\]$",
                    r" socket:\[\d+\]$", r" /tmp/wl-names-\d+-deleted \(deleted\)$",
                    r" /tmp/wl-names-\d+\\012new line\\x$"):
        assert re.search(pattern, text, re.M), pattern


@pytest.mark.parametrize("workload", WORKLOADS)
def test_anon_names_and_the_dma_buf_appear_exactly_when_the_kernel_could_make_them(names, workload):
    log, proc = names["logs"][workload], "\n".join(names["proc"][(workload, "main")])
    made = {"private": "[anon:wl-names-private]", "shared": "[anon_shmem:wl-names-shared]",
            "dma-buf": "/dmabuf:wl-names-dmabuf"}
    for what, name in made.items():
        unavailable = re.search(rf"^wl-names {what}\b.* unavailable", log, re.M) is not None
        assert (name in proc) is not unavailable, (what, log)


def test_a_newline_in_a_name_keeps_one_line_per_mapping_and_stays_in_the_json_name(names):
    for workload in WORKLOADS:
        maps = names["json"][(workload, "main")]
        escaped = [m for m in maps if "\\012" in m["line"]]
        assert len(escaped) == 2
        assert all("\n" in m["name"] and "\n" not in m["line"] for m in escaped)
