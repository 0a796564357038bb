"""Tracking-mode leak checking on a real guest: breakpoints on the malloc family of the
tracked processes, reports taken when they exit, compared with what the programs print
about themselves (their ground truth) and with their own source lines."""
from __future__ import annotations

import json
import re

import pytest

from test_leaks import leak_summary, run_valgrind, valgrind_binary
from labtools import REPO, guestlab, run_gdb

BOOT = guestlab.BootOptions()
ARCHES = ("amd64", "arm64")
CATEGORY = {"definite": "definitely lost", "indirect": "indirectly lost", "possible": "possibly lost",
            "reachable": "still reachable"}
PROGRAMS = ("wl-leak", "wl-leak-static", "wl-badfree")

TRACK_SCRIPT = r"""
def run_text(command):
    return while_running(command)["text"]

for name in PROGRAMS:
    gdb.execute(f"memcheck leaks track --exec /bin/{name}")
logs = {name: run_text(f"PROGRAM_PREFIX{name} 2>&1") for name in PROGRAMS}
gdb.execute("memcheck leaks track --exec wl-leak-stripped")
logs["wl-leak-stripped"] = run_text("wl-leak-stripped > /dev/null; echo ran")
gdb.execute("memcheck leaks track --exec wl-arenas")
logs["wl-arenas"] = run_text(
    "ARENAS_COMMAND > /tmp/log/tracked-arenas.log 2>&1 & "
    "while ! grep -q done /tmp/log/tracked-arenas.log; do sleep 0.2; done; "
    "kill -USR1 $(pidof wl-arenas); while pidof wl-arenas > /dev/null; do sleep 0.2; done; "
    "cat /tmp/log/tracked-arenas.log")

# attach to the long-running leak program init started, then let it exit
attached = int(run_text("pidof wl-leak").split()[0])
gdb.execute(f"memcheck leaks track {attached}")
live = q(f"memcheck leaks {attached} --json --all")
forced_scan = q(f"memcheck leaks {attached} --scan --json")
attach_log = run_text(f"kill -USR1 {attached}; sleep 0.5")

status = q("memcheck leaks status --json")
reports, everything = {}, {}
for pid in status["reports"]:
    reports[pid] = q(f"memcheck leaks report {pid} --json")
    everything[pid] = q(f"memcheck leaks report {pid} --json --all")
text = {pid: gdb.execute(f"memcheck leaks report {pid} --show-reachable", to_string=True) for pid in status["reports"]}
seed_format = {pid: gdb.execute(f"memcheck leaks report {pid} --format memcheck", to_string=True)
               for pid in status["reports"]}
with_source = {pid: gdb.execute(f"memcheck leaks report {pid} --source", to_string=True) for pid in status["reports"]}
gdb.execute("memcheck leaks untrack")
emit({"logs": logs, "attached": attached, "live": live, "forced_scan": forced_scan, "status": status, "reports": reports, "all": everything,
      "text": text, "memcheck_format": seed_format, "source": with_source})
"""


@pytest.fixture(scope="module")
def tracked(guest, request):
    """Everything the tracking checks look at, from one gdb session.  A module that reruns
    them may set ARENAS_COMMAND (default: wl-arenas, its threads one after the other),
    SETTINGS (gdb commands run first, such as `set memcheck malloc-stops return`) and
    PROGRAM_PREFIX (put before each leak program's name, such as an LD_PRELOAD assignment)."""
    arenas = getattr(request.module, "ARENAS_COMMAND", "wl-arenas")
    settings = "".join(f"gdb.execute({line!r})\n" for line in getattr(request.module, "SETTINGS", ()))
    script = settings + TRACK_SCRIPT.replace("PROGRAMS", repr(PROGRAMS)).replace("ARENAS_COMMAND", arenas) \
        .replace("PROGRAM_PREFIX", getattr(request.module, "PROGRAM_PREFIX", ""))
    run = run_gdb(guest, script=script, timeout=900)
    assert "Traceback" not in run.output, run.output
    res = run.result()
    for per_pid in ("reports", "all", "text", "memcheck_format", "source"):
        res[per_pid] = {int(k): v for k, v in res[per_pid].items()}
    return res


