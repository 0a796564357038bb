"""QEMU guest-physical memory: `info mtree -f` and `gpa2hva` parsing, reads through /proc/<pid>/mem,
finding the process behind a gdbstub port."""
from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

import pytest

from gdb_memcheck.qemu.physmem import QemuPhysicalMemory, RamRange, listening_pid, parse_flat_ram, parse_gpa2hva, port_of
from gdb_memcheck.target import MemoryReadError

MTREE_QEMU72 = Path(__file__).parent / "data" / "qemu72_info_mtree_f.txt"


# --- info mtree -f ------------------------------------------------------------------------

def test_flat_ram_is_the_ram_and_rom_of_the_memory_address_space_view():
    assert parse_flat_ram(MTREE_QEMU72.read_text()) == [
        RamRange(0x0000_0000, 0x000C_2FFF, "pc.ram", 0x0),
        RamRange(0x000C_3000, 0x000E_7FFF, "pc.ram", 0x000C_3000),
        RamRange(0x000E_8000, 0x000E_FFFF, "pc.ram", 0x000E_8000),
        RamRange(0x000F_0000, 0x000F_FFFF, "pc.ram", 0x000F_0000),
        RamRange(0x0010_0000, 0x1FFF_FFFF, "pc.ram", 0x0010_0000),
        RamRange(0xFFFC_0000, 0xFFFF_FFFF, "pc.bios", 0x0),
    ]


def test_flat_ram_leaves_out_io_regions_and_the_io_and_smm_views():
    regions = {r.region for r in parse_flat_ram(MTREE_QEMU72.read_text())}
    assert regions == {"pc.ram", "pc.bios"}


def test_flat_ram_takes_the_memory_view_even_when_another_view_comes_first():
    smm_first = """FlatView #0
 AS "cpu-smm-0", root: memory
 Root memory region: memory
  0000000000000000-000000000009ffff (prio 0, ram): smram
FlatView #1
 AS "memory", root: system
 Root memory region: system
  0000000000000000-0000000007ffffff (prio 0, ram): pc.ram
  00000000fffc0000-00000000ffffffff (prio 0, romd): pc.bios
"""
    assert parse_flat_ram(smm_first) == [RamRange(0, 0x7FF_FFFF, "pc.ram", 0), RamRange(0xFFFC_0000, 0xFFFF_FFFF,
                                                                                        "pc.bios", 0)]


def test_flat_ram_of_text_without_flat_views_is_empty():
    assert parse_flat_ram("") == []
    assert parse_flat_ram("Error: no such command\n") == []


# --- gpa2hva --------------------------------------------------------------------------------

def test_gpa2hva_answer_gives_the_host_virtual_address():
    assert parse_gpa2hva("Host virtual address for 0x100000 (pc.ram) is 0x7f4bbff00000\r\n") == 0x7F4B_BFF0_0000


@pytest.mark.parametrize("answer", ["No memory is mapped at address 0xfec00000\r\n",
                                    "Memory at address 0xfee00000 is not RAM\r\n", ""])
def test_gpa2hva_error_text_raises_value_error(answer):
    with pytest.raises(ValueError, match="unexpected gpa2hva answer"):
        parse_gpa2hva(answer)


# --- reading guest RAM from a process -------------------------------------------------------

@pytest.fixture
def guest_ram():
    """This process as 'QEMU': a 16 KiB bytearray of RAM and an 8 KiB one of BIOS, with their addresses."""
    ram = bytearray(i % 251 for i in range(0x4000))
    bios = bytearray(b"\xEA" * 0x2000)
    bios[0x1FF0:0x1FF5] = b"\xEA\x5B\xE0\x00\xF0"
    hva = {"pc.ram": ctypes.addressof((ctypes.c_char * len(ram)).from_buffer(ram)),
           "pc.bios": ctypes.addressof((ctypes.c_char * len(bios)).from_buffer(bios))}
    ranges = [RamRange(0x0000, 0x0FFF, "pc.ram", 0x0000),
              RamRange(0x1000, 0x1FFF, "pc.ram", 0x1000),          # adjacent piece of the same region
              RamRange(0x8000, 0x9FFF, "pc.ram", 0x2000),          # after a gap, further into the region
              RamRange(0xFFFF_E000, 0xFFFF_FFFF, "pc.bios", 0x0)]
    mem = QemuPhysicalMemory(os.getpid(), ranges, hva)
    yield mem, ram, bios
    mem.close()


