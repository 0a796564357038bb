"""The live Target: guest memory, registers, symbols and type layouts through gdb."""
from __future__ import annotations

import re
from typing import Callable

import gdb

from ..target import Field, MemoryReadError, StructLayout, SymbolError, TargetError

PhysicalRead = Callable[[int, int], bytes]
MAX_NESTING = 3


class GdbTarget:
    """Implements gdb_memcheck.target.Target over gdb's remote connection to QEMU."""

    def __init__(self) -> None:
        self._symbols: dict[str, int | None] = {}
        self._layouts: dict[str, StructLayout] = {}
        self._enums: dict[str, dict[str, int]] = {}
        self.physical_reader: PhysicalRead | None = None
        self._cpu_of_thread: dict[int, int] = {}

    def forget_debug_info(self) -> None:
        """Drop cached symbols and layouts (a new objfile was loaded or symbols moved)."""
        self._symbols.clear()
        self._layouts.clear()
        self._enums.clear()

    def read_virtual(self, addr: int, size: int) -> bytes:
        try:
            return bytes(_inferior().read_memory(addr, size))
        except (gdb.MemoryError, gdb.error) as e:
            raise MemoryReadError("virtual", addr, size, str(e)) from None
        except (OverflowError, ValueError) as e:
            raise MemoryReadError("virtual", addr, size, str(e)) from None

    def write_virtual(self, addr: int, data: bytes) -> None:
        try:
            _inferior().write_memory(addr, data)
        except (gdb.MemoryError, gdb.error) as e:
            raise TargetError(f"cannot write {len(data)} bytes at {addr:#x}: {e}") from None

    def read_physical(self, addr: int, size: int) -> bytes:
        if self.physical_reader is None:
            raise TargetError("no physical memory path: not connected to a guest")
        return self.physical_reader(addr, size)

    def register(self, name: str, cpu: int | None = None) -> int:
        try:
            if cpu is None:
                return _frame_register(name)
            return _on_thread(self._thread(cpu), lambda: _frame_register(name))
        except gdb.error as e:
            raise TargetError(f"cannot read ${name}: {e}") from None

    def symbol_address(self, name: str) -> int:
        if name not in self._symbols:
            try:
                self._symbols[name] = int(gdb.parse_and_eval(f"(unsigned long)&{name}"))
            except gdb.error:
                self._symbols[name] = None      # a failed lookup searches every symtab: 10-50 ms
        address = self._symbols[name]
        if address is None:
            raise SymbolError(f"no symbol {name!r} in the loaded kernel debug info")
        return address

    def function_pointer(self, name: str) -> int:
        key = "pointer " + name
        if key not in self._symbols:
            address = self.symbol_address(name)
            # gdb 13's Python has no minimal-symbol lookup; "info symbol" names the ELF symbol
            # (once per function, never on a hot path)
            where = gdb.execute(f"info symbol {address:#x}", to_string=True)
            skipped = re.match(rf"{re.escape(name)} \+ (\d+) in ", where)
            self._symbols[key] = address - int(skipped.group(1)) if skipped else address
        return self._symbols[key]

    def symbol_size(self, name: str) -> int:
        key = "sizeof " + name
        if key not in self._symbols:
            try:
                self._symbols[key] = int(gdb.parse_and_eval(f"sizeof({name})"))
            except gdb.error:
                raise SymbolError(f"no symbol {name!r} in the loaded kernel debug info") from None
        return self._symbols[key]

    def has_symbol(self, name: str) -> bool:
        if name not in self._symbols:
            try:
                self.symbol_address(name)
            except SymbolError:
                return False
        return self._symbols[name] is not None

    def has_function(self, name: str) -> bool:
        key = "function " + name
        if key not in self._symbols:
            try:
                gdb.decode_line(name)          # linespecs find inlined-only functions too
                self._symbols[key] = 1
            except gdb.error:
                self._symbols[key] = 0
        return bool(self._symbols[key])

    def layout(self, type_name: str) -> StructLayout:
        if type_name not in self._layouts:
            try:
                t = gdb.lookup_type(type_name).strip_typedefs()
            except gdb.error:
                raise SymbolError(f"no type {type_name!r} in the loaded kernel debug info") from None
            fields: dict[str, Field] = {}
            _flatten(t, "", 0, fields, 0)
            self._layouts[type_name] = StructLayout(type_name, t.sizeof, fields)
        return self._layouts[type_name]

    def cpu_count(self) -> int:
        return len(_threads())

    def enum_values(self, type_name: str) -> dict[str, int]:
        if type_name not in self._enums:
            try:
                t = gdb.lookup_type(type_name).strip_typedefs()
            except gdb.error:
                raise SymbolError(f"no type {type_name!r} in the loaded kernel debug info") from None
            self._enums[type_name] = {f.name: int(f.enumval) for f in t.fields()}
        return self._enums[type_name]

    def selected_cpu(self) -> int:
        """0-based vCPU of gdb's selected thread (QEMU shows one thread per vCPU)."""
        selected = gdb.selected_thread()
        if selected is None:
            raise TargetError("not connected to a guest (target remote HOST:PORT)")
        if selected.num not in self._cpu_of_thread:
            self._cpu_of_thread = {t.num: i for i, t in enumerate(_threads())}
        return self._cpu_of_thread[selected.num]

    def _thread(self, cpu: int) -> "gdb.InferiorThread":
        threads = _threads()
        if not 0 <= cpu < len(threads):
            raise TargetError(f"no vCPU {cpu}: the guest has {len(threads)}")
        return threads[cpu]


def _inferior() -> "gdb.Inferior":
    return gdb.selected_inferior()


def _threads() -> list:
    return sorted(_inferior().threads(), key=lambda t: t.num)


def _frame_register(name: str) -> int:
    """`$name` of the selected thread; evaluating it skips building frame #0 (0.5-16 ms
    at a kernel stop), which Frame.read_register would need."""
    return int(gdb.parse_and_eval(f"${name}")) & 0xFFFF_FFFF_FFFF_FFFF


def _on_thread(thread: "gdb.InferiorThread", fn: Callable[[], int]) -> int:
    previous = gdb.selected_thread()
    if previous is not None and previous.num == thread.num:
        return fn()
    thread.switch()
    try:
        return fn()
    finally:
        if previous is not None:
            previous.switch()


def _flatten(t: "gdb.Type", prefix: str, base: int, out: dict[str, Field], depth: int) -> None:
    """Members of struct/union `t` at `base`, nested ones dotted; anonymous ones inlined like C."""
    for f in t.fields():
        if not hasattr(f, "bitpos") or f.bitpos is None:
            continue
        offset = base + f.bitpos // 8
        ftype = f.type.strip_typedefs()
        nested = ftype.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION)
        if not f.name:
            if nested:
                _flatten(ftype, prefix, offset, out, depth)
            continue
        name = prefix + f.name
        out.setdefault(name, Field(offset, ftype.sizeof))
        if nested and depth < MAX_NESTING:
            _flatten(ftype, name + ".", offset, out, depth + 1)