def ground_truth(log: str) -> list[dict]:
    return [dict(kind=m[0], addr=int(m[1], 16), size=int(m[2]), fn=m[3])
            for m in re.findall(r"^GT ([\w-]+) addr=(0x[0-9a-f]+) size=(\d+)(?: via=\w+)? in=(\w+)", log, re.M)]


def program_pid(log: str, name: str) -> int:
    return int(re.search(rf"^{name.split('-static')[0]} pid=(\d+)", log, re.M).group(1))


def source_line(fn_file: str, line: int) -> str:
    return (REPO / "workloads" / fn_file).read_text().splitlines()[line - 1]


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_tracking_reports_exactly_the_programs_lost_blocks_with_exact_sizes(tracked, name):
    log = tracked["logs"][name]
    report = tracked["reports"][program_pid(log, name)]
    lost = {int(b["address"], 16): b for b in report["blocks"] if b["kind"] != "still reachable"}
    expected = {t["addr"]: t for t in ground_truth(log) if t["kind"] in ("definite", "indirect", "possible")}
    assert set(lost) == set(expected)
    for addr, t in expected.items():
        assert lost[addr]["kind"] == CATEGORY[t["kind"]], hex(addr)
        assert lost[addr]["size"] == t["size"], hex(addr)


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_freed_and_still_reachable_blocks_are_never_lost(tracked, name):
    log = tracked["logs"][name]
    blocks = {int(b["address"], 16): b for b in tracked["reports"][program_pid(log, name)]["blocks"]}
    truth = ground_truth(log)
    live_again = {t["addr"] for t in truth if t["kind"] != "freed"}
    for t in truth:
        if t["kind"] == "reachable":
            assert blocks[t["addr"]]["kind"] == "still reachable"
            assert blocks[t["addr"]]["size"] == t["size"]
        if t["kind"] == "freed" and t["addr"] not in live_again:
            assert t["addr"] not in blocks


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_leak_stacks_name_the_leaking_function_and_its_allocation_line(tracked, name):
    log = tracked["logs"][name]
    blocks = {int(b["address"], 16): b for b in tracked["reports"][program_pid(log, name)]["blocks"]}
    allocator = {m[0]: m[1] for m in re.findall(r"^GT \w+ addr=(0x[0-9a-f]+) size=\d+ via=(\w+)", log, re.M)}
    for t in ground_truth(log):
        if t["kind"] in ("definite", "indirect", "possible"):
            stack = blocks[t["addr"]]["stack"]
            assert stack[0]["function"] in (allocator[hex(t["addr"])], "__libc_" + allocator[hex(t["addr"])])
            caller = stack[1]
            assert caller["function"] == t["fn"] and caller["module"] == f"/bin/{name}"
            assert caller["file"] == "wl-leak.c"
            assert allocator[hex(t["addr"])] + "(" in source_line("wl-leak.c", caller["line"])
            assert any(f["function"] == "main" for f in stack[2:])


def test_tracked_leak_summary_equals_valgrinds_on_the_same_binary(tracked, guest):
    """Bytes and blocks of each lost kind: tracking sees exact sizes, as valgrind does."""
    report = tracked["reports"][program_pid(tracked["logs"]["wl-leak"], "wl-leak")]
    ours = {k: (v["bytes"], v["blocks"]) for k, v in report["summary"].items() if k != "still reachable"}
    assert ours == leak_summary(run_valgrind(valgrind_binary(guest, "wl-leak")).stderr)


def test_threads_leaking_in_their_own_arenas_are_tracked_exactly(tracked):
    log = tracked["logs"]["wl-arenas"]
    blocks = {int(b["address"], 16): b for b in tracked["reports"][program_pid(log, "wl-arenas")]["blocks"]}
    truth = ground_truth(log)
    for t in truth:
        if t["kind"] == "freed":
            assert t["addr"] not in blocks
            continue
        block = blocks[t["addr"]]
        assert (block["kind"], block["size"]) == (CATEGORY[t["kind"]], t["size"]), hex(t["addr"])
        assert block["stack"][1]["function"] == t["fn"]
        assert any(f["function"] == "thread_main" for f in block["stack"][2:])


