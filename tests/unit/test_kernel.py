"""Facts about the running kernel read through a Target: uname fields, paging mode, per-CPU data, the summary line."""
from __future__ import annotations

import pytest

from fakes import CR0_AT_RESET, CR0_BOOTED, CR4_BOOTED, EFER_BOOTED, FakeTarget
from gdb_memcheck.arch import X86_64
from gdb_memcheck.arch.x86_64.linux import page_offset_base
from gdb_memcheck.linux.kernel import (
    UTS_FIELD_LEN, KernelInfo, banner_mismatch, current_task, find_banner, per_cpu_address, read_kernel_info,
    uts_field)
from gdb_memcheck.arch.x86_64.paging import CR4_LA57, CR4_PAE, PagingMode
from gdb_memcheck.target import Field, MemoryReadError, StructLayout, SymbolError, TargetError

KERNEL_DATA_VA, KERNEL_DATA_PA = 0xFFFF_FFFF_82A0_0000, 0x02A0_0000
INIT_UTS_NS = KERNEL_DATA_VA + 0x1_2340
PER_CPU_OFFSET = KERNEL_DATA_VA + 0x4000                 # unsigned long __per_cpu_offset[NR_CPUS]
CURRENT_TASK = 0x0002_1F40                               # a per-CPU symbol: an offset into the per-CPU area
PER_CPU_AREAS = [0xFFFF_8880_3EA0_0000, 0xFFFF_8880_3EC0_0000]
PER_CPU_AREAS_PA = [0x3EA0_0000, 0x3EC0_0000]
TASKS = [0xFFFF_8880_0351_8000, 0xFFFF_8880_0420_C680]

# struct uts_namespace with `name` (struct new_utsname: six char[65]) after an 8-byte member
NAME = 8
UTS_NAMESPACE = StructLayout("struct uts_namespace", 0x1B0, {
    "name": Field(NAME, 6 * UTS_FIELD_LEN),
    "name.sysname": Field(NAME + 0 * UTS_FIELD_LEN, UTS_FIELD_LEN),
    "name.nodename": Field(NAME + 1 * UTS_FIELD_LEN, UTS_FIELD_LEN),
    "name.release": Field(NAME + 2 * UTS_FIELD_LEN, UTS_FIELD_LEN),
    "name.version": Field(NAME + 3 * UTS_FIELD_LEN, UTS_FIELD_LEN),
    "name.machine": Field(NAME + 4 * UTS_FIELD_LEN, UTS_FIELD_LEN),
})


def utsname_field(text: bytes) -> bytes:
    """A char[65] holding `text`, NUL-padded."""
    return text.ljust(UTS_FIELD_LEN, b"\0")


def booted_kernel(cr4: int = CR4_BOOTED) -> FakeTarget:
    """A FakeTarget like a booted 2-vCPU kernel: init_uts_ns, per-CPU areas, current tasks."""
    target = FakeTarget(registers=[{"cr0": CR0_BOOTED, "cr4": cr4, "efer": EFER_BOOTED} for _ in range(2)],
                        symbols={"init_uts_ns": INIT_UTS_NS, "__per_cpu_offset": PER_CPU_OFFSET,
                                 "current_task": CURRENT_TASK, "page_offset_base": KERNEL_DATA_VA + 0x8000},
                        layouts={"struct uts_namespace": UTS_NAMESPACE}, identity=False)
    target.map_virtual(KERNEL_DATA_VA, KERNEL_DATA_PA, 0x10_0000)
    for area, pa in zip(PER_CPU_AREAS, PER_CPU_AREAS_PA):
        target.map_virtual(area, pa, 0x4_0000)
    name = b"".join(utsname_field(t) for t in (b"Linux", b"lab", b"6.6.58-memcheck", b"#1 SMP PREEMPT_DYNAMIC",
                                                   b"x86_64", b"(none)"))
    target.write_virtual(INIT_UTS_NS, b"\xAA" * NAME + name)
    for cpu, (area, task) in enumerate(zip(PER_CPU_AREAS, TASKS)):
        target.write_u64(PER_CPU_OFFSET + 8 * cpu, area)
        target.write_u64(area + CURRENT_TASK, task)
    target.write_u64(KERNEL_DATA_VA + 0x8000, 0xFFFF_8880_0000_0000)
    return target


