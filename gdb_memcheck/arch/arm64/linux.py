"""Where Linux puts kernel memory on arm64 (Documentation/arch/arm64/memory.rst): the
linear map of RAM at PAGE_OFFSET = -(1 << VA_BITS) (since 5.4, "arm64: mm: Flip kernel VA
space"), translated with memstart_addr; the kernel image translated with kimage_voffset;
and the KASLR slide from VBAR_EL1, which holds the run-time address of `vectors`."""
from __future__ import annotations

from ...target import SymbolError, Target, TargetError, read_u64
from ..base import FULL, KernelMap, Regime, Span
from .paging import Arm64Regime, layout, ttbr_table

PAGE = 4096
HALF = 1 << 63
# QEMU names the system registers by its cpreg names (target/arm/helper.c): SCTLR_EL1 is "SCTLR"
SCTLR, TCR, TTBR0, TTBR1, VBAR = "SCTLR", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1", "VBAR"


def regime(target: Target, cpu: int | None = None) -> Arm64Regime:
    """The translation regime from SCTLR_EL1 and TCR_EL1."""
    return Arm64Regime(layout(target.register(SCTLR, cpu), target.register(TCR, cpu)))


def current_spans(target: Target, cpu: int | None = None) -> list[Span]:
    return [Span(ttbr_table(target.register(TTBR0, cpu)), 0, HALF),
            Span(ttbr_table(target.register(TTBR1, cpu)), HALF, FULL)]


def process_spans(pgd: int, kernel_root: int) -> list[Span]:
    """A process's table (TTBR0) maps the low half; the kernel's (TTBR1) the high half."""
    return [Span(pgd, 0, HALF), Span(kernel_root, HALF, FULL)]


def kernel_spans(kernel_root: int) -> list[Span]:
    return [Span(kernel_root, HALF, FULL)]


def kernel_map(target: Target, paging: Regime) -> KernelMap:
    """The linear map and the image, and init_mm's table (swapper_pg_dir)."""
    if not isinstance(paging, Arm64Regime):
        raise TargetError("the arm64 kernel map needs an AArch64 translation regime")
    page_offset = FULL - (1 << paging.va_bits(True))
    phys_offset = read_u64(target, target.symbol_address("memstart_addr"))
    ram_end = read_u64(target, target.symbol_address("max_pfn")) * PAGE
    kimage_voffset = read_u64(target, target.symbol_address("kimage_voffset"))
    windows = ((page_offset, page_offset + ram_end - phys_offset, (phys_offset - page_offset) % FULL),
               (target.symbol_address("_text"), target.symbol_address("_end"), (FULL - kimage_voffset) % FULL))
    pgd = read_u64(target, target.symbol_address("init_mm") + target.layout("struct mm_struct").offset("pgd"))
    root = KernelMap(windows, 0).physical(pgd)
    return KernelMap(windows, pgd if root is None else root)


def slide(target: Target) -> int | None:
    """How far the image sits from where the loaded symbols put it: VBAR_EL1 against `vectors`."""
    try:
        vbar = target.register(VBAR)
        return vbar - target.symbol_address("vectors") if vbar else None
    except (SymbolError, TargetError):
        return None
