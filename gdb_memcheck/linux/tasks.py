"""Linux tasks: every process and thread, read from init_task's task list and each
thread group, with the fields `memcheck ps` shows.  Walks are bounded and cycle-safe."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from ..target import StructLayout, Target, TargetError, cstring, i32, u32, u64

PF_EXITING = 0x0000_0004     # set by exit_signals() at the start of do_exit
PF_KTHREAD = 0x0020_0000
MAX_TASKS = 1 << 16
TASK_STATES = "RSDTtXZPI"   # fs/proc/array.c task_state_array, indexed by fls(state)
TASK_REPORT = 0x7F
TASK_IDLE = 0x402           # TASK_UNINTERRUPTIBLE | TASK_NOLOAD

Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Task:
    """One task_struct, the fields views need."""

    addr: int
    pid: int
    tgid: int
    ppid: int
    comm: str
    state: str
    flags: int
    mm: int
    active_mm: int

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    @property
    def is_exiting(self) -> bool:
        """Already inside do_exit: its exit will not pass the do_exit hook again."""
        return bool(self.flags & PF_EXITING)

    @property
    def is_group_leader(self) -> bool:
        return self.pid == self.tgid


class TaskReader:
    """Reads task_structs with one bulk read each, at offsets from the debug info."""

    def __init__(self, target: Target, read: Reader) -> None:
        self.read = read
        self.layout: StructLayout = target.layout("struct task_struct")
        self.init_task = target.symbol_address("init_task")
        lay = self.layout
        self.off = {name: lay.offset(name) for name in (
            "tasks", "pid", "tgid", "comm", "mm", "active_mm", "real_parent", "flags", "exit_state")}
        self.off["state"] = lay.offset("__state") if lay.has("__state") else lay.offset("state")
        if lay.has("thread_node"):
            self.off["thread_node"] = lay.offset("thread_node")
            self.off["signal"] = lay.offset("signal")
            self.thread_head = target.layout("struct signal_struct").offset("thread_head")
        else:
            raise TargetError("this kernel has no task_struct.thread_node; threads cannot be listed")
        self.span = max(self.off.values()) + 16

    def task(self, addr: int) -> Task:
        raw = self.read(addr, self.span)
        o = self.off
        parent = u64(raw, o["real_parent"])
        ppid = 0 if parent in (0, addr) else i32(self.read(parent + o["tgid"], 4))
        if addr == self.init_task:
            ppid = 0
        return Task(addr, i32(raw, o["pid"]), i32(raw, o["tgid"]), ppid, cstring(raw[o["comm"]:o["comm"] + 16]),
                    _state(u32(raw, o["state"]), u32(raw, o["exit_state"])), u32(raw, o["flags"]),
                    u64(raw, o["mm"]), u64(raw, o["active_mm"]))

    def processes(self) -> Iterator[Task]:
        """Every thread-group leader on the task list, starting with init_task (pid 0)."""
        head = self.init_task + self.off["tasks"]
        for node in _list_nodes(self.read, head, include_head=True):
            yield self.task(node - self.off["tasks"])

    def threads(self, leader: Task) -> Iterator[Task]:
        """Every thread of `leader`'s group, through signal->thread_head."""
        signal = u64(self.read(leader.addr + self.off["signal"], 8))
        if signal == 0:
            yield leader
            return
        for node in _list_nodes(self.read, signal + self.thread_head, include_head=False):
            yield self.task(node - self.off["thread_node"])


def _state(state: int, exit_state: int) -> str:
    """The one-letter state /proc/PID/stat shows (fs/proc/array.c, task_state_index)."""
    if state & TASK_IDLE == TASK_IDLE:
        return "I"
    return TASK_STATES[((state | exit_state) & TASK_REPORT).bit_length()]


def _list_nodes(read: Reader, head: int, include_head: bool) -> Iterator[int]:
    """Addresses of the list_head nodes of a circular list, bounded and cycle-safe."""
    seen = {head}
    if include_head:
        yield head
    node = u64(read(head, 8))
    while node != head:
        if node in seen or len(seen) > MAX_TASKS or node == 0:
            raise TargetError(f"corrupt list at {head:#x}: node {node:#x} loops or is null")
        seen.add(node)
        yield node
        node = u64(read(node, 8))
