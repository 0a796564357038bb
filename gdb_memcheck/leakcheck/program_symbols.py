"""Where a tracked process's hooks go, from its modules' ELF symbols, code and auxiliary
vector: the program's entry and main(), the module that defines the malloc family, the
preload library's ring, and for the cheaper malloc-stops the allocator's return
instructions and the pc after its first read of malloc's flag."""
from __future__ import annotations

from typing import Callable, Iterator

from ..arch.base import Calls
from ..linux.system import System
from ..linux.tasks import Task
from ..symbols.disasm import after_first_read, function_exits
from ..symbols.unwind import Module, ModuleMap, Unwinder
from ..target import TargetError, u64
from . import alloctrack, preload_ring

AT_ENTRY = 9        # the auxiliary vector's key for the program's entry (include/uapi/linux/auxvec.h)
# glibc's flag that every allocating malloc-family function reads first (malloc/malloc.c, 2.26+)
MALLOC_FLAG = "__malloc_initialized"
# <link.h>, the same on every LP64 ABI: struct r_debug's r_map follows an int; struct
# link_map begins l_addr, l_name, l_ld, l_next
R_MAP, L_ADDR, L_NEXT = 8, 0, 24
MAX_LINK_MAPS = 4096
GLIBC_MALLOC = "__libc_malloc"      # glibc's own name for its malloc, exported beside malloc


def auxv_entry(system: System, task: Task) -> int:
    """AT_ENTRY from the mm's saved auxiliary vector: where the program itself starts."""
    saved = system.target.layout("struct mm_struct").member("saved_auxv")
    auxv = system.kmem.read(task.mm + saved.offset, saved.size)
    for i in range(0, len(auxv), 16):
        key, value = u64(auxv, i), u64(auxv, i + 8)
        if key == AT_ENTRY:
            return value
        if key == 0:
            break
    raise TargetError(f"pid {task.tgid} has no AT_ENTRY in its auxiliary vector")


def main_address(modules: ModuleMap, exe: str) -> int | None:
    """Where the executable's main() is, from its symbols; None when it has none."""
    for interval in modules.by_address:
        vma = interval.value
        if vma.name == exe and vma.offset == 0:
            module = modules.module(vma.start)
            found = module.elf.addresses_of(["main"]) if module else {}
            return runtime_address(module, found["main"]) if "main" in found else None
    return None


def preload_symbols(modules: ModuleMap) -> tuple[str, int, int] | None:
    """The preload library's path, and the run-time addresses of its ring and of the function
    it calls when the ring is full; None when the process has not loaded it."""
    for module in _modules_once(modules):
        found = module.elf.addresses_of([preload_ring.RING_SYMBOL, preload_ring.FULL_SYMBOL])
        if len(found) == 2:
            return (module.path, runtime_address(module, found[preload_ring.RING_SYMBOL]),
                    runtime_address(module, found[preload_ring.FULL_SYMBOL]))
    return None


def _modules_once(modules: ModuleMap) -> Iterator[Module]:
    """Each usable file of the process once, in address order."""
    seen = set()
    for interval in modules.by_address:
        if interval.value.name not in seen:
            seen.add(interval.value.name)
            module = modules.module(interval.value.start)
            if module is not None:
                yield module


def load_order(modules: ModuleMap, read: Callable[[int, int], bytes]) -> list[Module]:
    """The process's modules in the dynamic linker's lookup order, which decides whose malloc
    a call reaches (an LD_PRELOAD library's before libc's): the order of ld.so's link_map list
    (from `_r_debug`), then what the list does not name, in address order (a static program
    has no list)."""
    found = list(_modules_once(modules))
    by_base = {runtime_address(m, 0): m for m in found}
    try:
        listed = [by_base.pop(base) for base in link_map_bases(found, read) if base in by_base]
    except TargetError:
        listed = []
    return listed + [m for m in found if all(m is not other for other in listed)]


def link_map_bases(found: list[Module], read: Callable[[int, int], bytes]) -> list[int]:
    """The load bias (l_addr) of each entry of the dynamic linker's link_map list, in list
    order; [] without a `_r_debug` (a static program).  A list that loops, runs past
    MAX_LINK_MAPS entries or points at unreadable memory ends there."""
    r_debug = next(((m, found_at["_r_debug"]) for m in found
                    if "_r_debug" in (found_at := m.elf.addresses_of(["_r_debug"]))), None)
    if r_debug is None:
        return []
    entry = u64(read(runtime_address(*r_debug) + R_MAP, 8), 0)
    bases, seen = [], set()
    while entry and entry not in seen and len(bases) < MAX_LINK_MAPS:
        seen.add(entry)
        try:
            raw = read(entry, L_NEXT + 8)
        except TargetError:
            break
        bases.append(u64(raw, L_ADDR))
        entry = u64(raw, L_NEXT)
    return bases


