"""Opening a QEMU dump-guest-memory file of either kind: ELF, or kdump-compressed."""
from __future__ import annotations

import os

from . import kdump
from .dump import ELF_MAGIC, DumpError, GuestDump, open_elf


def open_dump(path: str) -> GuestDump:
    """The dump at `path`; DumpError says in one line why it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise DumpError(f"cannot open {path}: {e.strerror}") from None
    try:
        head = os.pread(fd, 16, 0)
        if head.startswith(ELF_MAGIC):
            return open_elf(path, fd)
        if kdump.is_kdump(head):
            return kdump.open_kdump(path, fd)
        raise DumpError(f"{path} is not a QEMU guest-memory dump: it starts with neither an ELF header "
                        "nor a kdump signature")
    except OSError as e:
        os.close(fd)
        raise DumpError(f"cannot read {path}: {e.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
