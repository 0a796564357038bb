"""The small interface every walker reads the guest through, and its errors.

A `Target` is implemented live by the gdb frontend and, in unit tests, by
synthetic or recorded memory; nothing here imports gdb.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Mapping, Protocol


class TargetError(Exception):
    """Something the guest could not give us; the message is shown to the user as is."""


class MemoryReadError(TargetError):
    """A read of guest memory failed (unmapped, outside RAM, target not running)."""

    def __init__(self, space: str, addr: int, size: int, why: str = "") -> None:
        self.space, self.addr, self.size = space, addr, size
        tail = f": {why}" if why else ""
        super().__init__(f"cannot read {size} bytes of {space} memory at {addr:#x}{tail}")


class PartialError(TargetError):
    """A walk stopped part way: `partial` holds what it found before the error."""

    def __init__(self, message: str, partial: list) -> None:
        super().__init__(message)
        self.partial = partial


class SymbolError(TargetError):
    """A symbol or type the kernel's debug info does not have."""


@dataclass(frozen=True)
class Field:
    """One member of a struct: byte offset from the struct's start and size in bytes."""

    offset: int
    size: int


@dataclass(frozen=True)
class StructLayout:
    """Offsets of a struct's members, nested members flattened with dots ("name.release")."""

    name: str
    size: int
    fields: Mapping[str, Field] = field(default_factory=dict)

    def has(self, member: str) -> bool:
        return member in self.fields

    def offset(self, member: str) -> int:
        return self.member(member).offset

    def member(self, member: str) -> Field:
        try:
            return self.fields[member]
        except KeyError:
            raise SymbolError(f"{self.name} has no member {member!r} in this kernel") from None


class Target(Protocol):
    """What the core needs from a stopped guest."""

    def read_virtual(self, addr: int, size: int) -> bytes:
        """Bytes at a virtual address, translated by the CPU's current page tables."""

    def read_physical(self, addr: int, size: int) -> bytes:
        """Bytes at a guest-physical address."""

    def register(self, name: str, cpu: int | None = None) -> int:
        """A register of vCPU `cpu` (0-based; None: the selected one): rip, cr3, efer, ..."""

    def symbol_address(self, name: str) -> int:
        """Run-time address of a kernel symbol (already relocated for KASLR)."""

    def function_pointer(self, name: str) -> int:
        """What a C pointer to kernel function `name` holds: its ELF symbol, which on arm64 sits
        before the patchable-entry NOPs that the debug info's start of the function skips."""

    def layout(self, type_name: str) -> StructLayout:
        """Member offsets of a type, e.g. "struct task_struct"."""

    def symbol_size(self, name: str) -> int:
        """Size in bytes of a kernel variable (e.g. init_stack: THREAD_SIZE)."""

    def has_symbol(self, name: str) -> bool:
        """Whether the kernel's debug info has this variable or out-of-line function."""

    def has_function(self, name: str) -> bool:
        """Whether the debug info has this function, out of line or only inlined (a probe
        for static inline helpers that mark a kernel change)."""

    def cpu_count(self) -> int:
        """Number of vCPUs."""

    def enum_values(self, type_name: str) -> Mapping[str, int]:
        """Name -> value of an enum's constants, e.g. "enum pageflags" (PG_slab, PG_head)."""

    def write_virtual(self, addr: int, data: bytes) -> None:
        """Store bytes at a virtual address of the stopped vCPU's context (leak tracking's
        cooperative mode tells the preload library how far its ring was read)."""


def u64(data: bytes, offset: int = 0) -> int:
    return struct.unpack_from("<Q", data, offset)[0]


def u32(data: bytes, offset: int = 0) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def i32(data: bytes, offset: int = 0) -> int:
    return struct.unpack_from("<i", data, offset)[0]


def read_u64(target: Target, addr: int) -> int:
    return u64(target.read_virtual(addr, 8))


def cstring(data: bytes) -> str:
    """A NUL-terminated C string from a fixed-size buffer."""
    return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
