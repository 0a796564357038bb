"""Where Linux puts kernel memory on x86-64 (Documentation/arch/x86/x86_64/mm.rst): the
direct map of all RAM at page_offset_base, the kernel image at __START_KERNEL_map plus
phys_base, and the KASLR slide read from the IDT."""
from __future__ import annotations

from ...target import MemoryReadError, SymbolError, Target, read_u64
from ..base import FULL, KernelMap, Regime, Span
from . import kaslr
from .paging import cr3_table, paging_mode, X86Regime

PAGE = 4096
START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000      # __START_KERNEL_map, the same under 4- and 5-level paging
FIXED_PAGE_OFFSET = {4: 0xFFFF_8880_0000_0000, 5: 0xFF11_0000_0000_0000}   # __PAGE_OFFSET_BASE_L4 / _L5


def regime(target: Target, cpu: int | None = None) -> X86Regime:
    """The paging mode from CR0, CR4 and EFER."""
    return X86Regime(paging_mode(target.register("cr0", cpu), target.register("cr4", cpu),
                                 target.register("efer", cpu)))


def current_spans(target: Target, cpu: int | None = None) -> list[Span]:
    return [Span(cr3_table(target.register("cr3", cpu)), 0, FULL)]


def process_spans(pgd: int, kernel_root: int) -> list[Span]:
    """A process's table maps the kernel half too (shared with every process)."""
    return [Span(pgd, 0, FULL)]


def kernel_spans(kernel_root: int) -> list[Span]:
    return [Span(kernel_root, 0, FULL)]


def page_offset_base(target: Target, levels: int) -> int:
    """Start of the kernel's direct map of all physical memory (randomized with KASLR)."""
    # a variable where the layout can move: 4.8 (CONFIG_RANDOMIZE_MEMORY), 4.17 (CONFIG_DYNAMIC_MEMORY_LAYOUT);
    # else the fixed __PAGE_OFFSET of the paging mode
    if not target.has_symbol("page_offset_base"):
        return FIXED_PAGE_OFFSET[5 if levels == 5 else 4]
    return read_u64(target, target.symbol_address("page_offset_base"))


def kernel_map(target: Target, paging: Regime) -> KernelMap:
    """The direct map and the image, and init_mm's table."""
    direct = page_offset_base(target, paging.levels)
    ram = read_u64(target, target.symbol_address("max_pfn")) * PAGE
    phys_base = read_u64(target, target.symbol_address("phys_base"))
    # phys_base wraps below zero when KASLR moved the image further in virtual than in
    # physical memory (__phys_addr_nodebug: unsigned arithmetic)
    windows = ((direct, direct + ram, FULL - direct),
               (START_KERNEL_MAP, target.symbol_address("_end"), (phys_base - START_KERNEL_MAP) % FULL))
    pgd = read_u64(target, target.symbol_address("init_mm") + target.layout("struct mm_struct").offset("pgd"))
    root = KernelMap(windows, 0).physical(pgd)
    return KernelMap(windows, pgd if root is None else root, direct)


def slide(target: Target) -> int | None:
    """The KASLR slide from IDT gate 0 in the CPU entry area; None while it cannot be measured."""
    try:
        gate = target.read_virtual(kaslr.CEA_RO_IDT, kaslr.IDT_GATE_SIZE)
        return kaslr.slide_from_gate(gate, target.symbol_address(kaslr.DIVIDE_ERROR_HANDLER))
    except (MemoryReadError, SymbolError, ValueError):
        return None
