"""What differs between CPU architectures, chosen once at connect and handed to the
walkers: the C calling convention and the registers breakpoints read, the unwinder's
DWARF register numbers, where the kernel saves a thread's user registers and thread
pointer, where glibc's static TLS lies, the translation regime and where the kernel
keeps memory that needs no walk.  Each CPU's details live in its subpackage."""
from __future__ import annotations

from ..target import TargetError
from .arm64 import AARCH64
from .base import Arch, Calls, Dwarf, KernelMap, Regime, Span
from .x86_64 import X86_64

ARCHES = {X86_64.name: X86_64, AARCH64.name: AARCH64}
__all__ = ["AARCH64", "ARCHES", "Arch", "Calls", "Dwarf", "KernelMap", "Regime", "Span", "X86_64", "for_gdb_name"]


def for_gdb_name(name: str) -> Arch:
    """The architecture gdb names ("i386:x86-64", "aarch64")."""
    if "x86-64" in name or name == X86_64.name:
        return X86_64
    if name.startswith(AARCH64.name):
        return AARCH64
    raise TargetError(f"the guest's architecture {name!r} is not supported (x86-64 and AArch64 are)")
