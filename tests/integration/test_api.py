"""gdb_memcheck.api and the convenience functions, against the same guest ground truth as
the commands: /proc, smaps, pagemap, QEMU's gva2gpa, nm and addr2line, the leak program's
own GT lines and the churn workload's counts."""
from __future__ import annotations

import re
import subprocess

import pytest

from labtools import guestlab, run_gdb
from test_snapshot_views import list_tasks, parse_smaps, read_pagemap

BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
PAGE = 4096
CATEGORY = {"definite": "definitely lost", "indirect": "indirectly lost", "possible": "possibly lost"}

API_SCRIPT = r"""
from gdb_memcheck import api
from gdb_memcheck.leakcheck.leaks import Kind
pid = WL_MAPS
out = {"processes": [[p.tgid, p.comm, bool(p.mm), p.is_kernel_thread] for p in api.processes()],
       "threads": [t.pid for t in api.threads(pid)]}
mappings = api.maps(pid)
out["maps"] = [[m.vma.maps_line(), m.vma.start, m.usage.rss // 1024, m.usage.anonymous // 1024] for m in mappings]
out["translate"] = {str(m.vma.start): api.translate(m.vma.start, "wl-maps").physical
                    for m in mappings if m.usage.rss == m.vma.size}
kernel_va = int(gdb.parse_and_eval("(unsigned long)&init_uts_ns"))
out["kernel"] = [kernel_va, api.translate(kernel_va).physical, guest.hmp(f"gva2gpa {kernel_va:#x}").strip()]
main = MAIN
info = api.describe(main, pid)
out["describe"] = [info.symbol, info.source, info.vma.name, info.physical]
report = api.leaks("wl-leak")
out["leaks"] = [[b.address, b.kind.value, b.size] for b in report.blocks if b.kind is not Kind.REACHABLE]
out["leaks_mode"] = report.mode
try:
    api.maps(99999)
except api.Error as e:
    out["error"] = str(e)
out["functions"] = [int(gdb.parse_and_eval('$memcheck_pid("wl-maps")')),
                    int(gdb.parse_and_eval(f'$memcheck_phys({main:#x}, "wl-maps")')),
                    int(gdb.parse_and_eval(f'$memcheck_phys({main:#x}, {pid})')),
                    gdb.parse_and_eval(f"$memcheck_task({pid})->comm").string(),
                    int(gdb.parse_and_eval("$memcheck_task(1)->pid"))]
gdb.execute("memcheck trace on --only new-task,exec,exit")
ran = while_running("wl-churn-static fork 3")["text"]
out["events"] = [[e.pid, e.kind, e.details.get("child")] for e in api.events()]
out["events_json"] = q("memcheck events --json")["events"]
out["ran"] = ran
gdb.execute("memcheck trace off")
api.track(exec_path="wl-leak")
log = while_running("wl-leak 2>&1")["text"]
out["exit_reports"] = [[r.pid, r.mode, [[b.address, b.kind.value, b.size] for b in r.blocks
                                        if b.kind is not Kind.REACHABLE]] for r in api.exit_reports()]
out["tracked_after"] = api.tracked()
out["log"] = log
api.untrack()
emit(out)
"""


def nm_address(binary, symbol: str) -> int:
    out = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True, check=True).stdout
    return next(int(l.split()[0], 16) for l in out.splitlines() if l.split()[-1] == symbol)


def mapping_base(maps: str, path: str) -> int:
    return next(int(l.split("-")[0], 16) for l in maps.splitlines() if l.endswith(path) and l.split()[2] == "00000000")


def ground_truth(log: str) -> dict[int, tuple[str, int]]:
    return {int(m[1], 16): (CATEGORY[m[0]], int(m[2]))
            for m in re.findall(r"^GT (definite|indirect|possible) addr=(0x[0-9a-f]+) size=(\d+)", log, re.M)}


