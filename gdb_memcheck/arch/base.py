"""The shape every CPU architecture fills in: its C calls, its DWARF registers, where
Linux saves a thread's user registers and thread pointer, the translation regime a
stopped vCPU is in, and where the kernel keeps memory that needs no page walk."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from ..target import StructLayout, Target
from .pagetables import Leaf, LeafMemo, PhysReader, Translation

FULL = 1 << 64


@dataclass(frozen=True)
class Calls:
    """A C function call as the ABI makes it, seen at the callee's first instruction."""

    args: tuple[str, ...]          # integer argument registers, in order
    result: str                    # where the return value is at the return site
    sp: str
    pc: str
    frame_pointer: str
    link: str | None               # the return-address register (AArch64's x30); None: it is at [sp]
    scratch: tuple[str, ...]       # registers a call clobbers: part of a repeated hit's signature
    sp_after_return: int           # sp at the return site minus sp at entry (x86-64's ret pops 8)
    returns: tuple[str, ...] = ()  # mnemonics (as objdump prints them) that return from a function
    jumps: tuple[str, ...] = ()    # direct and conditional jumps: a tail call when they leave the function
    # for a stop inside a function's first instructions (a watchpoint on what it reads first):
    registers: tuple[tuple[str, ...], ...] = ()     # each argument register's names, as objdump prints them
    harmless: tuple[str, ...] = ()                  # mnemonic prefixes that write at most their last operand
    implicit: tuple[tuple[str, tuple[str, ...]], ...] = ()      # mnemonics that also write these registers


@dataclass(frozen=True)
class Dwarf:
    """DWARF register numbers the unwinder keeps (System V x86-64 psABI; AArch64 DWARF ABI)."""

    return_address: int            # the return-address column of the CFI
    sp: int
    frame_pointer: int
    callee_saved: tuple[int, ...]


class Regime(Protocol):
    """How a stopped vCPU translates virtual addresses, read from its control registers."""

    levels: int                    # 0: no translation (paging or the MMU is off)
    description: str               # what the load line says: "4-level paging", "MMU off"
    special: int                   # the entry bit Linux marks pages without a struct page with

    def translate(self, read: PhysReader, root: int, va: int) -> Translation:
        """Walk from `root` (the table of the half `va` is in) for `va`."""

    def leaves(self, read: PhysReader, root: int, start: int = 0, end: int = FULL, max_tables: int = 1 << 18,
               merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
        """Every present leaf of `root`'s tables overlapping [start, end)."""

    def untag(self, va: int) -> int:
        """The address the tables translate: `va` without a tag the CPU ignores (AArch64 TBI)."""

    def reject(self, va: int) -> str | None:
        """Why no table can translate `va` (not canonical, outside every half), or None."""


@dataclass(frozen=True)
class Span:
    """A table and the part of the address space it maps."""

    root: int
    start: int
    end: int


@dataclass(frozen=True)
class KernelMap:
    """Kernel memory that translates by an offset (the direct or linear map, the kernel
    image), and the physical address of the kernel's own top-level table."""

    windows: tuple[tuple[int, int, int], ...]   # (start, end, offset): physical = (va + offset) mod 2**64
    kernel_root: int
    direct_map: int | None = None               # where physical 0 would be in the direct map; None: not found

    def physical(self, va: int) -> int | None:
        for start, end, offset in self.windows:
            if start <= va < end:
                return (va + offset) % FULL
        return None


@dataclass(frozen=True)
class Arch:
    """One CPU architecture as the core needs it."""

    name: str
    calls: Calls
    dwarf: Dwarf
    syscall_prefix: str            # pt_regs syscall wrappers: __x64_sys_munmap, __arm64_sys_munmap
    syscall_args: tuple[str, ...]  # the saved user registers holding a syscall's arguments
    thread_pointer: str            # the task_struct member holding the user thread pointer
    tls_below: int                 # glibc's static TLS: bytes below the thread pointer to search
    tls_above: int                 # and bytes above it
    user_top: int                  # user addresses lie below this
    percpu_at_zero: bool           # per-CPU symbols are offsets (x86-64 links .data..percpu at 0)
    pt_regs: Callable[[StructLayout], dict[str, int]]           # saved user registers: name -> offset
    regime: Callable[[Target, "int | None"], Regime]            # the vCPU's translation regime
    current_spans: Callable[[Target, "int | None"], list[Span]]  # the tables the vCPU translates with
    process_spans: Callable[[int, int], list[Span]]             # (mm->pgd, kernel root) -> a process's
    kernel_spans: Callable[[int], list[Span]]                   # the kernel's own table and what it maps
    table_of: Callable[[int], int]                              # a CR3/TTBR value -> its table's address
    kernel_map: Callable[[Target, Regime], KernelMap]           # needs the kernel's symbols
    slide: Callable[[Target], "int | None"]                     # KASLR: the image's distance from its link address

    def user_registers(self, layout: StructLayout) -> dict[str, int]:
        """Offsets in struct pt_regs of the user registers saved on kernel entry, by name."""
        return self.pt_regs(layout)

    def root_for(self, va: int, spans: list[Span]) -> int:
        """The table among `spans` that maps `va` (the first when none claims it)."""
        return next((s.root for s in spans if s.start <= va < s.end), spans[0].root)
