"""The `memcheck` prefix command, its subcommands and their dash aliases.

Every subcommand turns any failure into one gdb error line that starts with the
command's name: no Python traceback reaches the user.
"""
from __future__ import annotations

import argparse
import json
import shlex

import gdb

from .. import addrinfo, paging
from ..colour import paint
from ..kernel import cpu_paging_mode
from ..target import PartialError, TargetError
from ..views import (PsRow, addr_json, addr_text, maps_json, maps_text, pagetable_json, pagetable_text, ps_text,
                     to_json, walk_json, walk_text)
from .session import SESSION


class UsageError(Exception):
    """Bad arguments; the message is the usage problem."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:
        raise UsageError(message or "")


class MemcheckPrefix(gdb.Command):
    """Whole-system memory checking of a Linux guest behind QEMU's gdbstub."""

    def __init__(self) -> None:
        super().__init__("memcheck", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, prefix=True)

    def invoke(self, arg: str, from_tty: bool) -> None:
        gdb.execute("help memcheck", from_tty)


class Subcommand(gdb.Command):
    """Base of `memcheck NAME`: parse arguments, run, report errors in one line."""

    name = ""
    needs_guest = True

    def __init__(self, command_name: str) -> None:
        super().__init__(command_name, gdb.COMMAND_DATA)
        self.command_name = command_name

    def parser(self) -> ArgParser:
        return ArgParser(prog=f"memcheck {self.name}", add_help=False)

    def invoke(self, arg: str, from_tty: bool) -> None:
        try:
            args = self.parser().parse_args(shlex.split(arg))
            if self.needs_guest:
                SESSION.require_guest()
            self.run(args)
        except PartialError as e:
            self.show_partial(e.partial)
            raise gdb.GdbError(f"memcheck {self.name}: {e}") from None
        except UsageError as e:
            raise gdb.GdbError(f"memcheck {self.name}: {e} (see: help memcheck {self.name})") from None
        except (TargetError, gdb.error, ValueError) as e:
            raise gdb.GdbError(f"memcheck {self.name}: {e}") from None
        except gdb.GdbError:
            raise
        except Exception as e:  # a bug of ours must not take gdb down; say what it was
            raise gdb.GdbError(f"memcheck {self.name}: internal error: {type(e).__name__}: {e}") from None

    def run(self, args: argparse.Namespace) -> None:
        raise UsageError("no action")

    def show_partial(self, partial: list) -> None:
        """Print what a walk found before it broke (default: nothing to show)."""


class InfoCommand(Subcommand):
    """What gdb_memcheck found: kernel release, machine, paging mode, KASLR slide, physical path.

Usage: memcheck info [--json]"""

    name = "info"

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("--json", action="store_true")
        return p

    def run(self, args: argparse.Namespace) -> None:
        line = SESSION.detect()
        if not args.json:
            gdb.write(line + "\n")
            return
        k = SESSION.kernel
        doc = {"summary": line}
        if k is not None:
            path = SESSION.physical_path()
            doc.update(release=k.release, machine=k.machine, paging=k.paging.value, kaslr_slide=k.slide,
                       vcpus=SESSION.target.cpu_count(), physical_path=path.name)
        gdb.write(json.dumps(doc) + "\n")


def parse_address(text: str) -> int:
    """An address typed by the user: a number, or any gdb expression (&init_task, $rsp)."""
    try:
        return int(text, 0) & 0xFFFF_FFFF_FFFF_FFFF
    except ValueError:
        pass
    try:
        return int(gdb.parse_and_eval(text)) & 0xFFFF_FFFF_FFFF_FFFF
    except gdb.error:
        raise UsageError(f"{text!r} is not an address") from None


def emit(text: str) -> None:
    """Write a view, coloured when gdb's styling is on."""
    gdb.write(paint(text, bool(gdb.parameter("style enabled"))))


class JsonSubcommand(Subcommand):
    """A subcommand whose every view also comes as JSON (--json)."""

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("--json", action="store_true")
        return p


