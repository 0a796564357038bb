"""The command line of every `memcheck` command, defined once with argparse: parsing, `-h`,
gdb's `help memcheck X` and argument completion all come from these parsers.  gdb-free:
what completion offers for a process or pid comes from the caller."""
from __future__ import annotations

import argparse
import re
import shlex
from typing import Callable

from .tracing import TRACED_GROUPS

# What an argument completes to, besides its choices (the frontend supplies the values).
PROCESS = "process"          # a user process: pid or comm
PID = "pid"                  # a user process's pid
EXPRESSION = "expression"    # a gdb expression, the rest of the line: gdb's own completer
FILE = "file"                # a file name: gdb's own completer

STOP_EVENTS = ("fork", "clone", "exec", "exit", "thread-exit", "mmap", "munmap", "mprotect", "brk", "any", "clear")
PROCESS_METAVAR = "PID|COMM"


class UsageError(Exception):
    """Bad arguments; the message says what is wrong."""


class HelpRequested(Exception):
    """-h or --help was given; the message is the help text."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting, and whose help starts with a
    one-line summary (gdb lists commands by their help's first line).

    `expression` names a last positional that takes the rest of the line verbatim, as
    gdb's own `x` and `print` take theirs; `default_action` is the action run when the
    first word names none."""

    def __init__(self, *args, summary: str = "", expression: str = "", default_action: str = "",
                 **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, add_help=False, **kwargs)
        self.add_argument("-h", "--help", action="help", help="show this help")
        self.summary = summary
        self.expression = expression
        self.default_action = default_action

    def error(self, message: str) -> None:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:
        raise UsageError(message or "")

    def print_help(self, file=None) -> None:
        raise HelpRequested(self.format_help())

    def format_help(self) -> str:
        text = super().format_help()
        actions = subcommands(self)
        if actions:
            text += "\n" + "".join(p.format_usage().replace("usage: ", "  ") for p in actions.values())
            text += f'\nType "{self.prog} ACTION -h" for the options of an action.\n'
        return f"{self.summary}\n\n{text}" if self.summary else text


class _Formatter(argparse.HelpFormatter):
    """80 columns wherever the help is shown, so `help memcheck X` reads the same everywhere."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=80)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, ArgParser]:
    """Name -> parser of `parser`'s subcommands (empty when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _arg(parser: argparse.ArgumentParser, *names: str, complete: str = "", **kwargs) -> argparse.Action:
    """add_argument, remembering what the argument completes to."""
    action = parser.add_argument(*names, **kwargs)
    action.complete = complete
    return action


def _command(sub, name: str, summary: str, description: str = "", **kwargs) -> ArgParser:
    parser = sub.add_parser(name, help=summary, summary=summary, description=description or None, **kwargs)
    return parser


def _json(parser: argparse.ArgumentParser) -> None:
    _arg(parser, "--json", action="store_true", help="one JSON object (see docs/json-schema.md)")


def _json_then_address(parser: argparse.ArgumentParser) -> None:
    """--json, then ADDRESS: a gdb expression that takes the rest of the line, so it comes last."""
    _json(parser)
    _arg(parser, "address", metavar="ADDRESS", complete=EXPRESSION, help="a gdb expression")


