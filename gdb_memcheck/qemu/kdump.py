"""makedumpfile's kdump-compressed format, as QEMU's `dump-guest-memory -z|-l|-s` writes it
(dump/dump.c create_kdump_vmcore, include/sysemu/dump.h).

Blocks of one page: the disk_dump_header, the kdump_sub_header (with the same ELF notes
as an ELF dump), two dump bitmaps (a bit per page frame: stored or not), then one
page_desc per stored page (offset, size, compression flags), then the pages.  Every
all-zero page shares one stored zero page.  QEMU 7.2 writes the file "flattened", as a
stream of (offset, size, bytes) records that makedumpfile -R would reassemble, so that it
can go to a pipe; later QEMUs also write it plain (kdump-raw-*).  Both are read here.
zlib pages are decompressed with Python's zlib; LZO and snappy pages would need modules
Python lacks (and Debian 12's QEMU cannot write them), so those dumps are refused."""
from __future__ import annotations

import bisect
import os
import struct
import zlib
from collections import OrderedDict

from ..target import MemoryReadError
from .dump import DumpError, GuestDump, RamRun, cpus_from_notes

KDUMP_SIGNATURE = b"KDUMP   "
FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096
FLAT_RECORD = struct.Struct(">qq")
FLAT_END = -1
DISK_HEADER = struct.Struct("<8sI390s22sIIIIIIIIII")          # QEMU's DiskDumpHeader64, packed
SUB_HEADER = struct.Struct("<QIIQQQQQQQQQQQ")                # KdumpSubHeader64, packed
PAGE_DESC = struct.Struct("<QIIQ")
COMPRESSED_ZLIB, COMPRESSED_LZO, COMPRESSED_SNAPPY = 0x1, 0x2, 0x4
UNREADABLE = {COMPRESSED_LZO: ("LZO", "-l"), COMPRESSED_SNAPPY: ("snappy", "-s")}
DESC_CHUNK = 4096               # page descriptors read at a time
PAGE_CACHE = 512                # decompressed pages kept
MAX_BLOCK_SIZE = 1 << 16


def is_kdump(head: bytes) -> bool:
    """Whether a file's first bytes are a kdump header, plain or flattened."""
    return head.startswith(KDUMP_SIGNATURE) or head.startswith(FLAT_SIGNATURE)


