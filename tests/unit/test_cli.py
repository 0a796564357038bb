"""The command line, defined once: every command's help, parsing (an address is the rest of
the line, `leaks` defaults to `check`), which commands change state, and completion."""
from __future__ import annotations

import argparse

import pytest

from gdb_memcheck import cli

ROOT = cli.build()
COMMANDS = cli.subcommands(ROOT)
PROCESSES = {cli.PROCESS: ["1", "85", "wl-maps", "wl-maps-static"], cli.PID: ["1", "85"]}


def every_parser(parser: cli.ArgParser = ROOT):
    yield parser
    for child in cli.subcommands(parser).values():
        yield from every_parser(child)


def values(kind: str) -> list[str]:
    return PROCESSES.get(kind, [])


@pytest.mark.parametrize("parser", list(every_parser()), ids=lambda p: p.prog)
def test_every_command_and_action_answers_h_with_its_summary_then_its_usage(parser):
    for flag in ("-h", "--help"):
        with pytest.raises(cli.HelpRequested) as shown:
            cli.parse(parser, flag)
        summary, blank, usage = str(shown.value).splitlines()[:3]
        assert summary == parser.summary and summary.endswith(".") and blank == ""
        assert usage.startswith(f"usage: {parser.prog} [-h]")


def test_help_of_a_command_with_actions_shows_each_actions_usage():
    text = COMMANDS["leaks"].format_help()
    for action in ("check", "track", "untrack", "status", "report"):
        assert f"\n  memcheck leaks {action} [-h]" in text


def test_an_address_is_the_rest_of_the_line_after_the_options():
    args = cli.parse(COMMANDS["vtop"], "-p wl-maps --json $rsp + 8")
    assert (args.process, args.json, args.address) == ("wl-maps", True, "$rsp + 8")
    assert cli.parse(COMMANDS["addr"], "--json -- -1 + sizeof(int)").address == "-1 + sizeof(int)"
    assert cli.parse(COMMANDS["addr"], "&init_task").address == "&init_task"
    assert cli.parse(COMMANDS["vtop"], "$rsp --json").address == "$rsp --json", "options come first"


@pytest.mark.parametrize("line, message", [
    ("", "the following arguments are required: ADDRESS"),
    ("-p", "argument -p/--process: expected one argument"),
    ("-p 1", "the following arguments are required: ADDRESS"),
])
def test_an_address_command_without_its_address_says_so(line, message):
    with pytest.raises(cli.UsageError, match=message):
        cli.parse(COMMANDS["vtop"], line)


def test_leaks_without_an_action_checks_the_process_named():
    args = cli.parse(COMMANDS["leaks"], "87 --json")
    assert (args.action, args.process, args.json) == ("check", "87", True)
    assert cli.parse(COMMANDS["leaks"], "").action == "check"
    assert cli.parse(COMMANDS["leaks"], "--all").all
    assert cli.parse(COMMANDS["leaks"], "report 5").pid == 5


@pytest.mark.parametrize("command, line", [
    ("leaks", "track 5"), ("leaks", "track --exec wl-leak"), ("leaks", "untrack"),
    ("trace", "on"), ("trace", "off"), ("stop-on", "exec /bin/wl-leak"),
])
def test_commands_that_change_state_are_marked_so_enter_does_not_repeat_them(command, line):
    assert cli.parse(COMMANDS[command], line).changes_state


@pytest.mark.parametrize("command, line", [
    ("info", ""), ("ps", "-t"), ("maps", "1"), ("pagetable", ""), ("vtop", "0"), ("addr", "0"), ("leaks", "1"),
    ("leaks", "status"), ("leaks", "report"), ("trace", "status"), ("trace", "table"), ("events", ""),
])
def test_commands_that_only_look_repeat(command, line):
    assert not getattr(cli.parse(COMMANDS[command], line), "changes_state", False)


def test_user_and_kernel_filters_of_ps_exclude_each_other():
    assert cli.parse(COMMANDS["ps"], "-u").user and cli.parse(COMMANDS["ps"], "-k").kernel
    with pytest.raises(cli.UsageError, match="not allowed with"):
        cli.parse(COMMANDS["ps"], "-u -k")


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings)


def test_the_command_word_completes_to_every_command():
    assert cli.complete(ROOT, "", values) == sorted(COMMANDS)
    assert cli.complete(ROOT, "le", values) == ["leaks"]


@pytest.mark.parametrize("parser", [p for p in every_parser() if p is not ROOT], ids=lambda p: p.prog)
def test_a_dash_completes_to_every_flag_of_the_command_or_action(parser):
    command, *action = parser.prog.split()[1:]
    line = " ".join(action + ["-"])
    expected = option_strings(parser)
    if parser.default_action:
        expected = sorted(set(expected) | set(option_strings(cli.subcommands(parser)[parser.default_action])))
    assert cli.complete(COMMANDS[command], line, values) == expected


def test_actions_complete_and_so_do_processes_where_the_default_action_takes_one():
    assert cli.complete(COMMANDS["leaks"], "tr", values) == ["track"]
    assert cli.complete(COMMANDS["leaks"], "", values) == sorted(
        ["check", "track", "untrack", "status", "report"] + PROCESSES[cli.PROCESS])
    assert cli.complete(COMMANDS["trace"], "", values) == ["maps", "off", "on", "status", "table"]


@pytest.mark.parametrize("command, line, expected", [
    ("maps", "wl-m", ["wl-maps", "wl-maps-static"]),
    ("maps", "", PROCESSES[cli.PROCESS]),
    ("pagetable", "8", ["85"]),
    ("leaks", "track ", PROCESSES[cli.PROCESS]),
    ("leaks", "track --exec wl-maps-", ["wl-maps-static"]),
    ("leaks", "report --format ", ["memcheck", "text"]),
    ("trace", "maps ", PROCESSES[cli.PID]),
    ("trace", "on --only exec,mm", ["exec,mmap"]),
    ("events", "--pid ", PROCESSES[cli.PID]),
    ("stop-on", "th", ["thread-exit"]),
    ("stop-on", "exec wl", ["wl-maps", "wl-maps-static"]),
    ("vtop", "-p wl-maps-", ["wl-maps-static"]),
])
def test_values_complete_from_choices_and_the_stops_processes(command, line, expected):
    assert cli.complete(COMMANDS[command], line, values) == sorted(expected)


@pytest.mark.parametrize("line", ["", "init_ta", "-p 1 init_ta", "--json $rsp + ", "-p 85 --json &init_task"])
def test_an_address_completes_as_a_gdb_expression(line):
    assert cli.complete(COMMANDS["addr"], line, values) == cli.EXPRESSION


def test_after_the_last_positional_the_flags_are_offered():
    assert cli.complete(COMMANDS["maps"], "1 ", values) == option_strings(COMMANDS["maps"])
