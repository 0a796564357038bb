"""File paths rebuilt from dentries and mounts, as d_path() prints them (fs/d_path.c):
a dentry whose d_op has a d_dname names itself (pseudo files: memfd, shmem, sockets,
anon inodes, dma-bufs); any other path walks d_parent to the mount's root, crosses to
the parent mount at its mountpoint, and stops at the root of the reader's file system."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..target import Target, TargetError, cstring, u32, u64

Reader = Callable[[int, int], bytes]
MAX_DEPTH = 256
NAME_MAX = 255
DMA_BUF_NAME_LEN = 32           # include/uapi/linux/dma-buf.h, with its NUL

# What each d_dname that can name a mapped file prints (d_dname itself: 2.6.19, c23fbb6bcb3e,
# "VFS: delay the dentry name generation on sockets and pipes"); the function pointer is matched
# against these symbols, and those the kernel lacks are simply never matched.  Pipes, nsfs and
# pidfs files (pipefs_dname, ns_dname, pidfs_dname) have no mmap, so no VMA ever holds one.
# 6.1 and 6.12 print these four alike (dmabuffs_dname copies with strlcpy in 6.1 and strscpy in
# 6.12, which differ only for names longer than the 31 bytes DMA_BUF_SET_NAME allows).
DNAME_FORMATS = {
    # 4.18 (d93aa9d82aea, "new wrapper: alloc_file_pseudo()"): memfd, shmem, SysV shm, /dev/zero
    "simple_dname": "/{name} (deleted)",
    "anon_inodefs_dname": "anon_inode:{name}",  # fs/anon_inodes.c: perf event rings, io_uring, ...
    "sockfs_dname": "socket:[{ino}]",           # net/socket.c: packet rings, TCP zerocopy receive
    "dmabuffs_dname": "/{name}:{dmabuf}",       # 5.3 (bb2bb9030425, "dma-buf: add DMA_BUF_SET_NAME ioctls")
}
# A d_dname we do not know (a module's, or a newer kernel's): the name the pseudo file was
# made with, which is what the known ones decorate; /proc may print it decorated.
UNKNOWN_DNAME = "{name}"


@dataclass(frozen=True)
class PathLayout:
    """Offsets into dentry, qstr, dentry_operations, inode, mount and vfsmount that
    d_path needs; the known d_dname functions by address; and dma_buf's `name`, which
    is set whenever dnames holds dmabuffs_dname."""

    d_parent: int
    d_name_len: int
    d_name_ptr: int
    d_hash_pprev: int
    d_op: int
    d_inode: int
    d_fsdata: int
    op_d_dname: int
    i_ino: int
    mnt_in_mount: int
    mnt_parent: int
    mnt_mountpoint: int
    mnt_root: int
    dnames: Mapping[int, str] = field(default_factory=dict)
    dmabuf_name: int | None = None

    @classmethod
    def from_target(cls, target: Target) -> "PathLayout":
        d = target.layout("struct dentry")
        m = target.layout("struct mount")
        q = target.layout("struct qstr")
        d_name = d.offset("d_name")
        dnames = _dname_functions(target)
        dmabuf = target.layout("struct dma_buf").offset("name") if "dmabuffs_dname" in dnames.values() else None
        return cls(d.offset("d_parent"), d_name + q.offset("len"), d_name + q.offset("name"),
                   d.offset("d_hash") + 8, d.offset("d_op"), d.offset("d_inode"), d.offset("d_fsdata"),
                   target.layout("struct dentry_operations").offset("d_dname"),
                   target.layout("struct inode").offset("i_ino"), m.offset("mnt"), m.offset("mnt_parent"),
                   m.offset("mnt_mountpoint"), target.layout("struct vfsmount").offset("mnt_root"), dnames, dmabuf)


def _dname_functions(target: Target) -> dict[int, str]:
    """Address -> name of each d_dname function in DNAME_FORMATS this kernel has
    (dmabuffs_dname only when dma-buf is built in)."""
    return {target.function_pointer(name): name for name in DNAME_FORMATS if target.has_symbol(name)}


class PathResolver:
    """Turns (vfsmount, dentry) pairs into the paths d_path() gives a reader at `root`."""

    def __init__(self, read: Reader, layout: PathLayout, root_mnt: int, root_dentry: int) -> None:
        self.read, self.lay = read, layout
        self.root = (root_mnt, root_dentry)
        self._names: dict[int, str] = {}

    def d_path(self, vfsmnt: int, dentry: int) -> str:
        """What d_path() prints: the d_dname name, or the walked path with " (deleted)"
        when the dentry is unlinked; not yet escaped for /proc (see vmas.mangle_path)."""
        lay = self.lay
        ops = u64(self.read(dentry + lay.d_op, 8))
        d_dname = u64(self.read(ops + lay.op_d_dname, 8)) if ops else 0
        # a mounted pseudo file system's root is walked, not named (d_path's own test)
        if d_dname and not (self._is_root(dentry) and dentry == u64(self.read(vfsmnt + lay.mnt_root, 8))):
            return self._dname(d_dname, dentry)
        path = self.path(vfsmnt, dentry)
        return path + " (deleted)" if self.unlinked(dentry) else path

    def path(self, vfsmnt: int, dentry: int) -> str:
        """prepend_path(): the path from `root`, or the mount tree's top when the walk never
        meets `root`; "/" when the dentry's ancestry ends outside its mount's root."""
        lay, parts = self.lay, []
        mount = vfsmnt - lay.mnt_in_mount
        for _ in range(MAX_DEPTH):
            if (vfsmnt, dentry) == self.root:
                break
            parent = u64(self.read(dentry + lay.d_parent, 8))
            if dentry == u64(self.read(vfsmnt + lay.mnt_root, 8)):
                parent_mount = u64(self.read(mount + lay.mnt_parent, 8))
                if parent_mount == mount:
                    break
                dentry = u64(self.read(mount + lay.mnt_mountpoint, 8))
                mount, vfsmnt = parent_mount, parent_mount + lay.mnt_in_mount
                continue
            if dentry == parent:
                return "/"              # escaped: the kernel drops what it had prepended
            parts.append(self.name(dentry))
            dentry = parent
        else:
            raise TargetError(f"path of dentry {dentry:#x} is deeper than {MAX_DEPTH} (corrupt?)")
        return "/" + "/".join(reversed(parts))

    def name(self, dentry: int) -> str:
        if dentry not in self._names:
            length = u32(self.read(dentry + self.lay.d_name_len, 4))
            ptr = u64(self.read(dentry + self.lay.d_name_ptr, 8))
            raw = self.read(ptr, min(length, NAME_MAX))
            self._names[dentry] = raw.decode("utf-8", errors="replace")
        return self._names[dentry]

    def unlinked(self, dentry: int) -> bool:
        """d_unlinked(): unhashed and not its own parent; /proc adds " (deleted)"."""
        pprev = u64(self.read(dentry + self.lay.d_hash_pprev, 8))
        return pprev == 0 and not self._is_root(dentry)

    def _is_root(self, dentry: int) -> bool:
        return u64(self.read(dentry + self.lay.d_parent, 8)) == dentry

    def _dname(self, function: int, dentry: int) -> str:
        """What the d_dname at `function` writes for `dentry`, by its format in DNAME_FORMATS."""
        fmt = DNAME_FORMATS.get(self.lay.dnames.get(function, ""), UNKNOWN_DNAME)
        fields = {}
        if "{name}" in fmt:
            fields["name"] = self.name(dentry)
        if "{ino}" in fmt:
            inode = u64(self.read(dentry + self.lay.d_inode, 8))
            fields["ino"] = u64(self.read(inode + self.lay.i_ino, 8))
        if "{dmabuf}" in fmt:
            fields["dmabuf"] = self._dmabuf_name(dentry)
        return fmt.format(**fields)

    def _dmabuf_name(self, dentry: int) -> str:
        """dma_buf->name of the buffer in d_fsdata, as dmabuffs_dname copies it ("" if unset)."""
        dmabuf = u64(self.read(dentry + self.lay.d_fsdata, 8))
        name = u64(self.read(dmabuf + self.lay.dmabuf_name, 8))
        return cstring(self.read(name, DMA_BUF_NAME_LEN)) if name else ""
