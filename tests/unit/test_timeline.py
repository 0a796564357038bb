"""The watch: glibc's heap counters read from a real process's memory equal its own
mallinfo2; the loop samples on the interval grid, sends each interrupt early by the
delay it has seen, skips a deadline it has missed and keeps its samples when stopped
early; the charts, CSV and SVG say what was sampled."""
from __future__ import annotations

import csv
import io
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gdb_memcheck.glibc import counters
from gdb_memcheck.glibc import heap as glibc_heap
from gdb_memcheck.leakcheck.heapscan import data_ranges
from gdb_memcheck.linux.tasks import Task
from gdb_memcheck.report import charts
from gdb_memcheck.target import MemoryReadError
from gdb_memcheck.timeline.sampling import ProcessSample, Sample, wanted
from gdb_memcheck.timeline.watch import WatchResult, watch
from test_unwind import parse_vma

SOURCE = Path(__file__).with_name("programs") / "heapcount.c"


class Recorded:
    """A process's writable memory as it wrote it out, and what mallinfo2 said then."""

    def __init__(self, raw: bytes) -> None:
        head, memory = raw.split(b"MEMORY\n", 1)
        lines = head.decode().splitlines()
        self.arena, self.keepcost, self.hblkhd, self.start_brk, self.brk = (int(x, 16) for x in lines[0].split())
        self.vmas = [parse_vma(line) for line in lines[1:]]
        self.regions: list[tuple[int, bytes]] = []
        while memory:
            header, memory = memory.split(b"\n", 1)
            start, size = (int(x, 16) for x in header.split())
            if self.regions and self.regions[-1][0] + len(self.regions[-1][1]) == start:    # data, then bss
                start, data = self.regions.pop()
                self.regions.append((start, data + memory[:size]))
            else:
                self.regions.append((start, memory[:size]))
            memory = memory[size:]

    def read(self, address: int, size: int) -> bytes:
        for start, data in self.regions:
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        raise MemoryReadError("recorded", address, size, "not recorded")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recorded:
    tmp = tmp_path_factory.mktemp("heapcount")
    subprocess.run(["gcc", "-g", "-pthread", "-o", str(tmp / "heapcount"), str(SOURCE)], check=True)
    subprocess.run([str(tmp / "heapcount"), str(tmp / "heap.dump")], check=True)
    return Recorded((tmp / "heap.dump").read_bytes())


def test_the_counters_read_from_a_real_processs_memory_are_its_mallinfo2(recorded):
    where = counters.malloc_locations(recorded.read, data_ranges(recorded.vmas), recorded.start_brk, recorded.brk)
    found = counters.heap_counters(recorded.read, where)
    assert (found.system_bytes, found.mmapped_bytes, found.arenas) == (recorded.arena, recorded.hblkhd, 2)
    main_top = recorded.read(where.main_arena + glibc_heap.ARENA_TOP, 8)
    top_size = int.from_bytes(recorded.read(int.from_bytes(main_top, "little") + 8, 8), "little") & ~7
    assert top_size == recorded.keepcost, "keepcost is main_arena's top chunk"
    assert found.in_use == found.system_bytes - found.top_bytes + found.mmapped_bytes > recorded.hblkhd


def test_mp_is_the_struct_whose_sbrk_base_is_the_heap_start_not_any_word_that_equals_it():
    sbrk_base, base = 0x5555_5555_9000, 0x1000
    data = bytearray(0x400)
    put = lambda at, value, size=8: data.__setitem__(slice(at, at + size), value.to_bytes(size, "little"))
    put(0x40 + counters.MP_SBRK_BASE, sbrk_base)                   # a pointer to the heap amid zeros: not mp_
    mp = 0x200
    put(mp + counters.MP_SBRK_BASE, sbrk_base)
    put(mp + counters.MP_MMAPPED_MEM, 0x32000)
    put(mp + counters.MP_MAX_MMAPPED_MEM, 0x32000)
    put(mp + counters.MP_N_MMAPS, 1, 4)
    put(mp + counters.MP_TCACHE_BINS, 64)
    read = lambda address, size: bytes(data[address - base:address - base + size])
    assert counters.find_malloc_par(read, [(base, base + len(data))], sbrk_base) == base + mp
    with pytest.raises(glibc_heap.HeapError, match="no mp_ found"):
        counters.find_malloc_par(read, [(base, base + len(data))], sbrk_base + 0x1000)


class FakeGuest:
    """A clock, and a guest that stops `delay` seconds after each interrupt is sent."""

    def __init__(self, delay: float = 0.004, early_at: int | None = None) -> None:
        self.now, self.delay, self.early_at, self.runs = 100.0, delay, early_at, 0
        self.sent: list[float] = []

    def clock(self) -> float:
        return self.now

    def run_until(self, when: float) -> float | None:
        self.runs += 1
        if self.runs == self.early_at:
            self.now = (self.now + when) / 2
            return None
        self.sent.append(when)
        self.now = when + self.delay
        return self.now

    def take(self, number: int, when: float, seconds: float) -> Sample:
        self.now += 0.003                        # sampling takes 3 ms
        return Sample(number, when, seconds, ())