# --- read_kernel_info ---------------------------------------------------------------------

def test_kernel_info_reads_release_and_machine_from_init_uts_ns_at_the_layout_offsets():
    info = read_kernel_info(booted_kernel(), X86_64.regime(booted_kernel(), None), slide=0)
    assert (info.release, info.machine) == ("6.6.58-memcheck", "x86_64")


def test_kernel_info_follows_the_layout_not_a_fixed_struct_shape():
    target = booted_kernel()
    target.layouts["struct uts_namespace"] = StructLayout("struct uts_namespace", 0x1B0, {
        "name.release": Field(NAME + 4 * UTS_FIELD_LEN, UTS_FIELD_LEN),    # swapped on purpose
        "name.machine": Field(NAME + 2 * UTS_FIELD_LEN, UTS_FIELD_LEN)})
    info = read_kernel_info(target, X86_64.regime(target, None), slide=0)
    assert (info.release, info.machine) == ("x86_64", "6.6.58-memcheck")


def test_a_uts_field_filling_all_65_bytes_is_read_whole():
    target = booted_kernel()
    target.write_virtual(INIT_UTS_NS + NAME + 2 * UTS_FIELD_LEN, b"r" * UTS_FIELD_LEN)
    assert uts_field(target, "release") == "r" * UTS_FIELD_LEN


@pytest.mark.parametrize("cr4, mode", [(CR4_BOOTED, PagingMode.FOUR_LEVEL),
                                       (CR4_BOOTED | CR4_LA57, PagingMode.FIVE_LEVEL)])
def test_kernel_info_reports_the_paging_mode_of_the_cpu(cr4, mode):
    target = booted_kernel(cr4)
    assert read_kernel_info(target, X86_64.regime(target, None), slide=None).paging == mode.value


def test_kernel_info_keeps_the_slide_it_was_given():
    assert read_kernel_info(booted_kernel(), X86_64.regime(booted_kernel(), None), slide=0x2600000).slide == 0x2600000


def test_paging_mode_is_read_from_the_selected_cpu_unless_one_is_named():
    target = booted_kernel()
    target.registers[1]["cr4"] |= CR4_LA57
    assert X86_64.regime(target, None).mode is PagingMode.FOUR_LEVEL
    assert X86_64.regime(target, 1).mode is PagingMode.FIVE_LEVEL
    target.selected_cpu = 1
    assert X86_64.regime(target, None).mode is PagingMode.FIVE_LEVEL


def test_kernel_info_with_paging_off_raises_a_clear_target_error_before_reading_memory():
    target = FakeTarget(registers=[{"cr0": CR0_AT_RESET, "cr4": 0, "efer": 0}], identity=False)
    with pytest.raises(TargetError, match="paging off: the CPU is at reset or in early boot, "
                                          "kernel data is not readable yet") as err:
        read_kernel_info(target, X86_64.regime(target, None), slide=None)
    assert not isinstance(err.value, (MemoryReadError, SymbolError))


@pytest.mark.parametrize("cr0, cr4, efer, mode", [
    (CR0_BOOTED, 0, 0, "32-bit paging"),
    (CR0_BOOTED, CR4_PAE, 0, "PAE paging"),
])
def test_kernel_info_in_legacy_paging_modes_raises_naming_the_mode(cr0, cr4, efer, mode):
    target = FakeTarget(registers=[{"cr0": cr0, "cr4": cr4, "efer": efer}], identity=False)
    with pytest.raises(TargetError, match=f"^{mode}: .*not readable yet"):
        read_kernel_info(target, X86_64.regime(target, None), slide=None)


def test_kernel_info_without_the_uts_layout_raises_symbol_error():
    target = booted_kernel()
    del target.layouts["struct uts_namespace"]
    with pytest.raises(SymbolError):
        read_kernel_info(target, X86_64.regime(target, None), slide=0)


# --- per-CPU data -------------------------------------------------------------------------

