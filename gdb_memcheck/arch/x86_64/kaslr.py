"""KASLR: how far the running kernel's text was moved from its link-time address.

The kernel maps a read-only copy of its IDT at a fixed address in the CPU entry
area (CPU_ENTRY_AREA_RO_IDT, arch/x86/include/asm/pgtable_64_types.h); gate 0 points
at the divide-error handler, so its run-time address minus the link-time address
of that handler is the slide.
"""
from __future__ import annotations

import struct

CEA_RO_IDT = 0xFFFF_FE00_0000_0000
IDT_GATE_SIZE = 16
DIVIDE_ERROR_HANDLER = "asm_exc_divide_error"
KERNEL_ALIGN = 0x20_0000


def idt_gate_target(gate: bytes) -> int:
    """The handler address in a 16-byte long-mode IDT gate descriptor."""
    low, _selector, _ist, _type, mid, high, _reserved = struct.unpack("<HHBBHII", gate[:IDT_GATE_SIZE])
    return low | (mid << 16) | (high << 32)


def slide_from_gate(gate: bytes, link_address: int) -> int:
    """KASLR slide from IDT gate 0 and the handler's link-time address.

    Raises ValueError when the result is not a plausible slide (not 2 MiB aligned,
    or negative), which means the gate is not the divide-error handler yet.
    """
    slide = idt_gate_target(gate) - link_address
    if slide < 0 or slide % KERNEL_ALIGN:
        raise ValueError(f"IDT gate 0 gives an implausible slide {slide:#x}")
    return slide
