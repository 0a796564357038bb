"""ELF symbolization checked against binutils (nm, addr2line, readelf) on programs built here."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdb_memcheck.symbols.elfsyms import (ElfFile, SourceLine, SymbolCache, SymbolizationError,
                                   runtime_to_vaddr)
from gdb_memcheck.target import TargetError
from gdb_memcheck.symbols.unwind import CallFrameTable

LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
PAGE = 0x1000
PIE_BASE = 0x5555_5555_4000

PROGRAM = """\
#include <stdio.h>

int counter = 3;

static int helper(int x)
{
    int y = x * 2;
    return y + counter;
}

__asm__(".text\\n.globl bare_label\\n.type bare_label, @function\\nbare_label:\\n ret\\n nop\\n nop\\n");

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 0; i < argc; i++)
        total += helper(i);
    printf("%d\\n", total);
    return 0;
}
"""

# Line rows in DWARF 5's file 0, which DWARF 4 had no such entry for.
FILE_ZERO_ASM = """\
    .file 0 "/src/dir" "zero.c"
    .text
    .globl zero_fn
    .type zero_fn, @function
zero_fn:
    .loc 0 7
    nop
    .loc 0 9
    ret
    .size zero_fn, .-zero_fn
    .section .note.GNU-stack,"",@progbits
"""


@dataclass(frozen=True)
class Built:
    """The test programs: PIE with DWARF 5 (plus a file-0 assembly unit), PIE with DWARF 4,
    static, and the DWARF 5 PIE stripped."""

    pie: Path
    pie4: Path
    static: Path
    stripped: Path


def run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    d = tmp_path_factory.mktemp("elfsyms")
    (d / "prog.c").write_text(PROGRAM)
    (d / "zero.s").write_text(FILE_ZERO_ASM)
    b = Built(d / "pie", d / "pie4", d / "static", d / "stripped")
    run("gcc", "-g", "-O0", "-gdwarf-5", "-rdynamic", "-o", b.pie, d / "prog.c", d / "zero.s")
    run("gcc", "-g", "-O0", "-gdwarf-4", "-o", b.pie4, d / "prog.c")
    run("gcc", "-g", "-static", "-o", b.static, d / "prog.c")
    shutil.copy(b.pie, b.stripped)
    run("strip", b.stripped)
    return b


def nm(binary: Path, *flags: str) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the defined symbols nm lists, versions cut off."""
    symbols = {}
    for line in run("nm", "-S", *flags, binary).splitlines():
        fields = line.split()
        if len(fields) == 4:
            symbols[fields[3].split("@")[0]] = (int(fields[0], 16), int(fields[1], 16))
        elif len(fields) == 3 and fields[1] not in "Uuvw":
            symbols.setdefault(fields[2].split("@")[0], (int(fields[0], 16), 0))
    return symbols


def addr2line(binary: Path, addrs: list[int]) -> list[tuple[str, int] | None]:
    """(file basename, line) per address, None where addr2line knows no line."""
    out = []
    for line in run("addr2line", "-e", binary, *(hex(a) for a in addrs)).splitlines():
        m = re.match(r"(.*):(\d+)", line.split(" (discriminator")[0])
        out.append((os.path.basename(m[1]), int(m[2])) if m and m[1] != "??" and m[2] != "0" else None)
    return out


def pt_loads(binary: Path) -> list[tuple[int, int, int, int]]:
    """(offset, vaddr, filesz, memsz) of each LOAD line of readelf -lW."""
    rows = [line.split() for line in run("readelf", "-lW", binary).splitlines()]
    return [tuple(int(r[i], 16) for i in (1, 2, 4, 5)) for r in rows if r and r[0] == "LOAD"]


def readelf_build_id(binary: Path) -> str:
    return re.search(r"Build ID: ([0-9a-f]+)", run("readelf", "-n", binary))[1]


