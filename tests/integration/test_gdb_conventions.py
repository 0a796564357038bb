"""gdb's own conventions in a real gdb: `complete` for every command, action, flag, setting,
process and address; -h equal to `help memcheck X`; `show memcheck`; Enter does not repeat a
command that changed state; an address argument is the rest of the line."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import time

from gdb_memcheck import cli
from labtools import REPO, run_gdb

ARCHES = ("amd64", "arm64")

ROOT = cli.build()
MARK = "@@@"
SETTINGS = ["sysroot", "physical-read", "event-log", "stack-depth", "exit-report", "malloc-stops", "free-stops"]


def every_parser(parser: cli.ArgParser = ROOT):
    for child in cli.subcommands(parser).values():
        yield child
        yield from every_parser(child)


def answers(guest, *commands: str) -> dict[str, list[str]]:
    """The lines each gdb command printed, from one batch gdb."""
    steps = [c for command in commands for c in (f"echo {MARK}{command}\\n", command)]
    run = run_gdb(guest, *steps)
    assert "Traceback" not in run.output and "Python Exception" not in run.output, run.output
    found: dict[str, list[str]] = {}
    current = None
    for line in run.stdout.splitlines():
        if line.startswith(MARK):
            current = found[line[len(MARK):]] = []
        elif current is not None and not line.startswith("[Inferior "):
            current.append(line)
    return found


def flags(parser) -> set[str]:
    names = {o for a in parser._actions for o in a.option_strings}
    if parser.default_action:
        names |= flags(cli.subcommands(parser)[parser.default_action])
    return names


def test_complete_offers_every_command_action_and_flag(guest):
    parsers = list(every_parser())
    lines = [f"complete {p.prog} -" for p in parsers] + [f"complete {p.prog} " for p in parsers if cli.subcommands(p)]
    got = answers(guest, "complete memcheck ", *lines)
    assert got["complete memcheck "] == [f"memcheck {name}" for name in sorted(cli.subcommands(ROOT))]
    for p in parsers:
        assert set(got[f"complete {p.prog} -"]) == {f"{p.prog} {f}" for f in flags(p)}, p.prog
        if cli.subcommands(p):
            actions = {f"{p.prog} {a}" for a in cli.subcommands(p)}
            assert actions <= set(got[f"complete {p.prog} "]), p.prog


def test_actions_and_set_memcheck_values_complete(guest):
    got = answers(guest, "complete memcheck leaks tr", "complete memcheck trace s", "complete set memcheck ",
                  "complete set memcheck physical-read ", "complete set memcheck exit-report m",
                  "complete memcheck leaks report --format m", "complete memcheck trace on --only new")
    assert got["complete memcheck leaks tr"] == ["memcheck leaks track"]
    assert got["complete memcheck trace s"] == ["memcheck trace status"]
    assert got["complete set memcheck "] == [f"set memcheck {s}" for s in sorted(SETTINGS)]
    assert got["complete set memcheck physical-read "] == [
        f"set memcheck physical-read {p}" for p in ("auto", "directmap", "phymemmode", "qemu-mem")]
    assert got["complete set memcheck exit-report m"] == ["set memcheck exit-report memcheck"]
    assert got["complete memcheck leaks report --format m"] == ["memcheck leaks report --format memcheck"]
    assert got["complete memcheck trace on --only new"] == ["memcheck trace on --only new-task"]


def user_processes(guest) -> dict[int, str]:
    """pid -> comm of every process with a memory map, from the guest's /proc."""
    # /proc files report size 0, so a map is told by reading its first line (kernel threads have none)
    out = guest.sh('for p in /proc/[0-9]*; do read -r l < $p/maps 2>/dev/null && echo "${p#/proc/} $(cat $p/comm)"; '
                   'done; true')
    return {int(pid): comm for pid, comm in (line.split(" ", 1) for line in out.splitlines())}


