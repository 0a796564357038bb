"""QEMU dump-guest-memory files: every kind reads the guest's physical memory byte for byte,
each vCPU's registers come from its notes, a Target over a dump reads kernel structures
through the selected vCPU's page tables, and every bad file is refused in one line."""
from __future__ import annotations

import random
import struct

import pytest

from dumpfiles import PAGE, notes, prstatus, qemu_state, write_elf, write_kdump
from fakes import CR0_BOOTED, CR4_BOOTED, FakeTarget, PageTableBuilder
from gdb_memcheck.arch import X86_64
from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.linux.kernel import read_kernel_info
from gdb_memcheck.qemu import dump, kdump
from gdb_memcheck.qemu.dumpfile import open_dump
from gdb_memcheck.qemu.dumptarget import DumpTarget
from gdb_memcheck.target import Field, MemoryReadError, StructLayout, Target, TargetError

KERNEL_VA = 0xFFFF_FFFF_8200_0000
UTS = 0xFFFF_FFFF_8200_0100
CPU0 = {"rip": 0xFFFF_FFFF_81A1_7A0B, "rsp": 0xFFFF_FFFF_82A0_3E98, "rax": 7, "r15": 15, "eflags": 0x246,
        "cs": 0x10, "ss": 0x18, "gs_base": 0xFFFF_8880_1EE0_0000, "cr0": CR0_BOOTED, "cr4": CR4_BOOTED,
        "cr2": 0x5794A9, "fs_base": 0x7FFF_F7D8_E740}
CPU1 = {"rip": 0x5555_5555_5189, "rsp": 0x7FFF_FFFF_E000, "rax": 9, "eflags": 0x202, "cs": 0x33, "ss": 0x2B,
        "gs_base": 0, "k_gs_base": 0xFFFF_8880_1EF0_0000, "cr0": CR0_BOOTED, "cr4": CR4_BOOTED,
        "fs_base": 0x7FFF_F7D8_F740}


def guest() -> tuple[FakeTarget, list[dict[str, int]]]:
    """Two vCPUs, each with page tables of its own mapping the kernel page that holds a
    uts_namespace; RAM with random, zero and repeated pages, in two blocks."""
    target = FakeTarget(registers=[{}, {}], identity=False,
                        symbols={"init_uts_ns": UTS},
                        layouts={"struct uts_namespace": StructLayout("struct uts_namespace", 0x190, {
                            "name.release": Field(0x82, 65), "name.machine": Field(0x104, 65)})})
    rng = random.Random(5)
    for frame in range(0x40):
        kind = frame % 4
        data = bytes(PAGE) if kind == 0 else bytes([frame]) * PAGE if kind == 1 else rng.randbytes(PAGE)
        target.write_physical(frame * PAGE, data)
    target.write_physical(0x1000_0000, rng.randbytes(2 * PAGE))        # a second RAM block, far above
    cpus = []
    for cpu, regs in enumerate((CPU0, CPU1)):
        tables = PageTableBuilder(target, first_table=0x10_0000 + cpu * 0x10_0000)
        tables.map(KERNEL_VA, (0x10 + cpu) * PAGE)
        cpus.append(dict(regs, cr3=tables.root))
    page = bytearray(PAGE)
    page[0x182:0x182 + 9], page[0x204:0x204 + 6] = b"6.1.0-57\0", b"x86_64"
    target.write_physical(0x10 * PAGE, bytes(page))
    page[0x182:0x182 + 9] = b"6.12.117\0"
    target.write_physical(0x11 * PAGE, bytes(page))
    target.registers = cpus
    return target, cpus


def pages_of(target: FakeTarget) -> dict[int, bytes]:
    return {addr: bytes(data) for addr, data in target.pages.items()}


KINDS = ["elf", "elf-paging", "kdump-flattened", "kdump-plain"]


