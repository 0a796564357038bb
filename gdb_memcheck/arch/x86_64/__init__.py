"""x86-64: 4- and 5-level paging, the KASLR slide from the IDT, and the System V calls."""
from __future__ import annotations

from ...target import StructLayout
from ..base import Arch, Calls, Dwarf
from . import linux
from .paging import cr3_table


def _pt_regs(layout: StructLayout) -> dict[str, int]:
    return {name: layout.offset(name) for name in ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9",
                                                  "r8", "ax", "cx", "dx", "si", "di", "ip", "sp")}


JUMPS = ("jmp", "jmpq", "jrcxz", "jecxz", "loop", "loope", "loopne") + tuple(
    "j" + cc for cc in ("a", "ae", "b", "be", "c", "e", "g", "ge", "l", "le", "na", "nae", "nb", "nbe", "nc", "ne",
                        "ng", "nge", "nl", "nle", "no", "np", "ns", "nz", "o", "p", "pe", "po", "s", "z"))

REGISTERS = (("rdi", "edi", "di", "dil"), ("rsi", "esi", "si", "sil"), ("rdx", "edx", "dx", "dl", "dh"),
             ("rcx", "ecx", "cx", "cl", "ch"), ("r8", "r8d", "r8w", "r8b"), ("r9", "r9d", "r9w", "r9b"))

X86_64 = Arch(
    "x86_64",
    Calls(args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"), result="rax", sp="rsp", pc="rip", frame_pointer="rbp",
          link=None, scratch=("rax", "r8", "r9", "r10", "r11"), sp_after_return=8,
          returns=("ret", "retq"), jumps=JUMPS, registers=REGISTERS,
          harmless=("mov", "lea", "add", "sub", "and", "or", "xor", "test", "cmp", "sh", "sa", "set", "push", "nop",
                    "endbr64"),
          implicit=(("mul", ("rax", "rdx")), ("imul", ("rax", "rdx")), ("div", ("rax", "rdx")),
                    ("idiv", ("rax", "rdx")))),
    Dwarf(return_address=16, sp=7, frame_pointer=6, callee_saved=(3, 6, 12, 13, 14, 15)),
    syscall_prefix="__x64_sys_", syscall_args=("di", "si", "dx", "r10", "r8", "r9"),
    thread_pointer="thread.fsbase", tls_below=4096, tls_above=0, user_top=1 << 47, percpu_at_zero=True,
    pt_regs=_pt_regs,
    regime=linux.regime, current_spans=linux.current_spans, process_spans=linux.process_spans,
    kernel_spans=linux.kernel_spans, table_of=cr3_table, kernel_map=linux.kernel_map, slide=linux.slide)
