"""AArch64 stage-1 translation at EL1&0 with the 4 KiB granule (Arm ARM D8): TTBR0_EL1
maps the low half (user), TTBR1_EL1 the high half (kernel), each 2**(64 - TxSZ) bytes,
walked from L0 (48-bit VAs, 4 levels) or L1 (39-bit VAs, 3 levels) down to L3.

A descriptor is valid when bit 0 is set; at L1 and L2 bit 1 clear makes it a block
(1 GiB, 2 MiB), at L3 only 0b11 is a page.  Access combines every level: AP[2:1] and
UXN/PXN in the leaf, APTable/UXNTable/PXNTable in the tables above it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Iterator

from .. import pagetables
from ..pagetables import MAX_TABLES, Leaf, LeafMemo, PhysReader, Translation

VALID, TABLE = 1 << 0, 1 << 1
AP_EL0, AP_RDONLY = 1 << 6, 1 << 7                 # AP[1], AP[2]
AF, NG = 1 << 10, 1 << 11
DBM, CONTIGUOUS, PXN, UXN = 1 << 51, 1 << 52, 1 << 53, 1 << 54
PXN_TABLE, UXN_TABLE, AP_TABLE_NO_EL0, AP_TABLE_RDONLY = 1 << 59, 1 << 60, 1 << 61, 1 << 62
# Linux's use of the software bits (arch/arm64/include/asm/pgtable-prot.h)
PTE_DIRTY, PTE_SPECIAL = 1 << 55, 1 << 56
ADDR_MASK = 0x0000_FFFF_FFFF_F000
LEVEL_NAMES = {4: "L0", 3: "L1", 2: "L2", 1: "L3"}
TTBR_BADDR = 0x0000_FFFF_FFFF_F000                 # ASID in [63:48] and CnP in bit 0 dropped

SCTLR_M = 1 << 0
TCR_T0SZ_SHIFT, TCR_T1SZ_SHIFT = 0, 16
TCR_TG0_SHIFT, TCR_TG1_SHIFT = 14, 30
TG0_4K, TG1_4K = 0b00, 0b10
TCR_TBI0, TCR_TBI1 = 1 << 37, 1 << 38                  # top byte ignored: Linux sets TBI0 for user tags
TAG_SHIFT = 56


class Mmu(Enum):
    """Whether stage-1 translation is on, and how deep its tables are."""

    OFF = "MMU off"
    THREE_LEVEL = "3-level paging"
    FOUR_LEVEL = "4-level paging"

    @property
    def levels(self) -> int:
        return {Mmu.THREE_LEVEL: 3, Mmu.FOUR_LEVEL: 4}.get(self, 0)


@dataclass(frozen=True)
class Layout:
    """The translation regime the registers describe."""

    mmu: Mmu
    va_bits_low: int
    va_bits_high: int
    tbi_low: bool = False          # bits [63:56] of a TTBR0 address are a tag, not part of it
    tbi_high: bool = False


def layout(sctlr: int, tcr: int) -> Layout:
    """Decode SCTLR_EL1 and TCR_EL1; a granule other than 4 KiB, or VAs over 48 bits, are refused."""
    if not sctlr & SCTLR_M:
        return Layout(Mmu.OFF, 0, 0)
    if (tcr >> TCR_TG0_SHIFT) & 3 != TG0_4K or (tcr >> TCR_TG1_SHIFT) & 3 != TG1_4K:
        raise pagetables.PageWalkError("only the 4 KiB translation granule is supported", [])
    low, high = 64 - ((tcr >> TCR_T0SZ_SHIFT) & 0x3F), 64 - ((tcr >> TCR_T1SZ_SHIFT) & 0x3F)
    if max(low, high) > 48:
        raise pagetables.PageWalkError(f"{max(low, high)}-bit virtual addresses (FEAT_LVA/LPA2) are not supported; "
                                       "48 bits at most", [])
    return Layout(_mmu(max(low, high)), low, high, bool(tcr & TCR_TBI0), bool(tcr & TCR_TBI1))


def _mmu(va_bits: int) -> Mmu:
    return Mmu.FOUR_LEVEL if levels_for(va_bits) == 4 else Mmu.THREE_LEVEL


def levels_for(va_bits: int) -> int:
    """Levels a 4 KiB-granule walk of a va_bits space needs: 39 bits -> 3, 48 -> 4."""
    return -(-(va_bits - 12) // 9)


def ttbr_table(ttbr: int) -> int:
    """Physical address of the top-level table in a TTBRn_EL1 value."""
    return ttbr & TTBR_BADDR


def is_high(va: int) -> bool:
    """Whether TTBR1 translates `va` (bit 55 chooses, so a tagged user pointer stays low)."""
    return bool(va >> 55 & 1)


@dataclass(frozen=True)
class Arm64Entries:
    """AArch64 descriptors for one half of the address space (see the module's docstring)."""

    high: bool
    va_bits: int
    depths: tuple = (3, 4)
    names: dict = field(default_factory=lambda: dict(LEVEL_NAMES))
    address_mask: int = ADDR_MASK
    bit0_present: bool = False
    run_ignored: int = AF | PTE_DIRTY
    top_perms: tuple = (False, False, False, False)     # (no EL0, read-only, UXN, PXN) from tables above

    def present(self, entry: int, level: int) -> bool:
        if level in (2, 3):
            return bool(entry & VALID)
        return entry & (VALID | TABLE) == VALID | TABLE     # L0: tables only; L3: pages only

    def leaf(self, entry: int, level: int) -> bool:
        return level == 1 or (level in (2, 3) and not entry & TABLE)

    def descend(self, perms: tuple, entry: int) -> tuple:
        no_el0, rdonly, uxn, pxn = perms
        return (no_el0 or bool(entry & AP_TABLE_NO_EL0), rdonly or bool(entry & AP_TABLE_RDONLY),
                uxn or bool(entry & UXN_TABLE), pxn or bool(entry & PXN_TABLE))

    def access(self, perms: tuple, entry: int) -> tuple[bool, bool, bool]:
        no_el0, rdonly, uxn, pxn = perms
        user = bool(entry & AP_EL0) and not no_el0
        writable = not entry & AP_RDONLY and not rdonly
        executable = not (uxn or entry & UXN) if user else not (pxn or entry & PXN)
        return writable, user, executable

    def flags(self, entry: int, level: int) -> str:
        if not entry & VALID:
            return "-"
        kind = "block" if level in (2, 3) and not entry & TABLE else ("page" if level == 1 else "table")
        bits = [(AP_EL0, "EL0"), (AP_RDONLY, "RO"), (AF, "AF"), (NG, "nG"), (DBM, "DBM"), (CONTIGUOUS, "CONT"),
                (PXN, "PXN"), (UXN, "UXN"), (PTE_DIRTY, "DIRTY"), (PTE_SPECIAL, "SPECIAL")]
        if kind == "table":
            bits = [(PXN_TABLE, "PXNTable"), (UXN_TABLE, "UXNTable"), (AP_TABLE_NO_EL0, "APTable.noEL0"),
                    (AP_TABLE_RDONLY, "APTable.RO")]
        return " ".join([kind] + [name for bit, name in bits if entry & bit])

    @property
    def base(self) -> int:
        return (1 << 64) - (1 << self.va_bits) if self.high else 0

    def to_virtual(self, raw: int, levels: int) -> int:
        return self.base + raw

    def to_raw(self, va: int, levels: int) -> int:
        return min(max(va - self.base, 0), 1 << self.va_bits)

    def reject(self, va: int, levels: int) -> str | None:
        if is_high(va) != self.high:
            return f"{va:#x} is in the {'low' if self.high else 'high'} half: the other TTBR translates it"
        outside = (va & ((1 << 56) - 1)) >> self.va_bits          # bits [55:va_bits]; [63:56] may be a tag
        if outside != (((1 << (56 - self.va_bits)) - 1) if self.high else 0):
            return f"{va:#x} is outside the {self.va_bits}-bit {'TTBR1' if self.high else 'TTBR0'} range"
        return None


@lru_cache(maxsize=None)
def entries(high: bool, va_bits: int) -> Arm64Entries:
    """The format of one half (one instance per half and size, so walks can be remembered)."""
    return Arm64Entries(high, va_bits)


def translate(read_phys: PhysReader, root: int, va: int, va_bits: int) -> Translation:
    """Walk from `root`, the table of the half `va` is in; raise PageWalkError where it stops."""
    return pagetables.translate(entries(is_high(va), va_bits), read_phys, root, va, levels_for(va_bits))


def leaves(read_phys: PhysReader, root: int, va_bits: int, high: bool, start: int = 0, end: int = 1 << 64,
           max_tables: int = MAX_TABLES, merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
    """Every present leaf of one half overlapping [start, end), in address order."""
    return pagetables.leaves(entries(high, va_bits), read_phys, root, levels_for(va_bits), start, end, max_tables,
                             merge_runs, memo)


@dataclass(frozen=True)
class Arm64Regime:
    """The regime of an AArch64 vCPU: TTBR0 maps the low half, TTBR1 the high half."""

    regime: Layout
    special: int = PTE_SPECIAL

    @property
    def levels(self) -> int:
        return self.regime.mmu.levels

    @property
    def description(self) -> str:
        return self.regime.mmu.value

    def va_bits(self, high: bool) -> int:
        return self.regime.va_bits_high if high else self.regime.va_bits_low

    def tagged(self, high: bool) -> bool:
        return self.regime.tbi_high if high else self.regime.tbi_low

    def untag(self, va: int) -> int:
        """`va` with a top-byte tag replaced by the half's sign (bit 55), where TCR_EL1 ignores it."""
        high = is_high(va)
        if not self.tagged(high):
            return va
        return (va & ((1 << TAG_SHIFT) - 1)) | ((0xFF << TAG_SHIFT) if high else 0)

    def translate(self, read: PhysReader, root: int, va: int) -> Translation:
        va = self.untag(va)
        bits = self.va_bits(is_high(va))
        return pagetables.translate(entries(is_high(va), bits), read, root, va, levels_for(bits))

    def leaves(self, read: PhysReader, root: int, start: int = 0, end: int = 1 << 64, max_tables: int = MAX_TABLES,
               merge_runs: bool = False, memo: LeafMemo | None = None) -> Iterator[Leaf]:
        """The leaves of one half's table: the high half when `start` lies in it."""
        high = start >= 1 << 63
        return leaves(read, root, self.va_bits(high), high, start, end, max_tables, merge_runs, memo)

    def reject(self, va: int) -> str | None:
        high = is_high(va)
        if self.untag(va) >> TAG_SHIFT != (0xFF if high else 0):
            return (f"{va:#x} is in neither half: bits 63:56 must copy bit 55 where the top byte is not a tag "
                    f"(TCR_EL1.TBI{int(high)} is off)")
        bits, untagged = self.va_bits(high), self.untag(va)
        why = entries(high, bits).reject(untagged, levels_for(bits))
        if why and untagged != va:
            why = f"{va:#x} (untagged {untagged:#x})" + why.removeprefix(f"{untagged:#x}")
        return why
