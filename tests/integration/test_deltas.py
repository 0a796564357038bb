"""Deltas between two looks at a guest, against its own truth and against valgrind.

Two stops: at the first, wl-phases has leaked three blocks and wl-mapchange has mapped two
regions; between them each does its second phase (two more leaks and one more block in
a record that grows; an mmap, a munmap, an mprotect of a middle page and a brk growth)
and a sleeper is replaced by another.  At the second stop `leaks --delta`, `maps --delta`
and `ps --delta` must show exactly those changes; valgrind's `leak_check full increased`
on the same binary, run natively with its gdbserver and driven by vgdb, must show the same
records; and `memcheck diff` of the dumps QEMU wrote at the two stops must agree."""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from labtools import guestlab, run_gdb

BOOT = guestlab.BootOptions()
MALLOC_ALIGN, SIZE_SZ, MIN_CHUNK = 16, 8, 32
RECORD = re.compile(r"^(?:==\d+== )?([\d,]+) \(\+([\d,]+)\) bytes in ([\d,]+) \(\+([\d,]+)\) blocks are "
                    r"(definitely lost|indirectly lost|possibly lost) in loss record (\d+) of (\d+)", re.M)
SUMMARY = re.compile(r"definitely lost: +([\d,]+) \(\+([\d,]+)\) bytes in ([\d,]+) \(\+([\d,]+)\) blocks")


def usable(request: int) -> int:
    """malloc_usable_size of a request (glibc: the chunk less its size field)."""
    return max(MIN_CHUNK, (request + SIZE_SZ + MALLOC_ALIGN - 1) & ~(MALLOC_ALIGN - 1)) - SIZE_SZ


def number(text: str) -> int:
    return int(text.replace(",", ""))


def records(text: str) -> list[dict]:
    """Each definitely lost record of a delta report: amounts, changes, and the allocating
    function (the first frame past malloc) or the block addresses (scan mode)."""
    out = []
    for m in RECORD.finditer(text):
        rest = text[m.end():].split("\n", 4)[1:4]
        function = next((re.search(r"by 0x[0-9a-fA-F]+: (\w+)", l).group(1) for l in rest if " by 0x" in l), None)
        blocks = re.search(r"blocks at (.*)$", rest[0])
        out.append({"bytes": number(m[1]), "bytes_change": number(m[2]), "blocks": number(m[3]),
                    "blocks_change": number(m[4]), "function": function, "number": int(m[6]), "of": int(m[7]),
                    "addresses": sorted(int(a, 16) for a in re.findall(r"0x[0-9a-f]+", blocks[1])) if blocks else []})
    return sorted(out, key=lambda r: (r["bytes"], r["function"] or ""))


def ground_truth(log: str) -> list[dict]:
    return [dict(addr=int(m[0], 16), size=int(m[1]), function=m[2], phase=int(m[3]))
            for m in re.findall(r"^GT definite addr=(0x[0-9a-f]+) size=(\d+) in=(\w+) phase=(\d+)", log, re.M)]


SCAN_SCRIPT = r"""
first = {"ps": q("memcheck ps --delta --json"), "maps": q(f"memcheck maps {PID_MC} --delta --json"),
         "leaks": gdb.execute(f"memcheck leaks {PID_PH} --delta", to_string=True)}
guest.dump(DUMPS + "/a.kdump", zlib=True)
while_running(f"kill -USR1 {PID_MC} {PID_PH}; kill {PID_SLEEPER}; sleep 999 >/dev/null 2>&1 & "
              "echo $! > /tmp/log/sleeper; until grep -q changed /tmp/log/mc.log && "
              "grep -q 'phase 2 done' /tmp/log/ph.log; do sleep 0.1; done")
second = {"ps": q("memcheck ps --delta --json"), "maps": q(f"memcheck maps {PID_MC} --delta --json"),
          "leaks": gdb.execute(f"memcheck leaks {PID_PH} --delta", to_string=True)}
guest.dump(DUMPS + "/b.kdump", zlib=True)
emit({"first": first, "second": second})
"""

TRACKED_SCRIPT = r"""
gdb.execute("memcheck leaks track --exec wl-phases")
ran = while_running("wl-phases > /tmp/log/tracked.log 2>&1 & until grep -q 'phase 1 done' /tmp/log/tracked.log; "
                    "do sleep 0.1; done; pidof wl-phases")
pid = int(ran["text"].split()[0])
first = gdb.execute(f"memcheck leaks {pid}", to_string=True)
while_running(f"kill -USR1 {pid}; until grep -q 'phase 2 done' /tmp/log/tracked.log; do sleep 0.1; done")
second = gdb.execute(f"memcheck leaks {pid} --delta", to_string=True)
emit({"first": first, "second": second, "pid": pid})
"""


