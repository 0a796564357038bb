"""The KASLR slide from gate 0 of the kernel's read-only IDT copy."""
from __future__ import annotations

import struct

import pytest

from gdb_memcheck.arch.x86_64.kaslr import IDT_GATE_SIZE, KERNEL_ALIGN, idt_gate_target, slide_from_gate

LINK_DIVIDE_ERROR = 0xFFFF_FFFF_8160_0AC0      # asm_exc_divide_error as linked
KERNEL_CS, INTERRUPT_GATE_DPL0 = 0x10, 0x8E


def gate(handler: int, selector: int = KERNEL_CS, ist: int = 0, type_attr: int = INTERRUPT_GATE_DPL0) -> bytes:
    """A 16-byte long-mode IDT gate: offset 15..0, selector, IST, type, offset 31..16, offset 63..32, reserved."""
    return struct.pack("<HHBBHII", handler & 0xFFFF, selector, ist, type_attr,
                       (handler >> 16) & 0xFFFF, handler >> 32, 0)


def test_an_idt_gate_is_sixteen_bytes():
    assert len(gate(LINK_DIVIDE_ERROR)) == IDT_GATE_SIZE == 16


def test_idt_gate_target_joins_the_three_offset_fields():
    assert idt_gate_target(gate(LINK_DIVIDE_ERROR)) == LINK_DIVIDE_ERROR


def test_idt_gate_target_ignores_selector_ist_and_type_bits():
    assert idt_gate_target(gate(0xFFFF_FFFF_8100_0000, selector=0xFFFF, ist=7, type_attr=0xEF)) == 0xFFFF_FFFF_8100_0000


def test_idt_gate_target_reads_only_the_first_gate_of_a_longer_buffer():
    assert idt_gate_target(gate(0x1122_3344_5566_7788) + gate(0xFFFF_FFFF_FFFF_FFFF)) == 0x1122_3344_5566_7788


def test_a_gate_at_the_link_address_means_no_slide():
    assert slide_from_gate(gate(LINK_DIVIDE_ERROR), LINK_DIVIDE_ERROR) == 0


@pytest.mark.parametrize("slide", [0x2600000, KERNEL_ALIGN, 0x3E00_0000])
def test_a_gate_moved_by_a_multiple_of_two_mib_gives_that_slide(slide):
    assert slide_from_gate(gate(LINK_DIVIDE_ERROR + slide), LINK_DIVIDE_ERROR) == slide


@pytest.mark.parametrize("moved", [0x1000, 0x2600000 + 8, KERNEL_ALIGN // 2])
def test_a_slide_not_aligned_to_two_mib_is_refused(moved):
    with pytest.raises(ValueError, match="implausible slide"):
        slide_from_gate(gate(LINK_DIVIDE_ERROR + moved), LINK_DIVIDE_ERROR)


@pytest.mark.parametrize("moved", [-KERNEL_ALIGN, -0x2600000])
def test_a_negative_slide_is_refused_even_when_aligned(moved):
    with pytest.raises(ValueError, match="implausible slide"):
        slide_from_gate(gate(LINK_DIVIDE_ERROR + moved), LINK_DIVIDE_ERROR)


def test_an_empty_gate_of_early_boot_is_refused():
    with pytest.raises(ValueError, match="implausible slide"):
        slide_from_gate(bytes(IDT_GATE_SIZE), LINK_DIVIDE_ERROR)
