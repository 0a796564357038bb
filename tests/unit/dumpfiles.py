"""QEMU-shaped dump files written from a FakeTarget's pages and registers, laid out as
QEMU 7.2's dump/dump.c writes them: an ELF core (PT_NOTE, PT_LOADs by physical address,
or with `aliases` one PT_LOAD per virtual range as -p gives), or a kdump-compressed file
(flattened as QEMU 7.2 writes it, or plain), with NT_PRSTATUS and QEMU CPU-state notes."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from gdb_memcheck.qemu import dump, kdump

PAGE = 4096
QEMU_NOTE_SIZE = 440


def note(name: bytes, kind: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), kind) + pad(name + b"\0") + pad(desc)


def prstatus(cpu: int, regs: dict[str, int]) -> bytes:
    desc = bytearray(336)
    struct.pack_into("<I", desc, dump.PRSTATUS_PID, cpu + 1)
    struct.pack_into("<27Q", desc, dump.PRSTATUS_REGS, *(regs.get(n, 0) for n in dump.PRSTATUS_REG_NAMES))
    return note(b"CORE", dump.NT_PRSTATUS, bytes(desc))


def qemu_state(regs: dict[str, int], size: int = QEMU_NOTE_SIZE, version: int = 1) -> bytes:
    desc = bytearray(size)
    struct.pack_into("<II", desc, 0, version, size)
    struct.pack_into("<18Q", desc, 8, *(regs.get(n, 0) for n in dump.QEMU_REG_NAMES))
    for i, seg in enumerate(dump.QEMU_SEGMENTS):
        struct.pack_into("<IIIIQ", desc, dump.QEMU_SEGMENTS_AT + 24 * i, regs.get(seg, 0), 0xFFFFFFFF, 0, 0,
                         regs.get(f"{seg}_base", 0))
    struct.pack_into("<5Q", desc, dump.QEMU_CR_AT, *(regs.get(f"cr{i}", 0) for i in range(5)))
    if size >= dump.QEMU_KERNEL_GS_AT + 8:
        struct.pack_into("<Q", desc, dump.QEMU_KERNEL_GS_AT, regs.get("k_gs_base", 0))
    return note(b"QEMU", 0, bytes(desc))


def notes(cpus: list[dict[str, int]], **qemu_options) -> bytes:
    """Every vCPU's NT_PRSTATUS, then every vCPU's QEMU note, as write_elf64_notes orders them."""
    return b"".join(prstatus(i, r) for i, r in enumerate(cpus)) + b"".join(qemu_state(r, **qemu_options)
                                                                          for r in cpus)


def ram_runs(pages: dict[int, bytes]) -> list[tuple[int, bytes]]:
    """(physical start, bytes) of each run of contiguous pages."""
    runs: list[tuple[int, bytearray]] = []
    for addr in sorted(pages):
        if runs and runs[-1][0] + len(runs[-1][1]) == addr:
            runs[-1][1].extend(pages[addr])
        else:
            runs.append((addr, bytearray(pages[addr])))
    return [(a, bytes(b)) for a, b in runs]


def write_elf(path: Path, pages: dict[int, bytes], cpus: list[dict[str, int]],
              aliases: list[tuple[int, int, int]] | None = None, e_type: int = dump.ET_CORE,
              machine: int = dump.EM_X86_64, note_bytes: bytes | None = None) -> Path:
    """RAM as QEMU stores it (blocks in address order); PT_LOADs by physical address, or
    with `aliases` ((virtual, physical, size) ranges) one per virtual range as -p does."""
    runs = ram_runs(pages)
    note_data = notes(cpus) if note_bytes is None else note_bytes
    segments = aliases if aliases is not None else [(start, start, len(data)) for start, data in runs]
    phnum = 1 + len(segments)
    memory_at = dump.EHDR.size + phnum * dump.PHDR.size + len(note_data)
    stored, at = {}, memory_at
    for start, data in runs:
        stored[start] = (at, len(data))
        at += len(data)
    out = bytearray(dump.EHDR.pack(b"\x7fELF\x02\x01\x01" + bytes(9), e_type, machine, 1, 0, dump.EHDR.size, 0, 0,
                                   dump.EHDR.size, dump.PHDR.size, phnum, 0, 0, 0))
    out += dump.PHDR.pack(dump.PT_NOTE, 0, memory_at - len(note_data), 0, 0, len(note_data), len(note_data), 0)
    for virtual, physical, size in segments:
        start = max(s for s in stored if s <= physical)
        offset = stored[start][0] + physical - start
        out += dump.PHDR.pack(dump.PT_LOAD, 0, offset, virtual, physical, size, size, 0)
    out += note_data
    for _start, data in runs:
        out += data
    path.write_bytes(bytes(out))
    return path


def write_kdump(path: Path, pages: dict[int, bytes], cpus: list[dict[str, int]], flattened: bool = True,
                status: int = kdump.COMPRESSED_ZLIB, end_marker: bool = True) -> Path:
    """A kdump-compressed dump of `pages` (absent pages are not stored), as create_kdump_vmcore
    writes it: zero pages share one stored page, others are zlib-compressed when that helps."""
    note_data = notes(cpus)
    max_mapnr = max(pages) // PAGE + 1
    sub_blocks = -(-(kdump.SUB_HEADER.size + len(note_data)) // PAGE)
    bitmap_len = -(-max_mapnr // 8)
    bitmap_blocks = 2 * -(-bitmap_len // PAGE)
    pieces: list[tuple[int, bytes]] = []
    header = kdump.DISK_HEADER.pack(kdump.KDUMP_SIGNATURE, 6, b"x86_64", b"", status, PAGE, sub_blocks,
                                    bitmap_blocks, max_mapnr, 0, 0, 0, 0, len(cpus))
    pieces.append((0, header))
    offset_note = PAGE + kdump.SUB_HEADER.size
    pieces.append((PAGE, kdump.SUB_HEADER.pack(0, 1, 0, 0, 0, 0, 0, offset_note, len(note_data), 0, 0, 0, 0,
                                               max_mapnr)))
    pieces.append((offset_note, note_data))
    bitmap = bytearray(bitmap_blocks * PAGE // 2)
    for addr in pages:
        bitmap[addr // PAGE // 8] |= 1 << (addr // PAGE % 8)
    bitmap_at = (1 + sub_blocks) * PAGE
    pieces += [(bitmap_at, bytes(bitmap)), (bitmap_at + len(bitmap), bytes(bitmap))]
    descs_at = (1 + sub_blocks + bitmap_blocks) * PAGE
    data_at = descs_at + kdump.PAGE_DESC.size * len(pages)
    descs, data = bytearray(), bytearray(bytes(PAGE))          # the shared zero page first
    for addr in sorted(pages):
        page = pages[addr]
        if page == bytes(PAGE):
            descs += kdump.PAGE_DESC.pack(data_at, PAGE, 0, 0)
            continue
        packed = zlib.compress(page, 1) if status & kdump.COMPRESSED_ZLIB else page
        flags = kdump.COMPRESSED_ZLIB if len(packed) < PAGE else 0
        stored = packed if flags else page
        descs += kdump.PAGE_DESC.pack(data_at + len(data), len(stored), flags, 0)
        data += stored
    pieces += [(descs_at, bytes(descs)), (data_at, bytes(data))]
    path.write_bytes(_flattened(pieces, end_marker) if flattened else _plain(pieces))
    return path


def _flattened(pieces: list[tuple[int, bytes]], end_marker: bool) -> bytes:
    out = bytearray(kdump.FLAT_SIGNATURE.ljust(16, b"\0") + struct.pack(">qq", 1, 1))
    out += bytes(kdump.FLAT_HEADER_SIZE - len(out))
    for offset, data in pieces:
        for i in range(0, len(data), 4 * PAGE):          # QEMU's data cache writes 16 KiB at a time
            chunk = data[i:i + 4 * PAGE]
            out += kdump.FLAT_RECORD.pack(offset + i, len(chunk)) + chunk
    if end_marker:
        out += kdump.FLAT_RECORD.pack(kdump.FLAT_END, kdump.FLAT_END)
    return bytes(out)


def _plain(pieces: list[tuple[int, bytes]]) -> bytes:
    size = max(offset + len(data) for offset, data in pieces)
    out = bytearray(size)
    for offset, data in pieces:
        out[offset:offset + len(data)] = data
    return bytes(out)
