"""QEMU memory-tree parsing, reading 'guest RAM' from a real process, and the KASLR slide."""
from __future__ import annotations

import ctypes
import os
import socket
import struct
from pathlib import Path

import pytest

from gdb_memcheck import kaslr, physmem
from gdb_memcheck.target import MemoryReadError

DATA = Path(__file__).parent / "data"


def test_flat_ram_comes_from_the_memory_address_space_view_only():
    ranges = physmem.parse_flat_ram((DATA / "qemu72-info-mtree-f.txt").read_text())
    assert [(hex(r.start), hex(r.end), r.region, hex(r.offset)) for r in ranges] == [
        ("0x0", "0xc2fff", "pc.ram", "0x0"),
        ("0xc3000", "0xe7fff", "pc.ram", "0xc3000"),
        ("0xe8000", "0xeffff", "pc.ram", "0xe8000"),
        ("0xf0000", "0xfffff", "pc.ram", "0xf0000"),
        ("0x100000", "0x1fffffff", "pc.ram", "0x100000"),
        ("0xfffc0000", "0xffffffff", "pc.bios", "0x0"),
    ]


def test_gpa2hva_answers_are_parsed_and_refusals_raise():
    assert physmem.parse_gpa2hva("Host virtual address for 0x100000 (pc.ram) is 0x7f4bbff00000\n") == 0x7F4BBFF00000
    with pytest.raises(ValueError):
        physmem.parse_gpa2hva("No memory is mapped at address 0xdead0000\n")


def test_physical_reads_go_to_the_host_process_memory_at_the_region_offsets():
    ram = ctypes.create_string_buffer(bytes(range(256)) * 32)          # 8 KiB of "guest RAM"
    base = ctypes.addressof(ram)
    ranges = [physmem.RamRange(0x0, 0xFFF, "ram", 0x0), physmem.RamRange(0x1000, 0x1FFF, "ram", 0x1000)]
    mem = physmem.QemuPhysicalMemory(os.getpid(), ranges, {"ram": base})
    try:
        assert mem.read(0x10, 4) == bytes([0x10, 0x11, 0x12, 0x13])
        assert mem.read(0xFFE, 4) == bytes([0xFE, 0xFF, 0x00, 0x01])          # across two ranges
        with pytest.raises(MemoryReadError, match="not guest RAM"):
            mem.read(0x1FFE, 4)
    finally:
        mem.close()


def test_the_listening_process_of_a_port_is_found_and_a_free_port_has_none():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert physmem.listening_pid(port) == os.getpid()
    assert physmem.listening_pid(port) is None


@pytest.mark.parametrize("details, port", [(":1234", 1234), ("localhost:1234", 1234), ("tcp:127.0.0.1:5555", 5555),
                                           ("", None)])
def test_the_port_is_taken_from_gdbs_connection_string(details, port):
    assert physmem.port_of(details) == port


def gate(handler: int) -> bytes:
    """A long-mode interrupt gate pointing at `handler`."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, 0x10, 0, 0x8E, (handler >> 16) & 0xFFFF, handler >> 32, 0)


def test_kaslr_slide_is_the_gate_target_minus_the_link_address():
    link = 0xFFFF_FFFF_81A0_0AC0
    assert kaslr.idt_gate_target(gate(link)) == link
    assert kaslr.slide_from_gate(gate(link), link) == 0
    assert kaslr.slide_from_gate(gate(link + 0x2600000), link) == 0x2600000


@pytest.mark.parametrize("moved", [0x1234, -0x200000])
def test_an_implausible_slide_is_refused(moved):
    link = 0xFFFF_FFFF_81A0_0AC0
    with pytest.raises(ValueError, match="implausible slide"):
        kaslr.slide_from_gate(gate(link + moved), link)
