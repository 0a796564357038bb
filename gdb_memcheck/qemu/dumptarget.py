"""A Target over a dump: guest memory and vCPU registers from the file, the kernel's
symbols and types from the vmlinux (another Target, gdb's).  Every view that reads
through the Target protocol works on it unchanged, with QEMU gone."""
from __future__ import annotations

from typing import Mapping

from ..arch.x86_64 import paging
from ..target import MemoryReadError, StructLayout, Target, TargetError
from .dump import GuestDump

PAGE = 4096


class DumpTarget:
    """Implements gdb_memcheck.target.Target over a GuestDump and the vmlinux's debug info.
    Virtual addresses are translated through the selected vCPU's page tables (its CR3 in
    the dump), as the vCPU itself would."""

    def __init__(self, dump: GuestDump, debug_info: Target, cpu: int = 0) -> None:
        self.dump, self.debug_info = dump, debug_info
        self.cpu = cpu

    # -- what the dump holds ------------------------------------------------------
    def read_physical(self, addr: int, size: int) -> bytes:
        return self.dump.read_physical(addr, size)

    def read_virtual(self, addr: int, size: int) -> bytes:
        levels = self._levels()
        root = paging.cr3_table(self.register("cr3"))
        out, pos, end = [], addr, addr + size
        while pos < end:
            n = min(end, (pos // PAGE + 1) * PAGE) - pos
            try:
                physical = paging.translate(self.read_physical, root, pos, levels).physical
                out.append(self.read_physical(physical, n))
            except (paging.PageWalkError, MemoryReadError) as e:
                raise MemoryReadError("virtual", addr, size, str(e)) from None
            pos += n
        return b"".join(out)

    def write_virtual(self, addr: int, data: bytes) -> None:
        raise TargetError(f"cannot write {len(data)} bytes at {addr:#x}: a dump is read-only")

    def _levels(self) -> int:
        mode = paging.paging_mode(self.register("cr0"), self.register("cr4"), self.register("efer"))
        if mode.levels == 0:
            raise TargetError(f"vCPU {self.cpu} of the dump has {mode.value}: virtual addresses cannot be read")
        return mode.levels

    def register(self, name: str, cpu: int | None = None) -> int:
        number = self.cpu if cpu is None else cpu
        if not 0 <= number < len(self.dump.cpus):
            raise TargetError(f"no vCPU {number}: the dump has {len(self.dump.cpus)}")
        try:
            return self.dump.cpus[number].registers[name]
        except KeyError:
            raise TargetError(f"the dump does not record ${name}") from None

    def cpu_count(self) -> int:
        return len(self.dump.cpus)

    def selected_cpu(self) -> int:
        return self.cpu

    # -- what the vmlinux says ----------------------------------------------------
    def symbol_address(self, name: str) -> int:
        return self.debug_info.symbol_address(name)

    def function_pointer(self, name: str) -> int:
        return self.debug_info.function_pointer(name)

    def layout(self, type_name: str) -> StructLayout:
        return self.debug_info.layout(type_name)

    def symbol_size(self, name: str) -> int:
        return self.debug_info.symbol_size(name)

    def enum_values(self, type_name: str) -> Mapping[str, int]:
        return self.debug_info.enum_values(type_name)

    def has_symbol(self, name: str) -> bool:
        return self.debug_info.has_symbol(name)

    def has_function(self, name: str) -> bool:
        return self.debug_info.has_function(name)

    def forget_debug_info(self) -> None:
        forget = getattr(self.debug_info, "forget_debug_info", None)
        if forget is not None:
            forget()
