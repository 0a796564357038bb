"""The three ways to read guest-physical memory, fastest first.

1. qemu-mem: pread from the QEMU process, when it runs on this machine (core: physmem.py).
2. phymemmode: QEMU's gdbstub switched to physical addresses (Qqemu.PhyMemMode, QEMU >= 4.1).
3. directmap: a virtual read through the kernel's direct map (needs the kernel running).

QEMU's HMP is reached through gdb's `monitor` command; this module asks it two
things (`info mtree -f`, `gpa2hva`) once per connection, never on a hot path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gdb

from ..arch import Arch
from ..qemu import physmem
from ..target import MemoryReadError, Target, TargetError

PATHS = ("qemu-mem", "phymemmode", "directmap")


@dataclass
class PhysicalPath:
    """A named physical reader and a line saying where it reads from."""

    name: str
    read: Callable[[int, int], bytes]
    detail: str = ""
    close: Callable[[], None] = lambda: None      # what it holds open (QEMU's memory file)
    ram_end: int = 0                              # end of guest RAM, where the path knows it


def _connection():
    conn = gdb.selected_inferior().connection
    if conn is None:
        raise TargetError("not connected to a guest (target remote HOST:PORT)")
    return conn


def _monitor(command: str) -> str:
    return gdb.execute(f"monitor {command}", to_string=True)


def qemu_mem_path() -> PhysicalPath:
    """Locate guest RAM inside the QEMU process serving this connection."""
    conn = _connection()
    port = physmem.port_of(getattr(conn, "details", "") or "")
    pid = physmem.listening_pid(port) if port else None
    if pid is None:
        raise TargetError("the QEMU serving this connection is not a process on this machine")
    ranges = physmem.parse_flat_ram(_monitor("info mtree -f"))
    if not ranges:
        raise TargetError("QEMU's memory tree lists no RAM")
    region_hva = {}
    for rng in ranges:
        if rng.region not in region_hva:
            hva = physmem.parse_gpa2hva(_monitor(f"gpa2hva {rng.start:#x}"))
            region_hva[rng.region] = hva - rng.offset
    try:
        mem = physmem.QemuPhysicalMemory(pid, ranges, region_hva)
    except OSError as e:
        raise TargetError(f"cannot open QEMU's memory (pid {pid}): {e.strerror}") from None
    return PhysicalPath("qemu-mem", mem.read, f"QEMU pid {pid}", mem.close, max(r.end + 1 for r in ranges))


def phymemmode_path() -> PhysicalPath:
    """Read through the gdbstub with QEMU's physical-memory mode on for each read."""
    conn = _connection()
    if b"PhyMemMode" not in bytes(conn.send_packet("qqemu.Supported")):
        raise TargetError("this QEMU's gdbstub has no PhyMemMode")

    def read(addr: int, size: int) -> bytes:
        conn.send_packet("Qqemu.PhyMemMode:1")
        try:
            return bytes(gdb.selected_inferior().read_memory(addr, size))
        except (gdb.MemoryError, gdb.error) as e:
            raise MemoryReadError("physical", addr, size, str(e)) from None
        finally:
            conn.send_packet("Qqemu.PhyMemMode:0")

    return PhysicalPath("phymemmode", read, "gdbstub")


def directmap_path(target: Target, arch: Arch) -> PhysicalPath:
    """Read physical memory as kernel virtual memory in the direct (linear) map."""
    start, _end, offset = arch.kernel_map(target, arch.regime(target, None)).windows[0]
    base = (start - ((start + offset) % (1 << 64))) % (1 << 64)       # the virtual address of physical 0

    def read(addr: int, size: int) -> bytes:
        try:
            return target.read_virtual((base + addr) % (1 << 64), size)
        except MemoryReadError as e:
            raise MemoryReadError("physical", addr, size, f"through the direct map: {e}") from None

    return PhysicalPath("directmap", read, f"direct map at {base:#x}")


def open_path(name: str, target: Target, arch: Arch) -> PhysicalPath:
    """One path by name; TargetError says why it is not available here."""
    if name == "qemu-mem":
        return qemu_mem_path()
    if name == "phymemmode":
        return phymemmode_path()
    if name == "directmap":
        return directmap_path(target, arch)
    raise TargetError(f"unknown physical read path {name!r}; one of: {', '.join(PATHS)}")


def first_available(target: Target, arch: Arch, order: tuple[str, ...] = PATHS) -> tuple[PhysicalPath, list[str]]:
    """The first path that opens, and why each earlier one did not."""
    skipped = []
    for name in order:
        try:
            return open_path(name, target, arch), skipped
        except TargetError as e:
            skipped.append(f"{name}: {e}")
    raise TargetError("no physical read path works: " + "; ".join(skipped))