def _delta(parser: argparse.ArgumentParser, what: str) -> None:
    _arg(parser, "--delta", action="store_true", help=f"only what changed since {what}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _report_options(parser: argparse.ArgumentParser) -> None:
    _arg(parser, "--show-reachable", action="store_true", help="also list still-reachable blocks")
    _arg(parser, "--all", action="store_true",
         help="also blocks inherited across fork, allocated before main or before tracking began")
    _arg(parser, "--format", choices=("text", "memcheck"), default="text",
         help="text: valgrind's loss records; memcheck: the emulator memcheck's per-block layout")
    _arg(parser, "--source", action="store_true",
         help="show each allocating line of source with two lines of context (text formats)")
    _json(parser)


def _info(sub) -> None:
    p = _command(sub, "info", "What gdb_memcheck found: kernel release, machine, paging mode, KASLR slide, "
                 "physical path.")
    _json(p)


def _ps(sub) -> None:
    p = _command(sub, "ps", "Processes of the guest (with -t, every thread): pid, ppid, state, VSZ, RSS, mm, "
                 "vCPU, exe.", "RSS is counted from each process's page tables; kernel threads show as [name]; "
                 "CPU is the vCPU the task is running on.")
    _arg(p, "-t", "--threads", action="store_true", help="every thread, not only each process's leader")
    which = p.add_mutually_exclusive_group()
    _arg(which, "-u", "--user", action="store_true", help="user processes only")
    _arg(which, "-k", "--kernel", action="store_true", help="kernel threads only")
    _delta(p, "the previous ps: processes new, gone or resized (VSZ, RSS)")
    _json(p)


def _maps(sub) -> None:
    p = _command(sub, "maps", "A process's memory map, exactly as /proc/PID/maps shows it.",
                 "Without PID|COMM: the process running on the selected vCPU.")
    _arg(p, "process", nargs="?", metavar=PROCESS_METAVAR, complete=PROCESS, help="the process (pid or comm)")
    _arg(p, "--rss", action="store_true",
         help="add Rss and Anonymous (kB) per mapping, counted from its page tables as smaps does")
    _delta(p, "the previous maps of this process: ranges added, removed, resized or changed, "
           "and each mapping's Rss change (implies --rss)")
    _json(p)


def _pagetable(sub) -> None:
    p = _command(sub, "pagetable", "Page-table mappings: virtual range, physical start, size, page size, "
                 "effective permissions.",
                 "Without a choice: the tables in the selected vCPU's CR3.  Permissions combine every level: "
                 "u/k user or kernel, w writable, x executable (NX honoured).")
    _arg(p, "process", nargs="?", metavar=PROCESS_METAVAR, complete=PROCESS, help="that process's tables")
    _arg(p, "--kernel", action="store_true", help="the kernel's own tables (init_mm)")
    _arg(p, "--cr3", metavar="X", help="the tables at this CR3 value")
    _arg(p, "--range", dest="vrange", metavar="START-END", help="only virtual addresses in [START, END)")
    _arg(p, "--perm", default="", metavar="uwxk", help="only ranges with all of these permission letters")
    _json(p)


def _address(sub, name: str, summary: str, description: str) -> ArgParser:
    p = _command(sub, name, summary, description, expression="address")
    _arg(p, "-p", "--process", metavar=PROCESS_METAVAR, complete=PROCESS,
         help="see the address in this process (default: the one on the selected vCPU)")
    return p


def _vtop(sub) -> None:
    p = _address(sub, "vtop", "Translate a virtual address: each level's table, index, entry and flags, then "
                 "the physical address.",
                 "ADDRESS is a gdb expression, the rest of the line ($rsp + 8, &init_task); options come first. "
                 "Without -p: through the selected vCPU's CR3.  Says where and why a walk stops.")
    _json_then_address(p)


def _addr(sub) -> None:
    p = _address(sub, "addr", "What an address is: process, mapping, file + offset, ELF symbol @ source line, "
                 "physical page.",
                 "ADDRESS is a gdb expression, the rest of the line; options come first.  User addresses "
                 "belong to -p PID|COMM (default: the process on the selected vCPU); kernel addresses are "
                 "named from the kernel's symbols.  Guest files are read under `set memcheck sysroot DIR` "
                 "and must carry the same build-id as the guest's copy.")
    _arg(p, "--source", action="store_true", help="show the source line with two lines of context")
    _json_then_address(p)


def _leaks(sub) -> None:
    p = _command(sub, "leaks", "Memory leaks of guest processes, classified as valgrind does.",
                 "A tracked process's blocks come from breakpoints on its malloc family, with exact sizes and "
                 "allocation stacks; any other process is scanned (its glibc heap walked from outside, sizes "
                 "rounded by malloc, no stacks).  Both scan the roots (data, bss, live stacks, registers) "
                 "for pointers.  Blocks inherited across fork, allocated before main or before tracking "
                 "began are forgiven unless --all.  Without an action: check.",
                 default_action="check")
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)
    check = _command(actions, "check", "Report the leaks of a process now (the default action).",
                     "Without PID|COMM: the process on the selected vCPU.")
    _arg(check, "process", nargs="?", metavar=PROCESS_METAVAR, complete=PROCESS, help="the process")
    _arg(check, "--scan", action="store_true", help="scan the heap even if the process is tracked")
    _delta(check, "this process's previous check: loss records new or grown, with +bytes and +blocks as "
           "valgrind's `leak_check full increased` prints them")
    _report_options(check)
    track = _command(actions, "track", "Track the malloc family of a process, or of every process that "
                     "executes PATH.",
                     "--exec PATH (a full guest path or a bare name) follows each such process from its first "
                     "instruction; tracked processes' forked children are tracked too.  When a tracked "
                     "process exits, its report is kept for `memcheck leaks report`.")
    which = track.add_mutually_exclusive_group(required=True)
    _arg(which, "process", nargs="?", metavar=PROCESS_METAVAR, complete=PROCESS, help="a running process")
    _arg(which, "--exec", dest="exec_path", metavar="PATH", complete=PROCESS, help="a program, by path or name")
    track.set_defaults(changes_state=True)
    untrack = _command(actions, "untrack", "Remove every tracking breakpoint; the reports are kept.")
    untrack.set_defaults(changes_state=True)
    status = _command(actions, "status", "Tracking: processes, breakpoints, cost, reports kept, bad frees.")
    _json(status)
    report = _command(actions, "report", "The report a tracked process left when it exited.",
                      "Without PID: the latest one.")
    _arg(report, "pid", nargs="?", type=int, metavar="PID", help="the pid the process had")
    _report_options(report)


