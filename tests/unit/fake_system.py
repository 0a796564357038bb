"""A stopped guest as the breakpoint-driven features see it (the System interface), made
of dicts: tasks, thread groups, registers per vCPU, kernel and user memory by address.
The kernel event source and the malloc tracker run over it without gdb or a guest."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from fakes import FakeTarget
from gdb_memcheck.arch import X86_64, Arch
from gdb_memcheck.target import Field, MemoryReadError, StructLayout, TargetError
from gdb_memcheck.linux.tasks import Task
from gdb_memcheck.linux.vmas import MmInfo, Vma

PT_REGS = StructLayout("struct pt_regs", 21 * 8, {name: Field(8 * i, 8) for i, name in enumerate(
    ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
     "orig_ax", "ip", "cs", "flags", "sp", "ss"))})
BINPRM = StructLayout("struct linux_binprm", 0x100, {"filename": Field(0x60, 8)})
SAVED_AUXV = 0x200
MM_STRUCT = StructLayout("struct mm_struct", 0x400, {"saved_auxv": Field(SAVED_AUXV, 48 * 8)})


class Memory:
    """Sparse bytes by address; unwritten bytes read as zeros, or raise when `strict`."""

    def __init__(self, strict: bool = True) -> None:
        self.bytes: dict[int, int] = {}
        self.strict = strict

    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.bytes[addr + i] = b

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value))

    def read(self, addr: int, size: int) -> bytes:
        if self.strict and any(addr + i not in self.bytes for i in range(size)):
            raise MemoryReadError("kernel virtual", addr, size, "not in the fake")
        return bytes(self.bytes.get(addr + i, 0) for i in range(size))

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]


@dataclass
class Tasks:
    """task_struct address -> Task, as TaskReader.task reads them."""

    by_addr: dict[int, Task] = field(default_factory=dict)

    def task(self, addr: int) -> Task:
        if addr not in self.by_addr:
            raise TargetError(f"no task at {addr:#x}")
        return self.by_addr[addr]


@dataclass
class Process:
    """What the fake knows of one process: its threads, map, mm and user memory."""

    leader: Task
    threads: list[Task]
    exe: str = ""
    vmas: list[Vma] = field(default_factory=list)
    mm: MmInfo | None = None
    memory: Memory = field(default_factory=lambda: Memory(strict=False))


class FakeSystem:
    """The System methods the event source and the malloc tracker use."""

    def __init__(self, cpus: int = 1, arch: Arch = X86_64) -> None:
        self.arch = arch
        self.target = FakeTarget(registers=[{} for _ in range(cpus)],
                                 layouts={"struct pt_regs": PT_REGS, "struct linux_binprm": BINPRM,
                                          "struct mm_struct": MM_STRUCT})
        self.tasks = Tasks()
        self.kmem = Memory()
        self.running: dict[int, Task] = {}           # vCPU -> task
        self.procs: dict[int, Process] = {}      # tgid -> process
        self._next = 0xFFFF_8880_0100_0000

    # -- building the guest ----------------------------------------------------
    def spawn(self, pid: int, ppid: int = 1, comm: str = "prog", threads: int = 1, exe: str = "",
              tgid: int | None = None) -> Task:
        """A new task (and its process when it leads one); returns the leader or the thread."""
        tgid = pid if tgid is None else tgid
        task = Task(self._alloc(), pid, tgid, ppid, comm, "R", 0, 0xFFFF_8880_0200_0000 + tgid * 0x1000, 0)
        self.tasks.by_addr[task.addr] = task
        if tgid == pid:
            mm = MmInfo(task.mm, 0, 0x1000_0000, 0x1000_0000, 0x7FFF_F000, 0, 0, 0)
            self.procs[tgid] = Process(task, [task], exe, mm=mm)
            for n in range(1, threads):
                self.spawn(pid + n, ppid, comm, tgid=tgid)
        else:
            self.procs[tgid].threads.append(task)
        return task

    def run_on(self, cpu: int, task: Task, **registers: int) -> None:
        """`task` is current on `cpu` with these register values."""
        self.running[cpu] = task
        self.target.selected_cpu = cpu
        self.target.registers[cpu] = dict(registers)

    def kernel_string(self, text: str) -> int:
        addr = self._alloc()
        self.kmem.write(addr, text.encode().ljust(0x1000, b"\0"))     # the page is mapped to its end
        return addr

    def _alloc(self) -> int:
        self._next += 0x1000
        return self._next

    # -- the System interface ----------------------------------------------------
    @property
    def processes(self) -> list[Task]:
        return [p.leader for p in self.procs.values()]

    def current(self, cpu: int) -> Task:
        return self.running[cpu]

    def threads(self, task: Task) -> list[Task]:
        return list(self.procs[task.tgid].threads)

    def exe_path(self, task: Task) -> str:
        return self.procs[task.tgid].exe

    def vmas(self, task: Task) -> list[Vma]:
        return list(self.procs[task.tgid].vmas)

    def mm(self, task: Task) -> MmInfo:
        return self.procs[task.tgid].mm

    def user_memory(self, task: Task) -> Memory:
        return self.procs[task.tgid].memory

    def layout_offset(self, type_name: str, member: str) -> int:
        return self.target.layout(type_name).offset(member)

    def file_path(self, file: int) -> str:
        return f"/file@{file:#x}"
