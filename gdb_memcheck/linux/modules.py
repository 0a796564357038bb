"""Loaded kernel modules and the memory each one holds: its code, read-only data,
ro_after_init data and writable data, from the `modules` list.  Bounded and cycle-safe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..target import PartialError, Target, cstring, u32, u64

MAX_MODULES = 4096
MAX_SYMBOLS = 1 << 16           # per module
ELF64_SYM = 24                  # Elf64_Sym: st_name u32, st_info, st_other, st_shndx u16, st_value, st_size
STT_FUNC = 2
Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class ModuleSymbol:
    """A function of a loaded module, from its own symbol table (mod->kallsyms)."""

    module: str
    name: str
    start: int
    size: int


@dataclass(frozen=True)
class ModuleRegion:
    """[start, end) of one kind of a module's memory: text, rodata, ro_after_init, data, init_*."""

    module: str
    kind: str
    start: int
    end: int

    @property
    def holds_pointers(self) -> bool:
        """Data a leak scan takes as a root (text and init text hold none worth scanning)."""
        return "text" not in self.kind


class ModuleReader:
    """Reads `struct module`: each module's memory regions, as this kernel lays them out."""

    def __init__(self, target: Target) -> None:
        mod = target.layout("struct module")
        self.head = target.symbol_address("modules")
        self.kallsyms = mod.offset("kallsyms") if mod.has("kallsyms") else None
        if self.kallsyms is not None:
            ks = target.layout("struct mod_kallsyms")
            self.ks = {m: ks.offset(m) for m in ("symtab", "num_symtab", "strtab")}
        self.list, self.name = mod.offset("list"), mod.offset("name")
        self.size = mod.size
        if mod.has("mem"):
            # 6.4 replaced core_layout/init_layout with mem[MOD_MEM_NUM_TYPES] ("module: replace
            # module_layout with module_memory")
            mem = target.layout("struct module_memory")
            types = target.enum_values("enum mod_mem_type")
            self.mem = (mod.offset("mem"), mem.size, mem.offset("base"), mem.offset("size"),
                        {v: k.removeprefix("MOD_").lower() for k, v in types.items()
                         if 0 <= v < types["MOD_MEM_NUM_TYPES"]})
            self.layout = None
        else:
            lay = target.layout("struct module_layout")
            self.mem = None
            self.layout = (mod.offset("core_layout"), {m: lay.offset(m) for m in (
                "base", "size", "text_size", "ro_size", "ro_after_init_size")})

    def regions(self, read: Reader) -> list[ModuleRegion]:
        """Every region of every loaded module (empty ones left out)."""
        found: list[ModuleRegion] = []
        for raw in self._modules(read, found):
            found += [r for r in self._regions(raw, cstring(raw[self.name:self.name + 56])) if r.end > r.start]
        return found

    def functions(self, read: Reader) -> list[ModuleSymbol]:
        """The functions of every loaded module, from the symbol table it keeps (CONFIG_KALLSYMS)."""
        found: list[ModuleSymbol] = []
        if self.kallsyms is None:
            return found
        for raw in self._modules(read, found):
            found += self._functions(read, raw, cstring(raw[self.name:self.name + 56]))
        return found

    def _functions(self, read: Reader, raw: bytes, name: str) -> list[ModuleSymbol]:
        ks = u64(raw, self.kallsyms)
        if not ks:
            return []
        k = read(ks, max(self.ks.values()) + 8)
        symtab, count, strtab = u64(k, self.ks["symtab"]), u32(k, self.ks["num_symtab"]), u64(k, self.ks["strtab"])
        table = read(symtab, ELF64_SYM * min(count, MAX_SYMBOLS))
        out = []
        for i in range(len(table) // ELF64_SYM):
            st_name, st_info = u32(table, i * ELF64_SYM), table[i * ELF64_SYM + 4]
            value, size = u64(table, i * ELF64_SYM + 8), u64(table, i * ELF64_SYM + 16)
            if st_info & 0xF == STT_FUNC and value:
                out.append(ModuleSymbol(name, cstring(read(strtab + st_name, 128)), value, size))
        return out

    def _modules(self, read: Reader, partial: list) -> list[bytes]:
        """Each struct module on the list, bounded and cycle-safe."""
        out: list[bytes] = []
        seen, node = {self.head}, u64(read(self.head, 8))
        while node != self.head:
            if node in seen or not node or len(out) >= MAX_MODULES:
                raise PartialError(f"module list is corrupt at {node:#x}", partial)
            seen.add(node)
            raw = read(node - self.list, self.size)
            out.append(raw)
            node = u64(raw, self.list)
        return out

    def _regions(self, raw: bytes, name: str) -> list[ModuleRegion]:
        if self.mem is not None:
            base, stride, b, s, kinds = self.mem
            return [ModuleRegion(name, kind, u64(raw, base + i * stride + b),
                                 u64(raw, base + i * stride + b) + u32(raw, base + i * stride + s))
                    for i, kind in kinds.items()]
        at, o = self.layout
        start = u64(raw, at + o["base"])
        text, ro, ro_after, size = (u32(raw, at + o[m]) for m in ("text_size", "ro_size", "ro_after_init_size", "size"))
        return [ModuleRegion(name, "text", start, start + text), ModuleRegion(name, "rodata", start + text, start + ro),
                ModuleRegion(name, "ro_after_init", start + ro, start + ro_after),
                ModuleRegion(name, "data", start + ro_after, start + size)]
