"""What an address is: the process and mapping it falls in, the file and offset behind
it, the ELF symbol and source line there, and the physical page it is on."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from .arch.pagetables import PageWalkError
from .intervals import IntervalMap
from .linux.system import System
from .linux.tasks import Task
from .linux.vmas import Vma
from .symbols.elfsyms import SourceLine, SymbolCache, runtime_to_vaddr
from .target import MemoryReadError, TargetError

PT_NOTE = 4
NT_GNU_BUILD_ID = 3

KernelSymbolizer = Callable[[int], "tuple[str | None, SourceLine | None]"]


@dataclass(frozen=True)
class AddressInfo:
    """Everything `memcheck addr` says about one address."""

    address: int
    pid: int | None
    comm: str
    vma: Vma | None
    file_offset: int | None
    symbol: str | None
    source: str | None
    physical: int | None
    note: str
    line: SourceLine | None = None          # where `source` points, with its directory


def describe(system: System, process: Task | None, va: int, symbols: SymbolCache,
             kernel_symbol: KernelSymbolizer) -> AddressInfo:
    """Describe `va` as seen by `process` (kernel addresses need none)."""
    if va >= system.arch.user_top:
        physical, note = _physical(system, system.kmem.kernel_pgd, va)
        symbol, line = kernel_symbol(va)
        return AddressInfo(va, None, "kernel", None, None, symbol, _where(line), physical, note, line)
    if process is None:
        raise TargetError(f"{va:#x} is a user address: give the PID or COMM it belongs to")
    mm = system.mm(process)
    vmas = system.vmas(process)
    found = vma_map(vmas).find(va)
    vma = found.value if found else None
    physical, note = _physical(system, system.pgd(mm), va)
    if vma is None:
        return AddressInfo(va, process.tgid, process.comm, None, None, None, None, physical,
                           f"no mapping of pid {process.tgid} contains {va:#x}")
    offset = vma.offset + (va - vma.start) if vma.inode else None
    symbol = line = None
    if offset is not None and vma.name.startswith("/"):
        symbol, line, why = _symbolize(system, mm, vmas, vma, va, symbols)
        note = "; ".join(n for n in (note, why) if n)
    return AddressInfo(va, process.tgid, process.comm, vma, offset, symbol, _where(line), physical, note, line)


def _where(line: SourceLine | None) -> str | None:
    return None if line is None else f"{line.file}:{line.line}"


def vma_map(vmas: list[Vma]) -> IntervalMap[Vma]:
    """VMAs by address range, for O(log n) lookups."""
    out: IntervalMap[Vma] = IntervalMap()
    for v in vmas:
        out.add(v.start, v.end, v)
    return out


def _physical(system: System, root: int, va: int) -> tuple[int | None, str]:
    try:
        return system.translate(root, va).physical, ""
    except PageWalkError as e:
        return None, f"not in memory: {e}"


def _symbolize(system: System, mm, vmas: list[Vma], vma: Vma, va: int,
               symbols: SymbolCache) -> tuple[str | None, SourceLine | None, str]:
    path = vma.name.removesuffix(" (deleted)")
    try:
        elf = symbols.get(path, guest_build_id(system, mm, vmas, vma))
        vaddr = runtime_to_vaddr(va, vma.start, vma.offset, elf)
        if vaddr is None:
            return None, None, f"{path} + {vma.offset + va - vma.start:#x} is outside its loadable segments"
        sym = elf.symbol_at(vaddr)
        line = elf.source_line(vaddr)
    except TargetError as e:
        return None, None, str(e)
    name = None if sym is None else (sym.name if vaddr == sym.start else f"{sym.name}+{vaddr - sym.start:#x}")
    return name, line, ""


def guest_build_id(system: System, mm, vmas: list[Vma], vma: Vma) -> str | None:
    """The GNU build-id of a mapped file, read from the guest's own copy of its ELF
    headers (the file's mapping at offset 0); None when that page is not in memory."""
    head = next((v for v in vmas if v.inode == vma.inode and v.dev == vma.dev and v.offset == 0), None)
    if head is None:
        return None
    pgd = system.pgd(mm)
    try:
        page = system.kmem.phys.read(system.translate(pgd, head.start).physical, 4096)
    except (PageWalkError, MemoryReadError):
        return None
    return build_id_from_headers(page)


def build_id_from_headers(page: bytes) -> str | None:
    """Find NT_GNU_BUILD_ID in the PT_NOTE segments that lie inside the first page."""
    if page[:4] != b"\x7fELF" or page[4] != 2:
        return None
    phoff, = struct.unpack_from("<Q", page, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", page, 0x36)
    for i in range(min(phnum, 64)):
        at = phoff + i * phentsize
        if at + 56 > len(page):
            break
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", page, at)
        if p_type == PT_NOTE and p_offset + p_filesz <= len(page):
            found = _note_build_id(page[p_offset:p_offset + p_filesz])
            if found:
                return found
    return None


def _note_build_id(notes: bytes) -> str | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        desc = notes[name_end:name_end + descsz]
        if ntype == NT_GNU_BUILD_ID and notes[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"GNU":
            return desc.hex()
        pos = name_end + ((descsz + 3) & ~3)
    return None