@pytest.mark.parametrize("cpu", [0, 1])
def test_per_cpu_address_adds_the_cpus_per_cpu_offset_to_the_symbol(cpu):
    assert per_cpu_address(booted_kernel(), "current_task", cpu) == PER_CPU_AREAS[cpu] + CURRENT_TASK


@pytest.mark.parametrize("cpu", [0, 1])
def test_current_task_is_read_from_the_cpus_copy_of_current_task(cpu):
    assert current_task(booted_kernel(), cpu) == TASKS[cpu]


def test_current_task_reads_through_the_given_loader():
    target = FakeTarget(symbols={"__per_cpu_offset": PER_CPU_OFFSET, "current_task": CURRENT_TASK},
                        identity=False)                  # no memory: every load must go through `load`
    memory = {PER_CPU_OFFSET + 8: PER_CPU_AREAS[1], PER_CPU_AREAS[1] + CURRENT_TASK: TASKS[1]}
    loads: list[int] = []

    def load(addr: int) -> int:
        loads.append(addr)
        return memory[addr]

    assert current_task(target, 1, load) == TASKS[1]
    assert loads == [PER_CPU_OFFSET + 8, PER_CPU_AREAS[1] + CURRENT_TASK]


def test_an_arm64_per_cpu_offset_wraps_below_the_images_per_cpu_section():
    """arm64 links __entry_task in the image (0xffff8000...) and allocates each CPU's area
    in the linear map below it, so __per_cpu_offset[cpu] is 'negative'."""
    entry_task, area = 0xFFFF_8000_094C_92C8, 0xFFFF_0000_1FE0_0000
    target = FakeTarget(symbols={"__per_cpu_offset": PER_CPU_OFFSET, "__entry_task": entry_task}, identity=False)
    memory = {PER_CPU_OFFSET: (area - 0xFFFF_8000_0949_0000) % (1 << 64), area + 0x392C8: TASKS[0]}
    assert per_cpu_address(target, "__entry_task", 0, memory.__getitem__) == area + 0x392C8
    assert current_task(target, 0, memory.__getitem__) == TASKS[0]


def test_current_task_of_an_unreadable_per_cpu_area_raises_memory_read_error():
    target = booted_kernel()
    target.write_u64(PER_CPU_OFFSET + 8, 0xFFFF_8880_7000_0000)      # an area nothing maps
    with pytest.raises(MemoryReadError):
        current_task(target, 1)


def kernel_with_pcpu_hot() -> FakeTarget:
    """A 6.2+ kernel: no current_task variable; the task is pcpu_hot.current_task."""
    target = booted_kernel()
    del target.symbols["current_task"]
    target.symbols["pcpu_hot"] = CURRENT_TASK
    target.layouts["struct pcpu_hot"] = StructLayout("struct pcpu_hot", 64, {"current_task": Field(0, 8),
                                                                             "preempt_count": Field(8, 4)})
    return target


@pytest.mark.parametrize("cpu", [0, 1])
def test_current_task_is_read_from_pcpu_hot_when_the_kernel_has_no_current_task_variable(cpu):
    assert current_task(kernel_with_pcpu_hot(), cpu) == TASKS[cpu]


def test_current_task_uses_the_member_offset_of_pcpu_hot_current_task():
    target = kernel_with_pcpu_hot()
    target.layouts["struct pcpu_hot"] = StructLayout("struct pcpu_hot", 64, {"current_task": Field(16, 8)})
    target.write_u64(PER_CPU_AREAS[0] + CURRENT_TASK + 16, TASKS[1])
    assert current_task(target, 0) == TASKS[1]


def test_current_task_on_a_kernel_with_neither_variable_raises_one_symbol_error():
    target = booted_kernel()
    del target.symbols["current_task"]
    with pytest.raises(SymbolError, match="none of current_task, pcpu_hot.current_task and __entry_task"):
        current_task(target, 0)


def test_page_offset_base_is_the_value_of_the_variable():
    assert page_offset_base(booted_kernel(), 4) == 0xFFFF_8880_0000_0000