@pytest.mark.parametrize("which", ["pie", "pie4", "static"])
@pytest.mark.parametrize("name", ["main", "helper"])
def test_symbol_at_names_the_function_containing_the_address(built, which, name):
    binary = getattr(built, which)
    start, size = nm(binary)[name]
    elf = ElfFile(binary)
    for addr in (start, start + size // 2, start + size - 1):
        assert elf.symbol_at(addr).name == name
    assert (elf.symbol_at(start).start, elf.symbol_at(start).size) == (start, size)


def test_a_debug_file_without_a_dynamic_symbol_table_still_gives_addresses(built, tmp_path):
    """objcopy --only-keep-debug leaves .dynsym as NOBITS: names come from .symtab alone."""
    debug = tmp_path / "pie.debug"
    run("objcopy", "--only-keep-debug", built.pie, debug)
    assert run("readelf", "-SW", debug).count(" NOBITS ") > 0
    assert ElfFile(debug).addresses_of(["helper", "main"]) == {n: nm(built.pie)[n][0] for n in ("helper", "main")}


def test_symbol_at_names_global_objects_too(built):
    start, size = nm(built.pie)["counter"]
    assert ElfFile(built.pie).symbol_at(start + size - 1).name == "counter"


def test_symbol_at_does_not_stretch_a_sized_symbol_past_its_end(built):
    start, size = nm(built.pie)["counter"]
    found = ElfFile(built.pie).symbol_at(start + size)
    assert found is None or found.name != "counter"


def test_symbol_at_returns_none_below_every_symbol(built):
    assert ElfFile(built.pie).symbol_at(0) is None


def test_a_size_0_symbol_covers_the_addresses_after_it_up_to_the_next_symbol(built):
    start, size = nm(built.pie)["bare_label"]
    assert size == 0
    assert ElfFile(built.pie).symbol_at(start + 2).name == "bare_label"


def test_symbol_at_in_a_stripped_binary_falls_back_to_dynsym(built):
    symbols = nm(built.pie)
    elf = ElfFile(built.stripped)
    assert elf.symbol_at(symbols["main"][0] + 4).name == "main"
    assert elf.symbol_at(symbols["helper"][0] + 4) is None


def test_symbol_at_names_malloc_in_the_hosts_libc():
    dynamic = nm(LIBC, "-D")
    address = dynamic["malloc"][0]
    aliases = {name for name, (addr, _) in dynamic.items() if addr == address}
    assert ElfFile(LIBC).symbol_at(address + 1).name in aliases


def function_addresses(binary: Path, *names: str) -> list[int]:
    symbols = nm(binary)
    return [a for n in names for a in range(symbols[n][0], symbols[n][0] + symbols[n][1])]


@pytest.mark.parametrize("which", ["pie", "pie4", "static"])
def test_source_line_agrees_with_addr2line_on_every_address_of_main_and_helper(built, which):
    binary = getattr(built, which)
    elf = ElfFile(binary)
    addrs = function_addresses(binary, "main", "helper")
    expected = addr2line(binary, addrs)
    found = [(line.file, line.line) if line else None for line in map(elf.source_line, addrs)]
    assert found == expected
    assert sum(e is not None for e in expected) > len(addrs) // 2


def test_source_line_reads_rows_in_dwarf_5_file_index_0(built):
    start = nm(built.pie)["zero_fn"][0]
    elf = ElfFile(built.pie)
    assert addr2line(built.pie, [start, start + 1]) == [("zero.c", 7), ("zero.c", 9)]
    assert [elf.source_line(a) for a in (start, start + 1)] == [
        SourceLine("zero.c", 7, "/src/dir"), SourceLine("zero.c", 9, "/src/dir")]


def test_source_line_names_the_compilation_directory(built):
    line = ElfFile(built.pie4).source_line(nm(built.pie4)["main"][0])
    assert (line.file, line.directory) == ("prog.c", str(built.pie4.parent))


def test_source_line_is_none_without_dwarf(built):
    assert ElfFile(built.stripped).source_line(nm(built.pie)["main"][0]) is None


def test_source_line_is_none_outside_every_line_table(built):
    assert ElfFile(built.pie).source_line(0) is None


@pytest.mark.parametrize("which", ["pie", "static"])
def test_vaddr_for_file_offset_follows_the_pt_load_headers(built, which):
    binary = getattr(built, which)
    elf = ElfFile(binary)
    loads = pt_loads(binary)
    assert [(s.offset, s.vaddr, s.filesz, s.memsz) for s in elf.load_segments] == loads
    for offset, vaddr, filesz, _ in loads:
        assert elf.vaddr_for_file_offset(offset) == vaddr
        assert elf.vaddr_for_file_offset(offset + filesz - 1) == vaddr + filesz - 1


def test_vaddr_for_file_offset_covers_the_bss_tail_of_the_last_file_page(built):
    offset, vaddr, filesz, memsz = pt_loads(built.pie)[-1]
    assert memsz > filesz
    assert ElfFile(built.pie).vaddr_for_file_offset(offset + filesz) == vaddr + filesz


def test_vaddr_for_file_offset_is_none_outside_every_segment(built):
    assert ElfFile(built.pie).vaddr_for_file_offset(built.pie.stat().st_size - 1) is None


@pytest.mark.parametrize("which, base", [("pie", PIE_BASE), ("static", 0)])
def test_runtime_to_vaddr_undoes_the_mapping_of_the_text_segment(built, which, base):
    binary = getattr(built, which)
    elf = ElfFile(binary)
    main = nm(binary)["main"][0]
    offset, vaddr, _, _ = next(load for load in pt_loads(binary) if load[1] <= main < load[1] + load[2])
    map_start, map_offset = base + (vaddr & ~(PAGE - 1)), offset & ~(PAGE - 1)
    found = runtime_to_vaddr(base + main + 3, map_start, map_offset, elf)
    assert found == main + 3
    assert elf.symbol_at(found).name == "main"
    assert runtime_to_vaddr(map_start - 1, map_start, map_offset, elf) is None


@pytest.mark.parametrize("which", ["pie", "pie4", "static", "stripped"])
def test_build_id_matches_readelf_notes(built, which):
    binary = getattr(built, which)
    assert ElfFile(binary).build_id == readelf_build_id(binary)


def test_build_id_of_the_hosts_libc_matches_readelf_notes():
    assert ElfFile(LIBC).build_id == readelf_build_id(LIBC)


def test_build_id_is_none_without_the_note(built, tmp_path):
    bare = tmp_path / "bare"
    run("gcc", "-Wl,--build-id=none", "-o", bare, built.pie.parent / "prog.c")
    assert ElfFile(bare).build_id is None


def test_is_pie_tells_et_dyn_from_et_exec(built):
    assert ElfFile(built.pie).is_pie and ElfFile(LIBC).is_pie
    assert not ElfFile(built.static).is_pie


@pytest.fixture
def sysroot(built, tmp_path) -> Path:
    (tmp_path / "bin").mkdir()
    shutil.copy(built.pie, tmp_path / "bin" / "prog")
    (tmp_path / "bin" / "script").write_text("#!/bin/sh\necho not elf\n")
    return tmp_path


def test_symbol_cache_finds_a_guest_path_under_the_sysroot(built, sysroot):
    elf = SymbolCache(str(sysroot)).get("/bin/prog")
    assert elf.path == sysroot / "bin" / "prog"
    assert elf.symbol_at(nm(built.pie)["main"][0]).name == "main"


def test_symbol_cache_accepts_the_matching_build_id_in_any_case(built, sysroot):
    build_id = readelf_build_id(built.pie)
    assert SymbolCache(str(sysroot)).get("/bin/prog", build_id.upper()).build_id == build_id


def test_symbol_cache_reuses_the_parsed_file_while_it_is_unchanged(sysroot):
    cache = SymbolCache(str(sysroot))
    assert cache.get("/bin/prog") is cache.get("/bin/prog")


def test_symbol_cache_rereads_a_file_replaced_on_the_host(built, sysroot):
    cache = SymbolCache(str(sysroot))
    first = cache.get("/bin/prog")
    shutil.copy(built.static, sysroot / "bin" / "prog")
    second = cache.get("/bin/prog")
    assert second is not first
    assert second.build_id == readelf_build_id(built.static)


def test_symbol_cache_build_id_mismatch_names_both_ids(built, sysroot):
    actual = readelf_build_id(built.pie)
    with pytest.raises(SymbolizationError) as err:
        SymbolCache(str(sysroot)).get("/bin/prog", "ab" * 20)
    assert actual in str(err.value) and "ab" * 20 in str(err.value)


def test_symbol_cache_missing_file_names_the_guest_path_and_the_sysroot(sysroot):
    with pytest.raises(SymbolizationError, match=f"/bin/gone is not under sysroot {sysroot}"):
        SymbolCache(str(sysroot)).get("/bin/gone")


def test_symbol_cache_does_not_let_dotdot_climb_out_of_the_sysroot(sysroot):
    (sysroot.parent / "outside").write_bytes(b"\x7fELF")
    cache = SymbolCache(str(sysroot / "bin"))
    assert cache.host_path("/../outside") == sysroot / "bin" / "outside"


def test_symbol_cache_refuses_a_file_that_is_not_elf(sysroot):
    with pytest.raises(SymbolizationError, match="script is not an ELF file"):
        SymbolCache(str(sysroot)).get("/bin/script")


def test_symbol_cache_refuses_a_directory(sysroot):
    with pytest.raises(SymbolizationError, match="is not a regular file"):
        SymbolCache(str(sysroot)).get("/bin")


def test_symbol_cache_without_a_sysroot_says_to_set_one():
    with pytest.raises(SymbolizationError, match="set memcheck sysroot DIR"):
        SymbolCache("").get("/bin/prog")


def test_symbolization_errors_are_target_errors():
    assert issubclass(SymbolizationError, TargetError)


def test_a_truncated_elf_file_gives_one_line_symbolization_error(built, sysroot):
    (sysroot / "bin" / "prog").write_bytes(built.pie.read_bytes()[:100])
    with pytest.raises(SymbolizationError, match="corrupt or truncated") as err:
        SymbolCache(str(sysroot)).get("/bin/prog")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_every_query_on_a_truncated_file_answers_or_raises_symbolization_error(built, tmp_path, keep):
    data = built.pie.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:int(len(data) * keep)])
    elf, main = ElfFile(cut), nm(built.pie)["main"][0]
    queries = [lambda: elf.build_id, lambda: elf.is_pie, lambda: elf.load_segments,
               lambda: elf.symbol_at(main), lambda: elf.source_line(main), lambda: elf.addresses_of(["main"]),
               lambda: elf.inline_chain(main), lambda: CallFrameTable(elf).row(main)]
    for query in queries:
        try:
            query()
        except SymbolizationError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=int(os.environ.get("MEMCHECK_FUZZ_EXAMPLES", "100")), deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=16))
def test_every_query_on_a_damaged_file_answers_or_raises_symbolization_error(built, tmp_path_factory, flips):
    data = bytearray(built.pie.read_bytes())
    for where, value in flips:
        data[int(where * len(data))] = value
    damaged = tmp_path_factory.mktemp("damaged") / "prog"
    damaged.write_bytes(bytes(data))
    elf, main = ElfFile(damaged), nm(built.pie)["main"][0]
    for query in (lambda: elf.symbol_at(main), lambda: elf.source_line(main), lambda: elf.addresses_of(["main"]),
                  lambda: elf.inline_chain(main), lambda: CallFrameTable(elf).row(main), lambda: elf.build_id):
        try:
            query()
        except SymbolizationError as exc:
            assert "\n" not in str(exc)