def _trace(sub) -> None:
    p = _command(sub, "trace", "Live tracing of processes and mappings through kernel breakpoints.",
                 "Hooks are chosen by probing the kernel; `status` says which and why, and what they cost.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions", required=True)
    on = _command(actions, "on", "Place the hooks and start the event log.")
    _arg(on, "--only", default="", metavar="GROUP,...", complete="groups",
         help="only these hook groups: " + " ".join(TRACED_GROUPS))
    _arg(on, "--hw", action="store_true", help="hardware breakpoints")
    on.set_defaults(changes_state=True)
    off = _command(actions, "off", "Remove the hooks; the event log is kept.")
    off.set_defaults(changes_state=True)
    status = _command(actions, "status", "Hooks, hits, events and handler time.")
    _json(status)
    table = _command(actions, "table", "The traced process table.")
    _json(table)
    maps = _command(actions, "maps", "The traced mappings of a process, re-read only when its mm changed.")
    _arg(maps, "pid", type=int, metavar="PID", complete=PID, help="the process")
    _json(maps)


def _events(sub) -> None:
    p = _command(sub, "events", "The traced event log: sequence, vCPU, pid/tid, comm, event and its details.")
    _arg(p, "--pid", type=int, metavar="PID", complete=PID, help="only this process's events")
    _arg(p, "--last", type=int, metavar="N", help="only the last N events")
    _json(p)


def _stop_on(sub) -> None:
    p = _command(sub, "stop-on", "Stop in the debugger when a traced event matches; without EVENT, list the "
                 "rules.", "`clear` removes every rule.")
    _arg(p, "event", nargs="?", choices=STOP_EVENTS, metavar="EVENT", help=" ".join(STOP_EVENTS))
    _arg(p, "pattern", nargs="?", default="", metavar="PID|COMM|PATH", complete=PROCESS,
         help="only events of this pid, comm or image path")
    p.set_defaults(changes_state=True)


def _slab(sub) -> None:
    p = _command(sub, "slab", "SLUB caches: object size, objects in use and in all, slabs, per-CPU and per-node "
                 "partial slabs; with CACHE, each object and whether it is in use.",
                 "Slabs are found in the memmap (full slabs sit on no list), objects by walking each slab's "
                 "freelist and each CPU's, decoded under CONFIG_SLAB_FREELIST_HARDENED.")
    _arg(p, "cache", nargs="?", metavar="CACHE", help="one cache, by name")
    _json(p)


def _kmem(sub) -> None:
    p = _command(sub, "kmem", "What a kernel address is: slab object, page, vmalloc area, task stack, per-CPU "
                 "area, module, kernel image, memmap or fixmap.",
                 "ADDRESS is a gdb expression, the rest of the line; options come first.", expression="address")
    _json_then_address(p)


def _kleaks(sub) -> None:
    p = _command(sub, "kleaks", "Kernel leaks by kmemleak's method, from outside: unreferenced slab objects and "
                 "vmalloc areas.",
                 "Roots: the kernel's data, bss and ro_after_init, per-CPU areas, task stacks above their saved "
                 "stack pointers, vCPU registers, modules' data and boot (memblock) memory.  Classes as for user "
                 "leaks; reported by cache, with each object's first 32 bytes and, where slub_debug=U kept one, "
                 "its allocation stack.")
    _arg(p, "--cache", metavar="C", help="only objects of this cache (vmalloc: the vmalloc areas)")
    _arg(p, "--show-reachable", action="store_true", help="also list still-reachable objects")
    _json(p)


