"""The `memcheck` prefix command, its subcommands and their dash aliases.

Every subcommand turns any failure into one gdb error line that starts with the
command's name: no Python traceback reaches the user.
"""
from __future__ import annotations

import argparse
import os
from typing import NoReturn

import gdb

from .. import addrinfo, cli
from ..arch import Span
from ..arch.pagetables import Leaf, PageWalkError, Range, coalesce
from ..changes.processes import process_records
from ..linux.system import Mapping
from ..report.schema import hexa
from ..report.style import PLAIN, ROLES, Styler, escape_sequence
from ..symbols.elfsyms import SourceLine
from ..symbols.sources import SourceFinder
from ..target import PartialError, TargetError
from ..report.views import (PsRow, addr_json, addr_text, maps_json, maps_text, pagetable_json, pagetable_text, ps_text,
                     json_text, walk_json, walk_text)
from .delta_views import MapLook, map_changes_shown, process_changes_shown
from .session import SESSION


PARSER = cli.build()


class MemcheckPrefix(gdb.Command):
    """Whole-system memory checking of a Linux guest behind QEMU's gdbstub.

Each command takes -h (the same text as `help memcheck COMMAND`); most take --json."""

    def __init__(self) -> None:
        super().__init__("memcheck", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, prefix=True)

    def invoke(self, arg: str, from_tty: bool) -> None:
        gdb.execute("help memcheck", from_tty)


class Subcommand(gdb.Command):
    """Base of `memcheck NAME`: its parser gives the help text, the arguments and their
    completion; any failure becomes one error line that starts with the command's name."""

    name = ""
    needs_guest = True

    def __init__(self, command_name: str, doc: str) -> None:
        self.parser = cli.subcommands(PARSER)[self.name]
        self.__doc__ = doc
        super().__init__(command_name, gdb.COMMAND_DATA)
        self.command_name = command_name

    def invoke(self, arg: str, from_tty: bool) -> None:
        as_json, command = "--json" in arg.split(), self.name
        try:
            args = cli.parse(self.parser, arg)
            as_json = getattr(args, "json", False)
            command = " ".join(filter(None, (self.name, getattr(args, "action", None))))
            if getattr(args, "changes_state", False):
                self.dont_repeat()
            if self.needs_guest:
                SESSION.require_guest()
            self.run(args)
        except cli.HelpRequested as e:
            gdb.write(str(e))
        except PartialError as e:
            if not as_json:
                self.show_partial(e.partial)
            self.fail(command, str(e), as_json)
        except cli.UsageError as e:
            self.fail(command, f"{e} (see: help memcheck {self.name})", as_json)
        except (TargetError, gdb.error, ValueError) as e:
            self.fail(command, str(e), as_json)
        except gdb.GdbError as e:
            self.fail(command, str(e), as_json)
        except Exception as e:  # a bug of ours must not take gdb down; say what it was
            self.fail(command, f"internal error: {type(e).__name__}: {e}", as_json)

    def fail(self, command: str, message: str, as_json: bool) -> NoReturn:
        """gdb's error, so that a script stops; under --json, the error's JSON first."""
        if as_json:
            gdb.write(json_text(command, {"error": message}))
        raise gdb.GdbError(f"memcheck {self.name}: {message}") from None

    def complete(self, text: str, word: str | None):
        """Subcommands, flags, their values, processes of this stop; gdb's own completer for
        an expression."""
        found = cli.complete(self.parser, text, completion_values)
        if found == cli.EXPRESSION:
            return gdb.COMPLETE_EXPRESSION
        if found == cli.FILE:
            return gdb.COMPLETE_FILENAME
        token = "" if not text or text[-1].isspace() else text.split()[-1]
        if word is None or not token.endswith(word):
            return found
        cut = len(token) - len(word)
        return [c[cut:] for c in found]

    def run(self, args: argparse.Namespace) -> None:
        raise cli.UsageError("no action")

    def show_partial(self, partial: list) -> None:
        """Print what a walk found before it broke (default: nothing to show)."""


