"""Every command's --json output on a real guest, against the documented schema
(docs/json-schema.md, rendered from gdb_memcheck/schema.py): views, leak reports with
bad frees, tracing and its event log, and errors.  Addresses survive Debian's jq."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from gdb_memcheck.report import schema
from labtools import run_gdb

ARCHES = ("amd64", "arm64")

EVERY_JSON_SCRIPT = r"""
pid = WL_MAPS
outputs = {}
def grab(cmd):
    outputs[cmd] = json.loads(gdb.execute(cmd, to_string=True))

for cmd in ["memcheck info --json", "memcheck ps --json", "memcheck ps -t --json", "memcheck ps -u --json",
            "memcheck ps -k --json", f"memcheck maps {pid} --json", f"memcheck maps {pid} --rss --json",
            "memcheck pagetable --json", f"memcheck pagetable {pid} --perm uw --json", "memcheck vtop --json $sp",
            f"memcheck vtop -p {pid} --json 0x1000", "memcheck addr --json $pc",
            f"memcheck addr -p {pid} --json 0x1000", "memcheck leaks wl-leak --json",
            "memcheck leaks wl-leak --all --json", "memcheck leaks status --json", "memcheck trace status --json",
            "memcheck events --json"]:
    grab(cmd)
X86 = guest.options.arch == "amd64"           # kmem, kleaks and dumps are read on x86-64 guests only
for cmd in ["memcheck slab --json", "memcheck slab task_struct --json"]:
    grab(cmd)
for cmd in ["memcheck kmem --json &init_task", "memcheck kmem --json $sp", "memcheck kleaks --json"] if X86 else []:
    grab(cmd)
for cmd in ["memcheck ps --delta --json", f"memcheck maps {pid} --delta --json", "memcheck leaks wl-leak --delta --json",
            f"memcheck watch {pid} --every 0.2 --for 0.4 --json"]:
    grab(cmd)
if X86:
    guest.dump(DUMPS + "/a.kdump", zlib=True)
gdb.execute("set memcheck event-log " + EVENT_LOG)
gdb.execute("memcheck trace on")
while_running("wl-churn-static all 1 > /dev/null")
for cmd in ["memcheck trace status --json", "memcheck trace table --json", f"memcheck trace maps {pid} --json",
            "memcheck events --json", "memcheck events --last 3 --pid 1 --json"]:
    grab(cmd)
gdb.execute("memcheck trace off")
if X86:
    guest.dump(DUMPS + "/b.kdump", zlib=True)
    grab(f"memcheck diff {DUMPS}/a.kdump {DUMPS}/b.kdump {pid} --leaks --json")
gdb.execute("memcheck leaks track --exec wl-badfree")
while_running("wl-badfree > /dev/null 2>&1; true")
for cmd in ["memcheck leaks status --json", "memcheck leaks report --json", "memcheck leaks report --all --json"]:
    grab(cmd)
