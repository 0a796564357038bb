"""Where Linux puts kernel memory on arm64 (Documentation/arch/arm64/memory.rst): the
linear map of RAM at PAGE_OFFSET = -(1 << VA_BITS) (since 5.4, "arm64: mm: Flip kernel VA
space"), translated with memstart_addr; the kernel image translated with kimage_voffset;
and the KASLR slide from where swapper_pg_dir, the table in TTBR1_EL1, really is."""
from __future__ import annotations

from dataclasses import dataclass

from ...target import SymbolError, Target, TargetError, u64
from ..base import FULL, KernelMap, Regime, Span
from .paging import Arm64Regime, layout, ttbr_table

PAGE = 4096
HALF = 1 << 63
# QEMU names the system registers by its cpreg names (target/arm/helper.c): SCTLR_EL1 is "SCTLR"
SCTLR, TCR, TTBR0, TTBR1 = "SCTLR", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1"


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


@dataclass(frozen=True)
class KernelImage:
    """Where the running kernel image is: the physical address of swapper_pg_dir and
    kimage_voffset (an image address's virtual minus physical address)."""

    swapper: int
    voffset: int

    def physical(self, target: Target, symbol: str) -> int:
        """A symbol's physical address: the image is contiguous in physical memory."""
        return self.swapper + target.symbol_address(symbol) - target.symbol_address("swapper_pg_dir")

    def u64(self, target: Target, symbol: str) -> int:
        return u64(target.read_physical(self.physical(target, symbol), 8))


def find_image(target: Target, paging: Arm64Regime) -> KernelImage:
    """The image from TTBR1_EL1, with physical reads only: a vCPU stopped at EL0 cannot read
    kernel virtual memory through QEMU's gdbstub (its debug accesses take EL0's permissions)."""
    ttbr1 = ttbr_table(target.register(TTBR1))
    candidates = [ttbr1]
    # KPTI (4.16, "arm64: entry: Add exception trampoline page for exceptions from EL0"): at EL0,
    # TTBR1 holds tramp_pg_dir, which the link script puts TRAMP_SWAPPER_OFFSET below swapper_pg_dir
    if target.has_symbol("tramp_pg_dir"):
        candidates.append(ttbr1 + target.symbol_address("swapper_pg_dir") - target.symbol_address("tramp_pg_dir"))
    for table in candidates:
        image = _image_if_swapper(target, paging, table)
        if image is not None:
            return image
    raise TargetError(f"TTBR1_EL1 holds {ttbr1:#x}, neither swapper_pg_dir nor the KPTI trampoline's table: "
                      "the kernel image cannot be found")


def _image_if_swapper(target: Target, paging: Arm64Regime, table: int) -> KernelImage | None:
    """The image if `table` is swapper_pg_dir: then the kimage_voffset read beside it makes
    swapper_pg_dir's own virtual address translate, through `table`, to `table`."""
    guess = KernelImage(table, 0)
    try:
        voffset = guess.u64(target, "kimage_voffset")
        virtual = (table + voffset) % FULL
        if paging.translate(target.read_physical, table, virtual).physical == table:
            return KernelImage(table, voffset)
    except TargetError:
        pass
    return None


def kernel_map(target: Target, paging: Regime) -> KernelMap:
    """The linear map (when it can be told, see `linear_offset`) and the image, and the
    kernel's own table (swapper_pg_dir); other kernel addresses are walked."""
    if not isinstance(paging, Arm64Regime):
        raise TargetError("the arm64 kernel map needs an AArch64 translation regime")
    image = find_image(target, paging)
    kernel_image = (target.symbol_address("_text"), target.symbol_address("_end"), (FULL - image.voffset) % FULL)
    offset = linear_offset(target, paging, image)
    if offset is None:
        return KernelMap((kernel_image,), image.swapper)
    ram_end = image.u64(target, "max_pfn") * PAGE
    linear = (FULL - (1 << paging.va_bits(True)), (ram_end - offset) % FULL, offset)
    return KernelMap((linear, kernel_image), image.swapper, -offset % FULL)


def linear_offset(target: Target, paging: Arm64Regime, image: KernelImage) -> int | None:
    """physical = (va + offset) mod 2**64 in the linear map: va - PAGE_OFFSET + memstart_addr,
    PAGE_OFFSET being -(1 << VA_BITS) of the build (5.4, "arm64: mm: Flip kernel VA space").
    A 52-bit build on 48-bit hardware ("arm64: mm: Introduce 52-bit Kernel VAs", 5.4; Debian's
    6.12) keeps that PAGE_OFFSET and moves memstart_addr down, which TCR_EL1 does not show:
    the build's width is the one that translates mem_section's root array (allocated from
    memblock, so in the linear map) where swapper_pg_dir does.  None when neither does."""
    try:
        memstart = image.u64(target, "memstart_addr")
        probe = image.u64(target, "mem_section")
        walked = paging.translate(target.read_physical, image.swapper, probe).physical
    except TargetError:
        return None
    for va_bits in sorted({paging.va_bits(True), 52}):
        offset = (memstart - (FULL - (1 << va_bits))) % FULL
        if (probe + offset) % FULL == walked:
            return offset
    return None


def slide(target: Target) -> int | None:
    """How far the image sits from where the loaded symbols put it: swapper_pg_dir's run-time
    virtual address against its symbol; None while it cannot be measured."""
    try:
        paging = regime(target)
        if paging.levels == 0:
            return None
        image = find_image(target, paging)
        return (image.swapper + image.voffset - target.symbol_address("swapper_pg_dir")) % FULL
    except (SymbolError, TargetError):
        return None