def completion_values(kind: str) -> list[str]:
    """Pids (and, for a PROCESS, the comms that name one process) of this stop's user
    processes; nothing when the guest cannot be read now."""
    try:
        SESSION.require_guest()
        procs = [p for p in SESSION.system().processes if p.mm]
    except (TargetError, gdb.error):
        return []
    pids = [str(p.tgid) for p in procs]
    if kind == cli.PID:
        return pids
    comms = [p.comm for p in procs]
    return pids + [c for c in comms if comms.count(c) == 1]


class InfoCommand(Subcommand):
    """`memcheck info`: the load line, or its facts as JSON."""

    name = "info"

    def run(self, args: argparse.Namespace) -> None:
        line = SESSION.detect()
        if not args.json:
            gdb.write(line + "\n")
            return
        k = SESSION.kernel
        doc = dict.fromkeys(("release", "machine", "paging", "kaslr_slide", "vcpus", "physical_path"))
        if k is not None:
            doc.update(release=k.release, machine=k.machine, paging=k.paging, kaslr_slide=hexa(k.slide),
                       vcpus=SESSION.target.cpu_count(), physical_path=SESSION.physical_path().name)
        gdb.write(json_text("info", {"summary": line, **doc}))


def parse_address(text: str) -> int:
    """An address typed by the user: a number, or any gdb expression (&init_task, $rsp)."""
    try:
        return int(text, 0) & 0xFFFF_FFFF_FFFF_FFFF
    except ValueError:
        pass
    try:
        return int(gdb.parse_and_eval(SESSION.expression(text))) & 0xFFFF_FFFF_FFFF_FFFF
    except gdb.error as e:
        hint = " (options go before the address)" if " -" in f" {text}" else ""
        raise cli.UsageError(f"{text!r} is not an address: {str(e).rstrip('.')}{hint}") from None


def source_lines(line: SourceLine | None) -> list[str]:
    """The source around `line` for --source, or one line saying why there is none."""
    if line is None:
        return ["(no line information)"]
    found = source_finder().context(line)
    return found or [f"(not found: {line.directory}/{line.file}; `directory DIR` adds a place to look)"]


def current_style() -> Styler:
    """gdb's own styles for addresses, file names, functions and highlights, as they are set
    now; plain text when `set style enabled` is off."""
    if not gdb.parameter("style enabled"):
        return PLAIN
    return Styler({role: escape_sequence(*(str(gdb.parameter(f"style {role} {part}"))
                                           for part in ("foreground", "background", "intensity")))
                   for role in ROLES})


def source_finder() -> SourceFinder:
    """Source files are looked for where the debug info says, then under the sysroot and in
    gdb's `directory` list; highlighted when gdb highlights its own (`set style sources`)."""
    search = [str(gdb.parameter("memcheck sysroot") or "")]
    for entry in str(gdb.parameter("directories")).split(os.pathsep):
        search.append(os.getcwd() if entry == "$cwd" else "" if entry == "$cdir" else entry)
    return SourceFinder(tuple(d for d in search if d),
                        bool(gdb.parameter("style enabled")) and bool(gdb.parameter("style sources")))


class PsCommand(Subcommand):
    """`memcheck ps`: processes or threads, with VSZ and RSS; with --delta, what changed."""

    name = "ps"

    def run(self, args: argparse.Namespace) -> None:
        if args.delta and args.threads:
            raise cli.UsageError("--delta compares processes, not threads: leave out -t")
        system = SESSION.system()
        records = process_records(system)
        previous = SESSION.history.swap("ps", records, SESSION.source)
        if args.delta and process_changes_shown(records, previous, args, current_style()):
            return
        running = system.running()
        rows = []
        for proc, record in zip(system.processes, records):
            if (args.user and proc.is_kernel_thread) or (args.kernel and not proc.is_kernel_thread):
                continue
            for task in (system.threads(proc) if args.threads else [proc]):
                rows.append(PsRow(task, record.exe, record.vsz, record.rss, running.get(task.addr)))
        if args.json:
            gdb.write(json_text("ps", {"threads": args.threads, "tasks": [r.as_dict() for r in rows]}))
        else:
            gdb.write(ps_text(rows, args.threads, current_style()))


