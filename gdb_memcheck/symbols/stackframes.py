"""Allocation stacks made readable: each pc as module + offset and function @ file:line,
with return addresses looked up one byte back so the line is the call's, not the next."""
from __future__ import annotations

from dataclasses import dataclass

from ..target import TargetError
from .unwind import ModuleMap


@dataclass(frozen=True)
class Frame:
    """One symbolized frame; fields are None where the module or its symbols are unknown."""

    pc: int
    module: str | None = None
    offset: int | None = None          # the ELF virtual address, what addr2line takes
    function: str | None = None
    file: str | None = None
    line: int | None = None
    directory: str | None = None
    inlined_into: tuple["Frame", ...] = ()     # the callers this function was inlined into, at the same pc



def frame(pc: int, modules: ModuleMap, is_return: bool) -> Frame:
    """One pc symbolized; a return address is looked up one byte back, inside its call."""
    lookup = pc - 1 if is_return else pc
    module = modules.module(lookup)
    if module is None:
        return Frame(pc)
    vaddr = module.vaddr(lookup)
    if vaddr is None:
        return Frame(pc, module.path)
    try:
        symbol = module.elf.symbol_at(vaddr)
        line = module.elf.source_line(vaddr)
        chain = module.elf.inline_chain(vaddr)
    except TargetError:
        symbol = line = chain = None
    offset = vaddr + (1 if is_return else 0)
    function = None if symbol is None else symbol.name.split("@")[0]     # no symbol version (@@GLIBC_2.34)
    callers: tuple[Frame, ...] = ()
    if chain is not None and chain.calls:
        function = chain.function
        callers = tuple(Frame(pc, module.path, offset, c.caller, c.file, c.line, c.directory) for c in chain.calls)
    if line is None:
        return Frame(pc, module.path, offset, function, inlined_into=callers)
    return Frame(pc, module.path, offset, function, line.file, line.line, line.directory, callers)
