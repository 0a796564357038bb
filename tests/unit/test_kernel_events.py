"""The kernel event source: hooks chosen by probing, hits decoded once into events, the
last-thread-into-do_exit rule, repeated hits, and each subscriber fed its groups only."""
from __future__ import annotations

from dataclasses import replace

import pytest

from fake_system import FakeSystem
from gdb_memcheck.arch import AARCH64, X86_64
from gdb_memcheck.linux import kevents
from gdb_memcheck.linux.kevents import ChosenHook, KernelEventSource
from gdb_memcheck.linux.tasks import PF_EXITING

ADDRESSES = {"wake_up_new_task": 0x1000, "setup_new_exec": 0x2000, "start_thread": 0x3000, "do_exit": 0x4000,
             "mmap_region": 0x5000, "__vm_munmap": 0x6000, "do_mprotect_pkey": 0x7000, "__x64_sys_brk": 0x8000,
             "__x64_sys_munmap": 0x9000, "__x64_sys_mprotect": 0xA000}


def hook(group: str, kernel: dict[str, int] = ADDRESSES) -> ChosenHook:
    chosen, _missing = kevents.choose_hooks(kernel.get, X86_64, [group])
    return chosen[0]


class Recorder:
    """A subscriber that keeps what it was given and can ask to stop."""

    def __init__(self, stop_on: str = "", fail_on: str = "") -> None:
        self.events: list[kevents.KernelEvent] = []
        self.stop_on, self.fail_on = stop_on, fail_on

    def on_event(self, event, system) -> bool:
        if event.kind == self.fail_on:
            raise ValueError("broken subscriber")
        self.events.append(event)
        return event.kind == self.stop_on


@pytest.fixture
def guest() -> FakeSystem:
    return FakeSystem(cpus=2)


def hit(source: KernelEventSource, system: FakeSystem, chosen: ChosenHook, cpu: int = 0) -> bool:
    system.target.selected_cpu = cpu
    return source.hit(chosen, cpu, lambda: system)


# --- choosing hooks ---------------------------------------------------------------------------

def test_each_group_takes_its_first_candidate_the_kernel_has():
    chosen, missing = kevents.choose_hooks(ADDRESSES.get, X86_64)
    assert {h.group: h.symbol for h in chosen} == {
        "new-task": "wake_up_new_task", "exec": "setup_new_exec", "exec-ready": "start_thread",
        "exit": "do_exit", "mmap": "mmap_region", "munmap": "__vm_munmap", "mprotect": "do_mprotect_pkey",
        "brk": "__x64_sys_brk"}
    assert missing == []


def test_a_kernel_without_the_register_hook_falls_back_to_the_pt_regs_syscall_and_says_why():
    kernel = {k: v for k, v in ADDRESSES.items() if k not in ("__vm_munmap", "do_mprotect_pkey")}
    chosen = {h.group: h for h in kevents.choose_hooks(kernel.get, X86_64)[0]}
    assert (chosen["munmap"].symbol, chosen["munmap"].args) == ("__x64_sys_munmap", kevents.PT_REGS)
    assert "not in this kernel: __vm_munmap" in chosen["munmap"].reason
    assert chosen["mprotect"].symbol == "__x64_sys_mprotect"


def test_syscall_hooks_are_named_as_the_guests_architecture_names_its_syscall_wrappers():
    kernel = {"__arm64_sys_brk": 0x1000, "__x64_sys_brk": 0x2000}
    assert [(h.symbol, h.address) for h in kevents.choose_hooks(kernel.get, AARCH64, ["brk"])[0]] == \
        [("__arm64_sys_brk", 0x1000)]
    assert kevents.choose_hooks({"__x64_sys_brk": 1}.get, AARCH64, ["brk"])[1] == \
        ["brk: none of __arm64_sys_brk in this kernel"]


