"""The preload library's ring read from outside: a header this code knows, records taken in
order up to the first one not yet complete, and records the library overwrote counted, never
passed over silently.  The layout is the one preload/memcheck-preload.c writes."""
from __future__ import annotations

import struct

import pytest

from gdb_memcheck.leakcheck import preload_ring
from gdb_memcheck.leakcheck.preload_ring import HEADER, MAGIC, RECORD, VERSION
from gdb_memcheck.target import TargetError

RING, RECORDS, STACK = 0x1000, 0x2000, 16


class Memory:
    def __init__(self) -> None:
        self.bytes = bytearray(0x10000)

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.bytes[addr:addr + size])

    def header(self, capacity: int, head: int, tail: int = 0, version: int = VERSION, magic: int = MAGIC) -> None:
        self.bytes[RING:RING + HEADER.size] = HEADER.pack(magic, version, RECORD.size + STACK, capacity, STACK,
                                                          RECORDS, head, tail, 0, 0)

    def record(self, capacity: int, n: int, op: str, args: tuple = (), result: int = 0, seq: int | None = None) -> None:
        slot = RECORDS + (n % capacity) * (RECORD.size + STACK)
        values = (*args, 0, 0, 0, 0)[:4]
        self.bytes[slot:slot + RECORD.size] = RECORD.pack(n + 1 if seq is None else seq,
                                                          preload_ring.OPERATIONS.index(op), 7, *values, result,
                                                          0x7000 + n, 0, STACK)
        self.bytes[slot + RECORD.size:slot + RECORD.size + STACK] = bytes(range(n, n + STACK))


def test_the_tail_offset_is_where_the_header_keeps_the_debuggers_tail():
    fields = HEADER.unpack(HEADER.pack(1, 2, 3, 4, 5, 6, 7, 0xABCD, 9, 10))
    assert struct.unpack_from("<Q", HEADER.pack(*fields), preload_ring.TAIL_OFFSET)[0] == 0xABCD


def test_a_header_without_the_magic_or_of_another_version_is_refused():
    mem = Memory()
    mem.header(4, 0, magic=0)
    with pytest.raises(TargetError, match="no preload ring"):
        preload_ring.ring(mem.read, RING)
    mem.header(4, 0, version=VERSION + 1)
    with pytest.raises(TargetError, match="no preload ring"):
        preload_ring.ring(mem.read, RING)


def test_a_tail_beyond_the_head_is_a_corrupt_ring():
    mem = Memory()
    mem.header(4, 2, tail=3)
    with pytest.raises(TargetError, match="corrupt"):
        preload_ring.ring(mem.read, RING)


def test_records_are_read_in_order_with_their_arguments_and_stack_copy():
    mem = Memory()
    mem.header(4, 3)
    for n, (op, args, result) in enumerate([("malloc", (40,), 0x5000), ("calloc", (3, 8), 0x5040),
                                            ("free", (0x5000,), 0)]):
        mem.record(4, n, op, args, result)
    calls, lost = preload_ring.calls(mem.read, preload_ring.ring(mem.read, RING), 1)
    assert lost == 0
    assert [(c.seq, c.via, c.args[:2], c.result) for c in calls] == [(1, "calloc", (3, 8), 0x5040),
                                                                     (2, "free", (0x5000, 0), 0)]
    assert calls[0].read(0x7001 + 4, 2) == bytes((5, 6))
    with pytest.raises(TargetError, match="outside"):
        calls[0].read(0x7001 + STACK - 1, 2)


def test_a_record_not_yet_complete_ends_the_batch():
    mem = Memory()
    mem.header(4, 3)
    mem.record(4, 0, "malloc", (1,), 0x5000)
    mem.record(4, 1, "malloc", (2,), 0x5020, seq=0)          # its seq is written last
    mem.record(4, 2, "malloc", (3,), 0x5040)
    calls, _ = preload_ring.calls(mem.read, preload_ring.ring(mem.read, RING), 0)
    assert [c.seq for c in calls] == [0]


def test_records_overwritten_before_they_were_read_are_counted():
    mem = Memory()
    mem.header(4, 10)
    for n in range(6, 10):
        mem.record(4, n, "malloc", (n,), 0x5000 + n)
    calls, lost = preload_ring.calls(mem.read, preload_ring.ring(mem.read, RING), 3)
    assert lost == 3
    assert [c.args[0] for c in calls] == [6, 7, 8, 9]


def test_an_unknown_operation_is_a_corrupt_record():
    mem = Memory()
    mem.header(4, 1)
    mem.record(4, 0, "malloc")
    slot = RECORDS
    mem.bytes[slot + 8:slot + 12] = struct.pack("<I", len(preload_ring.OPERATIONS))
    with pytest.raises(TargetError, match="corrupt"):
        preload_ring.calls(mem.read, preload_ring.ring(mem.read, RING), 0)
