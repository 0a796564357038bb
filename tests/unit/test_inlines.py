"""Inlined-call chains checked against `addr2line -i -f` on a program built here at -O2,
whose allocation call sits two always-inline functions deep."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from gdb_memcheck.symbols.elfsyms import ElfFile
from gdb_memcheck.symbols.stackframes import frame
from gdb_memcheck.symbols.unwind import ModuleMap
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, Vma

PROGRAM = """\
#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) void *inner_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

static inline __attribute__((always_inline)) void *middle_alloc(size_t n)
{
    return inner_alloc(n * 2);
}

int main(int argc, char **argv)
{
    void *p = middle_alloc((size_t)argc);
    printf("%p %s\\n", p, argv[0]);
    return 0;
}
"""


def run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module", params=["-gdwarf-5", "-gdwarf-4"])
def program(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inlines")
    (d / "inl.c").write_text(PROGRAM)
    run("gcc", "-g", request.param, "-O2", "-o", d / "inl", d / "inl.c")
    return d / "inl"


def malloc_call(binary: Path) -> int:
    """The address of main's call to malloc, from the disassembly."""
    listing = run("objdump", "-d", "--no-show-raw-insn", binary)
    return int(re.search(r"^\s*([0-9a-f]+):\s+call\s+\S+ <malloc@plt>", listing, re.M)[1], 16)


def addr2line_chain(binary: Path, address: int) -> list[tuple[str, str, int]]:
    """(function, file basename, line) from innermost to outermost, as addr2line -i prints them."""
    lines = run("addr2line", "-i", "-f", "-e", binary, hex(address)).splitlines()
    out = []
    for function, where in zip(lines[::2], lines[1::2]):
        m = re.match(r"(.*):(\d+)", where.split(" (discriminator")[0])
        out.append((function, os.path.basename(m[1]), int(m[2])))
    return out


def test_the_chain_at_an_inlined_call_equals_addr2line(program):
    call = malloc_call(program)
    chain = ElfFile(program).inline_chain(call)
    ours = [(chain.function, None, None)] + [(c.caller, c.file, c.line) for c in chain.calls]
    theirs = addr2line_chain(program, call)
    assert [f for f, _, _ in ours] == [f for f, _, _ in theirs] == ["inner_alloc", "middle_alloc", "main"]
    assert [(f, line) for f, _, line in ours[1:]] == [(f, line) for f, _, line in theirs[1:]]


def test_a_return_address_frame_expands_into_one_frame_per_inlined_call(program):
    call = malloc_call(program)
    text = run("objdump", "-d", "--no-show-raw-insn", "--start-address", hex(call + 1), program)
    ret = int(re.search(r"^\s*([0-9a-f]+):", text, re.M)[1], 16)
    vma = Vma(0, 0x5555_5555_4000, 0x5555_5556_0000, VM_READ | VM_EXEC, 0, 0, 1, str(program))
    modules = ModuleMap([vma], _OneFile(program))
    f = frame(vma.start + ret, modules, is_return=True)
    source = PROGRAM.splitlines()
    assert f.function == "inner_alloc" and "malloc(n)" in source[f.line - 1]
    assert [g.function for g in f.inlined_into] == ["middle_alloc", "main"]
    assert "inner_alloc(n * 2)" in source[f.inlined_into[0].line - 1]
    assert "middle_alloc(" in source[f.inlined_into[1].line - 1]


def test_an_address_outside_inlined_code_has_no_inlined_calls(program):
    main = int(re.search(r"^([0-9a-f]+) <main>:", run("objdump", "-d", program), re.M)[1], 16)
    chain = ElfFile(program).inline_chain(main)
    assert chain is not None and chain.function == "main" and chain.calls == ()


class _OneFile:
    """A symbol cache that hands out the one program, whatever path is asked for."""

    def __init__(self, path: Path) -> None:
        self.elf = ElfFile(path)

    def get(self, guest_path: str, expected_build_id: str | None = None) -> ElfFile:
        return self.elf