def test_text_report_has_valgrind_loss_records_with_symbolized_frames(tracked):
    pid = program_pid(tracked["logs"]["wl-leak"], "wl-leak")
    out = tracked["text"][pid]
    assert re.search(r"^40 bytes in 1 blocks are definitely lost in loss record \d+ of \d+\n"
                     r"   at 0x[0-9a-f]+: malloc .*\[/lib/(?:x86_64|aarch64)-linux-gnu/libc\.so\.6\+0x[0-9a-f]+\]\n"
                     r"   by 0x[0-9a-f]+: leak_malloc \(wl-leak\.c:\d+\) \[/bin/wl-leak\+0x[0-9a-f]+\]$", out, re.M)
    assert re.search(r"^144 bytes in 3 blocks are indirectly lost", out, re.M)
    assert re.search(r"definitely lost: +205424 bytes in 6 blocks", out)


def test_memcheck_format_prints_each_block_with_module_relative_frames(tracked):
    pid = program_pid(tracked["logs"]["wl-leak"], "wl-leak")
    out = tracked["memcheck_format"][pid]
    assert f"memcheck: Process /bin/wl-leak[pid={pid}] is exiting leaking allocated blocks:" in out
    assert f"memcheck: Process /bin/wl-leak[pid={pid}] is leaking 10 allocated blocks." in out
    assert re.search(r"Frame 1: PC=0x[0-9a-f]+ \(relative 0x[0-9a-f]+\) in module /bin/wl-leak\n"
                     r"   Routine leak_malloc @ \S+/wl-leak\.c:\d+", out)


@pytest.mark.parametrize("name", ["wl-leak", "wl-leak-static"])
def test_source_shows_each_records_allocating_line_with_two_lines_of_context(tracked, name):
    pid = program_pid(tracked["logs"][name], name)
    out = tracked["source"][pid]
    records = re.split(r"^\d+ (?:\(.*\) )?bytes in \d+ blocks are .* in loss record \d+ of \d+\n", out, flags=re.M)[1:]
    assert len(records) == len(re.findall(r"in loss record \d+ of \d+$", out, re.M)) >= 6, out
    source = (REPO / "workloads" / "wl-leak.c").read_text().splitlines()
    for record in records:
        by = re.search(r"^   by 0x[0-9a-f]+: \w+ \(wl-leak\.c:(\d+)\)", record, re.M)
        line = int(by.group(1))
        context = record.split(f"   wl-leak.c:{line}:\n", 1)[1].splitlines()[:5]
        assert context == [f"{n:>6}{' >' if n == line else '  '} {source[n - 1]}" for n in range(line - 2, line + 3)]


def children(log: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"^child (\w+) pid=(\d+)", log, re.M)}


def test_a_forked_child_leaking_inherited_blocks_reports_nothing_unless_all(tracked):
    log = tracked["logs"]["wl-badfree"]
    child = children(log)["inherit"]
    assert tracked["reports"][child]["summary"]["definitely lost"]["blocks"] == 0
    assert not [b for b in tracked["reports"][child]["blocks"] if b["kind"] != "still reachable"]
    inherited = {int(b["address"], 16): b for b in tracked["all"][child]["blocks"]}
    leaked = next(t for t in ground_truth(log) if t["kind"] == "definite")
    assert inherited[leaked["addr"]]["origin"] == "inherited"
    assert inherited[leaked["addr"]]["kind"] == "definitely lost"
    assert inherited[leaked["addr"]]["stack"][1]["function"] == "parent_leak"


def test_blocks_allocated_before_main_are_forgiven_unless_all(tracked):
    log = tracked["logs"]["wl-badfree"]
    parent = program_pid(log, "wl-badfree")
    early = next(t for t in ground_truth(log) if t["kind"] == "transition")
    assert early["addr"] not in {int(b["address"], 16) for b in tracked["reports"][parent]["blocks"]}
    block = next(b for b in tracked["all"][parent]["blocks"] if int(b["address"], 16) == early["addr"])
    assert (block["origin"], block["size"], block["kind"]) == ("transition", 33, "definitely lost")
    own = [b for b in tracked["reports"][parent]["blocks"] if b["kind"] == "definitely lost"]
    assert [(b["size"], b["stack"][1]["function"]) for b in own] == [(100, "parent_leak")]