@pytest.fixture(scope="module")
def api_run(guest):
    pid = int(guest.sh("pidof wl-maps").split()[0])
    proc_maps = guest.sh(f"cat /proc/{pid}/maps")
    main = mapping_base(proc_maps, "/bin/wl-maps") + nm_address(guest.sysroot / "bin/wl-maps", "main")
    before = list_tasks(guest)
    smaps = parse_smaps(guest.sh(f"cat /proc/{pid}/smaps"))
    threads = sorted(int(t) for t in guest.sh(f"ls /proc/{pid}/task").split())
    leak_log = guest.sh("cat /tmp/log/wl-leak.log")
    script = API_SCRIPT.replace("WL_MAPS", str(pid)).replace("MAIN", str(main))
    run = run_gdb(guest, script=script, timeout=600)
    assert "Traceback" not in run.output, run.output
    after = {(p, t) for p, t, _ in list_tasks(guest)}
    res = run.result()
    starts = [int(s) for s in res["translate"]]
    return {"res": res, "pid": pid, "proc_maps": proc_maps, "smaps": smaps, "threads": threads, "main": main,
            "stable": {t for t in before if t[:2] in after}, "leak_log": leak_log,
            "pagemap": read_pagemap(guest, pid, starts + [main & ~(PAGE - 1)])}


def test_processes_are_the_guests(api_run):
    ours = {p: (comm, kernel) for p, comm, _mm, kernel in api_run["res"]["processes"]}
    leaders = {p: comm for p, t, comm in api_run["stable"] if p == t}
    assert len(leaders) > 10 and set(leaders) <= set(ours)
    for p, comm in leaders.items():     # /proc extends some kernel threads' names
        assert ours[p][0] == comm or (ours[p][1] and comm.startswith(ours[p][0])), p


def test_threads_are_the_guests(api_run):
    assert sorted(api_run["res"]["threads"]) == api_run["threads"]


def test_maps_with_rss_are_proc_maps_and_smaps(api_run):
    maps = api_run["res"]["maps"]
    assert [line for line, *_ in maps] == api_run["proc_maps"].splitlines()
    assert {start: (rss, anon) for _line, start, rss, anon in maps} == api_run["smaps"]


def test_translate_agrees_with_pagemap_and_qemu(api_run):
    assert api_run["res"]["translate"], "some mapping is wholly resident"
    for start, physical in api_run["res"]["translate"].items():
        assert physical == api_run["pagemap"][int(start)] * PAGE, hex(int(start))
    _va, physical, qemu = api_run["res"]["kernel"]
    assert qemu == f"gpa: {physical:#x}"


def test_describe_names_main_and_its_page(api_run, guest):
    symbol, source, name, physical = api_run["res"]["describe"]
    binary = guest.sysroot / "bin/wl-maps"
    line = subprocess.run(["addr2line", "-e", str(binary), hex(nm_address(binary, "main"))],
                          capture_output=True, text=True).stdout.strip().rsplit("/", 1)[-1]
    assert (symbol, source, name) == ("main", line.split()[0], "/bin/wl-maps")
    assert physical == api_run["pagemap"][api_run["main"] & ~(PAGE - 1)] * PAGE + (api_run["main"] & (PAGE - 1))


def test_leaks_scans_to_the_programs_own_truth(api_run):
    res = api_run["res"]
    assert res["leaks_mode"] == "scan"
    found = {address: kind for address, kind, _size in res["leaks"]}
    assert found == {address: kind for address, (kind, _size) in ground_truth(api_run["leak_log"]).items()}


def test_tracked_exit_report_has_the_programs_exact_blocks(api_run):
    (pid, mode, blocks), = api_run["res"]["exit_reports"]
    assert mode == "tracking" and api_run["res"]["tracked_after"] == []
    assert {a: (k, s) for a, k, s in blocks} == ground_truth(api_run["res"]["log"])


def test_an_api_failure_is_one_error_line(api_run):
    assert api_run["res"]["error"] == "no process with pid 99999"


def test_events_are_what_the_command_and_the_workload_say(api_run):
    res = api_run["res"]
    assert [[e["pid"], e["event"], e.get("child")] for e in res["events_json"]] == res["events"]
    churn = int(re.search(r"churn pid=(\d+) fork=3 ", res["ran"]).group(1))
    assert sum(1 for pid, kind, _ in res["events"] if pid == churn and kind == "fork") == 3


def test_convenience_functions_answer_in_expressions(api_run):
    pid_of, phys_by_comm, phys_by_pid, comm, init_pid = api_run["res"]["functions"]
    main = api_run["main"]
    assert pid_of == api_run["pid"] and comm == "wl-maps" and init_pid == 1
    assert phys_by_comm == phys_by_pid == api_run["pagemap"][main & ~(PAGE - 1)] * PAGE + (main & (PAGE - 1))