def _open(sub) -> None:
    p = _command(sub, "open", "Serve every view from a QEMU dump-guest-memory file instead of the live guest.",
                 "ELF dumps (with or without -p) and kdump-zlib dumps (-z); gdb keeps the vmlinux for "
                 "symbols and types, and QEMU need not run.  A dump of another kernel than the loaded "
                 "vmlinux is refused.  Commands that run the guest (trace, leaks track, watch) wait for "
                 "`memcheck close`.")
    _arg(p, "file", metavar="FILE", complete=FILE, help="the dump")
    _arg(p, "--cpu", type=int, default=0, metavar="N", help="the vCPU whose registers the views use (default 0)")
    p.set_defaults(changes_state=True)


def _close(sub) -> None:
    p = _command(sub, "close", "Close the open dump: the views read the live guest again.")
    p.set_defaults(changes_state=True)


def _diff(sub) -> None:
    p = _command(sub, "diff", "What changed between two dumps: processes new, gone or resized, and each "
                 "process's mappings.",
                 "Without PID|COMM: every user process present in both.  The views go back to what they "
                 "read before.")
    _arg(p, "dump_a", metavar="DUMP_A", complete=FILE, help="the earlier dump")
    _arg(p, "dump_b", metavar="DUMP_B", complete=FILE, help="the later dump")
    _arg(p, "processes", nargs="*", metavar=PROCESS_METAVAR, complete=PROCESS, help="only these processes")
    _arg(p, "--leaks", action="store_true", help="also the leak scan's loss records new or grown (needs PID|COMM)")
    _json(p)


def _watch(sub) -> None:
    p = _command(sub, "watch", "Run the guest and sample processes' RSS, VSZ and heap in use at each interval.",
                 "Each sample interrupts the guest (never a breakpoint) and reads glibc's own counters for "
                 "the heap (the arenas' system_mem less their top chunks, plus mp_.mmapped_mem).  At the end: "
                 "a sparkline per process; with --csv every sample, with --plot a chart (.svg; .png needs "
                 "matplotlib).  Without PID|COMM: every user process.  Ctrl-C ends the watch early and "
                 "keeps the samples.")
    _arg(p, "processes", nargs="*", metavar=PROCESS_METAVAR, complete=PROCESS, help="the processes")
    _arg(p, "--every", type=_seconds, default=1.0, metavar="SECONDS", help="interval between samples (default 1)")
    _arg(p, "--for", dest="duration", type=_seconds, default=10.0, metavar="SECONDS",
         help="how long to watch (default 10)")
    _arg(p, "--csv", metavar="FILE", complete=FILE, help="write every sample to FILE")
    _arg(p, "--plot", metavar="FILE", complete=FILE, help="draw RSS and heap over time into FILE (.svg or .png)")
    _json(p)
    p.set_defaults(changes_state=True)


def build() -> ArgParser:
    """The parser of `memcheck`, one subcommand per command."""
    root = ArgParser(prog="memcheck", summary="Whole-system memory checking of a Linux guest behind QEMU's "
                     "gdbstub.")
    sub = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for define in (_info, _ps, _maps, _pagetable, _vtop, _addr, _leaks, _trace, _events, _stop_on, _slab, _kmem,
                   _kleaks, _open, _close, _diff, _watch):
        define(sub)
    return root


# -- parsing ------------------------------------------------------------------
def parse(parser: ArgParser, text: str) -> argparse.Namespace:
    """Arguments of one command line; UsageError or HelpRequested otherwise."""
    if parser.expression:
        words, expression = leading_options(parser, text)
        return parser.parse_args(words + (["--", expression] if expression else []))
    return parser.parse_args(with_default_action(parser, split(text)))


def split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def with_default_action(parser: ArgParser, words: list[str]) -> list[str]:
    """Name the default action when the first word names none (`leaks 87` is `leaks check 87`)."""
    if parser.default_action and (not words or words[0] not in {*subcommands(parser), "-h", "--help"}):
        return [parser.default_action, *words]
    return words


