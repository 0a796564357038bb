"""Kernel objects for the naming tests, written into a FakeTarget: dentries, mounts, files,
inodes, dma-bufs, anonymous names and VMAs, with 6.1's or 6.12's vm_area_struct layout."""
from __future__ import annotations

import struct

from fakes import FakeTarget
from gdb_memcheck.linux.dpath import PathLayout, PathResolver
from gdb_memcheck.target import Field, StructLayout
from gdb_memcheck.linux.vmas import VM_MAYSHARE, VM_READ, VM_SHARED, VM_WRITE, MmInfo, VmaReader

D_DNAMES = {"simple_dname": 0xFFFF_FFFF_8139_33E0, "anon_inodefs_dname": 0xFFFF_FFFF_813A_E680,
            "sockfs_dname": 0xFFFF_FFFF_8178_03B0, "dmabuffs_dname": 0xFFFF_FFFF_8171_E180}
UNKNOWN_D_DNAME = 0xFFFF_FFFF_A000_1230          # a module's d_dname
ANON_VMA_NAME = 0xFFFF_FFFF_8130_0000            # the out-of-line anon_vma_name(): CONFIG_ANON_VMA_NAME=y
SHARED = VM_READ | VM_WRITE | VM_SHARED | VM_MAYSHARE


def layout(type_name: str, size: int, /, **fields: tuple[int, int]) -> StructLayout:
    """A StructLayout from member=(offset, size) pairs; '__' in a member name stands for '.'."""
    return StructLayout(type_name, size, {k.replace("__", "."): Field(*v) for k, v in fields.items()})


COMMON = [
    layout("struct dentry", 0xC0, d_hash=(0x08, 16), d_parent=(0x18, 8), d_name=(0x20, 16), d_inode=(0x30, 8),
           d_op=(0x60, 8), d_fsdata=(0x68, 8)),
    layout("struct qstr", 16, len=(4, 4), name=(8, 8)),
    layout("struct dentry_operations", 0x80, d_dname=(0x50, 8)),
    layout("struct inode", 0x100, i_sb=(0x28, 8), i_ino=(0x40, 8)),
    layout("struct super_block", 0x100, s_dev=(0x10, 4)),
    layout("struct file", 0x100, f_path=(0x10, 16), f_path__mnt=(0x10, 8), f_path__dentry=(0x18, 8),
           f_inode=(0x20, 8)),
    layout("struct mount", 0x100, mnt_parent=(0x10, 8), mnt_mountpoint=(0x18, 8), mnt=(0x20, 0x20)),
    layout("struct vfsmount", 0x20, mnt_root=(0, 8)),
    layout("struct dma_buf", 0xE8, name=(0x38, 8)),
    layout("struct anon_vma_name", 4, kref=(0, 4), name=(4, 0)),
    layout("struct mm_struct", 0x400, mmap=(0, 8), pgd=(0x48, 8), total_vm=(0x90, 8), start_brk=(0x118, 8),
           brk=(0x120, 8), start_stack=(0x128, 8), map_count=(0x30, 4), exe_file=(0x380, 8)),
]
VMA_LAYOUTS = {
    # 6.1: anon_name shares a union with the interval-tree node `shared`
    "6.1": layout("struct vm_area_struct", 0x98, vm_start=(0, 8), vm_end=(8, 8), vm_next=(0x10, 8),
                  vm_flags=(0x20, 8), shared=(0x28, 0x20), anon_name=(0x28, 8), vm_ops=(0x60, 8),
                  vm_pgoff=(0x68, 8), vm_file=(0x70, 8), vm_private_data=(0x78, 8)),
    # 6.12: anon_name is a member of its own, after vm_private_data
    "6.12": layout("struct vm_area_struct", 0xB0, vm_start=(0, 8), vm_end=(8, 8), vm_next=(0x10, 8),
                   vm_flags=(0x20, 8), shared=(0x38, 0x20), vm_ops=(0x70, 8), vm_pgoff=(0x78, 8),
                   vm_file=(0x80, 8), vm_private_data=(0x88, 8), anon_name=(0x90, 8)),
}


