"""User-space call stacks unwound from outside the guest: each frame's return address
and caller registers come from the module's call-frame information (.eh_frame or
.debug_frame, decoded by pyelftools), with the frame-pointer chain as the fallback
when a pc has none.  Memory is read through the process's own page tables."""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Any, Callable

from ..arch import Arch
from ..intervals import IntervalMap
from ..linux.vmas import Vma
from ..target import TargetError
from .elfsyms import ElfFile, SymbolCache, runtime_to_vaddr

Reader = Callable[[int, int], bytes]

PC = -1            # the frame's pc in a register set; the others are keyed by DWARF number


@dataclass(frozen=True)
class Module:
    """A mapped ELF file as one frame sees it: its mapping and the parsed file."""

    path: str
    vma: Vma
    elf: ElfFile

    def vaddr(self, pc: int) -> int | None:
        """The ELF virtual address of a run-time pc inside this module's mapping."""
        return runtime_to_vaddr(pc, self.vma.start, self.vma.offset, self.elf)


class ModuleMap:
    """The file mappings of one process, and their ELF files under the sysroot (parsed
    lazily; a file that cannot be used leaves its frames unsymbolized)."""

    def __init__(self, vmas: list[Vma], symbols: SymbolCache) -> None:
        self.symbols = symbols
        self.by_address: IntervalMap[Vma] = IntervalMap()
        for v in vmas:
            if v.inode and v.name.startswith("/"):
                self.by_address.add(v.start, v.end, v)
        self.failures: dict[str, str] = {}
        self._modules: dict[int, Module | None] = {}
        self.rows: dict[int, _Row | None] = {}        # the CFI row at each pc an unwind looked up

    def module(self, pc: int) -> Module | None:
        """The module mapped at pc; each mapping's file is looked up once."""
        hit = self.by_address.find(pc)
        if hit is None:
            return None
        if hit.start not in self._modules:
            self._modules[hit.start] = self._load(hit.value)
        return self._modules[hit.start]

    def _load(self, vma: Vma) -> Module | None:
        path = vma.name.removesuffix(" (deleted)")
        if path in self.failures:
            return None
        try:
            return Module(path, vma, self.symbols.get(path))
        except TargetError as e:
            self.failures[path] = str(e)
            return None


@dataclass(frozen=True)
class _Row:
    """One row of a decoded CFI table: CFA = reg + offset, and where registers are saved."""

    cfa_reg: int | None
    cfa_offset: int
    saved: dict[int, int]          # DWARF register -> offset from the CFA
    undefined: frozenset[int]      # registers the row declares undefined (the outermost frame's RA)


class CallFrameTable:
    """An ELF file's FDEs by start address, each parsed and decoded on first use: through
    .eh_frame_hdr's search table when there is one (glibc's 3,700 FDEs are not all parsed
    for the few a stack needs), else from a parse of every entry."""

    def __init__(self, elf: ElfFile) -> None:
        self.elf = elf
        table = elf.eh_frame_search_table
        if table is not None:
            self.starts = [start for start, _ in table]
            self._offsets = [offset for _, offset in table]
            self._fdes: dict[int, Any] = {}
        else:
            fdes = sorted(elf.call_frame_entries(), key=lambda f: f.header["initial_location"])
            self.starts = [f.header["initial_location"] for f in fdes]
            self._fdes = dict(enumerate(fdes))
        self._decoded: dict[int, tuple[list[int], list[_Row]]] = {}

    def row(self, vaddr: int) -> _Row | None:
        """The rule row in force at `vaddr`, or None when no FDE covers it."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        fde = self._fde(i)
        if fde is None or vaddr >= self.starts[i] + fde.header["address_range"]:
            return None
        pcs, rows = self._decoded.get(i) or self._decode(i, fde)
        j = bisect.bisect_right(pcs, vaddr) - 1
        return rows[j] if j >= 0 else None

    def extent(self, vaddr: int) -> tuple[int, int] | None:
        """[start, end) of the FDE covering `vaddr`: a function's extent, static ones included."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        fde = self._fde(i) if i >= 0 else None
        if fde is None or vaddr >= self.starts[i] + fde.header["address_range"]:
            return None
        return self.starts[i], self.starts[i] + fde.header["address_range"]

    def _fde(self, i: int) -> Any:
        if i not in self._fdes:
            entry = self.elf.frame_entry_at(self._offsets[i])
            self._fdes[i] = entry if "initial_location" in getattr(entry, "header", {}) else None
        return self._fdes[i]

    def _decode(self, i: int, fde: Any) -> tuple[list[int], list[_Row]]:
        try:
            table = fde.get_decoded().table
        except Exception:  # pyelftools meets an instruction it cannot decode: no CFI here
            table = []
        pcs, rows = [], []
        for entry in table:
            pcs.append(entry["pc"])
            rows.append(_row(entry))
        self._decoded[i] = (pcs, rows)
        return pcs, rows


