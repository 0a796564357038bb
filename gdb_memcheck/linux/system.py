"""A stopped guest as the views see it: processes, their threads, memory maps, RSS
and page tables, read lazily through one KernelMemory and cached for this stop."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..arch import X86_64, Arch
from ..arch.pagetables import Translation
from ..target import PartialError, Target, TargetError
from . import rss
from .dpath import PathLayout
from .kernel import CurrentTask
from .memory import KernelMemory, UserMemory
from .tasks import Task, TaskReader
from .vmas import MmInfo, Vma, VmaReader, path_layout_root


@dataclass(frozen=True)
class Mapping:
    """A VMA and, when counted, its Rss and Anonymous bytes."""

    vma: Vma
    usage: rss.Usage | None = None


class System:
    """Snapshot queries over a stopped guest; build a new one after the guest runs.
    `readers` keeps what depends only on the debug info (offsets, symbol addresses) from
    one stop to the next; its owner empties it when the symbols or `kmem` change."""

    def __init__(self, target: Target, kmem: KernelMemory, readers: dict | None = None,
                 arch: Arch = X86_64) -> None:
        self.target, self.kmem, self.arch = target, kmem, arch
        self.readers = {} if readers is None else readers

    @property
    def tasks(self) -> TaskReader:
        if "tasks" not in self.readers:
            self.readers["tasks"] = TaskReader(self.target, self.kmem.read)
        return self.readers["tasks"]

    @property
    def current_task(self) -> CurrentTask:
        if "current" not in self.readers:
            self.readers["current"] = CurrentTask.from_target(self.target)
        return self.readers["current"]

    @cached_property
    def processes(self) -> list[Task]:
        """Every thread-group leader; on a corrupt task list, PartialError carries those read before."""
        found: list[Task] = []
        try:
            for task in self.tasks.processes():
                found.append(task)
        except TargetError as e:
            raise PartialError(f"{e} (after {len(found)} processes)", found) from None
        return found

    @cached_property
    def vma_reader(self) -> VmaReader:
        """Paths are rooted at init's fs root, as a reader in init's namespace sees them
        (init is the first task after init_task, so this reads two tasks, not all).  The
        offsets are kept between stops; the root and the names read are this stop's."""
        init = next((p for p in self.tasks.processes() if p.pid == 1), None) or self.processes[0]
        if "vmas" not in self.readers:
            self.readers["paths"] = PathLayout.from_target(self.target)
            self.readers["vmas"] = VmaReader(self.target, self.kmem.read, None)
        root = path_layout_root(self.target, self.kmem.read, init.addr, self.readers["paths"])
        return self.readers["vmas"].with_paths(root)

    @cached_property
    def pages(self) -> rss.PageInfo:
        return rss.PageInfo(self.target, self.kmem.read)

    def threads(self, process: Task) -> list[Task]:
        return list(self.tasks.threads(process))

    def current(self, cpu: int) -> Task:
        return self.tasks.task(self.current_task.task(cpu, self.kmem.u64))

    def running(self) -> dict[int, int]:
        """Task address -> vCPU for the task each vCPU is running."""
        return {self.current_task.task(cpu, self.kmem.u64): cpu for cpu in range(self.target.cpu_count())}

    def find(self, spec: str) -> Task:
        """A process by pid or by comm (a comm must name exactly one process)."""
        if spec.isdigit():
            pid = int(spec)
            for p in self.processes:
                if p.pid == pid:
                    return p
                if p.tgid == pid or pid in {t.pid for t in self.threads(p)}:
                    return p
            raise TargetError(f"no process with pid {pid}")
        matches = [p for p in self.processes if p.comm == spec]
        if not matches:
            raise TargetError(f"no process named {spec!r}")
        if len(matches) > 1:
            raise TargetError(f"{len(matches)} processes are named {spec!r} (pids "
                              f"{', '.join(str(p.pid) for p in matches)}): give a pid")
        return matches[0]

    def mm(self, process: Task) -> MmInfo:
        if not process.mm:
            kind = "a kernel thread" if process.is_kernel_thread else "exiting"
            raise TargetError(f"pid {process.pid} ({process.comm}) is {kind}: it has no memory map")
        return self.vma_reader.mm(process.mm)

    def vmas(self, process: Task) -> list[Vma]:
        return self.vma_reader.vmas(self.mm(process))

    def task_pgd(self, task: Task) -> int:
        """Physical address of a task's top-level page table, read without the VMA reader."""
        if not task.mm:
            raise TargetError(f"pid {task.pid} ({task.comm}) has no memory map")
        return self.kmem.to_physical(self.kmem.u64(task.mm + self.layout_offset("struct mm_struct", "pgd")))

    def user_memory(self, task: Task) -> UserMemory:
        """A reader of `task`'s user memory through its own page tables."""
        return UserMemory(self.kmem.phys, self.task_pgd(task), self.kmem.paging)

    def pgd(self, mm: MmInfo) -> int:
        """Physical address of a process's top-level page table."""
        return self.kmem.to_physical(mm.pgd)

    def usages(self, mm: MmInfo, vmas: list[Vma]) -> list[rss.Usage]:
        """Rss and Anonymous of each VMA, from one walk of the process's page tables."""
        return rss.usages(self.kmem.phys.read, self.pgd(mm), self.kmem.paging,
                          [(v.start, v.end) for v in vmas], self.pages)

    def mappings(self, process: Task, count_rss: bool = True) -> list[Mapping]:
        """A process's VMAs, each with its Rss and Anonymous when `count_rss`."""
        vmas = self.vmas(process)
        if not count_rss:
            return [Mapping(v) for v in vmas]
        return [Mapping(v, u) for v, u in zip(vmas, self.usages(self.mm(process), vmas))]

    def exe_path(self, process: Task) -> str:
        """The executable's path, as /proc/PID/exe links to it ("" without one)."""
        if not process.mm:
            return ""
        return self.vma_reader.exe_path(self.mm(process))

    def layout_offset(self, type_name: str, member: str) -> int:
        return self.target.layout(type_name).offset(member)

    def file_path(self, file: int) -> str:
        """The path of a struct file, as /proc/PID/maps names it."""
        return self.vma_reader.file_path(file)

    def translate(self, root: int, va: int) -> Translation:
        return self.kmem.paging.translate(self.kmem.phys.read, root, va)