class Kernel:
    """Kernel objects (dentries, mounts, files, VMAs) written into a FakeTarget's memory."""

    def __init__(self, version: str = "6.12", anon_vma_name: bool = True, strict_heap: bool = True) -> None:
        symbols = dict(D_DNAMES, **({"anon_vma_name": ANON_VMA_NAME} if anon_vma_name else {}))
        layouts = {lay.name: lay for lay in COMMON + [VMA_LAYOUTS[version]]}
        self.target = FakeTarget(symbols=symbols, layouts=layouts,
                                 inline_functions={"vma_is_initial_heap"} if strict_heap else set())
        self.free = 0x10_0000
        self.root_mount, self.root = self.mount(b"/")

    def alloc(self, size: int) -> int:
        addr, self.free = self.free, self.free + (size + 0xFF) // 0x100 * 0x100
        self.target.add_ram(addr, size)
        return addr

    def put(self, addr: int, type_name: str, **values: int) -> None:
        lay = self.target.layout(type_name)
        for member, value in values.items():
            self.target.write_virtual(addr + lay.offset(member.replace("__", ".")),
                                      struct.pack("<Q" if lay.fields[member.replace("__", ".")].size == 8 else "<I",
                                                  value))

    def string(self, text: bytes) -> int:
        addr = self.alloc(len(text) + 1)
        self.target.write_virtual(addr, text + b"\0")
        return addr

    def dentry(self, name: bytes, parent: int = 0, d_dname: int = 0, hashed: bool = True, inode: int = 0,
               fsdata: int = 0) -> int:
        """A dentry; without a parent it is its own (IS_ROOT), as pseudo files' dentries are."""
        d = self.alloc(0xC0)
        ops = 0
        if d_dname:
            ops = self.alloc(0x80)
            self.put(ops, "struct dentry_operations", d_dname=d_dname)
        self.target.write_virtual(d + 0x24, struct.pack("<I", len(name)))
        self.put(d, "struct dentry", d_parent=parent or d, d_op=ops, d_inode=inode, d_fsdata=fsdata)
        self.target.write_u64(d + 0x28, self.string(name))
        self.target.write_u64(d + 0x10, 0x1234 if hashed else 0)       # d_hash.pprev: hashed or not
        return d

    def mount(self, root_name: bytes, parent: int = 0, mountpoint: int = 0, d_dname: int = 0) -> tuple[int, int]:
        """(vfsmount, root dentry) of a mount; without a parent it is the top of the tree."""
        m = self.alloc(0x100)
        root = self.dentry(root_name, d_dname=d_dname)
        self.put(m, "struct mount", mnt_parent=parent - 0x20 if parent else m, mnt_mountpoint=mountpoint or root)
        self.put(m + 0x20, "struct vfsmount", mnt_root=root)
        return m + 0x20, root

    def inode(self, ino: int, dev: int = 0x15) -> int:
        sb, inode = self.alloc(0x100), self.alloc(0x100)
        self.put(sb, "struct super_block", s_dev=dev)
        self.put(inode, "struct inode", i_sb=sb, i_ino=ino)
        return inode

    def file(self, vfsmount: int, dentry: int, inode: int) -> int:
        f = self.alloc(0x100)
        self.put(f, "struct file", f_path__mnt=vfsmount, f_path__dentry=dentry, f_inode=inode)
        return f

    def anon_name(self, text: bytes) -> int:
        name = self.alloc(4 + len(text) + 1)
        self.target.write_virtual(name, struct.pack("<I", 1) + text + b"\0")
        return name

    def vma(self, start: int, end: int, flags: int = VM_READ | VM_WRITE, file: int = 0, anon_name: int = 0,
            union_word: int = 0) -> int:
        """A VMA; `union_word` is what a 6.1 file VMA keeps where anon_name would be (its rb node)."""
        v = self.alloc(0xB0)
        self.put(v, "struct vm_area_struct", vm_start=start, vm_end=end, vm_flags=flags, vm_file=file)
        lay = self.target.layout("struct vm_area_struct")
        if union_word:
            self.target.write_u64(v + lay.offset("shared"), union_word)
        if anon_name:
            self.target.write_u64(v + lay.offset("anon_name"), anon_name)
        return v

    def resolver(self) -> PathResolver:
        return PathResolver(self.target.read_virtual, PathLayout.from_target(self.target), self.root_mount, self.root)

    def reader(self) -> VmaReader:
        return VmaReader(self.target, self.target.read_virtual, self.resolver())


MM = MmInfo(0x1000, 0, start_brk=0x5000_0000, brk=0x5002_1000, start_stack=0x7FFF_F000, total_vm=0, map_count=0,
            exe_file=0)


def name_of(kernel: Kernel, vma: int, mm: MmInfo = MM) -> str:
    return kernel.reader().vma(vma, mm).name


def pseudo_file(kernel: Kernel, name: bytes, d_dname: str, ino: int = 7, fsdata: int = 0) -> tuple[int, int]:
    """(vfsmount, dentry) of a file alloc_file_pseudo made on an internal mount."""
    mnt, _ = kernel.mount(b"/")
    return mnt, kernel.dentry(name, d_dname=D_DNAMES[d_dname], inode=kernel.inode(ino), fsdata=fsdata)
