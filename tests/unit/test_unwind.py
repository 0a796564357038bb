"""The CFI unwinder and frame symbolizer over a stack recorded from a real process: a
program built here without frame pointers records its registers, its memory map, its
raw stack and the true return addresses (__builtin_return_address in each function).
Built with and without .eh_frame_hdr: FDEs are found through its search table, or by
parsing them all."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gdb_memcheck.symbols.elfsyms import SymbolCache
from gdb_memcheck.symbols.stackframes import Frame, frame
from gdb_memcheck.arch import AARCH64, X86_64
from gdb_memcheck.symbols.unwind import ModuleMap, Unwinder, frame_registers
from gdb_memcheck.linux.vmas import VM_EXEC, VM_READ, VM_WRITE, Vma

SOURCE = Path(__file__).with_name("programs") / "stackdump.c"
SYMBOLS = SymbolCache("/")          # host files are the "guest" here; parsed once for the module
UNWINDER = Unwinder(X86_64)


@dataclass
class Recording:
    pc: int
    rsp: int
    rbp: int
    truth: list[int]
    vmas: list[Vma]
    stack: bytes

    def read(self, address: int, size: int) -> bytes:
        """Stack memory as recorded; anything else reads as zeros (the unwinder needs no more)."""
        off = address - self.rsp
        if 0 <= off and off + size <= len(self.stack):
            return self.stack[off:off + size]
        return bytes(size)


def parse_vma(line: str) -> Vma:
    fields = line.split(maxsplit=5)
    lo, hi = (int(x, 16) for x in fields[0].split("-"))
    perms = fields[1]
    flags = (VM_READ if "r" in perms else 0) | (VM_WRITE if "w" in perms else 0) | (VM_EXEC if "x" in perms else 0)
    name = fields[5].strip() if len(fields) > 5 else ""
    return Vma(0, lo, hi, flags, int(fields[2], 16), 0, int(fields[4]), name)


def record(tmp: Path, *cflags: str) -> Recording:
    exe, dump = tmp / "stackdump", tmp / "stack.dump"
    subprocess.run(["gcc", "-g", *cflags, "-o", str(exe), str(SOURCE)], check=True)
    subprocess.run([str(exe), str(dump)], check=True)
    raw = dump.read_bytes()
    head, stack = raw.split(b"STACK\n", 1)
    lines = head.decode().splitlines()
    pc, rsp, rbp = (int(x, 16) for x in lines[0].split())
    truth = [int(x, 16) for x in lines[1].split()]
    return Recording(pc, rsp, rbp, truth, [parse_vma(line) for line in lines[2:]], stack)


@pytest.fixture(scope="module", params=[("-O2", "-fomit-frame-pointer"), ("-O0",),
                                        ("-O2", "-fomit-frame-pointer", "-Wl,--no-eh-frame-hdr")],
                ids=["O2-no-fp", "O0", "O2-no-fp-no-eh-frame-hdr"])
def recording(request, tmp_path_factory) -> Recording:
    return record(tmp_path_factory.mktemp("unwind"), *request.param)


def symbolize(pcs: list[int], modules: ModuleMap) -> list[Frame]:
    """Frames for an unwound stack: the first pc is where it stopped, the rest are return addresses."""
    return [frame(pc, modules, is_return=i > 0) for i, pc in enumerate(pcs)]


def unwind(rec: Recording, depth: int = 16) -> list[int]:
    modules = ModuleMap(rec.vmas, SYMBOLS)
    return UNWINDER.unwind(frame_registers(X86_64, rec.pc, rec.rsp, rec.rbp), rec.read, modules, depth)


def test_cfi_unwinding_finds_every_true_return_address_in_order(recording):
    pcs = unwind(recording)
    assert pcs[0] == recording.pc
    assert pcs[1:5] == recording.truth


def test_unwinding_continues_through_libc_to_the_programs_entry(recording):
    modules = ModuleMap(recording.vmas, SYMBOLS)
    frames = symbolize(unwind(recording), modules)
    assert frames[-1].function == "_start" and frames[-1].module.endswith("/stackdump")
    assert any(f.module and "libc.so" in f.module for f in frames[4:-1])


def test_depth_bounds_the_stack(recording):
    assert unwind(recording, depth=3) == [recording.pc] + recording.truth[:2]


def test_frames_name_each_function_and_the_line_of_its_call(recording):
    modules = ModuleMap(recording.vmas, SYMBOLS)
    frames = symbolize(unwind(recording), modules)
    assert [f.function for f in frames[:4]] == ["inner", "middle", "outer", "main"]
    source = SOURCE.read_text().splitlines()
    assert "inner(" in source[frames[1].line - 1]
    assert "middle(" in source[frames[2].line - 1]
    assert "outer(" in source[frames[3].line - 1]
    assert frames[1].file == "stackdump.c" and frames[1].module.endswith("/stackdump")


def test_a_stack_of_zeros_ends_the_unwind_without_error(recording):
    blank = Recording(recording.pc, recording.rsp, 0, [], recording.vmas, bytes(len(recording.stack)))
    assert unwind(blank)[0] == recording.pc
    assert len(unwind(blank)) <= 2


def test_a_pc_outside_every_module_falls_back_to_the_frame_pointer_chain():
    stack = bytearray(64)
    stack[0x20:0x28] = (0x7000_0000_0040).to_bytes(8, "little")      # saved rbp
    stack[0x28:0x30] = (0x4242).to_bytes(8, "little")                 # return address
    rec = Recording(0x1234, 0x7000_0000_0000, 0x7000_0000_0020, [], [], bytes(stack))
    assert unwind(rec, depth=2) == [0x1234, 0x4242]


ARM64_LIBC = "/usr/aarch64-linux-gnu/lib/libc.so.6"        # Debian's libc6-arm64-cross: real AArch64 CFI
ARM64_LIBC_BASE = 0xFFFF_F7E0_0000


def test_an_aarch64_function_at_its_first_instruction_returns_to_its_link_register():
    """At a function's entry AArch64 has pushed nothing: CFA = sp and the return address is
    still in x30, so the caller keeps the callee's sp.  Above it, frame records chain."""
    malloc = SYMBOLS.get(ARM64_LIBC).addresses_of(["malloc"])["malloc"]
    sp, fp = 0x7000_0000_0000, 0x7000_0000_0040
    stack = bytearray(0x80)
    stack[0x40:0x50] = (0).to_bytes(8, "little") + (0x5555_0000_2000).to_bytes(8, "little")   # frame record
    vmas = [Vma(0, ARM64_LIBC_BASE, ARM64_LIBC_BASE + 0x200000, VM_READ | VM_EXEC, 0, 0, 1, ARM64_LIBC)]
    rec = Recording(ARM64_LIBC_BASE + malloc, sp, fp, [], vmas, bytes(stack))
    registers = frame_registers(AARCH64, rec.pc, sp, fp, link=0x5555_0000_1000)
    pcs = Unwinder(AARCH64).unwind(registers, rec.read, ModuleMap(vmas, SYMBOLS), 8)
    assert pcs[:3] == [rec.pc, 0x5555_0000_1000, 0x5555_0000_2000]