class StoredFile:
    """The kdump file as its offsets name it: the file itself when plain, else the
    flattened stream's records placed at their offsets (gaps read as zeros)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.file_size = os.fstat(fd).st_size
        self.flat = os.pread(fd, len(FLAT_SIGNATURE), 0) == FLAT_SIGNATURE
        self.records: list[tuple[int, int, int]] = []      # (offset, size, position in the file)
        if self.flat:
            self._index_records()
        self._starts = [r[0] for r in self.records]

    @property
    def size(self) -> int:
        if not self.flat:
            return self.file_size
        return max((o + s for o, s, _ in self.records), default=0)

    def _index_records(self) -> None:
        pos = FLAT_HEADER_SIZE
        while True:
            head = os.pread(self.fd, FLAT_RECORD.size, pos)
            if len(head) < FLAT_RECORD.size:
                raise DumpError(f"{self.path} is truncated: its flattened kdump stream stops at byte {pos} "
                                "without the end marker")
            offset, size = FLAT_RECORD.unpack(head)
            if offset == FLAT_END:
                break
            if offset < 0 or size < 0 or pos + FLAT_RECORD.size + size > self.file_size:
                raise DumpError(f"{self.path} is truncated: a record at byte {pos} needs {size} bytes "
                                f"the file does not have")
            self.records.append((offset, size, pos + FLAT_RECORD.size))
            pos += FLAT_RECORD.size + size
        self.records.sort()

    def read(self, offset: int, size: int) -> bytes:
        if not self.flat:
            data = os.pread(self.fd, size, offset)
            if len(data) != size:
                raise DumpError(f"{self.path} is truncated: byte {offset + len(data)} is past its end")
            return data
        out = bytearray(size)
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(self.records) and self.records[i][0] < offset + size:
            start, length, pos = self.records[i]
            lo, hi = max(start, offset), min(start + length, offset + size)
            if hi > lo:
                out[lo - offset:hi - offset] = os.pread(self.fd, hi - lo, pos + lo - start)
            i += 1
        return bytes(out)


class KdumpDump(GuestDump):
    """A kdump-compressed dump: each stored page through its page_desc."""

    def __init__(self, path: str, fmt: str, cpus, runs: list[RamRun], stored: StoredFile, block_size: int,
                 descs_at: int) -> None:
        super().__init__(path, fmt, cpus, runs)
        self.stored, self.block_size, self.descs_at = stored, block_size, descs_at
        self._desc_chunks: dict[int, bytes] = {}
        self._pages: OrderedDict[int, bytes] = OrderedDict()

    def _read_stored(self, offset: int, size: int) -> bytes:
        """Bytes at `offset` of the pages in stored order (runs give page index * block size)."""
        out, pos, end = [], offset, offset + size
        while pos < end:
            index, within = divmod(pos, self.block_size)
            n = min(end - pos, self.block_size - within)
            out.append(self.page(index)[within:within + n])
            pos += n
        return b"".join(out)

    def page(self, index: int) -> bytes:
        """The `index`-th stored page, decompressed."""
        data = self._pages.get(index)
        if data is not None:
            self._pages.move_to_end(index)
            return data
        offset, size, flags, _page_flags = self.descriptor(index)
        if size > self.block_size or offset + size > self.stored.size:
            raise MemoryReadError("physical", index * self.block_size, self.block_size,
                                  f"stored page {index} of {self.path} lies outside the file")
        raw = self.stored.read(offset, size)
        if flags & COMPRESSED_ZLIB:
            try:
                raw = zlib.decompress(raw)
            except zlib.error as e:
                raise MemoryReadError("physical", index * self.block_size, self.block_size,
                                      f"stored page {index} of {self.path} does not decompress: {e}") from None
        elif flags:
            raise MemoryReadError("physical", index * self.block_size, self.block_size,
                                  f"stored page {index} of {self.path} has compression flags {flags:#x}")
        if len(raw) != self.block_size:
            raise MemoryReadError("physical", index * self.block_size, self.block_size,
                                  f"stored page {index} of {self.path} has {len(raw)} bytes")
        self._pages[index] = raw
        if len(self._pages) > PAGE_CACHE:
            self._pages.popitem(last=False)
        return raw

    def descriptor(self, index: int) -> tuple[int, int, int, int]:
        chunk, within = divmod(index, DESC_CHUNK)
        data = self._desc_chunks.get(chunk)
        if data is None:
            data = self._desc_chunks[chunk] = self.stored.read(self.descs_at + chunk * DESC_CHUNK * PAGE_DESC.size,
                                                               DESC_CHUNK * PAGE_DESC.size)
        return PAGE_DESC.unpack_from(data, within * PAGE_DESC.size)

    def close(self) -> None:
        if self.stored.fd >= 0:
            os.close(self.stored.fd)
            self.stored.fd = -1


def open_kdump(path: str, fd: int) -> KdumpDump:
    """The kdump-compressed dump open on `fd` (which it then owns)."""
    stored = StoredFile(path, fd)
    header = stored.read(0, DISK_HEADER.size)
    (signature, version, _uts, _time, status, block_size, sub_blocks, bitmap_blocks, _mapnr, _ram, _dev,
     _written, _current, nr_cpus) = DISK_HEADER.unpack(header)
    if signature != KDUMP_SIGNATURE:
        raise DumpError(f"{path} has no kdump header where its flattened stream should start one")
    if version < 6 or not 0 < block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise DumpError(f"{path} is a kdump of header version {version} and block size {block_size}: "
                        "version 6 with a power-of-two page size is known")
    for flag, (name, option) in UNREADABLE.items():
        if status & flag:
            raise DumpError(f"{path} is a kdump with {name}-compressed pages (dump-guest-memory {option}), "
                            f"which Python cannot decompress: write it as ELF or with -z")
    sub = SUB_HEADER.unpack(stored.read(block_size, SUB_HEADER.size))
    offset_note, note_size, max_mapnr = sub[7], sub[8], sub[13]
    half = bitmap_blocks * block_size // 2
    bitmap_at = (1 + sub_blocks) * block_size + half                         # the second bitmap: stored pages
    for what, start, length in (("note segment", offset_note, note_size), ("dump bitmap", bitmap_at, half)):
        if start + length > stored.size:
            raise DumpError(f"{path} is truncated: the {what} needs bytes {start}-{start + length}, "
                            f"the file has {stored.size}")
    cpus = cpus_from_notes(path, stored.read(offset_note, note_size))
    bitmap = stored.read(bitmap_at, half)
    runs, index = [], 0
    for pfn, count in bit_runs(bitmap, max_mapnr):
        runs.append(RamRun(pfn * block_size, count * block_size, index * block_size))
        index += count
    dump = KdumpDump(path, "kdump-zlib" if status & COMPRESSED_ZLIB else "kdump", cpus, runs, stored, block_size,
                     (1 + sub_blocks + bitmap_blocks) * block_size)
    if index:
        last_offset, last_size, _flags, _pf = dump.descriptor(index - 1)
        if last_offset + last_size > stored.size:
            raise DumpError(f"{path} is truncated: its last page ends at byte {last_offset + last_size}, "
                            f"the file has {stored.size}")
    return dump


def bit_runs(bitmap: bytes, limit: int) -> list[tuple[int, int]]:
    """(first bit, count) of each run of set bits below `limit`, least significant bit of
    the first byte first."""
    bits = int.from_bytes(bitmap, "little") & ((1 << min(limit, 8 * len(bitmap))) - 1)
    runs, at = [], 0
    while bits:
        zeros = (bits & -bits).bit_length() - 1
        bits >>= zeros
        at += zeros
        ones = (~bits & (bits + 1)).bit_length() - 1
        runs.append((at, ones))
        bits >>= ones
        at += ones
    return runs