def test_a_read_inside_a_range_returns_the_host_bytes(guest_ram):
    mem, ram, _ = guest_ram
    assert mem.read(0x123, 16) == bytes(ram[0x123:0x133])


def test_a_read_across_two_adjacent_ranges_of_one_region_is_joined(guest_ram):
    mem, ram, _ = guest_ram
    assert mem.read(0xFF8, 16) == bytes(ram[0xFF8:0x1008])


def test_a_range_reads_its_region_at_the_range_offset(guest_ram):
    mem, ram, _ = guest_ram
    assert mem.read(0x8010, 8) == bytes(ram[0x2010:0x2018])
    assert mem.read(0x9FFC, 4) == bytes(ram[0x3FFC:0x4000])


def test_ranges_of_different_regions_read_their_own_host_memory(guest_ram):
    mem, _, _ = guest_ram
    assert mem.read(0xFFFF_FFF0, 5) == b"\xEA\x5B\xE0\x00\xF0"


def test_reads_see_host_memory_as_it_is_now(guest_ram):
    mem, ram, _ = guest_ram
    ram[0x40:0x44] = b"live"
    assert mem.read(0x40, 4) == b"live"


def test_a_read_of_a_gap_raises_memory_read_error(guest_ram):
    mem, _, _ = guest_ram
    with pytest.raises(MemoryReadError, match="0x2000 is not guest RAM") as err:
        mem.read(0x2000, 8)
    assert (err.value.space, err.value.addr, err.value.size) == ("physical", 0x2000, 8)


def test_a_read_running_from_ram_into_a_gap_raises_memory_read_error(guest_ram):
    mem, _, _ = guest_ram
    with pytest.raises(MemoryReadError, match="0x2000 is not guest RAM"):
        mem.read(0x1FF0, 0x20)


def test_a_read_below_the_first_range_raises_memory_read_error():
    ram = bytearray(0x1000)
    mem = QemuPhysicalMemory(os.getpid(), [RamRange(0x10_0000, 0x10_0FFF, "pc.ram", 0)],
                             {"pc.ram": ctypes.addressof((ctypes.c_char * len(ram)).from_buffer(ram))})
    try:
        with pytest.raises(MemoryReadError, match="0x0 is not guest RAM"):
            mem.read(0, 1)
    finally:
        mem.close()


# --- the process behind the gdbstub ---------------------------------------------------------

def test_listening_pid_finds_this_process_listening_on_a_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert listening_pid(server.getsockname()[1]) == os.getpid()


def test_listening_pid_of_a_port_bound_but_not_listening_is_none():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))                  # holds the port so no one else listens on it
        assert listening_pid(bound.getsockname()[1]) is None


def fake_proc(root: Path, tcp_lines: list[str], fds: dict[int, dict[int, str]]) -> Path:
    """A minimal /proc: net/tcp with `tcp_lines`, and per pid fd symlinks to `socket:[inode]` texts."""
    (root / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (root / "net" / "tcp").write_text(header + "".join(line + "\n" for line in tcp_lines))
    for pid, links in fds.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        for fd, link in links.items():
            os.symlink(link, root / str(pid) / "fd" / str(fd))
    return root


def tcp_line(port: int, state: str, inode: int) -> str:
    return (f"   0: 0100007F:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000  "
            f"1000        0 {inode} 1 0000000000000000 100 0 0 10 0")


def test_listening_pid_reads_the_listen_state_and_socket_inode_from_proc(tmp_path):
    proc = fake_proc(tmp_path, [tcp_line(1234, "01", 111), tcp_line(1234, "0A", 222)],
                     {100: {3: "socket:[111]"}, 200: {0: "/dev/null", 7: "socket:[222]"}})
    assert listening_pid(1234, proc) == 200


def test_listening_pid_without_readable_proc_tables_is_none(tmp_path):
    assert listening_pid(1234, tmp_path) is None


@pytest.mark.parametrize("details, port", [
    (":1234", 1234),
    ("localhost:1234", 1234),
    ("tcp:127.0.0.1:5555", 5555),
    ("", None),
    (None, None),
    ("/dev/ttyS0", None),
])
def test_port_of_takes_the_port_from_gdbs_connection_string(details, port):
    assert port_of(details) == port
