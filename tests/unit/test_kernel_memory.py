"""KernelMemory: kernel virtual addresses turned into physical reads (direct map, image, page walk)."""
from __future__ import annotations

import pytest

from fakes import CR0_BOOTED, CR4_BOOTED, EFER_BOOTED, FakeTarget
from gdb_memcheck.arch import X86_64
from gdb_memcheck.arch.x86_64.linux import START_KERNEL_MAP
from gdb_memcheck.linux.memory import KernelMemory
from gdb_memcheck.target import Field, StructLayout

DIRECT_MAP = 0xFFFF_8880_0000_0000
DATA_VA = START_KERNEL_MAP + 0x0200_0000        # where the variables below live, in the image
MAX_PFN = 0x2_0000                               # 512 MiB of RAM


def kernel_at(slide: int, phys_base: int) -> FakeTarget:
    """A kernel image moved `slide` bytes in virtual memory, its phys_base as the kernel keeps it."""
    data_va = DATA_VA + slide
    data_pa = (data_va - START_KERNEL_MAP + phys_base) & ((1 << 64) - 1)
    symbols = {"page_offset_base": data_va, "max_pfn": data_va + 8, "_end": data_va + 0x10_0000,
               "phys_base": data_va + 16, "init_mm": data_va + 0x100}
    target = FakeTarget(registers=[{"cr0": CR0_BOOTED, "cr4": CR4_BOOTED, "efer": EFER_BOOTED}], symbols=symbols,
                        layouts={"struct mm_struct": StructLayout("struct mm_struct", 64, {"pgd": Field(0, 8)})},
                        identity=False)
    target.map_virtual(data_va, data_pa, 0x1000)
    target.write_u64(data_va, DIRECT_MAP)
    target.write_u64(data_va + 8, MAX_PFN)
    target.write_u64(data_va + 16, phys_base & ((1 << 64) - 1))
    target.write_u64(data_va + 0x100, DIRECT_MAP + 0x10_0000)      # init_mm.pgd
    target.write_physical(data_pa + 0x200, b"kernel data")
    return target


def kernel_memory(target: FakeTarget) -> KernelMemory:
    paging = X86_64.regime(target, None)
    return KernelMemory(target, paging, X86_64.kernel_map(target, paging))


@pytest.mark.parametrize("slide, phys_base", [(0, 0), (0x2E00_0000, 0x1640_0000), (0x3FA0_0000, -0x1400_0000)])
def test_kernel_image_addresses_read_at_their_physical_place_even_when_phys_base_is_negative(slide, phys_base):
    kmem = kernel_memory(kernel_at(slide, phys_base))
    assert kmem.read(DATA_VA + slide + 0x200, 11) == b"kernel data"
    assert kmem.to_physical(DATA_VA + slide) == DATA_VA - START_KERNEL_MAP + slide + phys_base


def test_direct_map_addresses_are_physical_addresses_offset_by_page_offset_base():
    kmem = kernel_memory(kernel_at(0, 0))
    assert kmem.to_physical(DIRECT_MAP + 0x1234_5678) == 0x1234_5678