def test_a_double_free_is_reported_with_both_stacks_and_the_allocation(tracked):
    log = tracked["logs"]["wl-badfree"]
    child = children(log)["double"]
    truth = next(t for t in ground_truth(log) if t["kind"] == "double-free")
    bad = [b for b in tracked["status"]["bad_frees"] if b["pid"] == child]
    assert [(b["kind"], int(b["address"], 16), b["block_size"]) for b in bad] == [("double free", truth["addr"], 24)]
    lines = [source_line("wl-badfree.c", s[1]["line"]) for s in (bad[0]["stack"], bad[0]["freed_by"])]
    assert all("free(p)" in line for line in lines) and bad[0]["stack"][1]["line"] > bad[0]["freed_by"][1]["line"]
    assert bad[0]["allocated_by"][1]["function"] == "double_free"
    assert "malloc(24)" in source_line("wl-badfree.c", bad[0]["allocated_by"][1]["line"])


def test_a_free_of_a_wild_pointer_is_reported_with_its_stack(tracked):
    log = tracked["logs"]["wl-badfree"]
    child = children(log)["wild"]
    truth = next(t for t in ground_truth(log) if t["kind"] == "wild-free")
    bad = [b for b in tracked["status"]["bad_frees"] if b["pid"] == child]
    assert [(b["kind"], int(b["address"], 16)) for b in bad] == [("invalid free", truth["addr"])]
    assert bad[0]["stack"][1]["function"] == "wild_free"
    assert "free(wild_area" in source_line("wl-badfree.c", bad[0]["stack"][1]["line"])


def test_no_other_process_reports_a_bad_free(tracked):
    log = tracked["logs"]["wl-badfree"]
    culprits = {children(log)["double"], children(log)["wild"]}
    assert {b["pid"] for b in tracked["status"]["bad_frees"]} == culprits


def test_attaching_to_a_running_process_forgives_what_it_had_before(tracked):
    pid = tracked["attached"]
    assert not [b for b in tracked["reports"][pid]["blocks"] if b["kind"] != "still reachable"]
    before = [b for b in tracked["all"][pid]["blocks"] if b["kind"] == "definitely lost"]
    assert len(before) == 6 and {b["origin"] for b in before} == {"preexisting"}


def test_every_tracked_process_left_a_report_and_no_handler_failed(tracked):
    status = tracked["status"]
    pids = {program_pid(tracked["logs"][n], n) for n in PROGRAMS + ("wl-arenas",)}
    pids |= set(children(tracked["logs"]["wl-badfree"]).values())
    assert pids | {tracked["attached"]} == set(status["reports"])
    assert status["errors"] == 0, status["last_error"]
    assert status["processes"] == []
    assert status["breakpoints"] == {"user": 0, "kernel": 3, "return_sites": 0}, "nothing left to track"


@pytest.mark.parametrize("spec, message", [
    ("track 99999", "memcheck leaks: no process with pid 99999"),
    ("track 2", "memcheck leaks: pid 2 (kthreadd) is a kernel thread: it has no memory map"),
    ("track", "memcheck leaks: one of the arguments PID|COMM --exec is required"),
    ("track 1 --exec wl-leak", "memcheck leaks: argument --exec: not allowed with argument PID|COMM"),
    ("report 99999", "memcheck leaks: no exit report for pid 99999"),
    ("report abc", "memcheck leaks: argument PID: invalid int value: 'abc'"),
    ("1 --exec /bin/wl-leak", "memcheck leaks: unrecognized arguments: --exec /bin/wl-leak"),
    ("untrack 5", "memcheck leaks: unrecognized arguments: 5"),
])
def test_bad_tracking_requests_give_one_clear_line(guest, spec, message):
    run = run_gdb(guest, f"memcheck leaks {spec}")
    assert message in run.stderr and "Traceback" not in run.output