def malloc_family(modules: ModuleMap, process: Task, read: Callable[[int, int], bytes],
                  exclude: str = "") -> tuple[str, dict[int, str]]:
    """The module whose malloc and free the program's calls reach (the first in load_order
    to define both: libc, a malloc replacement loaded before it, or the executable itself;
    never `exclude`, the cooperative mode's preload library) and the run-time addresses of
    the malloc family in it."""
    order = [m for m in load_order(modules, read) if m.path != exclude]
    module = _allocator(order)
    if module is None:
        raise TargetError(f"pid {process.tgid} ({process.comm}): no module defines malloc and free (looked in "
                          f"{', '.join(m.path for m in order) or 'no readable module'}; a static binary without "
                          "symbols?)")
    return module.path, {runtime_address(module, vaddr): name
                         for name, vaddr in sorted(module.elf.addresses_of(alloctrack.FAMILY).items(), reverse=True)}


def malloc_replacement(modules: ModuleMap, read: Callable[[int, int], bytes]) -> str | None:
    """The module whose malloc the program's calls reach when it is not glibc's (a preloaded
    or linked replacement such as jemalloc, or the program's own): glibc's, shared or static,
    also defines __libc_malloc.  None for glibc, or when no module defines malloc and free."""
    module = _allocator(load_order(modules, read))
    return None if module is None or module.elf.addresses_of([GLIBC_MALLOC]) else module.path


def _allocator(order: list[Module]) -> Module | None:
    """The first module of `order` that defines both malloc and free."""
    return next((m for m in order if len(m.elf.addresses_of(["malloc", "free"])) == 2), None)


def runtime_address(module, vaddr: int) -> int:
    """The run-time address of an ELF virtual address of `module`."""
    base = module.vma.start - module.elf.vaddr_for_file_offset(module.vma.offset)
    return base + vaddr


def malloc_flag(modules: ModuleMap | None, family: dict[int, str], calls: Calls) -> int | None:
    """Run-time address of the flag every allocating call reads first; None where the
    allocator has no symbol for it (libc without its debug file) or the calls return
    through a link register, which no watchpoint sees."""
    module = modules.module(next(iter(family))) if modules and family else None
    if module is None or calls.link is not None:
        return None
    for elf in (module.elf, module.elf.debug_companion):
        try:
            found = elf.addresses_of([MALLOC_FLAG]) if elf is not None else {}
        except TargetError:
            continue
        if MALLOC_FLAG in found:
            return runtime_address(module, found[MALLOC_FLAG])
    return None


def flag_read_pc(unwinder: Unwinder, calls: Calls, module, address: int, name: str,
                 flag: int) -> int | None:
    """Where a watchpoint on the flag stops a call of `name` (entered at `address` of
    `module`) with its arguments still in their registers (run-time pc), or None."""
    if module is None:
        return None
    table = unwinder.table(module.elf)
    # the flag is usually in .bss, past the file: its ELF address is its distance from the
    # module's base, not what the file offset of the code's mapping would say
    vaddr, flag_vaddr = module.vaddr(address), flag - runtime_address(module, 0)
    try:
        after = after_first_read(str(module.elf.path), table.extent, calls, vaddr, flag_vaddr,
                                 alloctrack.FAMILY[name].args)
    except TargetError:
        return None
    return None if after is None else runtime_address(module, after)


def allocator_exits(unwinder: Unwinder, calls: Calls, modules: ModuleMap | None, address: int,
                    name: str) -> tuple[list[int], list[tuple[int, int]]] | None:
    """Run-time return instructions and function extents of a malloc-family function that
    hands out a new block; None where a stop at its entry is needed (a pointer argument
    or an out argument, or exits that disassembly cannot all find)."""
    sig = alloctrack.FAMILY[name]
    module = modules.module(address) if modules else None
    if sig.pointer_arg is not None or sig.out_arg is not None or module is None:
        return None
    table = unwinder.table(module.elf)
    try:
        exits = function_exits(str(module.elf.path), table.extent, calls, module.vaddr(address))
    except TargetError:
        return None
    if exits is None or not exits.returns:
        return None
    return ([runtime_address(module, r) for r in exits.returns],
            [(runtime_address(module, a), runtime_address(module, b)) for a, b in exits.functions])