class MapsCommand(Subcommand):
    """`memcheck maps`: a process's /proc/PID/maps, with RSS on request; with --delta, what changed."""

    name = "maps"

    def show_partial(self, partial: list) -> None:
        gdb.write(maps_text(partial, style=current_style()))

    def run(self, args: argparse.Namespace) -> None:
        system = SESSION.system()
        proc = pick_process(system, args.process)
        mm = system.mm(proc)
        vmas = system.vmas(proc)
        usages = system.usages(mm, vmas) if args.rss or args.delta else None
        look = MapLook(proc.comm, [Mapping(v, u) for v, u in zip(vmas, usages or [None] * len(vmas))])
        previous = SESSION.history.swap(("maps", proc.tgid), look, SESSION.source)
        if args.delta and map_changes_shown(proc, look, previous, args, current_style()):
            return
        if args.json:
            gdb.write(json_text("maps", {"pid": proc.tgid, "comm": proc.comm, "maps": maps_json(vmas, usages)}))
        else:
            gdb.write(maps_text(vmas, usages, current_style()))


def pick_process(system, spec: str | None):
    """The named process, or the one running on the selected vCPU."""
    if spec:
        return system.find(spec)
    cpu = SESSION.selected_cpu()
    task = system.current(cpu)
    if not task.mm:
        raise TargetError(f"vCPU {cpu} runs {task.comm} (pid {task.pid}), a kernel thread with no memory map; "
                          "give a PID or COMM")
    return system.find(str(task.tgid))


class PagetableCommand(Subcommand):
    """`memcheck pagetable`: the mapped ranges of a set of page tables."""

    name = "pagetable"

    def show_partial(self, partial: list) -> None:
        gdb.write(pagetable_text(coalesce(partial), current_style()))

    def run(self, args: argparse.Namespace) -> None:
        paging = SESSION.regime()
        if paging.levels == 0 and args.json:
            gdb.write(json_text("pagetable", {"root": None, "levels": 0, "tables": [], "ranges": []}))
            return
        if paging.levels == 0:
            gdb.write(f"{paging.description}: no page tables are in use; physical addresses equal linear ones\n")
            return
        spans = table_spans(args.process, args.kernel, args.cr3)
        start, end = parse_range(args.vrange)
        bad = set(args.perm) - set("uwxk")
        if bad:
            raise cli.UsageError(f"--perm takes letters from 'uwxk', not {''.join(sorted(bad))!r}")
        found: list[Leaf] = []
        try:
            for span in spans:
                lo, hi = max(start, span.start), min(end, span.end)
                if lo < hi:
                    found.extend(paging.leaves(SESSION.pages().read, span.root, lo, hi, merge_runs=True,
                                               memo=SESSION.leaf_memo))
        except PageWalkError as e:
            raise PartialError(str(e), found) from None
        ranges = coalesce(found)
        if args.perm:
            ranges = [r for r in ranges if _has_perms(r, args.perm)]
        if args.json:
            tables = [{"root": hexa(s.root), "start": hexa(s.start), "end": hexa(s.end - 1)} for s in spans]
            gdb.write(json_text("pagetable", {"root": hexa(spans[0].root), "levels": paging.levels, "tables": tables,
                                              "ranges": pagetable_json(ranges)}))
        else:
            roots = ", ".join(f"{s.root:#x}" for s in spans)
            gdb.write(f"# {paging.levels}-level tables at {roots}\n" + pagetable_text(ranges, current_style()))


def _has_perms(r: Range, perms: str) -> bool:
    have = {"u": r.user, "k": not r.user, "w": r.writable, "x": r.executable}
    return all(have[c] for c in perms)


