"""One debugging session: the live target or an open dump, what was detected about the
guest, and the gdb event hooks that keep caches honest (per stop, per objfile, per
connection)."""
from __future__ import annotations

import contextlib
import functools
import re
from typing import Iterator

import gdb

from .. import __version__
from ..arch import X86_64, Arch, Regime, for_gdb_name
from ..arch.pagetables import LeafMemo
from ..changes.history import History
from ..linux.kernel import BANNER_BYTES, KernelInfo, banner_mismatch, find_banner, read_kernel_info, vmlinux_bytes
from ..linux.memory import KernelMemory, PageCache
from ..linux.system import System
from ..qemu.dumpfile import open_dump
from ..qemu.dumptarget import DumpTarget
from ..symbols.elfsyms import SymbolCache
from ..target import MemoryReadError, SymbolError, TargetError
from . import physical
from .live import GdbTarget

REGISTER_ALIASES = {"pc": "rip", "sp": "rsp", "fp": "rbp"}
NOT_CONNECTED = "not connected to a guest (target remote HOST:PORT), and no dump is open (memcheck open FILE)"


class Session:
    """State the commands share; invalidated by gdb's events."""

    def __init__(self) -> None:
        self.live = GdbTarget()
        self.target: GdbTarget | DumpTarget = self.live    # what the views read: the live guest or a dump
        self.dump: DumpTarget | None = None
        self.physical: physical.PhysicalPath | None = None
        self.physical_choice = "auto"
        self.kernel: KernelInfo | None = None
        self.slide_applied = 0
        self.last_line = ""
        self.mismatch: str | None = None          # why the loaded vmlinux is not the running kernel
        self._kmem: KernelMemory | None = None
        self._pages: PageCache | None = None
        self._readers: dict = {}                  # System readers, kept while kmem and symbols stay
        self._system: System | None = None
        self._symbols: SymbolCache | None = None
        self.leaf_memo = LeafMemo()       # keyed by table content: valid across stops
        self.arch: Arch = X86_64          # chosen from gdb's view of the target at each detection
        self.history = History()          # the previous look at each view, for --delta

    def system(self) -> System:
        """The snapshot of the stopped guest; rebuilt after the guest has run.  Refused when
        the vmlinux is another kernel's: its structure offsets would read garbage."""
        if self.mismatch:
            raise TargetError(self.mismatch)
        if self._system is None:
            self._system = System(self.target, self.kmem(), self._readers, self.arch)
        return self._system

    def symbols(self) -> SymbolCache:
        """Parsed guest ELF files under the current `set memcheck sysroot`."""
        sysroot = gdb.parameter("memcheck sysroot") or ""
        if self._symbols is None or self._symbols.sysroot != sysroot:
            self._symbols = SymbolCache(sysroot)
        return self._symbols

    def selected_cpu(self) -> int:
        return self.target.selected_cpu()

    def regime(self, cpu: int | None = None) -> Regime:
        """How the selected vCPU (or `cpu`) translates addresses now."""
        return self.arch.regime(self.target, cpu)

    @property
    def source(self) -> str:
        """What the views read now: "live" or the open dump's path."""
        return self.dump.dump.path if self.dump is not None else "live"

    def kmem(self) -> KernelMemory:
        """Fast kernel-memory reader; its page cache lives until the guest runs again."""
        if self._kmem is None:
            paging = self.regime()
            if paging.levels == 0:
                raise TargetError(f"{paging.description}: there is no kernel memory to read yet")
            pages = self.pages()        # opens the physical path first: arm64 finds its kernel map through it
            self._kmem = KernelMemory(self.target, paging, self.arch.kernel_map(self.target, paging), pages)
        return self._kmem

    def pages(self) -> PageCache:
        """Guest-physical pages read during this stop: all a page walk by CR3 needs, so it
        works without kernel symbols that match (see `mismatch`)."""
        if self._pages is None:
            self.physical_path()
            self._pages = PageCache(self.target)
        return self._pages

    # -- physical memory ------------------------------------------------------
    def physical_path(self) -> physical.PhysicalPath:
        if self.dump is not None:
            dump = self.dump.dump
            return physical.PhysicalPath("dump", dump.read_physical, dump.describe(), dump.close, dump.ram_end)
        if self.physical is None:
            if self.physical_choice == "auto":
                self.physical, _ = physical.first_available(self.live, self.arch)
            else:
                self.physical = physical.open_path(self.physical_choice, self.live, self.arch)
            self.live.physical_reader = self.physical.read
        return self.physical

    def choose_physical(self, choice: str) -> None:
        self.physical_choice = choice
        self.drop_physical()

    def drop_physical(self) -> None:
        if self.physical is not None:
            self.physical.close()
        self.physical = None
        self.live.physical_reader = None
        self.forget_reads()

    def forget_reads(self) -> None:
        """Drop everything read from the guest or the dump (not what the debug info says)."""
        self._kmem = None
        self._pages = None
        self._readers = {}
        self._system = None

    def expression(self, text: str) -> str:
        """A gdb expression with the open dump's registers ($rsp, $cr3, ...) put in as numbers:
        gdb itself has no registers of the dump (and would give the live guest's)."""
        if self.dump is None:
            return text

        def value(m: re.Match) -> str:
            name = REGISTER_ALIASES.get(m.group(1), m.group(1))
            regs = self.dump.dump.cpus[self.dump.cpu].registers
            return f"{regs[name]:#x}" if name in regs else m.group(0)

        return re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", value, text)

    def require_live(self, what: str) -> None:
        """Refuse what only a running guest can do while a dump is open."""
        if self.dump is not None:
            raise TargetError(f"{what} needs the live guest, and a dump is open ({self.dump.dump.path}): "
                              "memcheck close first")

    def require_guest(self) -> None:
        """Refuse early, in one line, when there is neither a guest nor a dump, or no kernel symbols."""
        if self.dump is None and (gdb.selected_inferior().connection is None or gdb.selected_thread() is None):
            raise TargetError(NOT_CONNECTED)
        try:
            self.target.symbol_address("init_task")
        except SymbolError:
            raise TargetError("no kernel symbols: load the guest's vmlinux with its debug info "
                              "(file VMLINUX) first") from None

    # -- dumps ----------------------------------------------------------------
    def open_dump(self, path: str, cpu: int = 0) -> str:
        """Serve every view from the dump at `path` (until close_dump), with vCPU `cpu`
        selected; return the summary line.  A dump the loaded vmlinux does not describe is
        refused, and what was served before stays."""
        before = self.dump
        line = self._serve_dump(path, cpu)
        if before is not None:
            before.dump.close()
        return line

    @contextlib.contextmanager
    def serving(self, path: str) -> Iterator[str]:
        """Serve the dump at `path` for a while (its summary line is given), then what was
        served before, the live guest or another dump."""
        before = (self.dump, self.kernel, self.mismatch, self.slide_applied)
        line = self._serve_dump(path, 0)
        try:
            yield line
        finally:
            self.dump.dump.close()
            self._go_back(*before)

    def _serve_dump(self, path: str, cpu: int) -> str:
        """x86-64 only: QEMU's arm64 dumps carry no system registers (TTBR0/1, TCR), without
        which no address translates."""
        arch = for_gdb_name(gdb.selected_inferior().architecture().name())
        if arch is not X86_64:
            raise TargetError(f"dumps of {arch.name} guests are not supported (x86-64 only): the loaded vmlinux "
                              f"is {arch.name}'s")
        dump = DumpTarget(open_dump(path), self.live, cpu)
        if not 0 <= cpu < dump.cpu_count():
            dump.dump.close()
            raise TargetError(f"{path} has {dump.cpu_count()} vCPU{'s' if dump.cpu_count() > 1 else ''}: "
                              f"there is no vCPU {cpu}")
        before = (self.dump, self.kernel, self.mismatch, self.slide_applied)
        self._serve(dump)
        try:
            line = self.detect()
            if self.mismatch:
                raise TargetError(f"{path}: {self.mismatch}")
        except BaseException:
            dump.dump.close()
            self._go_back(*before)
            raise
        return line

    def close_dump(self) -> str:
        """Serve the live guest again; return the path of the dump that was open."""
        if self.dump is None:
            raise TargetError("no dump is open")
        path = self.dump.dump.path
        self.dump.dump.close()
        self._serve(None)
        self.kernel = self.mismatch = None
        return path

    def _serve(self, dump: DumpTarget | None) -> None:
        self.dump = dump
        self.target = dump if dump is not None else self.live
        self.forget_reads()

    def _go_back(self, dump: DumpTarget | None, kernel: KernelInfo | None, mismatch: str | None,
                 slide: int) -> None:
        self._serve(dump)
        if self.slide_applied != slide:
            self._relocate(slide)
        self.kernel, self.mismatch = kernel, mismatch

    # -- detection ------------------------------------------------------------
    def detect(self) -> str:
        """Find out what the guest is; relocate symbols for KASLR; return the summary line."""
        self.require_guest()
        self.arch = for_gdb_name(gdb.selected_inferior().architecture().name())
        paging = self.regime()
        if paging.levels == 0:
            self.kernel = None
            return f"{paging.description}: the CPU is at reset or in early boot; physical addresses are linear ones"
        self.physical_path()                     # arm64 measures the slide with physical reads
        slide = self.arch.slide(self.target)
        if slide:
            self._relocate(self.slide_applied + slide)
        self.mismatch = self._banner_mismatch()
        if self.mismatch:
            self.kernel = None
            return self.mismatch
        self.kernel = read_kernel_info(self.target, paging, None if slide is None else self.slide_applied,
                                       self.read_kernel)
        path = self.physical_path()
        cpus = self.target.cpu_count()
        return f"{self.kernel.summary()}; {cpus} vCPU{'s' if cpus > 1 else ''}; physical reads via {path.name} ({path.detail})"

    def _banner_mismatch(self) -> str | None:
        """Compare linux_banner in the vmlinux file with the guest's memory at its address."""
        path = self._vmlinux_path()
        address = self.target.symbol_address("linux_banner")
        try:
            guest = self.read_kernel(address, BANNER_BYTES)
        except TargetError:
            guest = b""
        mismatch = banner_mismatch(_file_banner(path, address - self.slide_applied), guest)
        if mismatch and self.physical_path().name in ("qemu-mem", "dump"):     # 0.3 ms a MiB: find the real one
            mismatch = banner_mismatch(_file_banner(path, address - self.slide_applied), guest,
                                       find_banner(self.target.read_physical, self.physical_path().ram_end))
        return mismatch

    def read_kernel(self, address: int, size: int) -> bytes:
        """Kernel memory while detecting: through gdb, else through the kernel's own tables (an
        arm64 vCPU stopped at EL0 cannot read kernel addresses through QEMU's gdbstub)."""
        try:
            return self.target.read_virtual(address, size)
        except MemoryReadError:
            return self.kmem().read(address, size)

    def _vmlinux_path(self) -> str:
        path = gdb.current_progspace().filename or (gdb.objfiles()[0].filename if gdb.objfiles() else None)
        if not path:
            raise SymbolError("no kernel symbol file is loaded")
        return path

    def _relocate(self, slide: int) -> None:
        """Reload the kernel's symbols at `slide`.  x86-64 links its per-CPU section at 0 (its
        symbols are offsets into each CPU's area) and that must stay so; arm64's moves with
        the image."""
        path = self._vmlinux_path()
        confirm = gdb.parameter("confirm")
        percpu = " -s .data..percpu 0" if self.arch.percpu_at_zero else ""
        gdb.execute("set confirm off")
        try:
            gdb.execute("symbol-file", to_string=True)
            gdb.execute(f"add-symbol-file {path} -o {slide:#x}{percpu}", to_string=True)
        finally:
            gdb.execute(f"set confirm {'on' if confirm else 'off'}")
        self.slide_applied = slide
        self.live.forget_debug_info()
        if self.dump is None:
            self.drop_physical()
        self.forget_reads()

    # -- events ---------------------------------------------------------------
    def on_stop(self, _event) -> None:
        """Detect once the kernel becomes readable (e.g. after a reset stop), and again while
        the KASLR slide is still unknown (the IDT is set up after start_kernel); say so."""
        if self.dump is not None or (self.kernel is not None and self.kernel.slide is not None):
            return
        try:
            line = self.detect()
        except TargetError:
            return
        if line != self.last_line:
            self.announce(line)

    def on_cont(self, _event) -> None:
        if self.dump is not None:
            return
        self._system = None
        if self._kmem is not None:
            self._kmem.clear()
        if self._pages is not None:
            self._pages.clear()

    def on_objfiles_changed(self, _event) -> None:
        self.live.forget_debug_info()
        self._kmem = None
        self._readers = {}
        self._system = None
        self.mismatch = None

    def on_disconnect(self, _event) -> None:
        if self.dump is not None:
            if self.physical is not None:
                self.physical.close()
            self.physical = None
            return
        self.drop_physical()
        self.kernel = None

    def announce(self, line: str) -> None:
        self.last_line = line
        gdb.write(f"gdb_memcheck {__version__}: {line}\n")

    def connect_events(self) -> None:
        gdb.events.cont.connect(self.on_cont)
        gdb.events.memory_changed.connect(self.on_cont)         # a write from gdb: what was read is stale
        gdb.events.stop.connect(self.on_stop)
        gdb.events.new_objfile.connect(self.on_objfiles_changed)
        gdb.events.clear_objfiles.connect(self.on_objfiles_changed)
        gdb.events.exited.connect(self.on_disconnect)
        if hasattr(gdb.events, "connection_removed"):
            gdb.events.connection_removed.connect(self.on_disconnect)


@functools.lru_cache(maxsize=4)
def _file_banner(path: str, link_address: int) -> bytes:
    return vmlinux_bytes(path, link_address, BANNER_BYTES)


SESSION = Session()