def test_samples_land_on_the_grid_once_the_delay_of_a_stop_is_known():
    """Each interrupt goes out early by the shortest recent delay."""
    guest = FakeGuest(delay=0.004)
    result = watch(guest.run_until, guest.take, 0.1, 1.0, clock=guest.clock, wall=lambda: 1e9)
    times = [s.seconds for s in result.samples]
    assert len(times) == 11 and times[0] == 0.0
    assert times[1] == pytest.approx(0.104) and all(t == pytest.approx(k / 10) for k, t in enumerate(times) if k > 1)
    assert guest.sent[1] == pytest.approx(100.2 - 0.004), "sent early by the delay seen"
    assert result.samples[3].time == pytest.approx(1e9 + 0.3) and not result.interrupted


def test_a_deadline_missed_while_sampling_is_skipped_and_the_grid_kept():
    guest = FakeGuest(delay=0.0)
    slow = iter([0.0, 0.25, 0.0, 0.0, 0.0])

    def take(number, when, seconds):
        guest.now += next(slow, 0.0)
        return Sample(number, when, seconds, ())
    result = watch(guest.run_until, take, 0.1, 0.5, clock=guest.clock, wall=lambda: 0.0)
    assert [s.number for s in result.samples] == [0, 1, 4, 5] and result.skipped == 2
    assert [round(s.seconds, 6) for s in result.samples] == [0.0, 0.1, 0.4, 0.5]


def test_a_stop_that_was_not_the_watchs_ends_it_and_keeps_the_samples():
    guest = FakeGuest(early_at=3)
    result = watch(guest.run_until, guest.take, 0.5, 60, clock=guest.clock)
    assert result.interrupted and [s.number for s in result.samples] == [0, 1, 2]


def test_ctrl_c_while_sampling_ends_the_watch_and_keeps_the_samples():
    guest = FakeGuest()

    def take(number, when, seconds):
        if number == 4:
            raise KeyboardInterrupt
        return guest.take(number, when, seconds)
    result = watch(guest.run_until, take, 0.5, 60, clock=guest.clock)
    assert result.interrupted and len(result.samples) == 4


def task(pid: int, comm: str, kernel: bool = False) -> Task:
    return Task(0x1000 * pid, pid, pid, 1, comm, "S", 0x20_0000 if kernel else 0, 0 if kernel else 0x99, 0)


def test_the_processes_watched_are_named_by_pid_or_comm_or_are_every_user_process():
    procs = [task(2, "kthreadd", kernel=True), task(85, "wl-maps"), task(90, "sh"), task(91, "sh")]
    assert [p.pid for p in wanted(procs, [])] == [85, 90, 91]
    assert [p.pid for p in wanted(procs, ["sh"])] == [90, 91]
    assert [p.pid for p in wanted(procs, ["85", "kthreadd"])] == [85]


def samples() -> list[Sample]:
    grow = [ProcessSample(7, "wl-grow", 1024 * (100 + 10 * k), 4096 * 1024, 16384 * k) for k in range(6)]
    leak = [ProcessSample(9, "a<b&c", 2048 * 1024, 4096 * 1024, None) for _ in range(6)]
    return [Sample(k, 1e9 + 0.5 * k, 0.5 * k, (grow[k], leak[k]) if k < 4 else (grow[k],)) for k in range(6)]


def test_a_sparkline_rises_with_its_values_keeps_gaps_and_flat_series_level():
    assert charts.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert charts.sparkline([5, None, 5]) == "▄ ▄"
    assert charts.sparkline(list(range(100)), width=10) == "▁▁▂▃▄▄▅▆▇█"


def test_the_csv_has_a_row_per_process_per_sample_and_an_empty_heap_without_glibc():
    rows = list(csv.DictReader(io.StringIO(charts.csv_text(samples()))))
    assert len(rows) == 10 and list(rows[0]) == list(charts.CSV_COLUMNS)
    assert rows[2] == {"sample": "1", "time": "1000000000.500", "seconds": "0.500", "pid": "7", "comm": "wl-grow",
                       "rss_kib": "110", "vsz_kib": "4096", "heap_bytes": "16384"}
    assert rows[1]["heap_bytes"] == ""


def test_the_svg_is_valid_xml_with_a_line_per_process_and_metric_and_escaped_names():
    root = ET.fromstring(charts.svg(samples(), "title & more"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 3, "RSS of both, heap of the one with a glibc heap"
    assert "9 a<b&c" in [t.text for t in root.findall(f"{ns}text")]


def test_the_terminal_chart_has_one_line_per_process_with_first_and_last_values():
    text = charts.timeline_text(WatchResult(samples(), running=2.4, elapsed=2.5), 0.5)
    lines = text.splitlines()
    assert lines[0].startswith("6 samples every 0.5 s over 2.5 s (intervals 0.500-0.500 s, mean 0.500 s); "
                               "the guest ran 96% of the time")
    assert lines[2].split() == ["7", "wl-grow", "▁▂▃▅▆█", "100.0", "kB", "->", "150.0", "kB", "▁▂▃▅▆█", "0", "B",
                                "->", "80.0", "kB"]
    assert lines[3].split()[:3] == ["9", "a<b&c", "▄▄▄▄"] and lines[3].endswith("no glibc heap")


@pytest.mark.parametrize("value, top", [(7.43, 8), (13, 20), (210.9, 400), (1612, 2000), (1, 1), (0.5, 0.8)])
def test_an_axis_ends_at_a_round_number_at_or_above_the_highest_value(value, top):
    assert charts.nice_top(value) == pytest.approx(top)
