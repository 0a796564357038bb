"""A process's memory map: its VMAs read from the mm's maple tree (Linux 6.1+) or,
on kernels that still have it, the mm->mmap list; named as /proc/PID/maps names them
(fs/proc/task_mmu.c show_map_vma)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator

from ..target import PartialError, StructLayout, Target, TargetError, cstring, u32, u64
from . import maple
from .dpath import PathLayout, PathResolver

Reader = Callable[[int, int], bytes]
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x8, 0x80
MINORBITS = 20
PAGE_SHIFT = 12
MAX_VMAS = 1 << 20
MAPS_NAME_COLUMN = 72   # seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)
ANON_VMA_NAME_MAX_LEN = 80


@dataclass(frozen=True)
class Vma:
    """One mapping, with what a /proc/PID/maps line shows."""

    addr: int
    start: int
    end: int
    flags: int
    offset: int
    dev: int
    inode: int
    name: str

    @property
    def perms(self) -> str:
        f = self.flags
        return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
            ("x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")

    @property
    def size(self) -> int:
        return self.end - self.start

    def maps_line(self) -> str:
        """Exactly the line /proc/PID/maps prints for this VMA (without the newline)."""
        head = (f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} "
                f"{self.dev >> MINORBITS:02x}:{self.dev & ((1 << MINORBITS) - 1):02x} {self.inode} ")
        return f"{head.ljust(MAPS_NAME_COLUMN)} {mangle_path(self.name)}" if self.name else head


def mangle_path(name: str) -> str:
    """seq_path()'s escaping with the "\\n" that show_map_vma asks for (fs/seq_file.c
    mangle_path): a newline becomes \\012, nothing else changes.  Only file paths go
    through it in the kernel; the other names cannot hold a newline."""
    return name.replace("\n", "\\012")


@dataclass(frozen=True)
class MmInfo:
    """The mm_struct fields that name VMAs and size the process."""

    addr: int
    pgd: int
    start_brk: int
    brk: int
    start_stack: int
    total_vm: int
    map_count: int
    exe_file: int


class VmaReader:
    """Reads VMAs and their names with offsets from the kernel's debug info."""

    def __init__(self, target: Target, read: Reader, resolver: PathResolver | None) -> None:
        self.read, self.paths = read, resolver
        mm, vma = target.layout("struct mm_struct"), target.layout("struct vm_area_struct")
        self.mm_off = {k: mm.offset(k) for k in ("pgd", "start_brk", "brk", "start_stack", "total_vm", "map_count",
                                                 "exe_file")}
        self.use_list = mm.has("mmap") and vma.has("vm_next")
        self.tree_off = None if self.use_list else mm.offset("mm_mt")
        self.maple = None if self.use_list else maple.MapleLayout.from_target(target)
        self.mmap_off = mm.offset("mmap") if self.use_list else None
        self.vma_size = vma.size
        self.v = {k: vma.offset(k) for k in ("vm_start", "vm_end", "vm_flags", "vm_pgoff", "vm_file",
                                            "vm_ops", "vm_private_data")}
        if self.use_list:
            self.v["vm_next"] = vma.offset("vm_next")
        # anon_vma_name() is NULL without CONFIG_ANON_VMA_NAME (5.17, 9a10064f5625, "mm: add a field to
        # store names for private anonymous memory"); its one out-of-line copy is the probe (6.1 keeps
        # the field either way).  Debian 12's 6.1 and 6.12 kernels leave it off.
        named = vma.has("anon_name") and target.has_symbol("anon_vma_name")
        self.v_anon_name = vma.offset("anon_name") if named else None
        self.anon_name_text = target.layout("struct anon_vma_name").offset("name") if named else 0
        # 6.2 (d09e8ca6cb93, "mm: anonymous shared memory naming") moved anon_name out of its union with
        # the file-only `shared` node and names shared anonymous (shmem) mappings [anon_shmem:NAME]
        self.anon_shmem = named and not _overlaps(vma, "anon_name", "shared")
        f, ino, sb = target.layout("struct file"), target.layout("struct inode"), target.layout("struct super_block")
        self.f_mnt, self.f_dentry = f.offset("f_path.mnt"), f.offset("f_path.dentry")
        self.f_inode, self.i_sb, self.i_ino, self.s_dev = f.offset("f_inode"), ino.offset("i_sb"), \
            ino.offset("i_ino"), sb.offset("s_dev")
        self.special_ops = {_maybe_symbol(target, s) for s in ("special_mapping_vmops", "legacy_special_mapping_vmops")}
        self.special_ops.discard(None)
        # 6.7 (d3bb89ea9c13, "mm: fix VMA heap bounds checking") made the [heap] test strict: a VMA that
        # only touches start_brk or brk is no longer the heap.  The probe is the helper it fixed,
        # vma_is_initial_heap, which 6.6 (11250fd12eb8) factored out: a 6.6 without the fix counts as strict
        self.strict_heap = target.has_function("vma_is_initial_heap")

    def with_paths(self, resolver: PathResolver) -> "VmaReader":
        """The same offsets, naming files through `resolver` (one stop's root and names)."""
        reader = copy.copy(self)
        reader.paths = resolver
        return reader

    def mm(self, addr: int) -> MmInfo:
        o = self.mm_off
        raw = self.read(addr, max(o.values()) + 8)
        return MmInfo(addr, u64(raw, o["pgd"]), u64(raw, o["start_brk"]), u64(raw, o["brk"]),
                      u64(raw, o["start_stack"]), u64(raw, o["total_vm"]), u32(raw, o["map_count"]),
                      u64(raw, o["exe_file"]))

    def exe_path(self, mm: MmInfo) -> str:
        """Path of mm->exe_file ("" when the mm has none)."""
        return self._file(mm.exe_file)[2] if mm.exe_file else ""

    def vma_addresses(self, mm: MmInfo) -> Iterator[int]:
        """VMA struct addresses in address order, bounded by map_count (+ slack) and cycle-safe."""
        limit = min(MAX_VMAS, mm.map_count + 64)
        if self.use_list:
            addr, seen = u64(self.read(mm.addr + self.mmap_off, 8)), set()
            while addr:
                if addr in seen or len(seen) > limit:
                    raise TargetError(f"mm {mm.addr:#x}: VMA list loops or exceeds map_count")
                seen.add(addr)
                yield addr
                addr = u64(self.read(addr + self.v["vm_next"], 8))
            return
        for n, (_first, _last, entry) in enumerate(maple.entries(self.read, mm.addr + self.tree_off, self.maple)):
            if n >= limit:
                raise TargetError(f"mm {mm.addr:#x}: maple tree holds more entries than map_count {mm.map_count}")
            yield entry

    def vmas(self, mm: MmInfo) -> list[Vma]:
        """Every VMA; on a corrupt tree or list, PartialError carries the ones read before."""
        found: list[Vma] = []
        try:
            for addr in self.vma_addresses(mm):
                found.append(self.vma(addr, mm))
        except PartialError:
            raise
        except TargetError as e:
            raise PartialError(f"{e} (after {len(found)} mappings)", found) from None
        return found

    def vma(self, addr: int, mm: MmInfo) -> Vma:
        v = self.v
        raw = self.read(addr, self.vma_size)
        start, end, flags = u64(raw, v["vm_start"]), u64(raw, v["vm_end"]), u64(raw, v["vm_flags"])
        file = u64(raw, v["vm_file"])
        anon_name = self._anon_name_pointer(raw, file)
        if file:
            dev, ino, path = self._file(file)
            name = f"[anon_shmem:{self._anon_name(anon_name)}]" if anon_name else path
            return Vma(addr, start, end, flags, u64(raw, v["vm_pgoff"]) << PAGE_SHIFT, dev, ino, name)
        name = self._special_name(u64(raw, v["vm_ops"]), u64(raw, v["vm_private_data"]))
        if name is None:
            if self._is_heap(start, end, mm):
                name = "[heap]"
            # the [stack] test is the same in 6.1 (is_stack) and 6.12 (vma_is_initial_stack)
            elif start <= mm.start_stack <= end:
                name = "[stack]"
            elif anon_name:
                name = f"[anon:{self._anon_name(anon_name)}]"
        return Vma(addr, start, end, flags, 0, 0, 0, name or "")

    def _is_heap(self, start: int, end: int, mm: MmInfo) -> bool:
        if self.strict_heap:
            return start < mm.brk and end > mm.start_brk
        return start <= mm.brk and end >= mm.start_brk

    def file_path(self, file: int) -> str:
        return self._file(file)[2]

    def _file(self, file: int) -> tuple[int, int, str]:
        mnt, dentry = u64(self.read(file + self.f_mnt, 8)), u64(self.read(file + self.f_dentry, 8))
        inode = u64(self.read(file + self.f_inode, 8))
        sb = u64(self.read(inode + self.i_sb, 8))
        path = self.paths.d_path(mnt, dentry)
        return u32(self.read(sb + self.s_dev, 4)), u64(self.read(inode + self.i_ino, 8)), path

    def _special_name(self, ops: int, private: int) -> str | None:
        if ops and ops in self.special_ops and private:
            return cstring(self.read(u64(self.read(private, 8)), 64))
        return None

    def _anon_name_pointer(self, raw: bytes, file: int) -> int:
        """vma->anon_name where anon_vma_name() returns it, else 0 (in 6.1 a file VMA's
        union holds its interval-tree node there)."""
        if self.v_anon_name is None or (file and not self.anon_shmem):
            return 0
        return u64(raw, self.v_anon_name)

    def _anon_name(self, anon_name: int) -> str:
        """The text of a struct anon_vma_name (prctl caps it at ANON_VMA_NAME_MAX_LEN)."""
        return cstring(self.read(anon_name + self.anon_name_text, ANON_VMA_NAME_MAX_LEN))


def _overlaps(layout: StructLayout, member: str, other: str) -> bool:
    """Whether `member` starts inside `other` (they share a union), by the debug info's offsets."""
    inner, outer = layout.fields[member], layout.fields.get(other)
    return outer is not None and outer.offset <= inner.offset < outer.offset + outer.size


def _maybe_symbol(target: Target, name: str) -> int | None:
    try:
        return target.symbol_address(name)
    except TargetError:
        return None


def path_layout_root(target: Target, read: Reader, task_addr: int, layout: PathLayout | None = None) -> PathResolver:
    """A PathResolver rooted at a task's fs->root (the reader's root, as d_path uses)."""
    t, fs = target.layout("struct task_struct"), target.layout("struct fs_struct")
    fs_addr = u64(read(task_addr + t.offset("fs"), 8))
    if fs_addr == 0:
        raise TargetError(f"task {task_addr:#x} has no fs_struct to take a root from")
    root_mnt = u64(read(fs_addr + fs.offset("root.mnt"), 8))
    root_dentry = u64(read(fs_addr + fs.offset("root.dentry"), 8))
    return PathResolver(read, layout or PathLayout.from_target(target), root_mnt, root_dentry)
