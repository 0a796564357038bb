"""A function's exits, found by disassembling it from its ELF file with binutils' objdump:
the return instructions where a breakpoint reads a call's result, following tail calls into
other functions of the same file.  A function whose exits cannot all be found (an indirect
jump, a jump into the middle of a function, a tail call through the PLT) has none."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

from ..arch.base import Calls
from ..target import TargetError

PREFIXES = frozenset(("rep", "repz", "repe", "repnz", "repne", "bnd", "notrack", "lock", "data16", "cs", "ds"))
MAX_FUNCTIONS = 8               # a chain of tail calls longer than this is not followed
_LINE = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
_DIRECT = re.compile(r"^(?:0x)?([0-9a-f]+)(?:\s+<.*>)?$")
_REFERENCE = re.compile(r"#\s*(?:0x)?([0-9a-f]+)")

Extent = tuple[int, int]


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: its ELF virtual address, mnemonic and a direct branch's target."""

    address: int
    mnemonic: str
    target: int | None
    operands: str = ""
    reference: int | None = None     # the address a pc-relative operand reaches (objdump's "# addr" comment)


@dataclass(frozen=True)
class Exits:
    """Where calls of a function leave it: return instructions, and the extents of the
    function and of those it tail-calls (a call made from inside them is the allocator's own)."""

    returns: tuple[int, ...]
    functions: tuple[Extent, ...]


def instructions(path: str, start: int, end: int) -> list[Instruction]:
    """The instructions in [start, end) of an ELF file (ELF virtual addresses)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e.strerror}") from None
    return _instructions(path, stamp, start, end)


@functools.lru_cache(maxsize=256)
def _instructions(path: str, _stamp: int, start: int, end: int) -> list[Instruction]:
    objdump = shutil.which("objdump")
    if objdump is None:
        raise TargetError("finding an allocator's return instructions needs objdump (binutils)")
    proc = subprocess.run([objdump, "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                           f"--stop-address={end:#x}", path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise TargetError(f"objdump cannot disassemble {path}: {proc.stderr.strip()[:200]}")
    return [ins for line in proc.stdout.splitlines() if (ins := _parse(line)) is not None]


def _parse(line: str) -> Instruction | None:
    m = _LINE.match(line)
    if m is None:
        return None
    words = m.group(2).split(None, 1)
    while len(words) == 2 and words[0] in PREFIXES:
        words = words[1].split(None, 1)
    if not words:
        return None
    operands, _, comment = (words[1].strip() if len(words) == 2 else "").partition("#")
    operands = operands.strip()
    direct = _DIRECT.match(operands)
    reference = _REFERENCE.match("#" + comment) if comment else None
    return Instruction(int(m.group(1), 16), words[0], int(direct.group(1), 16) if direct else None, operands,
                       int(reference.group(1), 16) if reference else None)


def function_exits(path: str, extent: Callable[[int], "Extent | None"], calls: Calls, start: int) -> Exits | None:
    """The exits of the function at `start` (an ELF virtual address of `path`), or None when
    some of them cannot be known.  `extent` gives the [start, end) of the function holding
    an address (from the call-frame information)."""
    todo, seen, returns = [start], {}, []
    while todo:
        entry = todo.pop()
        span = extent(entry)
        if span is None or span[0] != entry:
            return None                      # not the start of a function we can bound
        if entry in seen:
            continue
        if len(seen) == MAX_FUNCTIONS:
            return None
        seen[entry] = span
        for ins in instructions(path, *span):
            if ins.mnemonic in calls.returns:
                returns.append(ins.address)
            elif ins.mnemonic in calls.jumps:
                if ins.target is None:
                    return None              # an indirect jump: where it goes is not in the code
                if not span[0] <= ins.target < span[1]:
                    todo.append(ins.target)
    return Exits(tuple(sorted(returns)), tuple(seen.values()))


def after_first_read(path: str, extent: Callable[[int], "Extent | None"], calls: Calls, start: int,
                     address: int, nargs: int) -> int | None:
    """The pc just after the function at `start` first reads `address`, on the straight path
    from its entry, when its first `nargs` arguments are still in their registers there (a
    watchpoint on `address` then stops each call with its arguments readable); else None."""
    span = extent(start)
    if span is None or span[0] != start or not calls.registers:
        return None
    arguments = {name for names in calls.registers[:nargs] for name in names}
    code = instructions(path, *span)
    targets = []
    for i, ins in enumerate(code):
        if ins.mnemonic in calls.returns or ins.mnemonic in ("jmp", "jmpq", "b", "call", "callq", "bl"):
            return None
        if ins.mnemonic in calls.jumps:
            targets.append(ins.target)
            continue
        if _writes(ins, calls) & arguments:
            return None
        if ins.reference is not None and ins.reference == address:
            after = code[i + 1].address if i + 1 < len(code) else None
            if after is None or any(t is None or start <= t < after for t in targets):
                return None                  # a branch could run the read again, or go who knows where
            return after
    return None


def _writes(ins: Instruction, calls: Calls) -> set[str]:
    """Registers an instruction may write, conservatively: an unknown one writes them all."""
    implicit = dict(calls.implicit)
    if ins.mnemonic in implicit:              # one operand is a source (mul %rsi); more: the last is written
        return set(implicit[ins.mnemonic]) | (_last_register(ins.operands) if "," in ins.operands else set())
    if ins.mnemonic.startswith(calls.harmless):
        return _last_register(ins.operands)
    return {name for names in calls.registers for name in names}


def _last_register(operands: str) -> set[str]:
    """The destination of an AT&T-syntax instruction, when it is a register."""
    depth, cut = 0, 0
    for i, c in enumerate(operands):
        depth += c == "("
        depth -= c == ")"
        if c == "," and depth == 0:
            cut = i + 1
    last = operands[cut:].strip()
    return {last[1:]} if last.startswith("%") else set()