@pytest.fixture(scope="module")
def phases(guest, tmp_path_factory):
    """Both stops of the scan-mode run, the guest's truth, and its maps before and after."""
    directory = tmp_path_factory.mktemp("delta-dumps")
    guest.sh("wl-mapchange > /tmp/log/mc.log 2>&1 & wl-phases > /tmp/log/ph.log 2>&1 & "
             "sleep 1000 > /dev/null 2>&1 & echo $! > /tmp/log/sleeper")
    guest.sh("until grep -q mapped /tmp/log/mc.log && grep -q 'phase 1 done' /tmp/log/ph.log; do sleep 0.1; done")
    mc, ph = (int(guest.sh(f"pidof {name}").split()[0]) for name in ("wl-mapchange", "wl-phases"))
    sleeper = int(guest.sh("cat /tmp/log/sleeper"))
    maps_before = guest.sh(f"cat /proc/{mc}/maps")
    script = SCAN_SCRIPT.replace("PID_MC", str(mc)).replace("PID_PH", str(ph)) \
        .replace("PID_SLEEPER", str(sleeper)).replace("DUMPS", repr(str(directory)))
    res = run_gdb(guest, script=script, timeout=300).result()
    new_sleeper = int(guest.sh("cat /tmp/log/sleeper"))
    smaps = guest.sh(f"grep -E '^[0-9a-f]+-|^Rss:' /proc/{mc}/smaps")
    return {**res, "mc": mc, "ph": ph, "sleeper": sleeper, "new_sleeper": new_sleeper, "dir": directory,
            "maps_before": maps_before, "maps_after": guest.sh(f"cat /proc/{mc}/maps"), "smaps_after": smaps,
            "mc_log": guest.sh("cat /tmp/log/mc.log"), "truth": ground_truth(guest.sh("cat /tmp/log/ph.log"))}


@pytest.fixture(scope="module")
def valgrind(guest, tmp_path_factory):
    """valgrind's `leak_check full increased` after each phase of the same binary, run on
    the host with its gdbserver and asked through vgdb."""
    work = tmp_path_factory.mktemp("valgrind")
    out, err = work / "out", work / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(["valgrind", "--vgdb=yes", f"--vgdb-prefix={work}/vgdb",
                                 str(guest.sysroot / "bin" / "wl-phases")], stdout=stdout, stderr=stderr)
    reports = []
    try:
        for phase in (1, 2):
            deadline = time.monotonic() + 60
            while f"phase {phase} done" not in out.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
            asked = subprocess.run(["vgdb", f"--vgdb-prefix={work}/vgdb", f"--pid={proc.pid}", "leak_check", "full",
                                    "increased"], capture_output=True, text=True, timeout=60)
            reports.append(asked.stdout)
            proc.send_signal(subprocess.signal.SIGUSR1)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"reports": reports, "truth": ground_truth(out.read_text())}


@pytest.fixture(scope="module")
def tracked(guest, phases):
    return run_gdb(guest, script=TRACKED_SCRIPT, timeout=300).result()


def phase_two(truth: list[dict]) -> dict[str, dict]:
    return {t["function"]: t for t in truth if t["phase"] == 2}


def test_the_second_scan_check_shows_exactly_the_two_new_blocks_and_the_grown_record(phases):
    truth = phases["truth"]
    new = phase_two(truth)
    grow = tuple(sorted(t["addr"] for t in truth if t["function"] == "leak_grow"))
    shown = {tuple(r["addresses"]): r for r in records(phases["second"]["leaks"])}
    assert set(shown) == {(new["leak_c"]["addr"],), (new["leak_d"]["addr"],), grow}
    amounts = lambda r: (r["bytes"], r["bytes_change"], r["blocks"], r["blocks_change"])
    assert amounts(shown[grow]) == (2 * usable(48), usable(48), 2, 1)
    for name in ("leak_c", "leak_d"):
        size = usable(new[name]["size"])
        assert amounts(shown[(new[name]["addr"],)]) == (size, size, 1, 1), name