def leading_options(parser: ArgParser, text: str) -> tuple[list[str], str]:
    """The options before an expression argument, and the expression: the rest of the line
    from the first word that is not one of the parser's options (or after `--`)."""
    words: list[str] = []
    rest = text.strip()
    while rest.startswith("-"):
        word, rest = _next_word(rest)
        if word == "--":
            break
        action = option_action(parser, word.split("=", 1)[0])
        if action is None:
            return words, f"{word} {rest}".strip()
        words.append(word)
        if action.nargs != 0 and "=" not in word and rest:
            value, rest = _next_word(rest)
            words.append(value)
    return words, rest


def _next_word(text: str) -> tuple[str, str]:
    match = re.match(r"(\S*)\s*(.*)", text, re.S)
    return match.group(1), match.group(2)


def option_action(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    return parser._option_string_actions.get(name)


# -- completion -----------------------------------------------------------------
Values = Callable[[str], list[str]]


def complete(parser: ArgParser, text: str, values: Values) -> list[str] | str:
    """Candidates for the word being typed at the end of `text` (whole words, not only what
    is left to type), or EXPRESSION when gdb's expression completer should answer.
    `values(kind)` lists what a PROCESS or PID argument may be."""
    words = text.split()
    current = "" if not words or text[-1:].isspace() else words.pop()
    state = _Walk(parser)
    for word in words:
        state.take(word)
    if state.in_expression:
        return EXPRESSION
    if state.pending is not None and getattr(state.pending, "complete", "") == FILE:
        return FILE
    if state.pending is not None:
        return _matching(_action_values(state.pending, values, current), current)
    if current.startswith("-"):
        return _matching(state.options(), current)
    nxt = state.next_positional()
    if nxt is not None and getattr(nxt, "complete", "") in (EXPRESSION, FILE):
        return nxt.complete
    found = _positional_values(state, nxt, values)
    return _matching(found if found or current else state.options(), current)


def _positional_values(state: "_Walk", action: argparse.Action | None, values: Values) -> list[str]:
    if action is None:
        return []
    if isinstance(action, argparse._SubParsersAction):
        names = list(action.choices)
        default = state.parser.default_action
        if default:
            first = _Walk(action.choices[default]).next_positional()
            names += _action_values(first, values, "") if first is not None else []
        return names
    return _action_values(action, values, "")


def _action_values(action: argparse.Action, values: Values, current: str) -> list[str]:
    if action.choices:
        return [str(c) for c in action.choices]
    kind = getattr(action, "complete", "")
    if kind == FILE:
        return []
    if kind == "groups":
        head = current[:current.rfind(",") + 1]
        return [head + g for g in TRACED_GROUPS]
    return values(kind) if kind in (PROCESS, PID) else []


def _matching(candidates: list[str], current: str) -> list[str]:
    return sorted({c for c in candidates if c.startswith(current)})


class _Walk:
    """Where completed words leave a command line: which parser, which positional next,
    whether an option waits for its value, whether an expression has begun."""

    def __init__(self, parser: ArgParser) -> None:
        self.parser = parser
        self.positional = 0
        self.pending: argparse.Action | None = None
        self.in_expression = False

    def take(self, word: str) -> None:
        if self.in_expression:
            return
        if self.pending is not None:
            self.pending = None
            return
        if word.startswith("-"):
            action = option_action(self.parser, word.split("=", 1)[0])
            if action is not None and action.nargs != 0 and "=" not in word:
                self.pending = action
            if action is not None or not self.parser.expression:
                return
        nxt = self.next_positional()
        if isinstance(nxt, argparse._SubParsersAction):
            name = word if word in nxt.choices else self.parser.default_action
            if name in nxt.choices:
                self.parser, self.positional = nxt.choices[name], 0
                if name != word:
                    self.take(word)
            return
        if nxt is not None and getattr(nxt, "complete", "") == EXPRESSION:
            self.in_expression = True
            return
        self.positional += 1

    def positionals(self) -> list[argparse.Action]:
        return [a for a in self.parser._actions if not a.option_strings]

    def next_positional(self) -> argparse.Action | None:
        found = self.positionals()
        return found[self.positional] if self.positional < len(found) else None

    def options(self) -> list[str]:
        names = [o for a in self.parser._actions for o in a.option_strings]
        nxt = self.next_positional()
        if isinstance(nxt, argparse._SubParsersAction) and self.parser.default_action:
            names += _Walk(nxt.choices[self.parser.default_action]).options()
        return names