@pytest.mark.parametrize("cr4, base", [(CR4_BOOTED, 0xFFFF_8880_0000_0000),
                                       (CR4_BOOTED | CR4_LA57, 0xFF11_0000_0000_0000)])
def test_page_offset_base_without_the_variable_is_the_fixed_base_of_the_paging_mode(cr4, base):
    target = booted_kernel(cr4)
    del target.symbols["page_offset_base"]
    assert page_offset_base(target, X86_64.regime(target, None).levels) == base


# --- KernelInfo.summary -------------------------------------------------------------------

def test_summary_says_kaslr_off_for_a_zero_slide():
    info = KernelInfo("6.6.58", "x86_64", PagingMode.FOUR_LEVEL.value, 0)
    assert info.summary() == "Linux 6.6.58 x86_64, 4-level paging, KASLR off"


def test_summary_gives_a_slide_in_hex():
    info = KernelInfo("6.6.58", "x86_64", PagingMode.FIVE_LEVEL.value, 0x2600000)
    assert info.summary() == "Linux 6.6.58 x86_64, 5-level paging, KASLR slide 0x2600000"


def test_summary_says_unknown_when_the_slide_could_not_be_measured():
    info = KernelInfo("6.6.58", "x86_64", PagingMode.FOUR_LEVEL.value, None)
    assert info.summary() == "Linux 6.6.58 x86_64, 4-level paging, KASLR unknown"


# --- StructLayout -------------------------------------------------------------------------

def test_struct_layout_gives_the_offset_of_nested_members():
    assert UTS_NAMESPACE.offset("name.machine") == NAME + 4 * UTS_FIELD_LEN
    assert UTS_NAMESPACE.has("name.release") and not UTS_NAMESPACE.has("release")


def test_struct_layout_offset_of_a_missing_member_raises_symbol_error_naming_the_struct():
    layout = StructLayout("struct task_struct", 0x2A40, {"comm": Field(0x758, 16)})
    with pytest.raises(SymbolError, match=r"^struct task_struct has no member 'rss_stat' in this kernel$"):
        layout.offset("rss_stat")


def test_a_symbol_error_is_a_target_error():
    with pytest.raises(TargetError):
        StructLayout("struct mm_struct", 0).offset("pgd")


# --- a vmlinux that is not the running kernel ---------------------------------------------

BANNER_61 = (b"Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) "
             b"12.2.0, GNU ld 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)\n\0")
BANNER_612 = (b"Linux version 6.12.117+deb12-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 12.2.0) "
              b"#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)\n\0")


def test_a_vmlinux_whose_banner_the_guest_holds_is_the_running_kernel():
    assert banner_mismatch(BANNER_61 + b"\xAA" * 16, BANNER_61 + b"\x55" * 16) is None


def test_another_builds_vmlinux_is_named_in_one_line_with_the_kernel_the_guest_runs():
    line = banner_mismatch(BANNER_61, b"\x90" * 64, running=BANNER_612[:-2].decode())
    assert line == ("the loaded vmlinux is not the running kernel: the vmlinux is 'Linux 6.1.0-57-cloud-amd64 #1 "
                    "SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)', the guest runs 'Linux "
                    "6.12.117+deb12-cloud-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)'; "
                    "load the running kernel's vmlinux (with debug info)")
    assert "\n" not in line


def test_without_the_guests_own_banner_the_mismatch_still_says_what_is_wrong():
    line = banner_mismatch(BANNER_61, b"")
    assert "the guest does not hold its banner at linux_banner" in line


def test_the_guests_banner_is_found_in_physical_memory_past_partial_copies():
    ram = bytearray(3 << 20)
    ram[0x10_0000:0x10_0020] = b"Linux version 6.12.117+deb12-clo"          # a truncated copy first
    ram[0x20_0ff0:0x20_0ff0 + len(BANNER_612)] = BANNER_612                  # across a 1 MiB chunk boundary
    found = find_banner(lambda addr, size: bytes(ram[addr:addr + size]), len(ram))
    assert found == BANNER_612[:-2].decode()


def test_no_banner_in_physical_memory_is_none():
    assert find_banner(lambda addr, size: bytes(size), 4 << 20) is None
