"""Which function and source line a guest address belongs to, read with pyelftools from the
guest's ELF files (symbol tables and the DWARF line program) found under a sysroot."""
from __future__ import annotations

import io
import os
import struct
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

from elftools.common.exceptions import DWARFError, ELFError
from elftools.construct import ConstructError
from elftools.dwarf.callframe import CallFrameInfo
from elftools.elf.elffile import ELFFile

from ..intervals import IntervalMap
from ..target import TargetError
from .inlines import InlineChain, inline_chain

ELF_MAGIC = b"\x7fELF"
# .eh_frame_hdr: FDE count as udata4 (0x03), table as datarel sdata4 pairs (0x3b), as GNU ld writes it
EH_HDR_COUNT_AND_TABLE_ENCODING = bytes([0x03, 0x3B])
# pyelftools names STT_GNU_IFUNC (10), the type of glibc's ifunc-dispatched functions, STT_LOOS.
SYMBOL_TYPES = frozenset({"STT_FUNC", "STT_OBJECT", "STT_LOOS"})
BINDING_RANK = {"STB_GLOBAL": 0, "STB_WEAK": 1}
DEBUG_INFO_SECTIONS = (".debug_info", ".zdebug_info")
# What pyelftools lets escape on corrupt or truncated input besides its own errors.
PARSE_ERRORS = (ELFError, DWARFError, ConstructError, struct.error, ValueError, LookupError,
                ArithmeticError, EOFError, AssertionError, TypeError, AttributeError)


class SymbolizationError(TargetError):
    """A guest file that cannot be used for symbols: missing, not ELF, corrupt, or another build."""


@dataclass(frozen=True)
class Symbol:
    """A function or object from a symbol table, at its ELF virtual address."""

    name: str
    start: int
    size: int


@dataclass(frozen=True)
class SourceLine:
    """A line of source as the DWARF line program names it."""

    file: str
    line: int
    directory: str


@dataclass(frozen=True)
class LoadSegment:
    """A PT_LOAD program header: which file bytes land at which virtual addresses."""

    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class _Sequence:
    """One DWARF line-table sequence: row addresses ascending, each with its line (None: line 0)."""

    addresses: list[int]
    lines: list[SourceLine | None]

    def at(self, vaddr: int) -> SourceLine | None:
        return self.lines[bisect_right(self.addresses, vaddr) - 1]


class _SymbolIndex:
    """Sized symbols as disjoint intervals, plus size-0 symbols that reach to their section's end."""

    def __init__(self) -> None:
        self.sized: IntervalMap[Symbol] = IntervalMap()
        self.zero_starts: list[int] = []
        self.zero: list[tuple[Symbol, int]] = []

    def add(self, symbol: Symbol, section_end: int) -> None:
        """Keep the first symbol offered for an address range; callers offer the preferred alias first."""
        if symbol.size:
            if not self.sized.overlapping(symbol.start, symbol.start + symbol.size):
                self.sized.add(symbol.start, symbol.start + symbol.size, symbol)
        elif not self.zero_starts or self.zero_starts[-1] != symbol.start:
            self.zero_starts.append(symbol.start)
            self.zero.append((symbol, section_end))

    def lookup(self, vaddr: int) -> Symbol | None:
        """The sized symbol containing vaddr, else the nearest size-0 one before it in the same section."""
        hit = self.sized.find(vaddr)
        if hit is not None:
            return hit.value
        index = bisect_right(self.zero_starts, vaddr) - 1
        if index < 0:
            return None
        symbol, section_end = self.zero[index]
        before = self.sized.floor(vaddr)
        if vaddr >= section_end or (before is not None and before.start >= symbol.start):
            return None
        return symbol