def test_a_group_with_no_candidate_in_the_kernel_is_reported_missing():
    kernel = {k: v for k, v in ADDRESSES.items() if k != "do_exit"}
    chosen, missing = kevents.choose_hooks(kernel.get, X86_64, ["exit", "brk"])
    assert [h.group for h in chosen] == ["brk"]
    assert missing == ["exit: none of do_exit in this kernel"]


def test_subscribing_to_an_unknown_group_is_refused():
    with pytest.raises(kevents.TargetError, match="unknown kernel event group fsync"):
        KernelEventSource().subscribe(Recorder(), ["exit", "fsync"])


# --- decoding -------------------------------------------------------------------------------

def test_a_new_task_that_leads_a_thread_group_is_a_fork_and_carries_the_child(guest):
    parent = guest.spawn(100)
    child = guest.spawn(101, ppid=100)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["new-task"])
    guest.run_on(0, parent, rdi=child.addr, rsp=0x100)
    hit(source, guest, hook("new-task"))
    [event] = rec.events
    assert (event.kind, event.current, event.child, event.cpu) == ("fork", parent, child, 0)


def test_a_new_task_inside_a_thread_group_is_a_clone(guest):
    leader = guest.spawn(100)
    thread = guest.spawn(105, tgid=100)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["new-task"])
    guest.run_on(1, leader, rdi=thread.addr, rsp=0x100)
    hit(source, guest, hook("new-task"), cpu=1)
    assert [(e.kind, e.child.pid, e.cpu) for e in rec.events] == [("clone", 105, 1)]


def test_exec_names_the_image_as_execve_was_given_it(guest):
    task = guest.spawn(100)
    bprm = guest._alloc()
    guest.kmem.write_u64(bprm + 0x60, guest.kernel_string("/bin/wl-leak"))
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["exec"])
    guest.run_on(0, task, rdi=bprm, rsp=0x100)
    hit(source, guest, hook("exec"))
    assert [(e.kind, e.path) for e in rec.events] == [("exec", "/bin/wl-leak")]


def test_pt_regs_hooks_take_their_arguments_from_the_saved_user_registers(guest):
    task = guest.spawn(100)
    regs = guest._alloc()
    guest.kmem.write(regs, bytes(21 * 8))
    guest.kmem.write_u64(regs + 14 * 8, 0x7000_0000)       # di: start
    guest.kmem.write_u64(regs + 13 * 8, 0x3000)            # si: length
    guest.kmem.write_u64(regs + 12 * 8, 1)                 # dx: prot
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["mprotect"])
    guest.run_on(0, task, rdi=regs, rsp=0x100)
    hit(source, guest, hook("mprotect", {"__x64_sys_mprotect": 0xA000}))
    assert rec.events[0].args == (0x7000_0000, 0x3000, 1)


def test_only_the_last_thread_to_enter_do_exit_ends_the_process(guest):
    leader = guest.spawn(100, threads=3)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["exit"])
    for n, tid in enumerate((102, 100, 101)):
        guest.run_on(0, guest.procs[100].threads[[t.pid for t in guest.threads(leader)].index(tid)],
                     rdi=0, rsp=0x100 + n)
        hit(source, guest, hook("exit"))
    assert [(e.kind, e.current.pid) for e in rec.events] == [
        ("thread-exit", 102), ("thread-exit", 100), ("exit", 101)]


def test_a_thread_that_left_the_group_is_not_waited_for(guest):
    leader = guest.spawn(100, threads=2)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["exit"])
    guest.run_on(0, leader, rdi=0, rsp=0x100)
    hit(source, guest, hook("exit"))
    guest.procs[100].threads = [leader]            # the other thread was reaped meanwhile
    guest.run_on(0, leader, rdi=0, rsp=0x200)
    hit(source, guest, hook("exit"))
    assert [e.kind for e in rec.events] == ["thread-exit", "exit"]