def test_processes_complete_from_the_task_list_of_the_stop(guest):
    before = user_processes(guest)
    got = answers(guest, "complete memcheck maps ", "complete memcheck leaks track wl-", "memcheck ps -u --json")
    after = user_processes(guest)
    stable = {pid: comm for pid, comm in before.items() if after.get(pid) == comm}
    offered = {line.split()[-1] for line in got["complete memcheck maps "]}
    assert {str(pid) for pid in stable} <= offered
    comms = [comm for comm in stable.values()]
    assert {c for c in comms if comms.count(c) == 1 and c.startswith("wl-")} <= offered
    at_stop = {line.split()[-1] for line in got["complete memcheck leaks track wl-"]}
    assert at_stop == {c for c in offered if c.startswith("wl-")}
    assert len(stable) >= 4 and {"wl-maps", "wl-leak"} <= at_stop


def test_an_address_completes_with_kernel_symbols(guest):
    got = answers(guest, "complete memcheck vtop init_ta", "complete memcheck addr -p 1 init_uts_n")
    assert "memcheck vtop init_task" in got["complete memcheck vtop init_ta"]
    assert got["complete memcheck addr -p 1 init_uts_n"] == ["memcheck addr -p 1 init_uts_ns"]


def test_h_prints_what_help_memcheck_prints_for_every_command_and_alias(guest):
    names = sorted(cli.subcommands(ROOT))
    commands = [c for name in names for c in (f"help memcheck {name}", f"memcheck {name} -h",
                                                f"memcheck-{name} --help")]
    commands += [f"{p.prog} -h" for p in every_parser() if len(p.prog.split()) == 3]
    got = answers(guest, *commands)
    for name in names:
        parser = cli.subcommands(ROOT)[name]
        assert got[f"help memcheck {name}"] == parser.format_help().rstrip().splitlines(), name
        assert got[f"memcheck {name} -h"] == got[f"memcheck-{name} --help"] == got[f"help memcheck {name}"]
    for p in every_parser():
        if len(p.prog.split()) == 3:
            assert got[f"{p.prog} -h"] == p.format_help().splitlines(), p.prog


def test_show_memcheck_lists_every_setting(guest):
    got = answers(guest, "set memcheck stack-depth 9", "show memcheck")
    shown = got["show memcheck"]
    assert [line.split(":")[0] for line in shown] == [f"memcheck {s}" for s in SETTINGS]
    assert "memcheck stack-depth:  Leak tracking keeps 9 frames per allocation stack." in shown
    assert f"memcheck sysroot:  Guest files are looked up under {guest.sysroot}." in shown


def test_an_address_argument_is_the_rest_of_the_line_as_a_gdb_expression(guest):
    run = run_gdb(guest, "memcheck vtop --json $sp + 8", "memcheck vtop --json (long) $sp + 2 * 4",
                  "python print('SP', int(gdb.parse_and_eval('$sp')))")
    sp = int(next(l for l in run.stdout.splitlines() if l.startswith("SP ")).split()[1])
    walks = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    assert [w["virtual"] for w in walks] == [f"{sp + 8:#x}"] * 2
    assert guest.hmp(f"gva2gpa {sp + 8:#x}").strip() == f"gpa: {walks[0]['physical']}"


def tty_session(lines: list[str], timeout: float = 60) -> str:
    """What an interactive gdb on a terminal prints for `lines`, each typed at a prompt."""
    argv = ["gdb", "-nx", "-q", "-iex", "set style enabled off", "-ex", "set pagination off",
            "-x", str(REPO / "gdb_memcheck" / "gdbinit.py")]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    out = b""
    try:
        for line in lines + ["quit"]:
            out += _read_until_prompt(fd, timeout)
            os.write(fd, line.encode() + b"\n")
        out += _read_until_prompt(fd, timeout, prompt=False)
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace").replace("\r", "")
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)        # bracketed-paste mode switches


def _read_until_prompt(fd: int, timeout: float, prompt: bool = True) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and not (prompt and data.endswith(b"(gdb) ")):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    assert not prompt or data.endswith(b"(gdb) "), data
    return data


def test_enter_repeats_a_command_that_looks_but_not_one_that_changed_state():
    out = tty_session(["memcheck events", "", "memcheck stop-on exec /bin/nothing", "", "memcheck stop-on"])
    assert out.count("no events traced") == 2, "Enter repeats a command that only looks"
    assert out.count("memcheck stop-on: rule kept") == 1
    listing = out.split("(gdb) memcheck stop-on\n")[-1].split("(gdb)")[0]
    assert listing == "stop on exec /bin/nothing\n"