class PsCommand(JsonSubcommand):
    """Processes of the guest (with -t, every thread): pid, tid, ppid, state, VSZ, RSS, mm, vCPU, exe.

Usage: memcheck ps [-t] [--json]
RSS is counted from each process's page tables; kernel threads show as [name];
CPU is the vCPU the task is running on."""

    name = "ps"

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("-t", "--threads", action="store_true")
        return p

    def run(self, args: argparse.Namespace) -> None:
        system = SESSION.system()
        running = system.running()
        rows = []
        for proc in system.processes:
            exe, vsz, rss = "", 0, 0
            if proc.mm:
                mm = system.mm(proc)
                exe, vsz = system.exe_path(proc), mm.total_vm * 4096
                rss = sum(u.rss for u in system.usages(mm, system.vmas(proc)))
            for task in (system.threads(proc) if args.threads else [proc]):
                rows.append(PsRow(task, exe, vsz, rss, running.get(task.addr)))
        if args.json:
            gdb.write(to_json([r.as_dict() for r in rows]) + "\n")
        else:
            emit(ps_text(rows, args.threads))


class MapsCommand(JsonSubcommand):
    """A process's memory map, exactly as /proc/PID/maps shows it.

Usage: memcheck maps [PID|COMM] [--rss] [--json]
Without PID|COMM: the process running on the selected vCPU.
--rss adds Rss and Anonymous (kB) per mapping, counted from its page tables as smaps does."""

    name = "maps"

    def show_partial(self, partial: list) -> None:
        emit(maps_text(partial))

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("process", nargs="?")
        p.add_argument("--rss", action="store_true")
        return p

    def run(self, args: argparse.Namespace) -> None:
        system = SESSION.system()
        proc = pick_process(system, args.process)
        mm = system.mm(proc)
        vmas = system.vmas(proc)
        usages = system.usages(mm, vmas) if args.rss else None
        if args.json:
            gdb.write(to_json({"pid": proc.tgid, "comm": proc.comm, "maps": maps_json(vmas, usages)}) + "\n")
        else:
            emit(maps_text(vmas, usages))


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


class PagetableCommand(JsonSubcommand):
    """Page-table mappings: virtual range, physical start, size, page size, effective permissions.

Usage: memcheck pagetable [PID|COMM | --kernel | --cr3 X] [--range START-END] [--perm uwxk] [--json]
Without a choice: the tables in the selected vCPU's CR3. Permissions combine every level:
u/k user or kernel, w writable, x executable (NX honoured). --perm keeps ranges with all given letters."""

    name = "pagetable"

    def show_partial(self, partial: list) -> None:
        emit(pagetable_text(paging.coalesce(partial)))

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("process", nargs="?")
        p.add_argument("--kernel", action="store_true")
        p.add_argument("--cr3")
        p.add_argument("--range", dest="vrange")
        p.add_argument("--perm", default="")
        return p

    def run(self, args: argparse.Namespace) -> None:
        mode = cpu_paging_mode(SESSION.target)
        if mode.levels == 0:
            gdb.write(f"{mode.value}: no page tables are in use; physical addresses equal linear ones\n")
            return
        root = table_root(args.process, args.kernel, args.cr3)
        start, end = parse_range(args.vrange)
        bad = set(args.perm) - set("uwxk")
        if bad:
            raise UsageError(f"--perm takes letters from 'uwxk', not {''.join(sorted(bad))!r}")
        found: list[paging.Leaf] = []
        levels = mode.levels
        try:
            for leaf in paging.leaves(SESSION.pages().read, root, levels, start, end, merge_runs=True,
                                      memo=SESSION.leaf_memo):
                found.append(leaf)
        except paging.PageWalkError as e:
            raise PartialError(str(e), found) from None
        ranges = paging.coalesce(found)
        if args.perm:
            ranges = [r for r in ranges if _has_perms(r, args.perm)]
        if args.json:
            gdb.write(to_json({"root": root, "levels": levels, "ranges": pagetable_json(ranges)}) + "\n")
        else:
            emit(f"# {levels}-level tables at {root:#x}\n" + pagetable_text(ranges))


def _has_perms(r: paging.Range, perms: str) -> bool:
    have = {"u": r.user, "k": not r.user, "w": r.writable, "x": r.executable}
    return all(have[c] for c in perms)