def test_a_static_binary_without_symbols_cannot_be_tracked_and_says_why(guest):
    guest.sh("wl-leak-stripped --wait > /tmp/log/stripped.log 2>&1 &")
    guest.sh("sleep 0.5; grep -q done /tmp/log/stripped.log")
    pid = int(guest.sh("pidof wl-leak-stripped").split()[0])
    run = run_gdb(guest, f"memcheck leaks track {pid}")
    assert re.search(rf"^memcheck leaks: pid {pid} \(wl-leak-strippe\): no module defines malloc and free "
                     r"\(looked in /bin/wl-leak-stripped; a static binary without symbols\?\)$", run.stderr, re.M)
    assert "Traceback" not in run.output
    guest.sh(f"kill -USR1 {pid}")


def test_attaching_to_a_process_with_a_corrupt_heap_says_so_and_still_tracks(guest):
    guest.sh("wl-leak --wait --corrupt > /tmp/log/track-corrupt.log 2>&1 &")
    log = guest.sh("sleep 0.5; grep -q done /tmp/log/track-corrupt.log && cat /tmp/log/track-corrupt.log")
    pid = program_pid(log, "wl-leak")
    run = run_gdb(guest, f"memcheck leaks track {pid}", "memcheck leaks status --json")
    assert re.search(rf"^memcheck leaks: tracking pid {pid} \(wl-leak\): \d+ malloc-family entry points; "
                     r"the heap scan failed \(heap chunk at 0x[0-9a-f]+ has an impossible size 0x0\): frees of "
                     r"blocks it did not see are counted, not reported$", run.stdout, re.M)
    status = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("{")))
    assert [(p["pid"], p["complete"]) for p in status["processes"]] == [(pid, False)]
    assert "Traceback" not in run.output
    guest.sh(f"kill -USR1 {pid}")


def test_stack_depth_is_a_setting_with_a_checked_range(guest):
    run = run_gdb(guest, "set memcheck stack-depth 8", "show memcheck stack-depth", "set memcheck stack-depth 0",
                  "show memcheck stack-depth")
    assert run.stdout.count("Leak tracking keeps 8 frames per allocation stack.") == 2
    assert "set memcheck stack-depth: give a number of frames from 1 to 64" in run.stderr
    assert "Traceback" not in run.output


def test_tracking_a_process_twice_is_refused_in_one_line(guest):
    run = run_gdb(guest, "memcheck leaks track wl-maps", "memcheck leaks track wl-maps")
    assert re.search(r"^memcheck leaks: pid \d+ \(wl-maps\) is already tracked$", run.stderr, re.M)
    assert "Traceback" not in run.output


def test_a_program_without_malloc_symbols_executed_under_tracking_is_left_alone_with_a_note(tracked):
    assert tracked["logs"]["wl-leak-stripped"].strip() == "ran"
    notes = tracked["status"]["untracked"]
    assert len(notes) == 1 and re.match(r"pid \d+ \(wl-leak-strippe\): no module defines malloc and free", notes[0])


def test_a_tracked_running_process_is_reported_from_its_map_and_scan_mode_stays_available(tracked):
    live, scan = tracked["live"], tracked["forced_scan"]
    assert (live["mode"], scan["mode"]) == ("tracking", "scan")
    assert {b["origin"] for b in live["blocks"]} == {"preexisting"}
    lost = lambda doc: sorted(int(b["address"], 16) for b in doc["blocks"] if b["kind"] == "definitely lost")
    assert lost(live) == lost(scan) and len(lost(live)) == 6


EXIT_REPORT_SCRIPT = r"""
gdb.execute("set memcheck exit-report memcheck")
gdb.execute("memcheck leaks track --exec wl-leak")
while_running("wl-leak > /dev/null")
emit({"done": True})
"""


def test_exit_report_setting_prints_the_whole_report_when_the_process_exits(guest):
    run = run_gdb(guest, script=EXIT_REPORT_SCRIPT, timeout=300)
    assert run.result() == {"done": True}
    assert re.search(r"^memcheck: Process /bin/wl-leak\[pid=\d+\] is leaking 10 allocated blocks\.$", run.stdout, re.M)
    assert "Routine leak_malloc @ " in run.stdout and "Traceback" not in run.output