def test_the_scan_records_are_valgrinds_increased_records_with_malloc_rounding(phases, valgrind):
    ours = records(phases["second"]["leaks"])
    theirs = records(valgrind["reports"][1])
    assert len(ours) == len(theirs) == 3
    sized = sorted((usable(r["bytes"] // r["blocks"]) * r["blocks"], usable(r["bytes"] // r["blocks"]) *
                    r["blocks_change"], r["blocks"], r["blocks_change"]) for r in theirs)
    assert sorted((r["bytes"], r["bytes_change"], r["blocks"], r["blocks_change"]) for r in ours) == sized


def test_tracked_delta_records_equal_valgrinds_record_by_record(tracked, valgrind):
    keys = ("function", "bytes", "bytes_change", "blocks", "blocks_change", "number", "of")
    ours = [{k: r[k] for k in keys} for r in records(tracked["second"])]
    theirs = [{k: r[k] for k in keys} for r in records(valgrind["reports"][1])]
    assert [{k: r[k] for k in keys[:5]} for r in theirs] == [
        {"function": "leak_grow", "bytes": 96, "bytes_change": 48, "blocks": 2, "blocks_change": 1},
        {"function": "leak_c", "bytes": 300, "bytes_change": 300, "blocks": 1, "blocks_change": 1},
        {"function": "leak_d", "bytes": 400, "bytes_change": 400, "blocks": 1, "blocks_change": 1}]
    assert ours == theirs, "numbered among all records, the hidden still-reachable one included"
    summary = lambda text: [number(n) for n in SUMMARY.search(text).groups()]
    assert summary(tracked["second"]) == summary(valgrind["reports"][1]) == [1096, 748, 6, 3]


def test_a_first_check_with_delta_says_there_is_none_before_and_shows_the_full_report(phases):
    text = phases["first"]["leaks"]
    lines = text.splitlines()
    assert lines[0] == (f"memcheck leaks: no previous scan-mode check of pid {phases['ph']} (wl-phases) to compare "
                        "with: showing the full report")
    assert lines[1].startswith(f"==memcheck== pid {phases['ph']} (wl-phases), scan mode: ")
    assert sum(1 for l in lines if "are definitely lost in loss record" in l) == 3
    assert phases["first"]["maps"]["previous"] is None and phases["first"]["ps"]["previous"] is None
    assert {c["change"] for c in phases["first"]["maps"]["changes"]} == {"added"}


def maps_lines(text: str) -> list[tuple[int, int, str]]:
    return [(int(m[0], 16), int(m[1], 16), m[2]) for m in re.findall(r"^([0-9a-f]+)-([0-9a-f]+) (\S+)", text, re.M)]


def covering(lines: list[tuple[int, int, str]], start: int, end: int) -> set[str]:
    """The permissions /proc/PID/maps gives the range [start, end) (empty where unmapped)."""
    return {perms for lo, hi, perms in lines if lo < end and start < hi}


def test_the_map_delta_lists_exactly_the_mmap_munmap_mprotect_and_brk_growth(phases):
    truth = {m[0]: (int(m[1], 16), int(m[2], 16)) for m in
             re.findall(r"^GT (\w+) start=(0x[0-9a-f]+) end=(0x[0-9a-f]+)", phases["mc_log"], re.M)}
    changes = [c for c in phases["second"]["maps"]["changes"] if c["change"] != "rss"]
    found = {c["change"]: (int(c["start"], 16), int(c["end"], 16)) for c in changes}
    assert len(changes) == 4 and set(found) == {"added", "removed", "changed", "resized"}
    for kind in ("added", "removed", "changed"):
        assert found[kind] == truth[kind], kind
    resized = next(c for c in changes if c["change"] == "resized")
    assert resized["line"].endswith("[heap]") and int(resized["end"], 16) == truth["heap"][1]
    assert int(resized["was"].split("-")[1].split()[0], 16) == truth["heap"][0]


def test_each_map_change_agrees_with_the_guests_maps_before_and_after(phases):
    before, after = maps_lines(phases["maps_before"]), maps_lines(phases["maps_after"])
    for c in phases["second"]["maps"]["changes"]:
        start, end = int(c["start"], 16), int(c["end"], 16)
        if c["change"] == "added":
            assert not covering(before, start, end) and covering(after, start, end) == {"rw-p"}
        if c["change"] == "removed":
            assert covering(before, start, end) == {"rw-p"} and not covering(after, start, end)
        if c["change"] == "changed":
            assert covering(before, start, end) == {"rw-p"} and covering(after, start, end) == {"r--p"}
        if c["change"] in ("resized", "rss"):
            assert (start, end, c["line"].split()[1]) in after


def test_the_rss_of_a_mapping_in_the_delta_is_what_smaps_says(phases):
    rss = {}
    for m in re.finditer(r"^([0-9a-f]+)-[0-9a-f]+ .*\nRss: +(\d+) kB", phases["smaps_after"], re.M):
        rss[int(m[1], 16)] = int(m[2])
    shown = [c for c in phases["second"]["maps"]["changes"] if c["rss_kib"] is not None and c["change"] != "removed"]
    assert shown
    for c in shown:
        assert c["rss_kib"] == rss[int(c["start"], 16)], c


def test_ps_delta_shows_the_sleeper_gone_and_its_successor_new(phases):
    changes = phases["second"]["ps"]["changes"]
    assert {("gone", phases["sleeper"]), ("new", phases["new_sleeper"])} <= {(c["change"], c["pid"]) for c in changes}
    first = {c["pid"]: c for c in phases["first"]["ps"]["changes"]}
    for c in changes:
        assert (c["pid"] in first) == (c["change"] != "new"), c
        if c["change"] == "resized":
            was = first[c["pid"]]
            assert (c["vsz_change_kib"], c["rss_change_kib"]) == (c["vsz_kib"] - was["vsz_kib"],
                                                                   c["rss_kib"] - was["rss_kib"])
    mapchange = next(c for c in changes if c["pid"] == phases["mc"])
    assert (mapchange["change"], mapchange["vsz_change_kib"]) == ("resized", 2 * 4 - 4 * 4 + 64), \
        "two pages mapped, four unmapped, 64 kB of break"


DIFF = r"""
gdb.execute("memcheck open " + DUMP_A)
diff = q(f"memcheck diff {DUMP_A} {DUMP_B} {PID_MC} {PID_PH} --leaks --json")
emit({"diff": diff, "info": q("memcheck info --json")})
"""


def test_diff_of_the_dumps_taken_at_the_two_stops_agrees_with_the_live_deltas(phases, guest):
    d = phases["dir"]
    script = DIFF.replace("DUMP_A", repr(str(d / "a.kdump"))).replace("DUMP_B", repr(str(d / "b.kdump"))) \
        .replace("PID_MC", str(phases["mc"])).replace("PID_PH", str(phases["ph"]))
    res = run_gdb(guest, script=script, connect=False, timeout=300).result()
    diff = res["diff"]
    live_maps = phases["second"]["maps"]["changes"]
    assert [m["changes"] for m in diff["maps"] if m["pid"] == phases["mc"]] == [live_maps]
    leaks = diff["leaks"]
    assert [l["pid"] for l in leaks] == [phases["ph"]]
    shown = sorted((r["total_bytes"], r["total_change"], r["blocks"], r["blocks_change"]) for r in leaks[0]["records"])
    assert shown == sorted((r["bytes"], r["bytes_change"], r["blocks"], r["blocks_change"])
                           for r in records(phases["second"]["leaks"]))
    live_ps = {(c["change"], c["pid"]) for c in phases["second"]["ps"]["changes"]}
    assert {(c["change"], c["pid"]) for c in diff["processes"]} == live_ps
    assert res["info"]["physical_path"] == "dump" and str(d / "a.kdump") in res["info"]["summary"], \
        "the dump open before the diff is served again after it"


def test_delta_without_a_previous_look_says_so_in_one_line_and_shows_the_full_view(guest, phases):
    run = run_gdb(guest, "memcheck ps --delta", "memcheck maps 1 --delta", "memcheck ps -t --delta",
                  f"memcheck diff {phases['dir'] / 'a.kdump'} {phases['dir'] / 'nothing'}",
                  f"memcheck diff {phases['dir'] / 'a.kdump'} {phases['dir'] / 'b.kdump'} --leaks")
    out = run.stdout.splitlines()
    note = out.index("memcheck ps: no previous ps to compare with: showing every process")
    assert out[note + 1].split() == ["PID", "PPID", "S", "VSZ", "RSS", "MM", "CPU", "COMMAND"]
    note = out.index("memcheck maps: no previous maps of pid 1 (init) to compare with: showing the whole map")
    assert out[note + 1].split()[:2] == ["Rss", "Anon"] and out[note + 2].endswith("/bin/busybox")
    for message in ("memcheck ps: --delta compares processes, not threads: leave out -t",
                    f"memcheck diff: cannot open {phases['dir'] / 'nothing'}: No such file or directory",
                    "memcheck diff: --leaks needs the processes to scan (PID|COMM ...)"):
        assert sum(1 for l in run.stderr.splitlines() if l.startswith(message)) == 1, (message, run.stderr)
    assert "Traceback" not in run.output
