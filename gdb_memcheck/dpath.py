"""File paths rebuilt from dentries and mounts, as d_path() prints them (fs/d_path.c):
walk d_parent to the mount's root, cross to the parent mount at its mountpoint,
stop at the root of the reader's file system."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .target import Target, TargetError, u32, u64

Reader = Callable[[int, int], bytes]
MAX_DEPTH = 256
NAME_MAX = 255


@dataclass(frozen=True)
class PathLayout:
    """Offsets into dentry, qstr, mount and vfsmount that a path walk needs."""

    d_parent: int
    d_name_len: int
    d_name_ptr: int
    d_hash_pprev: int
    mnt_in_mount: int
    mnt_parent: int
    mnt_mountpoint: int
    mnt_root: int

    @classmethod
    def from_target(cls, target: Target) -> "PathLayout":
        d = target.layout("struct dentry")
        m = target.layout("struct mount")
        q = target.layout("struct qstr")
        d_name = d.offset("d_name")
        return cls(d.offset("d_parent"), d_name + q.offset("len"), d_name + q.offset("name"),
                   d.offset("d_hash") + 8, m.offset("mnt"), m.offset("mnt_parent"),
                   m.offset("mnt_mountpoint"), target.layout("struct vfsmount").offset("mnt_root"))


class PathResolver:
    """Turns (vfsmount, dentry) pairs into absolute paths relative to a root."""

    def __init__(self, read: Reader, layout: PathLayout, root_mnt: int, root_dentry: int) -> None:
        self.read, self.lay = read, layout
        self.root = (root_mnt, root_dentry)
        self._names: dict[int, str] = {}

    def path(self, vfsmnt: int, dentry: int) -> str:
        lay, parts = self.lay, []
        mount = vfsmnt - lay.mnt_in_mount
        for _ in range(MAX_DEPTH):
            if (vfsmnt, dentry) == self.root:
                break
            mnt_root = u64(self.read(vfsmnt + lay.mnt_root, 8))
            parent = u64(self.read(dentry + lay.d_parent, 8))
            if dentry == mnt_root or dentry == parent:
                parent_mount = u64(self.read(mount + lay.mnt_parent, 8))
                if parent_mount == mount or dentry == parent and dentry != mnt_root:
                    break
                dentry = u64(self.read(mount + lay.mnt_mountpoint, 8))
                mount, vfsmnt = parent_mount, parent_mount + lay.mnt_in_mount
                continue
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
        return pprev == 0 and u64(self.read(dentry + self.lay.d_parent, 8)) != dentry