def _row(entry: dict[Any, Any]) -> _Row:
    cfa = entry["cfa"]
    saved, undefined = {}, set()
    for reg, rule in entry.items():
        if not isinstance(reg, int):
            continue
        if rule.type == "OFFSET":
            saved[reg] = rule.arg
        elif rule.type == "UNDEFINED":
            undefined.add(reg)
    cfa_reg = cfa.reg if cfa.expr is None else None
    return _Row(cfa_reg, cfa.offset or 0, saved, frozenset(undefined))


class Unwinder:
    """Unwinds stacks of one process; keeps parsed CFI tables per ELF file."""

    def __init__(self, arch: Arch) -> None:
        self.dwarf, self.user_top = arch.dwarf, arch.user_top
        self._tables: dict[int, tuple[ElfFile, CallFrameTable]] = {}

    def table(self, elf: ElfFile) -> CallFrameTable:
        cached = self._tables.get(id(elf))
        if cached is None or cached[0] is not elf:
            cached = self._tables[id(elf)] = (elf, CallFrameTable(elf))
        return cached[1]

    def unwind(self, registers: dict[int, int], read: Reader, modules: ModuleMap, depth: int) -> list[int]:
        """Return addresses of up to `depth` frames, the first being registers[PC].  The
        registers are keyed by DWARF number (the stack and frame pointers, and on AArch64
        the link register, which holds the return address until a prologue saves it).

        Stops at the outermost frame (return address undefined or zero), at a frame above
        the innermost that does not move up the stack, or where memory cannot be read or
        give a plausible pc."""
        regs, sp = dict(registers), self.dwarf.sp
        pcs = [regs[PC]]
        while len(pcs) < depth:
            first = len(pcs) == 1
            try:
                caller = self._step(regs, read, modules, first)
            except TargetError:
                break               # memory the frame needs cannot be read: the stack ends there
            # only the innermost frame may leave sp where it found it: an AArch64 function at
            # its first instruction, or a leaf, keeps its return address in the link register
            if caller is None or caller[sp] < regs[sp] or (caller[sp] == regs[sp] and not first) \
                    or not 0 < caller[PC] < self.user_top:
                break
            regs = caller
            pcs.append(regs[PC])
        return pcs

    def caller(self, registers: dict[int, int], read: Reader, modules: ModuleMap) -> dict[int, int] | None:
        """The registers of the caller of the frame `registers` describe (its sp is that
        frame's CFA), or None where the frame cannot be unwound."""
        try:
            return self._step(dict(registers), read, modules, first=True)
        except TargetError:
            return None

    def _row(self, modules: ModuleMap, pc: int) -> _Row | None:
        """The CFI row in force at a run-time pc, looked up once per pc of a process (the
        cooperative mode unwinds thousands of stacks through the same few pcs)."""
        if pc in modules.rows:
            return modules.rows[pc]
        module = modules.module(pc)
        row = None
        if module is not None:
            vaddr = module.vaddr(pc)
            try:
                row = self.table(module.elf).row(vaddr) if vaddr is not None else None
            except TargetError:
                row = None
        modules.rows[pc] = row
        return row

    def _step(self, regs: dict[int, int], read: Reader, modules: ModuleMap, first: bool) -> dict[int, int] | None:
        pc = regs[PC]
        row = self._row(modules, pc if first else pc - 1)     # a return address may sit past its call's FDE
        if row is None:
            return self._frame_pointer_step(regs, read)
        d = self.dwarf
        if d.return_address in row.undefined or row.cfa_reg is None or row.cfa_reg not in regs:
            return None
        cfa = (regs[row.cfa_reg] + row.cfa_offset) & 0xFFFF_FFFF_FFFF_FFFF
        caller = {r: v for r, v in regs.items() if r in d.callee_saved}
        for reg, offset in row.saved.items():
            caller[reg] = _u64(read, cfa + offset)
        caller[d.sp] = cfa
        # the return address: where the row saved it, else still in its register (a leaf, or
        # a function's first instructions on AArch64, before the prologue stores the link register)
        caller[PC] = caller[d.return_address] if d.return_address in row.saved else regs.get(d.return_address, 0)
        return caller

    def _frame_pointer_step(self, regs: dict[int, int], read: Reader) -> dict[int, int] | None:
        """The caller by the frame-pointer chain: [fp] is the caller's frame pointer and
        [fp+8] the return address (x86-64's rbp chain and AArch64's frame records alike)."""
        d = self.dwarf
        fp = regs.get(d.frame_pointer, 0)
        if not regs[d.sp] <= fp < self.user_top:
            return None
        caller = {r: v for r, v in regs.items() if r in d.callee_saved}
        caller[d.frame_pointer] = _u64(read, fp)
        caller[PC] = caller[d.return_address] = _u64(read, fp + 8)
        caller[d.sp] = fp + 16
        return caller


def frame_registers(arch: Arch, pc: int, sp: int, frame_pointer: int, link: int | None = None) -> dict[int, int]:
    """A register set to start unwinding from, keyed as the unwinder keys them."""
    regs = {PC: pc, arch.dwarf.sp: sp, arch.dwarf.frame_pointer: frame_pointer}
    if link is not None:
        regs[arch.dwarf.return_address] = link
    return regs


def _u64(read: Reader, address: int) -> int:
    return struct.unpack("<Q", read(address, 8))[0]
