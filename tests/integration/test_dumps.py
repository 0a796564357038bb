"""Offline dumps: at one stop of the guest, gdb takes every snapshot view live and QEMU
writes three dumps (ELF, ELF with -p, kdump-zlib); then QEMU is stopped, and gdb, holding
only the vmlinux, opens each dump: every view equals the live one.  Bad files get one
line each.  (In the KASLR + 5-level pass the same checks run on such a guest.)"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from labtools import REPO, guestlab, run_gdb

BOOT = guestlab.BootOptions()
DUMPS = {"elf": {}, "paging": {"paging": True}, "kdump-zlib": {"zlib": True}}
VTOP_SAMPLES = 300

VIEWS = r"""
def views(vtops):
    ps = q("memcheck ps -t --json")["tasks"]
    pids = sorted({r["pid"] for r in ps if r["mm"] and not r["kernel_thread"]})
    leak = next(r["pid"] for r in ps if r["comm"] == "wl-leak")
    return {"info": q("memcheck info --json"), "ps": ps,
            "maps": {str(p): q(f"memcheck maps {p} --rss --json")["maps"] for p in pids},
            "pagetable": q("memcheck pagetable --json"), "kernel_pagetable": q("memcheck pagetable --kernel --json"),
            "process_pagetable": q(f"memcheck pagetable {leak} --json"),
            "vtop": [q(f"memcheck vtop {'-p ' + str(p) if p else ''} --json {va:#x}") for p, va in vtops],
            "leaks": q(f"memcheck leaks {leak} --json"),
            "addr": [q(f"memcheck addr --json {a}") for a in ("$rip", "&init_task", "$rsp")],
            "slab": q("memcheck slab --json"), "slab_objects": q("memcheck slab kmalloc-64 --json"),
            "kleaks": q("memcheck kleaks --json"), "kmem": q("memcheck kmem --json &init_task")}