class ElfFile:
    """One ELF file on the host, read into memory on first use so a rebuild cannot change it under us."""

    def __init__(self, path: str | os.PathLike[str], debug_dirs: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.debug_dirs = debug_dirs

    @cached_property
    def _elf(self) -> ELFFile:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise SymbolizationError(f"cannot read {self.path}: {exc.strerror}") from exc
        if not data.startswith(ELF_MAGIC):
            raise SymbolizationError(f"{self.path} is not an ELF file")
        with self._parsing():
            return ELFFile(io.BytesIO(data))

    @contextmanager
    def _parsing(self) -> Iterator[None]:
        """Turn whatever pyelftools raises on a damaged file into one line for the user."""
        try:
            yield
        except PARSE_ERRORS as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SymbolizationError(f"{self.path} is a corrupt or truncated ELF file ({why})") from exc

    @cached_property
    def build_id(self) -> str | None:
        """The NT_GNU_BUILD_ID note in hex, which tells builds of the same path apart."""
        with self._parsing():
            for note in self._notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return note["n_desc"]
        return None

    def _notes(self) -> Iterator[Any]:
        elf = self._elf
        holders = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"]
        if not holders:
            holders = [p for p in elf.iter_segments() if p["p_type"] == "PT_NOTE"]
        for holder in holders:
            yield from holder.iter_notes()

    @cached_property
    def is_pie(self) -> bool:
        """ET_DYN: loaded at a run-time base (PIE executables and shared libraries)."""
        with self._parsing():
            return self._elf["e_type"] == "ET_DYN"

    @cached_property
    def load_segments(self) -> list[LoadSegment]:
        """The PT_LOAD headers, in file order."""
        with self._parsing():
            return [LoadSegment(p["p_offset"], p["p_vaddr"], p["p_filesz"], p["p_memsz"])
                    for p in self._elf.iter_segments() if p["p_type"] == "PT_LOAD"]

    def vaddr_for_file_offset(self, file_offset: int) -> int | None:
        """The ELF virtual address a file offset is loaded at; offsets past p_filesz but within
        p_memsz count too, since a mapping's last file page also holds the start of .bss."""
        holding = [s for s in self.load_segments if s.offset <= file_offset < s.offset + s.memsz]
        if not holding:
            return None
        segment = min(holding, key=lambda s: file_offset >= s.offset + s.filesz)
        return segment.vaddr + (file_offset - segment.offset)

    def symbol_at(self, vaddr: int) -> Symbol | None:
        """The function or object (from .symtab, else .dynsym; a debug file's .symtab first)
        an ELF virtual address belongs to."""
        companion = self.debug_companion
        found = companion.symbol_at(vaddr) if companion is not None else None
        return found or self._symbols.lookup(vaddr)

    def addresses_of(self, names: Iterable[str]) -> dict[str, int]:
        """ELF virtual addresses of those names that are defined functions or objects here
        (.symtab and .dynsym: a stripped library still exports its API)."""
        return {name: self._addresses[name] for name in names if name in self._addresses}

    @cached_property
    def _addresses(self) -> dict[str, int]:
        """Name -> address of every defined symbol, .symtab's before .dynsym's; read once."""
        found: dict[str, int] = {}
        with self._parsing():
            for name in (".symtab", ".dynsym"):
                table = self._elf.get_section_by_name(name)
                if table is None or table["sh_type"] == "SHT_NOBITS":      # a debug file's empty .dynsym
                    continue
                for symbol, _, _ in _defined_symbols(table):
                    if symbol.start:
                        found.setdefault(symbol.name, symbol.start)
        return found

    @cached_property
    def _symbols(self) -> _SymbolIndex:
        with self._parsing():
            elf = self._elf
            table = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
            index = _SymbolIndex()
            if table is None:
                return index
            section_ends = {i: s["sh_addr"] + s["sh_size"] for i, s in enumerate(elf.iter_sections())}
            for symbol, shndx, _ in sorted(_defined_symbols(table), key=_preference):
                index.add(symbol, section_ends.get(shndx, 0))
            return index

    @cached_property
    def eh_frame_search_table(self) -> list[tuple[int, int]] | None:
        """.eh_frame_hdr's binary-search table as (function start, FDE offset in .eh_frame),
        sorted; None when the file has none in the usual encoding (then parse every FDE)."""
        with self._parsing():
            hdr = self._elf.get_section_by_name(".eh_frame_hdr")
            frame = self._elf.get_section_by_name(".eh_frame")
            if hdr is None or frame is None:
                return None
            data = hdr.data()
            if len(data) < 12 or data[0] != 1 or data[2:4] != EH_HDR_COUNT_AND_TABLE_ENCODING:
                return None
            count = struct.unpack_from("<I", data, 8)[0]
            if 12 + 8 * count > len(data):
                return None
            base, frame_start = hdr["sh_addr"], frame["sh_addr"]
            return [(base + start, base + fde - frame_start)
                    for start, fde in struct.iter_unpack("<ii", data[12:12 + 8 * count])]

    def frame_entry_at(self, offset: int) -> Any:
        """The FDE at an offset of .eh_frame, parsed alone (pyelftools' per-entry parser)."""
        with self._parsing():
            return self._eh_frame_parser._parse_entry_at(offset)

    @cached_property
    def _eh_frame_parser(self) -> Any:
        dwarf = self._elf.get_dwarf_info()
        section = dwarf.eh_frame_sec
        return CallFrameInfo(stream=section.stream, size=section.size, address=section.address,
                             base_structs=dwarf.structs, for_eh_frame=True)

    def call_frame_entries(self) -> list[Any]:
        """The FDEs of .eh_frame and .debug_frame (pyelftools objects), for unwinding."""
        with self._parsing():
            dwarf = self._elf.get_dwarf_info()
            entries = list(dwarf.EH_CFI_entries()) if dwarf.has_EH_CFI() else []
            if dwarf.has_CFI():
                entries += dwarf.CFI_entries()
            return [e for e in entries if "initial_location" in getattr(e, "header", {})]

    def source_line(self, vaddr: int) -> SourceLine | None:
        """The source line the DWARF line program gives for an ELF virtual address; None without DWARF.
        Only the compilation unit that .debug_aranges names is decoded (glibc's whole line
        table takes ~9 s to decode; one unit takes ~10 ms); without aranges, every unit."""
        companion = self.debug_companion
        if companion is not None:
            return companion.source_line(vaddr)
        with self._parsing():
            if self._aranges is not None:
                self._load_unit(self._aranges.cu_offset_at_addr(vaddr))
            elif self._dwarf is not None and not self._units_loaded:
                for cu in self._dwarf.iter_CUs():
                    self._load_unit(cu.cu_offset)
        hit = self._lines.find(vaddr)
        return hit.value.at(vaddr) if hit is not None else None

    def inline_chain(self, vaddr: int) -> InlineChain | None:
        """The inlined calls at an ELF virtual address (see inlines.py); None without DWARF
        or .debug_aranges for it.  Each address is worked out once."""
        companion = self.debug_companion
        if companion is not None:
            return companion.inline_chain(vaddr)
        if vaddr not in self._chains:
            self._chains[vaddr] = self._inline_chain(vaddr)
        return self._chains[vaddr]

    def _inline_chain(self, vaddr: int) -> InlineChain | None:
        with self._parsing():
            offset = self._aranges.cu_offset_at_addr(vaddr) if self._aranges is not None else None
            if offset is None:
                return None
            cu = self._dwarf.get_CU_at(offset)
            program = self._dwarf.line_program_for_CU(cu)
            return inline_chain(cu, vaddr, _file_names(cu, program) if program is not None else {})

    @cached_property
    def _chains(self) -> dict[int, InlineChain | None]:
        return {}

    @cached_property
    def _dwarf(self) -> Any:
        with self._parsing():
            if not any(self._elf.get_section_by_name(name) for name in DEBUG_INFO_SECTIONS):
                return None
            return self._elf.get_dwarf_info()

    @cached_property
    def _aranges(self) -> Any:
        with self._parsing():
            return self._dwarf.get_aranges() if self._dwarf is not None else None

    def _load_unit(self, cu_offset: int | None) -> None:
        """Add one compilation unit's line-table sequences, once."""
        if cu_offset is None or cu_offset in self._units_loaded:
            return
        self._units_loaded.add(cu_offset)
        cu = self._dwarf.get_CU_at(cu_offset)
        program = self._dwarf.line_program_for_CU(cu)
        if program is not None:
            _add_sequences(self._lines, cu, program)

    @cached_property
    def _lines(self) -> IntervalMap[_Sequence]:
        return IntervalMap()

    @cached_property
    def _units_loaded(self) -> set[int]:
        return set()

    @cached_property
    def debug_companion(self) -> "ElfFile | None":
        """The separate debug file (Debian's -dbg packages: .build-id/xx/rest.debug) of a file
        that has no DWARF of its own, found in `debug_dirs` and matched by build-id."""
        build_id = self.build_id
        if not build_id or not self.debug_dirs or self._dwarf is not None:
            return None
        for directory in self.debug_dirs:
            path = Path(directory) / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
            if path.is_file():
                companion = ElfFile(path)
                try:
                    if companion.build_id == build_id:
                        return companion
                except SymbolizationError:
                    continue
        return None


ELF64_SYM = struct.Struct("<IBBHQQ")        # st_name, st_info, st_other, st_shndx, st_value, st_size
SYMBOL_TYPE_NUMBERS = frozenset({1, 2, 10})   # STT_OBJECT, STT_FUNC, STT_GNU_IFUNC
BINDING_NUMBER_RANK = {1: 0, 2: 1}            # STB_GLOBAL, STB_WEAK; local and others after
SHN_LORESERVE = 0xFF00                        # section indexes from here on are special (ABS, COMMON, ...)


def _defined_symbols(table: Any) -> Iterator[tuple[Symbol, int, int]]:
    """(symbol, section index, binding rank) of the named functions and objects defined in a
    section (not undefined, absolute or common).  64-bit tables are unpacked in bulk: glibc's
    debug symbols take 0.1 s so, against ~1 s symbol by symbol."""
    if table.elffile.elfclass != 64 or not table.elffile.little_endian:
        yield from _defined_symbols_slowly(table)
        return
    names = table.stringtable.data()
    for st_name, info, _, shndx, value, size in ELF64_SYM.iter_unpack(table.data()):
        if st_name and 0 < shndx < SHN_LORESERVE and info & 0xF in SYMBOL_TYPE_NUMBERS:
            name = names[st_name:names.index(b"\0", st_name)].decode("utf-8", "replace")
            yield Symbol(name, value, size), shndx, BINDING_NUMBER_RANK.get(info >> 4, len(BINDING_NUMBER_RANK))


def _defined_symbols_slowly(table: Any) -> Iterator[tuple[Symbol, int, int]]:
    for sym in table.iter_symbols():
        shndx, info = sym["st_shndx"], sym["st_info"]
        if sym.name and isinstance(shndx, int) and info["type"] in SYMBOL_TYPES:
            rank = BINDING_RANK.get(info["bind"], len(BINDING_RANK))
            yield Symbol(sym.name, sym["st_value"], sym["st_size"]), shndx, rank


def _preference(entry: tuple[Symbol, int, int]) -> tuple[int, int, int, bool, int, str]:
    """Address order; among aliases the widest, then global over weak over local, then the plainest name."""
    symbol, _, rank = entry
    return symbol.start, -symbol.size, rank, symbol.name.startswith("_"), len(symbol.name), symbol.name


def _add_sequences(table: IntervalMap[_Sequence], cu: Any, program: Any) -> None:
    """Add a CU's line-table sequences, skipping discarded code (address 0) and overlaps."""
    rows: list[tuple[int, int, int]] = []
    sequences: list[tuple[list[tuple[int, int, int]], int]] = []
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        if state.end_sequence:
            if rows:
                sequences.append((rows, state.address))
            rows = []
        else:
            rows.append((state.address, state.file, state.line))
    names = _file_names(cu, program)
    for rows, end in sequences:
        start = rows[0][0]
        if start and end > start and not table.overlapping(start, end):
            table.add(start, end, _sequence(rows, names))


def _sequence(rows: list[tuple[int, int, int]], names: dict[int, tuple[str, str]]) -> _Sequence:
    lines = []
    for _, file_index, line in rows:
        name = names.get(file_index)
        lines.append(SourceLine(name[0], line, name[1]) if name and line else None)
    return _Sequence([address for address, _, _ in rows], lines)


def _file_names(cu: Any, program: Any) -> dict[int, tuple[str, str]]:
    """File index -> (file name, directory): DWARF 5 numbers files and directories from 0 (entry 0
    being the CU's own), DWARF 4 numbers files from 1 and uses directory 0 for the compilation dir."""
    version = program.header["version"]
    comp_dir = _text(cu.get_top_DIE().attributes.get("DW_AT_comp_dir"))
    dirs = [_text(d) for d in program.header["include_directory"]]
    if version < 5:
        dirs = [comp_dir] + dirs
    first = 0 if version >= 5 else 1
    names = {}
    for index, entry in enumerate(program.header["file_entry"], start=first):
        directory = dirs[entry.dir_index] if entry.dir_index < len(dirs) else comp_dir
        names[index] = (_text(entry.name), os.path.join(comp_dir, directory))
    return names


def _text(value: Any) -> str:
    """A DWARF string (attribute, bytes or str) as str."""
    value = getattr(value, "value", value)
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def runtime_to_vaddr(addr: int, map_start: int, map_file_offset: int, elf: ElfFile) -> int | None:
    """The ELF virtual address of a run-time address inside a file mapping (PIE or not)."""
    if addr < map_start:
        return None
    return elf.vaddr_for_file_offset(map_file_offset + (addr - map_start))


HOST_DEBUG_DIR = "/usr/lib/debug"


class SymbolCache:
    """Guest paths resolved under the sysroot to parsed ELF files, reparsed when the host file
    changes.  Separate debug files are looked up by build-id under the sysroot's
    /usr/lib/debug, then the host's (a build-id names one build, wherever it lies)."""

    def __init__(self, sysroot: str, debug_dirs: tuple[str, ...] | None = None) -> None:
        self.sysroot = sysroot
        if debug_dirs is None:
            debug_dirs = (str(Path(sysroot) / HOST_DEBUG_DIR.lstrip("/")), HOST_DEBUG_DIR) if sysroot else ()
        self.debug_dirs = debug_dirs
        self._files: dict[Path, tuple[tuple[int, int], ElfFile]] = {}

    def host_path(self, guest_path: str) -> Path:
        """Where a guest path lives on the host; '..' cannot climb out of the sysroot."""
        if not self.sysroot:
            raise SymbolizationError("no sysroot set: use 'set memcheck sysroot DIR' to name the "
                                     "directory holding the guest's files")
        return Path(self.sysroot) / os.path.normpath("/" + guest_path).lstrip("/")

    def get(self, guest_path: str, expected_build_id: str | None = None) -> ElfFile:
        """The parsed ELF file for a guest path, checked against the guest's build-id when known."""
        host = self.host_path(guest_path)
        stamp = self._stamp(host, guest_path)
        cached = self._files.get(host)
        if cached is None or cached[0] != stamp:
            cached = self._files[host] = (stamp, ElfFile(host, self.debug_dirs))
        elf = cached[1]
        actual = elf.build_id
        if expected_build_id is not None and actual != expected_build_id.lower():
            raise SymbolizationError(f"{host} has build-id {actual or '(none)'} but the guest's "
                                     f"{guest_path} has build-id {expected_build_id.lower()}")
        return elf

    def _stamp(self, host: Path, guest_path: str) -> tuple[int, int]:
        try:
            info = host.stat()
        except OSError:
            raise SymbolizationError(f"{guest_path} is not under sysroot {self.sysroot} "
                                     f"(no {host})") from None
        if not host.is_file():
            raise SymbolizationError(f"{host} is not a regular file")
        return info.st_mtime_ns, info.st_size
