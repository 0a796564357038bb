"""`memcheck slab`, `memcheck kmem` and `memcheck kleaks`: the kernel's own memory."""
from __future__ import annotations

import argparse

import gdb

from ..arch import X86_64
from ..leakcheck import kleaks
from ..linux.kmem import AddressResolver
from ..linux.modules import ModuleReader
from ..linux.slab import SlabAllocator, SlabLayout, objects_of
from ..linux.system import System
from ..report.kernel_views import (cache_json, cache_text, kleaks_json, kleaks_text, kmem_json, kmem_text, slab_json,
                                   slab_text)
from ..report.views import json_text
from ..target import PartialError, TargetError
from .commands import Subcommand, current_style, kernel_symbol, parse_address
from .session import SESSION


def allocator(system: System, x86_only: str = "") -> SlabAllocator:
    """SLUB at this stop; the structure offsets are kept from stop to stop.  `x86_only`
    names a command that reads the x86-64 kernel layout beyond the slabs."""
    if x86_only and SESSION.arch is not X86_64:
        raise TargetError(f"memcheck {x86_only} reads x86-64 guests only, not {SESSION.arch.name}; "
                          "memcheck slab reads both")
    if "slab" not in system.readers:
        system.readers["slab"] = SlabLayout.from_target(system.target)
    return SlabAllocator(system.target, system.kmem, system.readers["slab"])


def symbolizer(system: System):
    """function+offset of a kernel text address; a module's function+offset [module] from its
    own symbol table, else [module] region+offset."""
    modules: list = []

    def name(pc: int) -> str:
        found, _ = kernel_symbol(pc)
        if found:
            return found
        if not modules:
            modules.append(_module_symbols(system))
        functions, regions = modules[0]
        for f in functions:
            if f.start <= pc < f.start + max(f.size, 1):
                return f"{f.name}+{pc - f.start:#x} [{f.module}]"
        for r in regions:
            if r.start <= pc < r.end:
                return f"[{r.module}] {r.kind}+{pc - r.start:#x}"
        return ""
    return name


def _module_symbols(system: System) -> tuple[list, list]:
    reader = ModuleReader(system.target)
    try:
        return reader.functions(system.kmem.read), reader.regions(system.kmem.read)
    except TargetError:
        return [], []


def data_symbol(address: int) -> str:
    """symbol+offset of a kernel data address (gdb's `info symbol`: one lookup, no hot path)."""
    found, _ = kernel_symbol(address)
    if found:
        return found
    try:
        text = gdb.execute(f"info symbol {address:#x}", to_string=True).strip()
    except gdb.error:
        return ""
    if text.startswith("No symbol"):
        return ""
    name, _, offset = text.split(" in section ")[0].partition(" + ")
    return f"{name}+{int(offset):#x}" if offset.isdigit() else name


class SlabCommand(Subcommand):
    """`memcheck slab`: SLUB caches, or one cache's objects."""

    name = "slab"

    def show_partial(self, partial: list) -> None:
        if partial and hasattr(partial[0], "cache"):
            gdb.write(slab_text(partial, current_style()))
        elif partial:
            gdb.write("".join(f"  {o.address:#x} {'free' if o.free else 'in use'}\n" for o in partial))

    def run(self, args: argparse.Namespace) -> None:
        slab = allocator(SESSION.system())
        hardened = slab.layout.hardened
        if args.cache is None:
            rows = slab.all_stats()
            if args.json:
                gdb.write(json_text("slab", slab_json([cache_json(r, hardened, slab.stores_tracks(r.cache))
                                                       for r in rows])))
            else:
                gdb.write(slab_text(rows, current_style()))
            return
        cache = slab.find_cache(args.cache)
        try:
            stats, slabs = slab.walk(cache)
        except PartialError as e:
            stats, slabs = e.partial[0]
            if not args.json:
                gdb.write(cache_text(stats, slabs, hardened, current_style()))
            raise TargetError(str(e)) from None
        if args.json:
            objects = objects_of(cache, slabs)
            gdb.write(json_text("slab", slab_json([cache_json(stats, hardened, slab.stores_tracks(cache))], slabs,
                                                  objects)))
        else:
            gdb.write(cache_text(stats, slabs, hardened, current_style()))


class KmemCommand(Subcommand):
    """`memcheck kmem`: what one kernel address is."""

    name = "kmem"

    def run(self, args: argparse.Namespace) -> None:
        address = parse_address(args.address)
        system = SESSION.system()
        info = AddressResolver(system, allocator(system, "kmem")).describe(address)
        name = symbolizer(system)

        def symbolize(pc: int) -> str:
            return (data_symbol(pc) if pc == info.symbol_at else "") or name(pc)
        if args.json:
            gdb.write(json_text("kmem", kmem_json(info, symbolize)))
        else:
            gdb.write(kmem_text(info, symbolize, current_style()))


class KleaksCommand(Subcommand):
    """`memcheck kleaks`: unreferenced kernel objects."""

    name = "kleaks"

    def run(self, args: argparse.Namespace) -> None:
        system = SESSION.system()
        slab = allocator(system, "kleaks")
        if args.cache and args.cache != kleaks.VMALLOC:
            slab.find_cache(args.cache)
        scan = kleaks.scan(system, slab)
        symbolize = symbolizer(system)
        if args.json:
            gdb.write(json_text("kleaks", kleaks_json(scan, args.show_reachable, args.cache, symbolize)))
        else:
            gdb.write(kleaks_text(scan, args.show_reachable, args.cache, symbolize, current_style()))


KERNEL_SUBCOMMANDS = (SlabCommand, KmemCommand, KleaksCommand)