"""

LIVE = VIEWS + r"""
import random
ps = q("memcheck ps --json")["tasks"]
user = [r["pid"] for r in ps if r["mm"]]
rng = random.Random(7)
vtops = []
for p in [None] + user:
    table = q(f"memcheck pagetable {p or ''} --json")["ranges"]
    for r in rng.sample(table, min(len(table), SAMPLES // (len(user) + 1))):
        vtops.append([p, int(r["start"], 16) + rng.randrange(r["size"])])
seen = views(vtops)
for name, options in DUMPS.items():
    guest.dump(DIRECTORY + "/" + name, **options)
emit({"views": seen, "vtops": vtops})
"""

OFFLINE = VIEWS + r"""
gdb.execute("memcheck open " + DUMP)
emit(views(VTOPS))
"""


@pytest.fixture(scope="module")
def stop(guest, tmp_path_factory):
    """The live views and the dumps of one stop; then QEMU is stopped and each dump read.
    wl-names is running: its memfds, shm and socket rings are named through d_dname."""
    directory = tmp_path_factory.mktemp("dumps")
    guest.sh("wl-names > /tmp/log/wl-names.log 2>&1 &")
    guest.sh("for i in $(seq 100); do [ $(grep -c ready /tmp/log/wl-names.log) -ge 4 ] && break; sleep 0.1; done")
    script = LIVE.replace("SAMPLES", str(VTOP_SAMPLES)).replace("DUMPS", repr(DUMPS)) \
        .replace("DIRECTORY", repr(str(directory)))
    live = run_gdb(guest, script=script, timeout=600).result()
    guest.stop()
    assert not guest.alive(), "the dumps are read with QEMU gone"
    offline = {}
    for name in DUMPS:
        script = OFFLINE.replace("DUMP", repr(str(directory / name))).replace("VTOPS", repr(live["vtops"]))
        run = run_gdb(guest, script=script, connect=False, timeout=600)
        offline[name] = run.result()
    yield {"live": live["views"], "offline": offline, "directory": directory}
    shutil.rmtree(directory)


@pytest.mark.parametrize("kind", DUMPS)
def test_ps_from_a_dump_equals_the_live_view_at_the_same_stop(stop, kind):
    assert len(stop["live"]["ps"]) > 20
    assert stop["offline"][kind]["ps"] == stop["live"]["ps"]


@pytest.mark.parametrize("kind", DUMPS)
def test_maps_and_their_rss_from_a_dump_equal_the_live_view(stop, kind):
    assert len(stop["live"]["maps"]) >= 5 and all(stop["live"]["maps"].values())
    names = [m["line"] for maps in stop["live"]["maps"].values() for m in maps]
    assert any(line.endswith("/memfd:wl-names-memfd (deleted)") for line in names), "a path from d_dname"
    assert stop["offline"][kind]["maps"] == stop["live"]["maps"]


@pytest.mark.parametrize("kind", DUMPS)
def test_page_tables_from_a_dump_equal_the_live_view(stop, kind):
    for view in ("pagetable", "kernel_pagetable", "process_pagetable"):
        assert len(stop["live"][view]["ranges"]) > 3, view
        assert stop["offline"][kind][view] == stop["live"][view], view


@pytest.mark.parametrize("kind", DUMPS)
def test_vtop_samples_from_a_dump_walk_the_same_entries_to_the_same_place(stop, kind):
    live = stop["live"]["vtop"]
    assert len(live) >= VTOP_SAMPLES * 0.8 and sum(1 for w in live if w["physical"]) >= len(live) * 0.9
    assert stop["offline"][kind]["vtop"] == live


@pytest.mark.parametrize("kind", DUMPS)
def test_the_leak_scan_from_a_dump_equals_the_live_one(stop, kind):
    live = stop["live"]["leaks"]
    assert sum(1 for b in live["blocks"] if b["kind"] == "definitely lost") >= 5
    assert stop["offline"][kind]["leaks"] == live


@pytest.mark.parametrize("kind", DUMPS)
def test_slab_caches_and_objects_from_a_dump_equal_the_live_view(stop, kind):
    live = stop["live"]
    assert len(live["slab"]["caches"]) >= 100 and len(live["slab_objects"]["objects"]) >= 64
    assert stop["offline"][kind]["slab"] == live["slab"]
    assert stop["offline"][kind]["slab_objects"] == live["slab_objects"]


@pytest.mark.parametrize("kind", DUMPS)
def test_the_kernel_leak_scan_and_kmem_from_a_dump_equal_the_live_ones(stop, kind):
    live = stop["live"]
    untimed = lambda scan: {**scan, "seconds": 0, "header": re.sub(r"in [\d.]+ s", "", scan["header"])}  # noqa: E731
    assert live["kmem"]["kind"] == "kernel image" and live["kleaks"]["objects"] and live["kleaks"]["roots"]
    assert untimed(stop["offline"][kind]["kleaks"]) == untimed(live["kleaks"])
    assert stop["offline"][kind]["kmem"] == live["kmem"]


@pytest.mark.parametrize("kind", DUMPS)
def test_addresses_from_a_dump_are_described_as_live(stop, kind):
    assert stop["offline"][kind]["addr"] == stop["live"]["addr"]


@pytest.mark.parametrize("kind", DUMPS)
def test_info_from_a_dump_names_the_same_kernel_and_the_dump_it_reads(stop, guest, kind):
    live, dumped = stop["live"]["info"], stop["offline"][kind]["info"]
    levels = 5 if "+la57" in guest.options.cpu else 4
    assert live["paging"] == f"{levels}-level paging"
    for key in ("release", "machine", "paging", "kaslr_slide", "vcpus"):
        assert dumped[key] == live[key], key
    assert dumped["physical_path"] == "dump" and str(stop["directory"] / kind) in dumped["summary"]


# -- bad input ----------------------------------------------------------------------------

def copy_head(source, target, size: int):
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read(size))
    return target


def test_bad_files_get_one_line_each_and_the_views_stay_as_they_were(stop, guest):
    d = stop["directory"]
    text = d / "notes.txt"
    text.write_text("a text file\n")
    cases = [
        (copy_head(d / "elf", d / "cut.elf", 64 << 20), r"cut\.elf is truncated: it has 67108864 bytes, its memory "
                                                        r"segments need \d+"),
        (copy_head(d / "kdump-zlib", d / "cut.kdump", 8 << 20), r"cut\.kdump is truncated: "),
        (text, r"notes\.txt is not a QEMU guest-memory dump"),
        (guest.vmlinux, r"vmlinux-indexed is an ELF file of type 2, not a core dump"),
        (d / "absent", r"cannot open .*absent: No such file or directory"),
    ]
    commands = [f"memcheck open {d / 'elf'}"] + [f"memcheck open {path}" for path, _ in cases] + ["memcheck info"]
    run = run_gdb(guest, *commands, connect=False, timeout=300)
    for path, message in cases:
        lines = [l for l in run.stderr.splitlines() if re.search(message, l)]
        assert len(lines) == 1 and lines[0].startswith("memcheck open: "), (message, run.stderr)
    assert f"physical reads via dump ({d / 'elf'}: ELF" in run.stdout.splitlines()[-1], "the first dump stays open"
    assert "Traceback" not in run.output


def test_a_dump_of_another_kernel_than_the_loaded_vmlinux_is_refused_in_one_line(stop, guest):
    other = guestlab.kernel_dir("6.1-cloud" if guest.kernel == guestlab.kernel_dir("6.12-cloud") else "6.12-cloud")
    argv = ["timeout", "300", "gdb", "-nx", "-batch", "-ex", f"file {other / 'vmlinux-indexed'}",
            "-x", str(REPO / "gdb_memcheck" / "gdbinit.py"), "-ex", f"memcheck open {stop['directory'] / 'elf'}",
            "-ex", "memcheck ps"]
    run = subprocess.run(argv, capture_output=True, text=True)
    release = stop["live"]["info"]["release"]
    refused = [l for l in run.stderr.splitlines() if l.startswith("memcheck open: ")]
    assert len(refused) == 1 and "the loaded vmlinux is not the running kernel" in refused[0], run.stderr
    assert f"the guest runs 'Linux {release} #" in refused[0]
    assert "memcheck ps: not connected to a guest" in run.stderr, "the refused dump is not served"
    assert "Traceback" not in run.stdout + run.stderr


def test_an_arm64_vmlinux_refuses_dumps_in_one_line(stop):
    """QEMU's arm64 dumps record no TTBR0/TTBR1 or TCR, so no address of one could translate."""
    arm64 = guestlab.ARCHES["arm64"]
    vmlinux = guestlab.kernel_dir("6.1-cloud", "arm64") / "vmlinux-indexed"
    argv = ["timeout", "300", arm64.gdb, "-nx", "-batch", "-ex", f"file {vmlinux}",
            "-x", str(REPO / "gdb_memcheck" / "gdbinit.py"), "-ex", f"memcheck open {stop['directory'] / 'elf'}"]
    run = subprocess.run(argv, capture_output=True, text=True)
    refused = [l for l in run.stderr.splitlines() if l.startswith("memcheck open: ")]
    assert refused == ["memcheck open: dumps of aarch64 guests are not supported (x86-64 only): "
                       "the loaded vmlinux is aarch64's"], run.stderr
    assert "Traceback" not in run.stdout + run.stderr