def parse_range(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1 << 64
    lo, sep, hi = text.partition("-")
    if not sep:
        raise UsageError(f"--range wants START-END, not {text!r}")
    start, end = parse_address(lo), parse_address(hi)
    if end <= start:
        raise UsageError(f"--range {text}: END must be above START")
    return start, end


def table_root(spec: str | None, kernel: bool = False, cr3: str | None = None) -> int:
    """Physical address of the top-level table to walk; only a process or the kernel's
    tables need kernel structures (and a vmlinux that matches the guest)."""
    if cr3:
        return paging.cr3_table(parse_address(cr3))
    if kernel:
        return SESSION.system().kmem.kernel_pgd
    if spec:
        system = SESSION.system()
        return system.pgd(system.mm(system.find(spec)))
    return paging.cr3_table(SESSION.target.register("cr3"))


class AddressSubcommand(JsonSubcommand):
    """A subcommand about one address, seen by an optional process: ADDR [PID|COMM]."""

    def parser(self) -> ArgParser:
        p = super().parser()
        p.add_argument("address")
        p.add_argument("process", nargs="?")
        return p


class VtopCommand(AddressSubcommand):
    """Translate a virtual address: each level's table, index, entry and flags, then the physical address.

Usage: memcheck vtop ADDR [PID|COMM] [--json]
Without PID|COMM: through the selected vCPU's CR3. Says where and why a walk stops."""

    name = "vtop"

    def run(self, args: argparse.Namespace) -> None:
        va = parse_address(args.address)
        mode = cpu_paging_mode(SESSION.target)
        if mode.levels == 0:
            gdb.write(f"{mode.value}: virtual {va:#x} is physical {va:#x}\n")
            return
        if not paging.is_canonical(va, mode.levels):
            raise TargetError(f"{va:#x} is not a canonical {mode.levels}-level address")
        root = table_root(args.process)
        try:
            tr = paging.translate(SESSION.pages().read, root, va, mode.levels)
            steps, physical, stop = tr.steps, tr.physical, ""
        except paging.PageWalkError as e:
            steps, physical, stop = e.steps, None, str(e)
        if args.json:
            gdb.write(to_json(walk_json(va, steps, physical, stop)) + "\n")
        else:
            emit(walk_text(va, steps, physical, stop))


class AddrCommand(AddressSubcommand):
    """What an address is: process, mapping, file + offset, ELF symbol @ source line, physical page.

Usage: memcheck addr ADDR [PID|COMM] [--json]
User addresses belong to PID|COMM (default: the process on the selected vCPU); kernel
addresses are named from the kernel's symbols. Guest files are read under
`set memcheck sysroot DIR` and must carry the same build-id as the guest's copy."""

    name = "addr"

    def run(self, args: argparse.Namespace) -> None:
        va = parse_address(args.address)
        system = SESSION.system()
        process = None
        if va < addrinfo.USER_TOP:
            process = pick_process(system, args.process)
        info = addrinfo.describe(system, process, va, SESSION.symbols(), kernel_symbol)
        if args.json:
            gdb.write(to_json(addr_json(info)) + "\n")
        else:
            emit(addr_text(info))


def kernel_symbol(addr: int) -> str | None:
    """function+offset @ file:line of a kernel address, from gdb's own symbol tables."""
    try:
        block = gdb.current_progspace().block_for_pc(addr)
    except RuntimeError:
        return None
    func = block.function if block is not None else None
    while block is not None and func is None:
        block = block.superblock
        func = block.function if block is not None else None
    if func is None:
        return None
    start = int(func.value().address)
    line = gdb.find_pc_line(addr)
    where = f" @ {line.symtab.filename}:{line.line}" if line.symtab is not None else ""
    return (func.name if addr == start else f"{func.name}+{addr - start:#x}") + where


SUBCOMMANDS = (InfoCommand, PsCommand, MapsCommand, PagetableCommand, VtopCommand, AddrCommand)


def register(classes: tuple = ()) -> list[gdb.Command]:
    """Create `memcheck`, each `memcheck NAME` and its alias `memcheck-NAME`."""
    commands: list[gdb.Command] = [MemcheckPrefix()]
    for cls in SUBCOMMANDS + classes:
        commands.append(cls(f"memcheck {cls.name}"))
        commands.append(cls(f"memcheck-{cls.name}"))
    return commands
