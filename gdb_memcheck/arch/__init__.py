"""What differs between CPU architectures, chosen once at connect and handed to the
walkers: the C calling convention and the registers breakpoints read, the unwinder's
DWARF register numbers, where the kernel saves a thread's user registers and thread
pointer, and where glibc's static TLS lies.  Paging lives in each CPU's subpackage."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..target import StructLayout, TargetError


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


@dataclass(frozen=True)
class Dwarf:
    """DWARF register numbers the unwinder keeps (System V x86-64 psABI; AArch64 DWARF ABI)."""

    return_address: int            # the return-address column of the CFI
    sp: int
    frame_pointer: int
    callee_saved: tuple[int, ...]


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
    pt_regs: Callable[[StructLayout], dict[str, int]]     # saved user registers: name -> offset in pt_regs

    def user_registers(self, layout: StructLayout) -> dict[str, int]:
        """Offsets in struct pt_regs of the user registers saved on kernel entry, by name."""
        return self.pt_regs(layout)


def _x86_pt_regs(layout: StructLayout) -> dict[str, int]:
    return {name: layout.offset(name) for name in ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9",
                                                  "r8", "ax", "cx", "dx", "si", "di", "ip", "sp")}


def _arm64_pt_regs(layout: StructLayout) -> dict[str, int]:
    regs = layout.offset("regs")           # u64 regs[31], then sp, pc (struct user_pt_regs)
    return {**{f"x{i}": regs + 8 * i for i in range(31)}, "sp": layout.offset("sp"), "ip": layout.offset("pc")}


X86_64_NAME, AARCH64_NAME = "x86_64", "aarch64"

X86_64 = Arch(
    X86_64_NAME,
    Calls(args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"), result="rax", sp="rsp", pc="rip", frame_pointer="rbp",
          link=None, scratch=("rax", "r8", "r9", "r10", "r11"), sp_after_return=8),
    Dwarf(return_address=16, sp=7, frame_pointer=6, callee_saved=(3, 6, 12, 13, 14, 15)),
    syscall_prefix="__x64_sys_", syscall_args=("di", "si", "dx", "r10", "r8", "r9"),
    thread_pointer="thread.fsbase", tls_below=4096, tls_above=0, user_top=1 << 47, pt_regs=_x86_pt_regs)

AARCH64 = Arch(
    AARCH64_NAME,
    Calls(args=("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"), result="x0", sp="sp", pc="pc",
          frame_pointer="x29", link="x30", scratch=("x9", "x10", "x11", "x12", "x13"), sp_after_return=0),
    Dwarf(return_address=30, sp=31, frame_pointer=29, callee_saved=tuple(range(19, 31))),
    syscall_prefix="__arm64_sys_", syscall_args=("x0", "x1", "x2", "x3", "x4", "x5"),
    thread_pointer="thread.uw.tp_value", tls_below=0, tls_above=4096, user_top=1 << 48, pt_regs=_arm64_pt_regs)

ARCHES = {X86_64_NAME: X86_64, AARCH64_NAME: AARCH64}


def for_gdb_name(name: str) -> Arch:
    """The architecture gdb names ("i386:x86-64", "aarch64")."""
    if "x86-64" in name or name == X86_64_NAME:
        return X86_64
    if name.startswith(AARCH64_NAME):
        return AARCH64
    raise TargetError(f"the guest's architecture {name!r} is not supported (x86-64 and AArch64 are)")
