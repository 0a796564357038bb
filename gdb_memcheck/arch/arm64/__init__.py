"""AArch64: stage-1 translation with the 4 KiB granule (TTBR0 for user, TTBR1 for the
kernel), the AAPCS64 calls, and the KASLR slide from where TTBR1_EL1's table really is."""
from __future__ import annotations

from ...target import StructLayout
from ..base import Arch, Calls, Dwarf
from . import linux
from .paging import ttbr_table


def _pt_regs(layout: StructLayout) -> dict[str, int]:
    regs = layout.offset("regs")           # u64 regs[31], then sp, pc (struct user_pt_regs)
    return {**{f"x{i}": regs + 8 * i for i in range(31)}, "sp": layout.offset("sp"), "ip": layout.offset("pc")}


AARCH64 = Arch(
    "aarch64",
    Calls(args=("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"), result="x0", sp="sp", pc="pc",
          frame_pointer="x29", link="x30", scratch=("x9", "x10", "x11", "x12", "x13"), sp_after_return=0,
          returns=("ret",), jumps=("b", "cbz", "cbnz", "tbz", "tbnz") + tuple(
              "b." + cc for cc in ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt",
                                   "gt", "le", "al"))),
    Dwarf(return_address=30, sp=31, frame_pointer=29, callee_saved=tuple(range(19, 31))),
    syscall_prefix="__arm64_sys_", syscall_args=("x0", "x1", "x2", "x3", "x4", "x5"),
    thread_pointer="thread.uw.tp_value", tls_below=0, tls_above=4096, user_top=1 << 48, percpu_at_zero=False,
    pt_regs=_pt_regs,
    regime=linux.regime, current_spans=linux.current_spans, process_spans=linux.process_spans,
    kernel_spans=linux.kernel_spans, table_of=ttbr_table, kernel_map=linux.kernel_map, slide=linux.slide)