gdb.execute("memcheck leaks untrack")
emit(outputs)
"""


@pytest.fixture(scope="module")
def every_json(guest, tmp_path_factory):
    log = tmp_path_factory.mktemp("events") / "events.jsonl"
    pid = guest.sh("pidof wl-maps").split()[0]
    script = EVERY_JSON_SCRIPT.replace("EVENT_LOG", repr(str(log))).replace("WL_MAPS", pid) \
        .replace("DUMPS", repr(str(log.parent)))
    run = run_gdb(guest, script=script, timeout=600)
    assert "Traceback" not in run.output, run.output
    return {"outputs": run.result(), "log": [json.loads(line) for line in log.read_text().splitlines()]}


def test_every_json_output_matches_the_documented_schema(every_json, guest):
    outputs = every_json["outputs"]
    x86_only = {"diff", "kmem", "kleaks"}          # dumps, kmem and kleaks: x86-64 guests only
    expected = set(schema.COMMANDS) - (x86_only if guest.options.arch == "arm64" else set())
    assert {doc["command"] for doc in outputs.values()} == expected, "every command's JSON is seen"
    for cmd, doc in outputs.items():
        assert schema.validate(doc) == [], cmd
        assert doc["schema_version"] == schema.SCHEMA_VERSION


def test_the_outputs_have_what_the_checks_needed(every_json):
    """The run was not vacuous: events of every kind, a bad free, --rss numbers, kernel threads."""
    outputs = every_json["outputs"]
    kinds = {e["event"] for e in outputs["memcheck events --json"]["events"]}
    assert {"fork", "clone", "exec", "exit", "thread-exit", "mmap", "munmap", "mprotect", "brk"} <= kinds
    assert outputs["memcheck leaks report --all --json"]["bad_frees"] or \
        outputs["memcheck leaks status --json"]["bad_frees"]
    rss = next(doc for cmd, doc in outputs.items() if cmd.endswith("--rss --json"))
    assert rss["maps"] and all(m["rss_kib"] is not None for m in rss["maps"])
    assert all(t["kernel_thread"] for t in outputs["memcheck ps -k --json"]["tasks"])
    assert not any(t["kernel_thread"] for t in outputs["memcheck ps -u --json"]["tasks"])


def test_the_event_log_lines_match_the_schema_and_carry_a_time(every_json):
    log = every_json["log"]
    assert log and all(schema.validate(line) == [] for line in log)
    events = every_json["outputs"]["memcheck events --json"]["events"]
    assert [line["seq"] for line in log] == [e["seq"] for e in events]


ERRORS = ["memcheck maps 99999 --json", "memcheck vtop --json nonsense_symbol_xyz", "memcheck ps --json --nope",
          "memcheck leaks report 99999 --json", "memcheck trace maps 99999 --json", "memcheck maps --json 2"]


def test_a_failing_command_under_json_prints_an_error_object_then_raises_gdbs_error(guest):
    run = run_gdb(guest, *ERRORS)
    docs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert len(docs) == len(ERRORS)
    errors = [l for l in run.stderr.splitlines() if l.startswith("memcheck ")]
    assert len(errors) == len(ERRORS)
    for doc, line in zip(docs, errors):
        assert schema.validate(doc) == []
        assert line == f"memcheck {doc['command'].split()[0]}: {doc['error']}"
    assert docs[0] == {"schema_version": schema.SCHEMA_VERSION, "command": "maps",
                       "error": "no process with pid 99999"}
    assert docs[3]["command"] == "leaks report"
    assert run.returncode != 0


def test_a_script_stops_at_a_failing_command_under_json(guest):
    run = run_gdb(guest, script='gdb.execute("memcheck maps 99999 --json")\nemit("went on")\n')
    assert run.results == [] and '"error": "no process with pid 99999"' in run.stdout


JQ_SCRIPT = r"""
ps = gdb.execute("memcheck ps --json", to_string=True)
mms = {}
for row in json.loads(ps)["tasks"]:
    if row["mm"]:
        mms[row["pid"]] = int(gdb.parse_and_eval(f"(unsigned long)((struct task_struct *){row['task']})->mm"))
emit({"ps": ps, "mm": mms})
"""


def jq(args: list[str], text: str) -> str:
    return subprocess.run(["jq", *args], input=text, capture_output=True, text=True, check=True).stdout


def test_addresses_survive_a_round_trip_through_debians_jq(guest):
    res = run_gdb(guest, script=JQ_SCRIPT).result()
    assert json.loads(jq(["-c", "."], res["ps"])) == json.loads(res["ps"])
    pairs = jq(["-r", '.tasks[] | select(.mm) | "\\(.pid) \\(.mm)"'], res["ps"]).split("\n")
    assert {int(p): int(mm, 16) for p, mm in (line.split() for line in pairs if line)} == \
        {int(p): mm for p, mm in res["mm"].items()}
    # jq 1.6 prints a number with 17 significant digits: a 20-digit kernel address comes
    # back ending in 000, which an address that already ends so (one run's mm did) hides;
    # an odd address never does
    inexact = next(iter(res["mm"].values())) | 1
    assert int(jq([".mm"], json.dumps({"mm": inexact}))) != inexact, \
        "jq rounds an address given as a number (the test would catch numbers)"
    assert re.fullmatch(r"0x[0-9a-f]+", jq(["-r", ".tasks[1].task"], res["ps"]).strip())