def parse_range(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1 << 64
    lo, sep, hi = text.partition("-")
    if not sep:
        raise cli.UsageError(f"--range wants START-END, not {text!r}")
    start, end = parse_address(lo), parse_address(hi)
    if end <= start:
        raise cli.UsageError(f"--range {text}: END must be above START")
    return start, end


def table_spans(spec: str | None, kernel: bool = False, cr3: str | None = None) -> list[Span]:
    """The top-level tables to walk and the part of the address space each maps; only a
    process's or the kernel's tables need kernel structures (and a vmlinux that matches)."""
    arch = SESSION.arch
    if cr3:
        return [Span(arch.table_of(parse_address(cr3)), 0, 1 << 64)]
    if kernel:
        return arch.kernel_spans(SESSION.system().kmem.kernel_pgd)
    if spec:
        system = SESSION.system()
        return arch.process_spans(system.pgd(system.mm(system.find(spec))), system.kmem.kernel_pgd)
    return arch.current_spans(SESSION.target, None)


class VtopCommand(Subcommand):
    """`memcheck vtop`: one address's page walk."""

    name = "vtop"

    def run(self, args: argparse.Namespace) -> None:
        va = parse_address(args.address)
        paging = SESSION.regime()
        if paging.levels == 0 and args.json:
            gdb.write(json_text("vtop", walk_json(va, [], va)))
            return
        if paging.levels == 0:
            gdb.write(f"{paging.description}: virtual {va:#x} is physical {va:#x}\n")
            return
        why = paging.reject(va)
        if why:
            raise TargetError(why)
        root = SESSION.arch.root_for(paging.untag(va), table_spans(args.process))
        try:
            tr = paging.translate(SESSION.pages().read, root, va)
            steps, physical, stop = tr.steps, tr.physical, ""
        except PageWalkError as e:
            steps, physical, stop = e.steps, None, str(e)
        if args.json:
            gdb.write(json_text("vtop", walk_json(va, steps, physical, stop)))
        else:
            gdb.write(walk_text(va, steps, physical, stop, current_style()))


class AddrCommand(Subcommand):
    """`memcheck addr`: what one address is."""

    name = "addr"

    def run(self, args: argparse.Namespace) -> None:
        va = parse_address(args.address)
        system = SESSION.system()
        process = None
        if va < system.arch.user_top:
            process = pick_process(system, args.process)
        info = addrinfo.describe(system, process, va, SESSION.symbols(), kernel_symbol)
        if args.json:
            gdb.write(json_text("addr", addr_json(info)))
        else:
            gdb.write(addr_text(info, current_style(), source_lines(info.line) if args.source else None))


def kernel_symbol(addr: int) -> tuple[str | None, SourceLine | None]:
    """function+offset of a kernel address and its source line, from gdb's own symbol tables."""
    try:
        block = gdb.current_progspace().block_for_pc(addr)
    except RuntimeError:
        return None, None
    func = block.function if block is not None else None
    while block is not None and func is None:
        block = block.superblock
        func = block.function if block is not None else None
    if func is None:
        return None, None
    start = int(func.value().address)
    name = func.name if addr == start else f"{func.name}+{addr - start:#x}"
    sal = gdb.find_pc_line(addr)
    if sal.symtab is None:
        return name, None
    full = sal.symtab.fullname()
    directory = full[:-len(sal.symtab.filename)].rstrip("/") if full.endswith(sal.symtab.filename) else ""
    return name, SourceLine(sal.symtab.filename, sal.line, directory)


SUBCOMMANDS = (InfoCommand, PsCommand, MapsCommand, PagetableCommand, VtopCommand, AddrCommand)


def register(classes: tuple = ()) -> list[gdb.Command]:
    """Create `memcheck`, each `memcheck NAME` and its alias `memcheck-NAME`."""
    commands: list[gdb.Command] = [MemcheckPrefix()]
    for cls in SUBCOMMANDS + classes:
        doc = cli.subcommands(PARSER)[cls.name].format_help().rstrip()
        commands.append(cls(f"memcheck {cls.name}", doc))
        commands.append(cls(f"memcheck-{cls.name}", doc))
    return commands