def write(kind: str, tmp_path, target: FakeTarget, cpus) -> str:
    pages, path = pages_of(target), tmp_path / f"guest.{kind}"
    if kind == "elf":
        return str(write_elf(path, pages, cpus))
    if kind == "elf-paging":
        # the direct map and an alias of its first half, each page described twice, as -p writes them
        size = 0x40 * PAGE
        aliases = [(0xFFFF_8880_0000_0000, 0, size), (0xFFFF_C900_0000_0000, 0, size // 2),
                   (0xFFFF_8880_1000_0000, 0x1000_0000, 2 * PAGE)] + \
                  [(0xFFFF_8880_0000_0000 + a, a, PAGE) for a in range(0x10_0000, 0x10_0000 + 0x20 * PAGE, PAGE)
                   if a in pages] + \
                  [(0xFFFF_8880_0000_0000 + a, a, PAGE) for a in range(0x20_0000, 0x20_0000 + 0x20 * PAGE, PAGE)
                   if a in pages]
        return str(write_elf(path, pages, cpus, aliases=aliases))
    return str(write_kdump(path, pages, cpus, flattened=kind == "kdump-flattened"))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_dump_reads_the_guests_physical_memory_byte_for_byte(kind, tmp_path):
    target, cpus = guest()
    opened = open_dump(write(kind, tmp_path, target, cpus))
    rng = random.Random(kind)
    addrs = sorted(target.pages)
    for _ in range(300):
        start = rng.choice(addrs) + rng.randrange(PAGE)
        size = rng.randrange(1, 3 * PAGE)
        try:
            expected = target.read_physical(start, size)
        except MemoryReadError:
            with pytest.raises(MemoryReadError):
                opened.read_physical(start, size)
            continue
        assert opened.read_physical(start, size) == expected, hex(start)
    assert opened.ram_bytes == len(target.pages) * PAGE
    opened.close()


@pytest.mark.parametrize("kind", KINDS)
def test_each_vcpus_registers_come_from_its_notes(kind, tmp_path):
    target, cpus = guest()
    opened = open_dump(write(kind, tmp_path, target, cpus))
    assert len(opened.cpus) == 2
    for state, regs in zip(opened.cpus, cpus):
        for name, value in regs.items():
            assert state.registers[name] == value, name
        assert state.registers["efer"] & paging.EFER_LMA, "an x86-64 dump was written in long mode"
    assert opened.cpus[1].registers["k_gs_base"] == CPU1["k_gs_base"]


def test_the_format_says_which_kind_of_dump_it_is(tmp_path):
    target, cpus = guest()
    formats = [open_dump(write(kind, tmp_path, target, cpus)).format for kind in KINDS]
    assert formats == ["ELF", "ELF with paging (-p)", "kdump-zlib", "kdump-zlib"]


def test_a_paging_dump_reads_each_page_once_and_refuses_ram_no_table_maps(tmp_path):
    target, cpus = guest()
    pages = pages_of(target)
    aliases = [(0xFFFF_8880_0000_0000, 0, 8 * PAGE), (0xFFFF_C900_0000_0000, 4 * PAGE, 8 * PAGE)]
    opened = open_dump(str(write_elf(tmp_path / "p.elf", pages, cpus, aliases=aliases)))
    assert [(r.start, r.size) for r in opened.runs] == [(0, 12 * PAGE)]
    assert opened.read_physical(3 * PAGE, 6 * PAGE) == target.read_physical(3 * PAGE, 6 * PAGE)
    with pytest.raises(MemoryReadError, match=f"{12 * PAGE:#x} is not in the dump"):
        opened.read_physical(12 * PAGE - 8, 16)


@pytest.mark.parametrize("kind", KINDS)
def test_a_dump_target_reads_kernel_structures_through_the_selected_vcpus_tables(kind, tmp_path):
    target, cpus = guest()
    dumped = DumpTarget(open_dump(write(kind, tmp_path, target, cpus)), debug_info=target)
    assert read_kernel_info(dumped, X86_64.regime(dumped, None), 0).release == "6.1.0-57"
    dumped.cpu = 1
    assert read_kernel_info(dumped, X86_64.regime(dumped, None), 0).release == "6.12.117"
    assert dumped.register("rsp", cpu=0) == CPU0["rsp"] and dumped.register("rsp") == CPU1["rsp"]
    assert dumped.cpu_count() == 2 and dumped.symbol_address("init_uts_ns") == UTS


def test_a_dump_target_answers_every_question_of_the_target_protocol(tmp_path):
    """What the vmlinux says (symbols, function pointers, layouts) comes from the debug info;
    a question the protocol gains must be answered here too, or views fail on a dump only."""
    target, cpus = guest()
    target.symbols["simple_dname"] = 0xFFFF_FFFF_8130_0000
    dumped = DumpTarget(open_dump(write("elf", tmp_path, target, cpus)), debug_info=target)
    asked = {name for name, member in vars(Target).items() if callable(member) and not name.startswith("_")}
    assert asked and all(callable(getattr(dumped, name, None)) for name in asked), \
        sorted(name for name in asked if not callable(getattr(dumped, name, None)))
    assert dumped.function_pointer("simple_dname") == target.function_pointer("simple_dname")
    assert dumped.layout("struct uts_namespace") == target.layout("struct uts_namespace")


def test_a_dump_target_refuses_a_write_in_one_line(tmp_path):
    target, cpus = guest()
    dumped = DumpTarget(open_dump(write("elf", tmp_path, target, cpus)), debug_info=target)
    with pytest.raises(TargetError, match=r"^cannot write 8 bytes at 0x1000: a dump is read-only$"):
        dumped.write_virtual(0x1000, bytes(8))


def test_a_dump_target_says_where_a_virtual_read_stops_and_which_register_is_missing(tmp_path):
    target, cpus = guest()
    dumped = DumpTarget(open_dump(write("elf", tmp_path, target, cpus)), debug_info=target)
    with pytest.raises(MemoryReadError, match=r"PT entry 1 not present"):
        dumped.read_virtual(KERNEL_VA + PAGE - 4, 8)
    with pytest.raises(TargetError, match="no vCPU 2: the dump has 2"):
        dumped.register("cr3", cpu=2)
    older_qemu = write_elf(tmp_path / "old.elf", pages_of(target), cpus,
                           note_bytes=prstatus(0, cpus[0]) + qemu_state(cpus[0], size=432))
    with pytest.raises(TargetError, match=r"the dump does not record \$k_gs_base"):
        DumpTarget(open_dump(str(older_qemu)), target).register("k_gs_base")


def test_stored_pages_are_found_from_the_dump_bitmap_runs():
    rng = random.Random(3)
    for _ in range(50):
        bits = [rng.random() < 0.5 for _ in range(rng.randrange(1, 300))]
        bitmap = bytes(sum(1 << j for j in range(8) if i + j < len(bits) and bits[i + j])
                       for i in range(0, len(bits), 8))
        expected, at = [], 0
        while at < len(bits):
            if bits[at]:
                start = at
                while at < len(bits) and bits[at]:
                    at += 1
                expected.append((start, at - start))
            else:
                at += 1
        assert kdump.bit_runs(bitmap, len(bits)) == expected


# -- bad files: one line each -------------------------------------------------------------

def cut(path, keep):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:keep(len(data))])
    return path


