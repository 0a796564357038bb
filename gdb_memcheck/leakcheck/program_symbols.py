"""Where a tracked process's hooks go, from its modules' ELF symbols and its auxiliary
vector: the program's entry and main(), the module that defines the malloc family, and the
preload library's ring."""
from __future__ import annotations

from ..linux.system import System
from ..linux.tasks import Task
from ..symbols.unwind import ModuleMap
from ..target import TargetError, u64
from . import alloctrack, preload_ring

AT_ENTRY = 9        # the auxiliary vector's key for the program's entry (include/uapi/linux/auxvec.h)


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


def _modules_once(modules: ModuleMap):
    seen = set()
    for interval in modules.by_address:
        if interval.value.name not in seen:
            seen.add(interval.value.name)
            module = modules.module(interval.value.start)
            if module is not None:
                yield module


def malloc_family(modules: ModuleMap, process: Task, exclude: str = "") -> tuple[str, dict[int, str]]:
    """The module that defines malloc and free (libc, or the executable itself when it is
    static; never `exclude`, the preload library) and the run-time addresses of the malloc
    family in it."""
    tried = []
    seen = {exclude}
    for interval in modules.by_address:
        vma = interval.value
        if vma.name in seen:
            continue
        seen.add(vma.name)
        module = modules.module(vma.start)
        if module is None:
            continue
        found = module.elf.addresses_of(alloctrack.FAMILY)
        if "malloc" in found and "free" in found:
            return module.path, {runtime_address(module, vaddr): name
                                 for name, vaddr in sorted(found.items(), reverse=True)}
        tried.append(vma.name)
    raise TargetError(f"pid {process.tgid} ({process.comm}): no module defines malloc and free "
                      f"(looked in {', '.join(tried) or 'no readable module'}; a static binary without symbols?)")


def runtime_address(module, vaddr: int) -> int:
    """The run-time address of an ELF virtual address of `module`."""
    base = module.vma.start - module.elf.vaddr_for_file_offset(module.vma.offset)
    return base + vaddr
