"""VMA names as each kernel's /proc/PID/maps gives them, over kernel objects built in a
FakeTarget: newline escaping, anonymous names where 6.1 and 6.12 keep them, and the
[heap] and [stack] rules."""
from __future__ import annotations

import pytest

from gdb_memcheck.linux.vmas import MmInfo, Vma, mangle_path
from kernel_objects import MM, SHARED, Kernel, name_of, pseudo_file


# --- escaping -----------------------------------------------------------------------------

def test_only_a_newline_is_escaped_and_as_octal_012():
    assert mangle_path("/tmp/a\nb c\\d\t") == "/tmp/a\\012b c\\d\t"


def test_a_maps_line_with_a_newline_in_the_name_stays_one_line():
    vma = Vma(0, 0x7FFF_F7FF_0000, 0x7FFF_F7FF_1000, SHARED, 0, 0x15, 6, "/tmp/x\nnew line (deleted)")
    line = vma.maps_line()
    assert "\n" not in line and line.endswith(" /tmp/x\\012new line (deleted)")


def test_a_memfd_named_with_a_newline_is_escaped_in_its_maps_line():
    kernel = Kernel()
    mnt, dentry = pseudo_file(kernel, b"memfd:a\nb", "simple_dname")
    vma = kernel.vma(0x7000_0000, 0x7000_1000, SHARED, file=kernel.file(mnt, dentry, kernel.inode(9, dev=1)))
    assert kernel.reader().vma(vma, MM).maps_line().endswith(" /memfd:a\\012b (deleted)")


# --- anonymous names ---------------------------------------------------------------------

@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_a_named_private_anonymous_mapping_is_anon_name(version):
    kernel = Kernel(version)
    vma = kernel.vma(0x7000_0000, 0x7000_5000, anon_name=kernel.anon_name(b"wl-names-private"))
    assert name_of(kernel, vma) == "[anon:wl-names-private]"


def test_on_6_12_a_named_shared_anonymous_mapping_is_anon_shmem():
    kernel = Kernel("6.12")
    mnt, dentry = pseudo_file(kernel, b"dev/zero", "simple_dname")
    file = kernel.file(mnt, dentry, kernel.inode(11, dev=1))
    vma = kernel.vma(0x7000_0000, 0x7000_6000, SHARED, file=file, anon_name=kernel.anon_name(b"wl-names-shared"))
    assert name_of(kernel, vma) == "[anon_shmem:wl-names-shared]"


def test_on_6_1_a_file_vmas_union_word_is_its_tree_node_not_a_name():
    kernel = Kernel("6.1")
    mnt, dentry = pseudo_file(kernel, b"dev/zero", "simple_dname")
    file = kernel.file(mnt, dentry, kernel.inode(11, dev=1))
    vma = kernel.vma(0x7000_0000, 0x7000_6000, SHARED, file=file, union_word=kernel.anon_name(b"not-a-name"))
    assert name_of(kernel, vma) == "/dev/zero (deleted)"


@pytest.mark.parametrize("version", ["6.1", "6.12"])
def test_without_config_anon_vma_name_a_set_word_is_not_read_as_a_name(version):
    kernel = Kernel(version, anon_vma_name=False)
    vma = kernel.vma(0x7000_0000, 0x7000_5000, anon_name=0xDEAD_BEEF_0000)
    assert name_of(kernel, vma) == ""


def test_the_heap_and_the_stack_win_over_an_anonymous_name():
    kernel = Kernel()
    name = kernel.anon_name(b"x")
    heap = kernel.vma(MM.start_brk, MM.brk, anon_name=name)
    stack = kernel.vma(MM.start_stack - 0x21000, MM.start_stack + 0x1000, anon_name=name)
    assert [name_of(kernel, heap), name_of(kernel, stack)] == ["[heap]", "[stack]"]


# --- [heap] and [stack] edges --------------------------------------------------------------

@pytest.mark.parametrize("strict, start, end, heap", [
    (False, 0x4FFF_B000, MM.start_brk, True),      # 6.1: ends exactly at start_brk (a static binary's bss)
    (True, 0x4FFF_B000, MM.start_brk, False),      # 6.12: touching is not overlapping
    (False, MM.brk, MM.brk + 0x1000, True),        # 6.1: starts exactly at brk
    (True, MM.brk, MM.brk + 0x1000, False),
    (True, MM.start_brk, MM.brk, True),
])
def test_the_heap_rule_is_inclusive_before_6_7_and_strict_after(strict, start, end, heap):
    kernel = Kernel(strict_heap=strict)
    assert (name_of(kernel, kernel.vma(start, end)) == "[heap]") is heap


@pytest.mark.parametrize("strict", [False, True])
def test_with_no_heap_yet_only_the_inclusive_rule_names_a_vma_ending_at_start_brk(strict):
    kernel = Kernel(strict_heap=strict)
    mm = MmInfo(0x1000, 0, MM.start_brk, MM.start_brk, MM.start_stack, 0, 0, 0)
    assert (name_of(kernel, kernel.vma(0x4FFF_B000, MM.start_brk), mm) == "[heap]") is not strict


@pytest.mark.parametrize("start, end", [(0x7FFD_0000, MM.start_stack), (MM.start_stack, 0x7FFF_FFFF_F000)])
def test_the_stack_rule_includes_both_ends_on_every_kernel(start, end):
    for strict in (False, True):
        kernel = Kernel(strict_heap=strict)
        assert name_of(kernel, kernel.vma(start, end)) == "[stack]"
