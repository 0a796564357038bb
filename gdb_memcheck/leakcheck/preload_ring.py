"""Leak tracking's cooperative mode, without gdb: the ring of malloc-family calls that the
preload library (preload/memcheck-preload.c) keeps inside a process, found through its
exported symbol and decoded here.  Each record is one call: operation, thread, arguments,
result, the stack pointer at its entry, the caller's frame pointer and a copy of the stack
above the entry, from which the allocation stack is unwound as at a breakpoint."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from ..target import TargetError
from . import alloctrack

RING_SYMBOL = "memcheck_preload_ring"
FULL_SYMBOL = "memcheck_preload_full"      # called when the ring is full: drain it there
MAGIC = 0x4B43_4548_434D_454D              # "MEMCHECK"
VERSION = 1
HEADER = struct.Struct("<QIIQQQQQQQ")      # magic, version, record_size, capacity, stack_bytes, records,
TAIL_OFFSET = 48                           # head, tail (the debugger writes it), dropped, full
RECORD = struct.Struct("<QII4QQQQQ")       # seq, op, tid, args[4], result, sp, fp, stack_len
OPERATIONS = tuple(alloctrack.FAMILY)      # the library's operation numbers, in FAMILY's order
MAX_CAPACITY = 1 << 24
MAX_STACK_BYTES = 1 << 16

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Ring:
    """A ring's header as read at one stop."""

    address: int
    record_size: int
    capacity: int
    stack_bytes: int
    records: int
    head: int
    tail: int
    dropped: int
    full: int


@dataclass(frozen=True)
class RingCall:
    """One recorded malloc-family call."""

    seq: int
    via: str
    tid: int
    args: tuple[int, int, int, int]
    result: int
    sp: int
    fp: int
    stack: bytes

    def read(self, address: int, size: int) -> bytes:
        """Stack memory as it was at the call, from the copy; outside it, an error."""
        offset = address - self.sp
        if offset < 0 or offset + size > len(self.stack):
            raise TargetError(f"{address:#x} is outside the {len(self.stack)} stack bytes recorded with the call")
        return self.stack[offset:offset + size]


def ring(read: Reader, address: int) -> Ring:
    """The ring header at `address`; a TargetError when it is not one this code reads."""
    magic, version, record_size, capacity, stack_bytes, records, head, tail, dropped, full = \
        HEADER.unpack(read(address, HEADER.size))
    if magic != MAGIC or version != VERSION:
        raise TargetError(f"no preload ring at {address:#x} (magic {magic:#x}, version {version})")
    if not 0 < capacity <= MAX_CAPACITY or not 0 <= stack_bytes <= MAX_STACK_BYTES \
            or record_size != RECORD.size + stack_bytes or tail > head:
        raise TargetError(f"the preload ring at {address:#x} is corrupt (capacity {capacity}, record size "
                          f"{record_size}, head {head}, tail {tail})")
    return Ring(address, record_size, capacity, stack_bytes, records, head, tail, dropped, full)


def calls(read: Reader, header: Ring, start: int) -> tuple[list[RingCall], int]:
    """The calls recorded from number `start` on, up to the first one not yet complete, and
    how many records were overwritten before they could be read (0 while the library keeps
    to the tail the debugger writes)."""
    first = max(start, header.head - header.capacity)
    found = []
    for n in range(first, header.head):
        slot = header.records + (n % header.capacity) * header.record_size
        seq, op, tid, a0, a1, a2, a3, result, sp, fp, length = RECORD.unpack(read(slot, RECORD.size))
        if seq != n + 1:
            break                           # written after this stop's snapshot of the header, or torn
        if op >= len(OPERATIONS) or length > header.stack_bytes:
            raise TargetError(f"preload ring record {n} at {slot:#x} is corrupt (operation {op}, {length} stack bytes)")
        stack = read(slot + RECORD.size, length)
        found.append(RingCall(n, OPERATIONS[op], tid, (a0, a1, a2, a3), result, sp, fp, stack))
    return found, first - start
