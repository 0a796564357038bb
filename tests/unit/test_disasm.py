"""Finding a function's exits by disassembly, on a program built here with -O2: its own
returns, the returns of a function it tail-calls, and no answer at all where a tail call
goes through a pointer (a ret is the one byte 0xc3 on x86-64, so each one found is checked
in the file's bytes)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gdb_memcheck.arch import X86_64
from gdb_memcheck.symbols.disasm import after_first_read, function_exits, instructions
from gdb_memcheck.symbols.elfsyms import ElfFile
from gdb_memcheck.symbols.unwind import CallFrameTable

SOURCE = Path(__file__).with_name("programs") / "exits.c"
RET = 0xC3


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    exe = tmp_path_factory.mktemp("exits") / "exits"
    subprocess.run(["gcc", "-O2", "-fno-inline", "-o", str(exe), str(SOURCE)], check=True)
    elf = ElfFile(exe)
    return exe, elf, CallFrameTable(elf)


def exits(program, name: str):
    exe, elf, table = program
    return function_exits(str(exe), table.extent, X86_64.calls, elf.addresses_of([name])[name])


def byte_at(program, vaddr: int) -> int:
    exe, elf, _ = program
    segment = next(s for s in elf.load_segments if s.vaddr <= vaddr < s.vaddr + s.filesz)
    return exe.read_bytes()[segment.offset + vaddr - segment.vaddr]


def test_a_function_with_two_returns_has_both_and_only_its_own_extent(program):
    found = exits(program, "two_returns")
    start = program[1].addresses_of(["two_returns"])["two_returns"]
    assert len(found.returns) >= 1 and all(byte_at(program, r) == RET for r in found.returns)
    assert [f[0] for f in found.functions] == [start]
    assert all(start <= r < found.functions[0][1] for r in found.returns)


def test_a_tail_call_adds_the_callees_returns_and_extent(program):
    caller, callee = exits(program, "tail_caller"), exits(program, "two_returns")
    assert set(callee.returns) < set(caller.returns)
    assert callee.functions[0] in caller.functions and len(caller.functions) == 2


def test_a_tail_call_through_a_pointer_leaves_the_exits_unknown(program):
    assert exits(program, "pointer_tail_caller") is None


def test_an_address_that_starts_no_function_has_no_exits(program):
    exe, elf, table = program
    start = elf.addresses_of(["two_returns"])["two_returns"]
    assert function_exits(str(exe), table.extent, X86_64.calls, start + 1) is None


def test_a_flag_read_first_gives_the_next_instructions_pc_with_the_arguments_untouched(program):
    exe, elf, table = program
    start, flag = elf.addresses_of(["reads_flag_first"])["reads_flag_first"], elf.addresses_of(["ready"])["ready"]
    after = after_first_read(str(exe), table.extent, X86_64.calls, start, flag, 2)
    code = instructions(str(exe), *table.extent(start))
    reads = [i for i, ins in enumerate(code) if ins.reference == flag]
    assert reads and after == code[reads[0] + 1].address
    assert not any("%rdi" in ins.operands.rsplit(",", 1)[-1] or "%rsi" in ins.operands.rsplit(",", 1)[-1]
                   for ins in code[:reads[0] + 1])


def test_a_call_before_the_flag_read_leaves_no_pc(program):
    exe, elf, table = program
    start, flag = elf.addresses_of(["calls_before_the_read"])["calls_before_the_read"], elf.addresses_of(["ready"])["ready"]
    assert after_first_read(str(exe), table.extent, X86_64.calls, start, flag, 1) is None
