"""x86-64 paging: the CPU's paging mode, and translation of one virtual address
by walking 4- or 5-level page tables in guest-physical memory.

Intel SDM vol. 3A ch. 4.5: each level indexes 9 bits of the address; bit 7 (PS)
in a PDPT or PD entry maps a 1 GiB or 2 MiB page; NX is bit 63.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

from .. import pagetables
from ..pagetables import (LEVEL_SHIFT, MAX_TABLES, Leaf, LeafMemo, PageWalkError, PhysReader, Range,  # noqa: F401
                          Translation, WalkStep, coalesce)

PRESENT, WRITABLE, USER, ACCESSED, DIRTY, HUGE, GLOBAL = (1 << b for b in (0, 1, 2, 5, 6, 7, 8))
NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000
LEVEL_NAMES = {5: "PML5", 4: "PML4", 3: "PDPT", 2: "PD", 1: "PT"}
SPECIAL = 1 << 9            # _PAGE_SPECIAL: no struct page behind it (zero page, PFN maps)

CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10


class PagingMode(Enum):
    """How the CPU translates linear addresses."""

    OFF = "paging off"
    LEGACY_32 = "32-bit paging"
    PAE = "PAE paging"
    FOUR_LEVEL = "4-level paging"
    FIVE_LEVEL = "5-level paging"

    @property
    def levels(self) -> int:
        return {PagingMode.FOUR_LEVEL: 4, PagingMode.FIVE_LEVEL: 5}.get(self, 0)


def paging_mode(cr0: int, cr4: int, efer: int) -> PagingMode:
    """Decode the paging mode from control registers (SDM 3A table 4-1)."""
    if not cr0 & CR0_PG:
        return PagingMode.OFF
    if not cr4 & CR4_PAE:
        return PagingMode.LEGACY_32
    if not efer & EFER_LMA:
        return PagingMode.PAE
    return PagingMode.FIVE_LEVEL if cr4 & CR4_LA57 else PagingMode.FOUR_LEVEL


def is_canonical(va: int, levels: int) -> bool:
    """True when the bits above the top translated bit all copy it."""
    top = 57 if levels == 5 else 48
    high = va >> (top - 1)
    return high == 0 or high == (1 << (65 - top)) - 1


def cr3_table(cr3: int) -> int:
    """Physical address of the top-level table in CR3 (PCID and flag bits dropped)."""
    return cr3 & ADDR_MASK


def sign_extend(va: int, levels: int) -> int:
    """The canonical form of a virtual address built from table indices."""
    top = 57 if levels == 5 else 48
    if va & (1 << (top - 1)):
        va |= ((1 << 64) - 1) ^ ((1 << top) - 1)
    return va


@dataclass(frozen=True)
class X86Entries:
    """x86-64 entries (SDM 3A 4.5): bit 0 present, PS (bit 7) makes a PDPT or PD entry a
    1 GiB or 2 MiB page, R/W and U/S must be set at every level, NX (bit 63) at any."""

    depths: tuple = (4, 5)
    names: dict = field(default_factory=lambda: dict(LEVEL_NAMES))
    address_mask: int = ADDR_MASK
    bit0_present: bool = True
    run_ignored: int = ACCESSED | DIRTY
    top_perms: tuple = (WRITABLE | USER, False)

    def present(self, entry: int, level: int) -> bool:
        return True

    def leaf(self, entry: int, level: int) -> bool:
        return level == 1 or (level in (2, 3) and bool(entry & HUGE))

    def descend(self, perms: tuple, entry: int) -> tuple:
        return perms[0] & entry, perms[1] or bool(entry & NX)

    def access(self, perms: tuple, entry: int) -> tuple[bool, bool, bool]:
        eff = perms[0] & entry
        return bool(eff & WRITABLE), bool(eff & USER), not (perms[1] or entry & NX)

    def flags(self, entry: int, level: int) -> str:
        names = [(PRESENT, "P"), (WRITABLE, "W"), (USER, "U"), (ACCESSED, "A"), (DIRTY, "D"), (HUGE, "PS"),
                 (GLOBAL, "G"), (NX, "NX")]
        return " ".join(name for bit, name in names if entry & bit) or "-"

    def to_virtual(self, raw: int, levels: int) -> int:
        return sign_extend(raw, levels)

    def to_raw(self, va: int, levels: int) -> int:
        """Position of `va` in the unextended 48/57-bit space (the hole between the
        halves and anything past the top clamp to the nearest edge)."""
        top = 57 if levels == 5 else 48
        half, span = 1 << (top - 1), 1 << top
        if va <= half:
            return va
        upper_start = (1 << 64) - half
        if va < upper_start:
            return half
        return min(va - ((1 << 64) - span), span)

    def reject(self, va: int, levels: int) -> str | None:
        return None if is_canonical(va, levels) else f"{va:#x} is not a canonical {levels}-level address"


X86 = X86Entries()


def translate(read_phys: PhysReader, root: int, va: int, levels: int = 4) -> Translation:
    """Walk the tables from `root` (physical) for `va`; raise PageWalkError where it stops."""
    return pagetables.translate(X86, read_phys, root, va, levels)


def leaves(read_phys: PhysReader, root: int, levels: int, start: int = 0, end: int = 1 << 64,
           max_tables: int = MAX_TABLES, merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
    """Every present leaf overlapping [start, end), in address order (pagetables.leaves)."""
    return pagetables.leaves(X86, read_phys, root, levels, start, end, max_tables, merge_runs, memo)


def step(level: int, table: int, index: int, entry: int) -> WalkStep:
    """A walk step named and decoded as x86 names its tables and bits."""
    return WalkStep(level, table, index, entry, LEVEL_NAMES[level], X86.flags(entry, level))


@dataclass(frozen=True)
class X86Regime:
    """The regime of an x86-64 vCPU: one table (CR3) maps both halves."""

    mode: PagingMode
    special: int = SPECIAL

    @property
    def levels(self) -> int:
        return self.mode.levels

    @property
    def description(self) -> str:
        return self.mode.value

    def translate(self, read: PhysReader, root: int, va: int) -> Translation:
        return translate(read, root, va, self.levels)

    def leaves(self, read: PhysReader, root: int, start: int = 0, end: int = 1 << 64, max_tables: int = MAX_TABLES,
               merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
        return leaves(read, root, self.levels, start, end, max_tables, merge_runs, memo)

    def untag(self, va: int) -> int:
        """Addresses are used whole (no linear-address masking)."""
        return va

    def reject(self, va: int) -> str | None:
        return X86.reject(va, self.levels)
