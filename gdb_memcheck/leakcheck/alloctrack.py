"""Tracking mode of the leak checker, without gdb: what a call into the malloc family
means for a process's allocation map.  The debugger reports each call's entry (with
its arguments and the unwound stack) and, for calls that return a block, the return
(with rax); this module keeps one sorted map of live blocks per process, follows fork
(the child's copy is marked inherited) and exec (the map starts again), marks blocks
allocated before main as transition, and reports invalid and double frees."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Callable

from sortedcontainers import SortedDict

PAGE = 4096
RECENT_FREES = 10_000          # remembered to tell a double free from a wild one (valgrind keeps ~20 MB)
MASK = 0xFFFF_FFFF_FFFF_FFFF


class Origin(Enum):
    """Why a block may be forgiven: only OWN blocks are reported unless --all."""

    OWN = "own"
    TRANSITION = "transition"        # allocated before main
    INHERITED = "inherited"          # copied across fork
    PREEXISTING = "preexisting"      # live when tracking started (found by a heap scan)


@dataclass(frozen=True)
class Signature:
    """Where a malloc-family function takes its block and size, and whether it returns one."""

    pointer_arg: int | None          # the block freed or resized
    size: Callable[[list[int]], int]
    returns_block: bool = True
    out_arg: int | None = None       # posix_memalign: the block is stored at *args[out_arg]
    args: int = 1                    # how many arguments it takes


FAMILY: dict[str, Signature] = {
    "malloc": Signature(None, lambda a: a[0]),
    "calloc": Signature(None, lambda a: (a[0] * a[1]) & MASK, args=2),
    "realloc": Signature(0, lambda a: a[1], args=2),
    "reallocarray": Signature(0, lambda a: (a[1] * a[2]) & MASK, args=3),
    "memalign": Signature(None, lambda a: a[1], args=2),
    "aligned_alloc": Signature(None, lambda a: a[1], args=2),
    "posix_memalign": Signature(None, lambda a: a[2], out_arg=0, args=3),
    "valloc": Signature(None, lambda a: a[0]),
    "pvalloc": Signature(None, lambda a: -(-a[0] // PAGE) * PAGE),
    "free": Signature(0, lambda a: 0, returns_block=False),
}


@dataclass(frozen=True)
class Allocation:
    """A live block: its exact requested size, the call that made it and its stack."""

    address: int
    size: int
    via: str
    stack: tuple[int, ...]
    origin: Origin
    seq: int


@dataclass(frozen=True)
class BadFree:
    """A free (or realloc) of a pointer that is not a live block."""

    pid: int
    tid: int
    kind: str                        # "double free" or "invalid free"
    via: str
    address: int
    stack: tuple[int, ...]
    block: Allocation | None = None          # the block it once was, for a double free
    freed_by: tuple[int, ...] = ()           # the stack that freed it first

    def text(self) -> str:
        what = f"{self.via}({self.address:#x}) by pid {self.pid}/{self.tid}: {self.kind}"
        if self.block is not None:
            what += f"; {self.address:#x} is 0 bytes inside a block of size {self.block.size} free'd before"
        else:
            what += f"; {self.address:#x} is not malloc'd or (recently) free'd"
        return what


@dataclass
class Call:
    """A call waiting for its return: what was asked, from which stack depth."""

    via: str
    args: list[int]
    entry_rsp: int
    stack: tuple[int, ...]



@dataclass
class ProcessAllocations:
    """One process's allocation map and tracking state."""

    pid: int
    blocks: SortedDict = field(default_factory=SortedDict)       # address -> Allocation
    freed: OrderedDict = field(default_factory=OrderedDict)      # address -> (Allocation, free stack)
    pending: dict[int, Call] = field(default_factory=dict)       # tid -> call awaiting its return
    in_main: bool = True
    complete: bool = True            # every live block is known, so an unknown free is invalid
    since: str = "attach"            # "exec" (from the first instruction), "attach" or "fork"
    calls: int = 0
    returns: int = 0
    untracked_frees: int = 0
    scanned_frees: int = 0           # frees found by heap scans (no stop at free)
    ring_lost: int = 0               # preload ring records overwritten before they were read

    def origin(self) -> Origin:
        return Origin.OWN if self.in_main else Origin.TRANSITION

    def add(self, address: int, size: int, via: str, stack: tuple[int, ...], seq: int,
            origin: Origin | None = None) -> None:
        self.freed.pop(address, None)
        self.blocks[address] = Allocation(address, size, via, stack, origin or self.origin(), seq)

    def remove(self, address: int, stack: tuple[int, ...]) -> Allocation | None:
        block = self.blocks.pop(address, None)
        if block is not None:
            self.freed[address] = (block, stack)
            while len(self.freed) > RECENT_FREES:
                self.freed.popitem(last=False)
        return block

    def forked(self, child: int) -> "ProcessAllocations":
        """The child's map after fork: the same blocks, each marked inherited, and the same
        memory of recent frees (a child freeing a block its parent freed frees it twice)."""
        copy = ProcessAllocations(child, freed=OrderedDict(self.freed), in_main=self.in_main,
                                  complete=self.complete, since="fork")
        for address, block in self.blocks.items():
            copy.blocks[address] = replace(block, origin=Origin.INHERITED)
        return copy

    def live(self) -> list[Allocation]:
        return list(self.blocks.values())

    def reconcile(self, live: set[int]) -> int:
        """Frees not seen as calls: drop the blocks a heap scan no longer finds live; how many."""
        gone = [address for address in self.blocks if address not in live]
        for address in gone:
            self.remove(address, ())
        self.scanned_frees += len(gone)
        return len(gone)


