"""Guest RAM and vCPU registers from a QEMU `dump-guest-memory` file, with QEMU gone.

QEMU writes an ELF core (dump/dump.c): a PT_NOTE, then PT_LOAD segments that give file
offsets by guest-physical address (p_paddr).  Without -p there is one PT_LOAD per RAM
block; with -p (paging) one per virtually contiguous range the vCPUs' page tables map, so
a physical page can appear several times and RAM that no table maps is not reachable.
With -z/-l/-s it writes makedumpfile's kdump-compressed format instead (kdump.py).
Both carry the same notes, per vCPU in CPU order: NT_PRSTATUS ("CORE": general
registers, fs_base, gs_base) and QEMU's own CPU state ("QEMU", type 0: segment bases,
CR0-CR4 and, in the 440 bytes QEMU 7.2 writes, kernel_gs_base; target/i386/arch_dump.c).  Every problem
with the file is a DumpError: one line that names the file and what is wrong."""
from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass, field

from ..target import MemoryReadError, TargetError

ELF_MAGIC = b"\x7fELF"
ELFCLASS64, ELFDATA2LSB, ET_CORE, EM_X86_64 = 2, 1, 4, 62
PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xFFFF
NT_PRSTATUS = 1
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
NHDR = struct.Struct("<III")

# struct elf_prstatus on x86-64: pr_reg (user_regs_struct) at byte 112
PRSTATUS_PID, PRSTATUS_REGS = 32, 112
PRSTATUS_REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
                      "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
                      "es", "fs", "gs")
# QEMUCPUState: version, size, 18 registers, 10 segments (selector, limit, flags, pad, base), cr[5], kernel_gs_base
QEMU_STATE_VERSION = 1
QEMU_REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
                  "r14", "r15", "rip", "eflags")
QEMU_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
QEMU_SEGMENT = struct.Struct("<IIIIQ")
QEMU_SEGMENTS_AT = 8 + 8 * len(QEMU_REG_NAMES)
QEMU_CR_AT = QEMU_SEGMENTS_AT + QEMU_SEGMENT.size * len(QEMU_SEGMENTS)
QEMU_KERNEL_GS_AT = QEMU_CR_AT + 5 * 8
# EFER is not in the dump: QEMU writes an x86-64 ELF only when the first vCPU runs in long
# mode (arch_dump.c cpu_get_dump_info), which is EFER.LME and EFER.LMA
EFER_LONG_MODE = (1 << 8) | (1 << 10)
MAX_CPUS = 4096


class DumpError(TargetError):
    """The file is not a dump gdb_memcheck can read; the message says why, in one line."""


@dataclass(frozen=True)
class VcpuState:
    """One vCPU's registers as the dump recorded them, by gdb's register names."""

    number: int
    registers: dict[str, int]


@dataclass(frozen=True)
class RamRun:
    """Guest-physical [start, start + size) is stored at `offset` of the (logical) file."""

    start: int
    size: int
    offset: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass
