"""Guest-physical memory read straight from the QEMU process on this machine.

QEMU keeps guest RAM in its own address space.  `info mtree -f` says which
guest-physical ranges are RAM and in which memory region, `gpa2hva` where a region
starts in QEMU, and /proc/<qemu>/mem reads it with one pread: ~100x faster than
the gdbstub's 4 KiB packets.  Everything here is plain procfs and text parsing.
"""
from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..target import MemoryReadError

_MTREE_LINE = re.compile(
    r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (ram|rom|romd)\): (\S+)(?: @([0-9a-f]+))?", re.M)
_GPA2HVA = re.compile(r"Host virtual address for (0x[0-9a-f]+) \((\S+)\) is (0x[0-9a-f]+)")


@dataclass(frozen=True)
class RamRange:
    """A guest-physical range backed by host memory: [start, end] inclusive, at `offset` in `region`."""

    start: int
    end: int
    region: str
    offset: int


def parse_flat_ram(mtree_text: str) -> list[RamRange]:
    """RAM/ROM ranges of the first flat view ("memory" address space) of `info mtree -f`."""
    views = re.split(r"^FlatView #\d+", mtree_text, flags=re.M)
    view = next((v for v in views[1:] if re.search(r'AS "memory"', v)), views[1] if len(views) > 1 else "")
    ranges = []
    for m in _MTREE_LINE.finditer(view):
        start, end, _kind, region, offset = m.groups()
        ranges.append(RamRange(int(start, 16), int(end, 16), region, int(offset or "0", 16)))
    return sorted(ranges, key=lambda r: r.start)


def parse_gpa2hva(text: str) -> int:
    """The host address in QEMU's `gpa2hva` answer; ValueError if it refused."""
    m = _GPA2HVA.search(text)
    if not m:
        raise ValueError(f"unexpected gpa2hva answer: {text.strip()!r}")
    return int(m.group(3), 16)


class QemuPhysicalMemory:
    """Reads guest-physical memory through /proc/<qemu pid>/mem."""

    name = "qemu-mem"

    def __init__(self, pid: int, ranges: list[RamRange], region_hva: dict[str, int]) -> None:
        self.pid = pid
        self._ranges = ranges
        self._starts = [r.start for r in ranges]
        self._region_hva = region_hva
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def close(self) -> None:
        """Let QEMU's memory file go (a second close does nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, addr: int, size: int) -> bytes:
        chunks = []
        pos, end = addr, addr + size
        while pos < end:
            rng = self._range_at(pos)
            if rng is None:
                raise MemoryReadError("physical", addr, size, f"{pos:#x} is not guest RAM")
            n = min(end, rng.end + 1) - pos
            hva = self._region_hva[rng.region] + rng.offset + (pos - rng.start)
            try:
                data = os.pread(self._fd, n, hva)
            except OSError as e:
                raise MemoryReadError("physical", addr, size, f"QEMU process memory: {e.strerror}") from e
            if len(data) != n:
                raise MemoryReadError("physical", addr, size, "short read from the QEMU process")
            chunks.append(data)
            pos += n
        return b"".join(chunks)

    def _range_at(self, addr: int) -> RamRange | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._ranges[i].start <= addr <= self._ranges[i].end:
            return self._ranges[i]
        return None


def listening_pid(port: int, proc: Path = Path("/proc")) -> int | None:
    """Pid of the process on this machine listening on TCP `port`, if any is visible."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    return _pid_owning(inodes, proc) if inodes else None


def _pid_owning(links: set[str], proc: Path) -> int | None:
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in links:
                    return int(entry.name)
            except OSError:
                continue
    return None


def port_of(connection_details: str) -> int | None:
    """The TCP port in a gdb remote connection string (":1234", "localhost:1234", "tcp:h:1234")."""
    m = re.search(r":(\d+)$", connection_details or "")
    return int(m.group(1)) if m else None