def bad_files(tmp_path):
    target, cpus = guest()
    pages = pages_of(target)
    lzo = write_kdump(tmp_path / "lzo.kdump", pages, cpus, status=kdump.COMPRESSED_LZO)
    snappy = write_kdump(tmp_path / "snappy.kdump", pages, cpus, status=kdump.COMPRESSED_SNAPPY)
    text = tmp_path / "notes.txt"
    text.write_text("not a dump at all\n")
    return {
        "truncated ELF": (cut(write_elf(tmp_path / "t.elf", pages, cpus), lambda n: n - 100),
                          r"t\.elf is truncated: it has \d+ bytes, its memory segments need \d+"),
        "truncated flattened kdump": (cut(write_kdump(tmp_path / "t.kdump", pages, cpus), lambda n: n // 2),
                                      r"t\.kdump is truncated: (its flattened kdump stream stops|a record at)"),
        "flattened kdump without its end": (write_kdump(tmp_path / "e.kdump", pages, cpus, end_marker=False),
                                            r"e\.kdump is truncated: its flattened kdump stream stops at byte"),
        "truncated plain kdump": (cut(write_kdump(tmp_path / "tp.kdump", pages, cpus, flattened=False),
                                      lambda n: n - 300), r"tp\.kdump is truncated"),
        "truncated headers": (cut(write_elf(tmp_path / "h.elf", pages, cpus), lambda n: 40),
                              r"h\.elf is truncated: the ELF header needs bytes 0-64, the file has 40"),
        "text": (text, r"notes\.txt is not a QEMU guest-memory dump: it starts with neither an ELF header"),
        "an ELF executable": (write_elf(tmp_path / "vmlinux", pages, cpus, e_type=2),
                              r"vmlinux is an ELF file of type 2, not a core dump"),
        "another machine": (write_elf(tmp_path / "arm.elf", pages, cpus, machine=183),
                            r"arm\.elf is not an x86-64 dump \(ELF class 2, machine 183\)"),
        "a process core": (write_elf(tmp_path / "core", pages, cpus, note_bytes=prstatus(0, cpus[0])),
                           r"core has no QEMU CPU-state note: it is not a dump-guest-memory file"),
        "a newer CPU state": (write_elf(tmp_path / "v2.elf", pages, cpus, note_bytes=qemu_state(cpus[0], version=2)),
                              r"v2\.elf has QEMU CPU-state version 2; version 1 is known"),
        "LZO pages": (lzo, r"lzo\.kdump is a kdump with LZO-compressed pages \(dump-guest-memory -l\)"),
        "snappy pages": (snappy, r"snappy\.kdump is a kdump with snappy-compressed pages \(dump-guest-memory -s\)"),
        "no file": (tmp_path / "absent.elf", r"cannot open .*absent\.elf: No such file or directory"),
        "a directory": (tmp_path, r"cannot read .*: Is a directory"),
    }


BAD = ["truncated ELF", "truncated flattened kdump", "flattened kdump without its end", "truncated plain kdump",
       "truncated headers", "text", "an ELF executable", "another machine", "a process core", "a newer CPU state",
       "LZO pages", "snappy pages", "no file", "a directory"]


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_refused_in_one_line_that_says_what_is_wrong(case, tmp_path):
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(dump.DumpError, match=message) as caught:
        open_dump(str(path))
    assert "\n" not in str(caught.value)


def test_notes_of_a_dump_are_read_in_cpu_order_whatever_their_count():
    regs = [dict(CPU0, cr3=0x1000 * (i + 1)) for i in range(5)]
    cpus = dump.cpus_from_notes("x", notes(regs))
    assert [c.registers["cr3"] for c in cpus] == [0x1000 * (i + 1) for i in range(5)]
    assert struct.calcsize("<5Q") == 40 and dump.QEMU_KERNEL_GS_AT == 432