class GuestDump:
    """A dump's RAM by physical address and its vCPUs; `format` says which kind of file."""

    path: str
    format: str
    cpus: list[VcpuState]
    runs: list[RamRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._starts = [r.start for r in self.runs]

    @property
    def ram_end(self) -> int:
        return max((r.end for r in self.runs), default=0)

    @property
    def ram_bytes(self) -> int:
        return sum(r.size for r in self.runs)

    def describe(self) -> str:
        return f"{self.path}: {self.format}, {self.ram_bytes >> 20} MiB of RAM"

    def read_physical(self, addr: int, size: int) -> bytes:
        out, pos, end = [], addr, addr + size
        while pos < end:
            i = bisect.bisect_right(self._starts, pos) - 1
            run = self.runs[i] if i >= 0 else None
            if run is None or pos >= run.end:
                raise MemoryReadError("physical", addr, size, f"{pos:#x} is not in the dump")
            n = min(end, run.end) - pos
            out.append(self._read_stored(run.offset + pos - run.start, n))
            pos += n
        return b"".join(out)

    def _read_stored(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Let the file go (a second close does nothing)."""


class ElfDump(GuestDump):
    """An ELF dump, read with pread."""

    def __init__(self, path: str, fmt: str, cpus: list[VcpuState], runs: list[RamRun], fd: int) -> None:
        super().__init__(path, fmt, cpus, runs)
        self._fd = fd

    def _read_stored(self, offset: int, size: int) -> bytes:
        if self._fd < 0:
            raise DumpError(f"{self.path} is closed")
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise MemoryReadError("physical", offset, size, f"{self.path} ends early")
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_elf(path: str, fd: int) -> ElfDump:
    """The ELF dump open on `fd` (which it then owns)."""
    size = os.fstat(fd).st_size
    ident, e_type, machine, _v, _entry, phoff, shoff, _f, _eh, phentsize, phnum, _she, _shnum, _shs = \
        EHDR.unpack(_exact(fd, path, 0, EHDR.size, size, "ELF header"))
    if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB or machine != EM_X86_64:
        raise DumpError(f"{path} is not an x86-64 dump (ELF class {ident[4]}, machine {machine}): "
                        "only x86-64 guests in long mode are supported")
    if e_type != ET_CORE:
        raise DumpError(f"{path} is an ELF file of type {e_type}, not a core dump: give the file "
                        "dump-guest-memory wrote")
    if phentsize != PHDR.size:
        raise DumpError(f"{path} has program headers of {phentsize} bytes, not {PHDR.size}: it is not an ELF64 dump")
    if phnum == PN_XNUM:        # more segments than e_phnum holds: the count is in section 0's sh_info
        phnum = SHDR.unpack(_exact(fd, path, shoff, SHDR.size, size, "section header"))[7]
    table = _exact(fd, path, phoff, phentsize * phnum, size, "program header table")
    headers = [PHDR.unpack_from(table, i * phentsize) for i in range(phnum)]
    loads = [h for h in headers if h[0] == PT_LOAD and h[5] and h[2] != 2 ** 64 - 1]
    needed = max((h[2] + h[5] for h in loads), default=0)
    if needed > size:
        raise DumpError(f"{path} is truncated: it has {size} bytes, its memory segments need {needed}")
    notes = b"".join(_exact(fd, path, h[2], h[5], size, "note segment") for h in headers if h[0] == PT_NOTE)
    cpus = cpus_from_notes(path, notes)
    paged = any(h[3] != h[4] for h in loads)        # without -p, QEMU writes p_vaddr = p_paddr
    runs = merge_runs([RamRun(h[4], h[5], h[2]) for h in loads])
    return ElfDump(path, "ELF with paging (-p)" if paged else "ELF", cpus, runs, fd)


def _exact(fd: int, path: str, offset: int, length: int, size: int, what: str) -> bytes:
    if offset + length > size:
        raise DumpError(f"{path} is truncated: the {what} needs bytes {offset}-{offset + length}, "
                        f"the file has {size}")
    return os.pread(fd, length, offset)


def merge_runs(runs: list[RamRun]) -> list[RamRun]:
    """Runs sorted by physical address with overlaps cut away (a -p dump stores each page
    once but describes it once per virtual alias) and neighbours stored together joined."""
    out: list[RamRun] = []
    for run in sorted(runs, key=lambda r: (r.start, -r.size)):
        if out and run.start < out[-1].end:
            cut = out[-1].end - run.start
            if cut >= run.size:
                continue
            run = RamRun(run.start + cut, run.size - cut, run.offset + cut)
        if out and run.start == out[-1].end and run.offset == out[-1].offset + out[-1].size:
            out[-1] = RamRun(out[-1].start, out[-1].size + run.size, out[-1].offset)
        else:
            out.append(run)
    return out


def iter_notes(data: bytes):
    """(name, type, descriptor) of each ELF note, names and descriptors 4-byte aligned."""
    pos = 0
    while pos + NHDR.size <= len(data):
        namesz, descsz, kind = NHDR.unpack_from(data, pos)
        name_at = pos + NHDR.size
        desc_at = name_at + _align4(namesz)
        if desc_at + descsz > len(data):
            return
        yield data[name_at:name_at + namesz].rstrip(b"\0"), kind, data[desc_at:desc_at + descsz]
        pos = desc_at + _align4(descsz)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def cpus_from_notes(path: str, notes: bytes) -> list[VcpuState]:
    """Each vCPU's registers: the general ones from its NT_PRSTATUS, segment bases and
    control registers from its QEMU note (both in CPU order)."""
    prstatus, qemu = [], []
    for name, kind, desc in iter_notes(notes):
        if name == b"CORE" and kind == NT_PRSTATUS and len(desc) >= PRSTATUS_REGS + 8 * len(PRSTATUS_REG_NAMES):
            prstatus.append(desc)
        elif name == b"QEMU" and kind == 0:
            qemu.append(desc)
    if not qemu:
        raise DumpError(f"{path} has no QEMU CPU-state note: it is not a dump-guest-memory file "
                        "(a process core dump?)")
    if len(qemu) > MAX_CPUS:
        raise DumpError(f"{path} claims {len(qemu)} vCPUs")
    cpus = []
    for i, state in enumerate(qemu):
        regs = qemu_state_registers(path, state)
        if i < len(prstatus):
            regs.update(prstatus_registers(prstatus[i]))
        cpus.append(VcpuState(i, regs))
    return cpus


def prstatus_registers(desc: bytes) -> dict[str, int]:
    values = struct.unpack_from(f"<{len(PRSTATUS_REG_NAMES)}Q", desc, PRSTATUS_REGS)
    regs = dict(zip(PRSTATUS_REG_NAMES, values))
    del regs["orig_rax"]
    return regs


def qemu_state_registers(path: str, desc: bytes) -> dict[str, int]:
    if len(desc) < QEMU_KERNEL_GS_AT:
        raise DumpError(f"{path} has a QEMU CPU-state note of {len(desc)} bytes, shorter than version 1's")
    version, size = struct.unpack_from("<II", desc)
    if version != QEMU_STATE_VERSION:
        raise DumpError(f"{path} has QEMU CPU-state version {version}; version {QEMU_STATE_VERSION} is known")
    regs = dict(zip(QEMU_REG_NAMES, struct.unpack_from(f"<{len(QEMU_REG_NAMES)}Q", desc, 8)))
    for i, name in enumerate(QEMU_SEGMENTS):
        selector, limit, _flags, _pad, base = QEMU_SEGMENT.unpack_from(desc, QEMU_SEGMENTS_AT + i * QEMU_SEGMENT.size)
        if name in ("cs", "ds", "es", "fs", "gs", "ss"):
            regs[name] = selector
            regs[f"{name}_base"] = base
        else:
            regs[f"{name}_base"], regs[f"{name}_limit"] = base, limit
    for i, value in enumerate(struct.unpack_from("<5Q", desc, QEMU_CR_AT)):
        regs[f"cr{i}"] = value
    if min(size, len(desc)) >= QEMU_KERNEL_GS_AT + 8:
        regs["k_gs_base"] = struct.unpack_from("<Q", desc, QEMU_KERNEL_GS_AT)[0]
    regs["efer"] = EFER_LONG_MODE
    return regs
