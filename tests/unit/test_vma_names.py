"""VMA names as each kernel's /proc/PID/maps gives them, over kernel objects built in a
FakeTarget: newline escaping."""
from __future__ import annotations

from gdb_memcheck.vmas import Vma, mangle_path
from kernel_objects import MM, SHARED, Kernel, pseudo_file


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