class AllocationTracker:
    """Allocation maps of every tracked process, fed by entries and returns."""

    def __init__(self) -> None:
        self.processes: dict[int, ProcessAllocations] = {}
        self.bad_frees: list[BadFree] = []
        self.seq = 0

    def track(self, pid: int, in_main: bool = True, complete: bool = True, since: str = "attach") -> ProcessAllocations:
        proc = self.processes[pid] = ProcessAllocations(pid, in_main=in_main, complete=complete, since=since)
        return proc

    def seed(self, pid: int, blocks: list[tuple[int, int]], origin: Origin) -> None:
        """Blocks already live when tracking starts (from a heap scan): address, usable size."""
        proc = self.processes[pid]
        for address, size in blocks:
            self.seq += 1
            proc.add(address, size, "(before tracking)", (), self.seq, origin)

    def entry(self, pid: int, tid: int, via: str, args: list[int], rsp: int,
              stack: tuple[int, ...], from_allocator: bool = False) -> tuple[bool, BadFree | None]:
        """A call of `via` began (`from_allocator`: called from the module that defines the
        family).  Returns (wait for its return?, bad free found)."""
        proc = self.processes[pid]
        outer = proc.pending.get(tid)
        if outer is not None and rsp < outer.entry_rsp and from_allocator:
            return False, None       # made by another tracked call (realloc -> malloc)
        proc.pending.pop(tid, None)
        proc.calls += 1
        sig = FAMILY[via]
        bad = None
        if sig.pointer_arg is not None and args[sig.pointer_arg]:
            bad = self._check_pointer(proc, tid, via, args[sig.pointer_arg], stack)
        if not sig.returns_block:
            if bad is None and args[0]:
                proc.remove(args[0], stack)
            return False, bad
        proc.pending[tid] = Call(via, list(args), rsp, stack)
        return True, bad

    def _check_pointer(self, proc: ProcessAllocations, tid: int, via: str, address: int,
                       stack: tuple[int, ...]) -> BadFree | None:
        if address in proc.blocks:
            return None
        if address in proc.freed:
            block, freed_by = proc.freed[address]
            bad = BadFree(proc.pid, tid, "double free", via, address, stack, block, freed_by)
        elif proc.complete:
            bad = BadFree(proc.pid, tid, "invalid free", via, address, stack)
        else:
            proc.untracked_frees += 1
            return None
        self.bad_frees.append(bad)
        return bad

    def returned(self, pid: int, tid: int, rsp: int, result: int, read_u64: Callable[[int], int]) -> bool:
        """A return site was reached with the return value `result`, and `rsp` the stack
        pointer as it was at the call's entry (the caller undoes what its ABI's return pops);
        False when it is not the return of this thread's pending call (another process or a
        deeper frame)."""
        proc = self.processes.get(pid)
        call = proc.pending.get(tid) if proc else None
        if call is None or rsp != call.entry_rsp:
            return False
        del proc.pending[tid]
        proc.returns += 1
        sig = FAMILY[call.via]
        old = call.args[sig.pointer_arg] if sig.pointer_arg is not None else 0
        block = result
        if sig.out_arg is not None:
            block = read_u64(call.args[sig.out_arg]) if result == 0 else 0
        size = sig.size(call.args)
        if block:
            if old and old != block:
                proc.remove(old, call.stack)
            self.seq += 1
            proc.add(block, size, call.via, call.stack, self.seq)
        elif old and size == 0:
            proc.remove(old, call.stack)             # realloc(p, 0) frees p
        return True

    def allocated(self, pid: int, via: str, block: int, size: int, stack: tuple[int, ...]) -> bool:
        """A call seen only at the allocator's own return: the block it handed out, with the
        size its chunk gives (malloc's usable size, not the request).  False for a process
        not tracked."""
        proc = self.processes.get(pid)
        if proc is None:
            return False
        proc.calls += 1
        proc.returns += 1
        if block:
            self.seq += 1
            proc.add(block, size, via, stack, self.seq)
        return True

    def forked(self, parent: int, child: int) -> bool:
        """A tracked process forked: the child is tracked with an inherited copy."""
        proc = self.processes.get(parent)
        if proc is None:
            return False
        self.processes[child] = proc.forked(child)
        return True

    def thread_exited(self, pid: int, tid: int) -> None:
        proc = self.processes.get(pid)
        if proc is not None:
            proc.pending.pop(tid, None)

    def forget(self, pid: int) -> ProcessAllocations | None:
        return self.processes.pop(pid, None)
