"""d_path() as /proc/PID/maps uses it, over kernel objects built in a FakeTarget: pseudo files
named by their dentry's d_dname, the mounted-root exception, deleted and escaped paths."""
from __future__ import annotations

import pytest

from gdb_memcheck.target import MemoryReadError
from kernel_objects import D_DNAMES, UNKNOWN_D_DNAME, Kernel, pseudo_file


# --- d_path: d_dname names -------------------------------------------------------------------

@pytest.mark.parametrize("name, d_dname, printed", [
    (b"memfd:wl-names-memfd", "simple_dname", "/memfd:wl-names-memfd (deleted)"),
    (b"SYSV5a000042", "simple_dname", "/SYSV5a000042 (deleted)"),
    (b"dev/zero", "simple_dname", "/dev/zero (deleted)"),
    (b"[perf_event]", "anon_inodefs_dname", "anon_inode:[perf_event]"),
    (b"socket", "sockfs_dname", "socket:[4242]"),
])
def test_a_pseudo_file_is_named_by_its_d_dname_not_walked(name, d_dname, printed):
    kernel = Kernel()
    mnt, dentry = pseudo_file(kernel, name, d_dname, ino=4242)
    assert kernel.resolver().d_path(mnt, dentry) == printed


def test_a_dma_buf_is_named_by_the_name_set_on_it_or_left_empty():
    kernel = Kernel()
    named, unnamed = kernel.alloc(0xE8), kernel.alloc(0xE8)
    kernel.put(named, "struct dma_buf", name=kernel.string(b"wl-names-dmabuf"))
    paths = [kernel.resolver().d_path(*pseudo_file(kernel, b"dmabuf", "dmabuffs_dname", fsdata=buf))
             for buf in (named, unnamed)]
    assert paths == ["/dmabuf:wl-names-dmabuf", "/dmabuf:"]


def test_an_unknown_d_dname_gives_the_name_the_pseudo_file_was_made_with():
    kernel = Kernel()
    mnt, _ = kernel.mount(b"/")
    dentry = kernel.dentry(b"[module-thing]", d_dname=UNKNOWN_D_DNAME)
    assert kernel.resolver().d_path(mnt, dentry) == "[module-thing]"


def test_the_root_of_a_mounted_pseudo_file_system_is_walked_not_named():
    kernel = Kernel()
    tmp = kernel.dentry(b"mnt", parent=kernel.root)
    mnt, root = kernel.mount(b"/", parent=kernel.root_mount, mountpoint=tmp, d_dname=D_DNAMES["anon_inodefs_dname"])
    assert kernel.resolver().d_path(mnt, root) == "/mnt"


def test_a_file_below_a_dentry_with_d_dname_is_walked_when_its_own_dentry_has_none():
    kernel = Kernel()
    tmp = kernel.dentry(b"tmp", parent=kernel.root, d_dname=D_DNAMES["simple_dname"])
    file = kernel.dentry(b"x", parent=tmp)
    assert kernel.resolver().d_path(kernel.root_mount, file) == "/tmp/x"


def test_a_deleted_regular_file_keeps_its_path_and_says_deleted():
    kernel = Kernel()
    tmp = kernel.dentry(b"tmp", parent=kernel.root)
    gone = kernel.dentry(b"wl-names-deleted", parent=tmp, hashed=False)
    assert kernel.resolver().d_path(kernel.root_mount, gone) == "/tmp/wl-names-deleted (deleted)"


def test_a_path_whose_ancestry_ends_outside_its_mount_is_just_a_slash():
    kernel = Kernel()
    mnt, _ = kernel.mount(b"/")
    orphan = kernel.dentry(b"lost")                 # its own parent, but not the mount's root
    child = kernel.dentry(b"child", parent=orphan)
    assert kernel.resolver().d_path(mnt, child) == "/"


def test_a_d_op_pointing_at_unreadable_memory_is_a_target_error():
    kernel = Kernel()
    dentry = kernel.dentry(b"x", parent=kernel.root)
    kernel.put(dentry, "struct dentry", d_op=0xDEAD_0000)
    with pytest.raises(MemoryReadError):
        kernel.resolver().d_path(kernel.root_mount, dentry)
