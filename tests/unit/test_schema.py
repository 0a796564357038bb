"""The JSON schema: docs/json-schema.md is its rendering, every view's JSON follows it,
and 64-bit addresses come out exact."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.report import schema
from gdb_memcheck.addrinfo import AddressInfo
from gdb_memcheck.leakcheck.leaks import Block, Kind, LeakReport
from gdb_memcheck.leakcheck.alloctrack import BadFree
from gdb_memcheck.linux.rss import Usage
from gdb_memcheck.symbols.stackframes import Frame
from gdb_memcheck.linux.tasks import Task
from gdb_memcheck.tracing import Event, event_json_line
from gdb_memcheck.report.views import (PsRow, addr_json, json_text, leak_report_json, maps_json, pagetable_json,
                                walk_json)
from gdb_memcheck.linux.vmas import Vma
from gdb_memcheck.changes.leaks import increased_records, leak_look
from gdb_memcheck.changes.mappings import map_changes
from gdb_memcheck.changes.processes import ProcessRecord, process_changes
from gdb_memcheck.leakcheck.leaks import loss_records
from gdb_memcheck.linux.system import Mapping
from gdb_memcheck.report.deltas import leak_delta_json, maps_delta_json, ps_delta_json
from gdb_memcheck.report.charts import sample_json
from gdb_memcheck.timeline.sampling import ProcessSample, Sample

DOC = Path(__file__).resolve().parents[2] / "docs" / "json-schema.md"
KERNEL_ADDRESS = 0xFFFF_8880_03C5_6881          # not a double: 2**64 - 2**47 + odd bits
TASK = Task(KERNEL_ADDRESS, 85, 85, 1, "wl-maps", "S", 0, KERNEL_ADDRESS + 0x40, 0)
KTHREAD = Task(0xFFFF_8880_0100_0000, 2, 2, 0, "kthreadd", "S", 0x20_0000, 0, 0)
VMA = Vma(KERNEL_ADDRESS, 0x5555_5555_4000, 0x5555_5555_5000, 0x5, 0x1000, (0x2 << 20) | 0x11, 23, "/bin/wl-maps")
FRAME = Frame(0x7FFF_F7E7_8930, "/lib/libc.so.6", 0x98930, "malloc", "malloc.c", 3281, "./malloc",
              (Frame(0x7FFF_F7E7_8930, "/lib/libc.so.6", 0x98930, "caller"),))
STEP = paging.step(4, 0x1FEAE000, 255, 0x8000_0000_1FF7_1067)


def leak_report() -> LeakReport:
    lost = Block(0x5555_5555_A2B0, 40, Kind.DEFINITE, stack=(FRAME.pc,), via="malloc", indirect=16)
    kept = Block(0x5555_5555_A300, 16, Kind.INDIRECT, origin="inherited")
    bad = BadFree(7, 8, "invalid free", "free", 0x5555_5555_80A0, (FRAME.pc,))
    return LeakReport(7, "prog", "tracking", [lost, kept], "header", "/bin/prog", {FRAME.pc: FRAME}, [bad])


def leak_delta() -> dict:
    before, now = leak_report(), leak_report()
    now.blocks.append(Block(0x5555_5555_B000, 48, Kind.DEFINITE, stack=(FRAME.pc, FRAME.pc + 1)))
    deltas = increased_records(loss_records(now.reported(True)), leak_look(before))
    body = leak_delta_json(now, deltas, (leak_look(now).summaries[True], leak_look(before).summaries[True]))
    return {**body, "previous": {"source": "live", "seconds_ago": 2.5}}


PROCESSES = process_changes([ProcessRecord(90, 1, "S", "sh", "/bin/busybox", 4096, 2048, False)],
                            [ProcessRecord(91, 1, "R", "sh", "/bin/busybox", 4096, 2048, False)])
MAP_CHANGES = maps_delta_json(map_changes([Mapping(VMA, Usage(8192, 0))],
                                          [Mapping(Vma(KERNEL_ADDRESS, VMA.start, VMA.end + 0x1000, VMA.flags,
                                                       VMA.offset, VMA.dev, VMA.inode, VMA.name), Usage(4096, 0))]))

EXAMPLES = {
    "ps": {"threads": False, "tasks": [PsRow(TASK, "/bin/wl-maps", 4096, 8192, 0).as_dict(),
                                       PsRow(KTHREAD, "", 0, 0, None).as_dict()]},
    "maps": {"pid": 85, "comm": "wl-maps", "maps": maps_json([VMA], [Usage(8192, 4096)])},
    "trace maps": {"pid": 85, "maps": maps_json([VMA])},
    "pagetable": {"root": "0x1feae000", "levels": 4, "tables": [{"root": "0x1feae000", "start": "0x0", "end": "0xffffffffffffffff"}], "ranges": pagetable_json(
        [paging.Range(KERNEL_ADDRESS & ~0xFFF, 0x1000, 0x20_0000, 0x20_0000, True, False, False)])},
    "vtop": walk_json(KERNEL_ADDRESS, [STEP], 0x1F16_D881),
    "addr": addr_json(AddressInfo(0x5555_5555_4800, 85, "wl-maps", VMA, 0x1800, "main+0x10", "wl-maps.c:52",
                                  0x1F16_D800, "")),
    "leaks report": leak_report_json(leak_report(), all_origins=True),
    "events": {"events": [Event(1, 0, 85, 85, "wl-maps", "mmap", {"start": 0x7FFF_F7FF_0000, "end": 0x7FFF_F7FF_1000,
                                                                  "flags": 0x22, "path": "/tmp/x", "offset": 0},
                                1.5).as_dict(),
                          Event(2, 0, 85, 86, "wl-maps", "exit", {"code": 0}, 2.0).as_dict()]},
    "ps --delta": {"previous": None, "changes": ps_delta_json(PROCESSES)},
    "maps --delta": {"pid": 85, "comm": "wl-maps", "previous": {"source": "/tmp/a.elf", "seconds_ago": 1.25},
                     "changes": MAP_CHANGES},
    "leaks check --delta": leak_delta(),
    "watch": {"every": 0.5, "duration": 5.0, "interrupted": False, "elapsed": 5.01, "running": 4.8, "skipped": 0,
              "csv": None, "plot": "/tmp/w.svg",
              "samples": [sample_json(Sample(0, 1.7e9, 0.0, (ProcessSample(7, "wl-grow", 8192, 16384, None),
                                                            ProcessSample(8, "wl-leak", 4096, 8192, 215952))))]},
    "diff": {"a": "/tmp/a.elf", "b": "/tmp/b.elf", "processes": ps_delta_json(PROCESSES),
             "maps": [{"pid": 85, "comm": "wl-maps", "previous": {"source": "/tmp/a.elf", "seconds_ago": None},
                       "changes": MAP_CHANGES}],
             "leaks": [leak_delta()]},
}


def test_the_json_document_is_the_rendering_of_the_schema():
    text = DOC.read_text()
    begin, end = "<!-- generated by python3 -m gdb_memcheck.report.schema: begin -->\n", "<!-- generated: end -->\n"
    assert text[text.index(begin) + len(begin):text.index(end)] == schema.markdown()


@pytest.mark.parametrize("command", list(EXAMPLES))
def test_every_views_json_matches_the_documented_schema(command):
    doc = json.loads(json_text(command, EXAMPLES[command]))
    assert schema.validate(doc) == []
    assert doc["schema_version"] == schema.SCHEMA_VERSION and doc["command"] == command


def test_an_event_log_line_is_an_event_with_the_schema_version_and_a_time():
    line = json.loads(event_json_line(Event(3, 0, 1, 1, "init", "brk", {"brk": 0x4E3000}, 1712345678.25)))
    assert schema.validate(line) == []
    assert (line["schema_version"], line["time"], line["brk"]) == (schema.SCHEMA_VERSION, 1712345678.25, "0x4e3000")


def test_an_error_document_matches_the_schema():
    assert schema.validate(json.loads(json_text("maps", {"error": "no process with pid 9"}))) == []


def test_64_bit_addresses_come_out_exact_where_a_double_would_round_them():
    doc = json.loads(json_text("ps", EXAMPLES["ps"]))
    assert float(KERNEL_ADDRESS + 0x40) == float(KERNEL_ADDRESS + 0x41), "a double cannot hold this address"
    assert int(doc["tasks"][0]["mm"], 16) == KERNEL_ADDRESS + 0x40
    assert doc["tasks"][1]["mm"] is None


@pytest.mark.parametrize("mutate, error", [
    (lambda d: d["tasks"][0].update(mm=KERNEL_ADDRESS), f"$.tasks[0].mm: {KERNEL_ADDRESS} is not hex string"),
    (lambda d: d["tasks"][0].pop("pid"), "$.tasks[0]: missing field 'pid'"),
    (lambda d: d["tasks"][0].update(extra=1), "$.tasks[0]: unexpected field 'extra'"),
    (lambda d: d.update(tasks={}), "$.tasks: not an array"),
    (lambda d: d.update(command="pss"), "$.command: unknown command 'pss'"),
    (lambda d: d["tasks"][0].update(mm="0XFF"), "$.tasks[0].mm: '0XFF' is not hex string"),
])
def test_the_schema_check_finds_what_breaks_it(mutate, error):
    doc = json.loads(json_text("ps", EXAMPLES["ps"]))
    mutate(doc)
    assert error in schema.validate(doc)