def test_the_same_call_reported_twice_on_a_vcpu_is_one_event_and_counted_repeated(guest):
    task = guest.spawn(100)
    source, rec = KernelEventSource(), Recorder()
    sub = source.subscribe(rec, ["brk"])
    regs = guest._alloc()
    guest.kmem.write(regs, bytes(21 * 8))
    guest.run_on(0, task, rdi=regs, rsp=0x100)
    hit(source, guest, hook("brk"))
    hit(source, guest, hook("brk"))
    guest.run_on(0, task, rdi=regs, rsp=0x180)          # a new call from another depth
    hit(source, guest, hook("brk"))
    assert len(rec.events) == 2
    assert (sub.stats.hits, sub.stats.repeated, sub.stats.errors) == (3, 1, 0)


# --- subscribers ------------------------------------------------------------------------------

def test_each_subscriber_gets_only_its_groups_and_either_can_stop_the_guest(guest):
    task = guest.spawn(100)
    source, tracing, tracking = KernelEventSource(), Recorder(stop_on="exit"), Recorder()
    source.subscribe(tracing, ["exit", "exec"])
    source.subscribe(tracking, ["exit", "exec-ready"])
    guest.run_on(0, task, rdi=0x40_0000, rsi=0x7FFF_0000, rdx=0, rsp=0x100)
    assert hit(source, guest, hook("exec-ready")) is False
    guest.run_on(0, task, rdi=0, rsp=0x200)
    assert hit(source, guest, hook("exit")) is True
    assert [e.kind for e in tracing.events] == ["exit"]
    assert [e.kind for e in tracking.events] == ["exec-ready", "exit"]
    assert tracing.events[0] is tracking.events[1], "decoded once for both"


def test_a_failing_subscriber_is_counted_and_does_not_starve_the_others(guest):
    task = guest.spawn(100)
    source, broken, healthy = KernelEventSource(), Recorder(fail_on="exit"), Recorder()
    bad = source.subscribe(broken, ["exit"])
    good = source.subscribe(healthy, ["exit"])
    guest.run_on(0, task, rdi=0, rsp=0x100)
    assert hit(source, guest, hook("exit")) is False
    assert (bad.stats.errors, good.stats.errors) == (1, 0)
    assert "do_exit: ValueError: broken subscriber" == bad.stats.last_error
    assert len(healthy.events) == 1


def test_an_unreadable_guest_is_an_error_for_every_subscriber_never_an_exception(guest):
    task = guest.spawn(100)
    source, rec = KernelEventSource(), Recorder()
    sub = source.subscribe(rec, ["new-task"])
    guest.run_on(0, task, rdi=0xDEAD_0000, rsp=0x100)           # no task there
    assert hit(source, guest, hook("new-task")) is False
    assert (sub.stats.hits, sub.stats.errors, rec.events) == (1, 1, [])
    assert "no task at 0xdead0000" in sub.stats.last_error


def test_unsubscribing_the_last_subscriber_forgets_threads_in_exit(guest):
    leader = guest.spawn(100, threads=2)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["exit"])
    guest.run_on(0, guest.procs[100].threads[1], rdi=0, rsp=0x100)
    hit(source, guest, hook("exit"))
    source.unsubscribe(rec)
    assert source.wanted_groups() == set()
    source.subscribe(rec, ["exit"])
    guest.run_on(0, leader, rdi=0, rsp=0x300)
    hit(source, guest, hook("exit"))
    assert [e.kind for e in rec.events] == ["thread-exit", "thread-exit"]


def test_a_thread_already_inside_do_exit_when_the_hook_is_placed_still_counts_as_entered(guest):
    leader = guest.spawn(100, threads=2)
    inside = guest.procs[100].threads[1]
    guest.procs[100].threads[1] = replace(inside, flags=inside.flags | PF_EXITING)
    source, rec = KernelEventSource(), Recorder()
    source.subscribe(rec, ["exit"])
    source.note_exiting(guest)
    guest.run_on(0, leader, rdi=0, rsp=0x100)
    hit(source, guest, hook("exit"))
    assert [e.kind for e in rec.events] == ["exit"]
