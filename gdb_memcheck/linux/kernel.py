"""Facts about the running kernel: release, machine, paging mode, per-CPU data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from ..arch import Regime
from ..target import SymbolError, Target, TargetError, cstring, read_u64

UTS_FIELD_LEN = 65
Loader = Callable[[int], int]
Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class KernelInfo:
    """What the load line and `memcheck info` report."""

    release: str
    machine: str
    paging: str                # the translation regime, as the architecture names it: "4-level paging"
    slide: int | None          # None when it could not be measured

    def summary(self) -> str:
        slide = "unknown" if self.slide is None else ("off" if self.slide == 0 else f"slide {self.slide:#x}")
        return f"Linux {self.release} {self.machine}, {self.paging}, KASLR {slide}"


def uts_field(target: Target, member: str, read: Reader | None = None) -> str:
    """A field of init_uts_ns.name ("release", "machine", ...), as `uname` shows it."""
    offset = target.layout("struct uts_namespace").offset(f"name.{member}")
    return cstring((read or target.read_virtual)(target.symbol_address("init_uts_ns") + offset, UTS_FIELD_LEN))


def read_kernel_info(target: Target, paging: Regime, slide: int | None, read: Reader | None = None) -> KernelInfo:
    """Read release and machine from init_uts_ns; needs translation on and the kernel running."""
    if paging.levels == 0:
        raise TargetError(f"{paging.description}: the CPU is at reset or in early boot, kernel data is not "
                          "readable yet")
    return KernelInfo(uts_field(target, "release", read), uts_field(target, "machine", read), paging.description, slide)


def per_cpu_address(target: Target, symbol: str, cpu: int, load: Loader | None = None) -> int:
    """Address of a per-CPU variable's copy for `cpu`: __per_cpu_offset[cpu] + &symbol."""
    load = load or (lambda addr: read_u64(target, addr))
    # arm64's offsets wrap: its per-CPU areas lie below the image's .data..percpu
    return (load(target.symbol_address("__per_cpu_offset") + 8 * cpu) + target.symbol_address(symbol)) % (1 << 64)


def current_task_variable(target: Target) -> tuple[str, int]:
    """The per-CPU variable that holds the running task, and the pointer's offset in it."""
    if target.has_symbol("current_task"):
        return "current_task", 0
    # 6.2 (e57ef2ed97c1, "x86: Put hot per CPU variables into a struct") made it a member of pcpu_hot
    if target.has_symbol("pcpu_hot"):
        return "pcpu_hot", target.layout("struct pcpu_hot").offset("current_task")
    # arm64 keeps the task each CPU switched to in __entry_task (arch/arm64/kernel/process.c,
    # entry_task_switch); sp_el0 holds it only while the CPU runs in the kernel
    if target.has_symbol("__entry_task"):
        return "__entry_task", 0
    raise SymbolError("this kernel has none of current_task, pcpu_hot.current_task and __entry_task: "
                      "the running task cannot be found")


@dataclass(frozen=True)
class CurrentTask:
    """Where each vCPU's running task pointer is: __per_cpu_offset[cpu] + `offset`."""

    per_cpu_offset: int         # &__per_cpu_offset
    offset: int                 # the variable's per-CPU offset plus the member's

    @classmethod
    def from_target(cls, target: Target) -> "CurrentTask":
        symbol, member = current_task_variable(target)
        return cls(target.symbol_address("__per_cpu_offset"), target.symbol_address(symbol) + member)

    def task(self, cpu: int, load: Loader) -> int:
        """Address of the task_struct running on `cpu` (`load` reads a u64)."""
        return load((load(self.per_cpu_offset + 8 * cpu) + self.offset) % (1 << 64))


def current_task(target: Target, cpu: int, load: Loader | None = None) -> int:
    """Address of the task_struct running on `cpu` (`load` reads a u64; default: a virtual read)."""
    return CurrentTask.from_target(target).task(cpu, load or (lambda addr: read_u64(target, addr)))


BANNER_BYTES = 256
SHF_ALLOC = SH_FLAGS.SHF_ALLOC


def vmlinux_bytes(path: str, vaddr: int, size: int) -> bytes:
    """Bytes of the vmlinux file at a link-time address (from its allocated sections),
    read without loading the whole file: a vmlinux with debug info is hundreds of MB."""
    try:
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if section["sh_type"] != "SHT_PROGBITS" or not section["sh_flags"] & SHF_ALLOC:
                    continue
                start = section["sh_addr"]
                if start <= vaddr < start + section["sh_size"]:
                    f.seek(section["sh_offset"] + vaddr - start)
                    return f.read(min(size, start + section["sh_size"] - vaddr))
    except (OSError, ELFError) as e:
        raise TargetError(f"cannot read {path}: {e}") from None
    raise TargetError(f"{path} has no data at {vaddr:#x}")


def banner_mismatch(vmlinux_banner: bytes, guest_banner: bytes, running: str | None = None) -> str | None:
    """Why the loaded vmlinux is not the running kernel, or None when their linux_banner
    strings agree (the banner names the release, the build host and the build number).
    `running` is the guest's own banner where it could be found elsewhere in its memory."""
    ours, theirs = cstring(vmlinux_banner).strip(), cstring(guest_banner).strip()
    if ours == theirs:
        return None
    guest = f"the guest runs '{short_banner(running)}'" if running else \
        "the guest does not hold its banner at linux_banner"
    return (f"the loaded vmlinux is not the running kernel: the vmlinux is '{short_banner(ours)}', {guest}; "
            f"load the running kernel's vmlinux (with debug info)")


def short_banner(banner: str) -> str:
    """'Linux version RELEASE (builder) (compiler) #1 SMP ...' without the builder and compiler."""
    words = banner.split()
    if len(words) < 3 or words[:2] != ["Linux", "version"]:
        return banner[:80]
    build = banner.find(" #")
    return f"Linux {words[2]}" + (banner[build:] if build >= 0 else "")


def find_banner(read_physical: Callable[[int, int], bytes], ram_end: int, chunk: int = 1 << 20) -> str | None:
    """The first 'Linux version ...' line in guest-physical memory below `ram_end` (the
    kernel's rodata, or the first record of its log), or None."""
    marker, overlap = b"Linux version ", BANNER_BYTES
    for start in range(0, ram_end, chunk):
        try:
            data = read_physical(start, min(chunk + overlap, ram_end - start))
        except TargetError:
            continue
        at = data.find(marker)
        while at >= 0:
            text = data[at:at + BANNER_BYTES].split(b"\0", 1)[0].split(b"\n", 1)[0]
            if b" #" in text and text.isascii() and all(32 <= c < 127 for c in text):
                return text.decode().strip()
            at = data.find(marker, at + 1)
    return None
