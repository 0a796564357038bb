#!/usr/bin/env python3
"""Boot, drive and stop lab guests: QEMU (TCG) with a gdbstub, a serial console log,
an HMP monitor socket and a command shell on a second serial port.  x86-64 guests by
default; arm64 guests (Debian's arm64 kernels on QEMU's virt machine) with --arch arm64.

Used by the tests, the benchmarks and the demo; also a command line:
  guestlab.py boot [--arch amd64|arm64] [--kernel NAME] [--kaslr] [--randmaps] [--halt] [--smp N] [--mem MB] [--cpu MODEL] [--run-dir D]
  guestlab.py sh RUN_DIR 'cat /proc/1/maps'
  guestlab.py hmp RUN_DIR 'info mem'
  guestlab.py gdb [--no-plugin] RUN_DIR [gdb args]
  guestlab.py dump RUN_DIR FILE [--paging] [--zlib]
  guestlab.py stop RUN_DIR
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
READY_MARKER = "INIT ready"


class LabError(RuntimeError):
    """The lab could not do what was asked (build, boot, command)."""


def say(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def _script_output(name: str, *args: str) -> Path:
    """Run a build script (it is idempotent and cached) and return the directory it prints."""
    proc = subprocess.run(["bash", str(SCRIPTS / name), *args], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise LabError(f"{name} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def default_kernel() -> str:
    """The kernel a guest boots unless told otherwise (kernel.sh names them)."""
    return os.environ.get("GDB_MEMCHECK_KERNEL") or os.environ.get("GDB_MEMCHECK_KERNEL_ABI") or "6.1-cloud"


def arch_kernel(arch: str, kernel: str = "") -> str:
    """The kernel.sh name or ABI of `kernel` (default_kernel() if empty) built for `arch`.

    A name without an architecture (6.1-cloud) gets the arm64 suffix (6.1-cloud-arm64); an
    amd64 ABI becomes the arm64 ABI of the same Debian upload (they share the ABI number), so
    one GDB_MEMCHECK_KERNEL picks the same kernel release on both architectures.
    """
    kernel = kernel or default_kernel()
    if arch == "amd64" or kernel.endswith("-arm64"):
        return kernel
    return kernel.removesuffix("-amd64") + "-arm64"


def kernel_dir(kernel: str = "", arch: str = "amd64") -> Path:
    return _script_output("kernel.sh", arch_kernel(arch, kernel))


def initramfs_dir(arch: str = "amd64") -> Path:
    return _script_output("initramfs.sh", "--arch", arch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class GuestArch:
    """How QEMU runs a guest of one architecture and how the lab talks to it."""

    qemu: str
    machine: tuple[str, ...]    # QEMU arguments that choose and trim the machine
    cpu: str                    # the default -cpu
    console: str                # the kernel's console (console.log)
    shell_tty: str              # the guest's serial port of the command shell
    shell_port: tuple[str, ...]  # QEMU arguments that give the guest that port on chardev "shell"
    gdb: str


ARCHES = {
    "amd64": GuestArch(qemu="qemu-system-x86_64", machine=("-vga", "none"), cpu="qemu64", console="ttyS0",
                       shell_tty="ttyS1", shell_port=("-serial", "chardev:shell"), gdb="gdb"),
    # virt has one PL011 UART (the console), and Debian's arm64 6.1 kernel builds virtio
    # (virtio_console, virtio_mmio, virtio_pci) as modules: the shell gets a PCI 16550
    # (CONFIG_SERIAL_8250_PCI=y in 6.1 and 6.12), which the guest calls ttyS0.  ARMv8.0's
    # cortex-a72: 48-bit VAs with 4-level tables on both kernels (-cpu max would give 6.12's
    # LPA2 52-bit layout) and no pointer authentication to emulate.  Debian's gdb is x86-64 only.
    "arm64": GuestArch(qemu="qemu-system-aarch64", machine=("-M", "virt"), cpu="cortex-a72", console="ttyAMA0",
                       shell_tty="ttyS0", shell_port=("-device", "pci-serial,chardev=shell"), gdb="gdb-multiarch"),
}


@dataclass
class BootOptions:
    """What distinguishes one guest from another."""

    kaslr: bool = False
    halt: bool = False          # -S: stay stopped at reset until gdb continues
    smp: int = 1
    mem_mb: int = 512
    cpu: str = ""               # QEMU's -cpu; "" is the architecture's default (qemu64, cortex-a72)
    randmaps: bool = False
    extra_append: str = ""
    kernel: str = ""            # a kernel.sh name or ABI; "" is default_kernel() (for arch: arch_kernel)
    arch: str = "amd64"         # a key of ARCHES: amd64 (x86-64) or arm64
    accel: str = "tcg"          # -accel's value, e.g. tcg,tb-size=64
    qemu_args: list[str] = field(default_factory=list)     # more QEMU options, e.g. -singlestep


@dataclass
class Guest:
    """One running QEMU instance and the files that belong to it."""

    run_dir: Path
    gdb_port: int
    kernel: Path
    initramfs: Path
    options: BootOptions = field(default_factory=BootOptions)
    pid: int = 0

    @property
    def vmlinux(self) -> Path:
        return self.kernel / "vmlinux-indexed"

    @property
    def sysroot(self) -> Path:
        return self.initramfs / "root"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def arch(self) -> GuestArch:
        return ARCHES[self.options.arch]

    @property
    def shell_socket(self) -> Path:
        return self.run_dir / f"{self.arch.shell_tty}.sock"

    def save(self) -> None:
        data = asdict(self)
        data = {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
        (self.run_dir / "guest.json").write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, run_dir: str | Path) -> "Guest":
        data = json.loads((Path(run_dir) / "guest.json").read_text())
        data["options"] = BootOptions(**data["options"])
        for key in ("run_dir", "kernel", "initramfs"):
            data[key] = Path(data[key])
        return cls(**data)

    # -- life cycle -------------------------------------------------------
    def qemu_argv(self) -> list[str]:
        o, a = self.options, self.arch
        append = [f"console={a.console}", "panic=-1", "nokaslr" if not o.kaslr else "kaslr"]
        if not o.randmaps:
            append.append("norandmaps")
        append.append(f"labshell={a.shell_tty}")        # init.sh serves its shell there
        if o.extra_append:
            append.append(o.extra_append)
        r = self.run_dir
        argv = [
            a.qemu, *a.machine, "-accel", o.accel, "-cpu", o.cpu or a.cpu, "-smp", str(o.smp),
            "-m", str(o.mem_mb), "-no-reboot", "-nic", "none", "-parallel", "none", "-display", "none",
            "-kernel", str(self.kernel / "vmlinuz"), "-initrd", str(self.initramfs / "initramfs.cpio.gz"),
            "-append", " ".join(append),
            "-serial", f"file:{r}/console.log",
            "-chardev", f"socket,id=shell,path={self.shell_socket},server=on,wait=off", *a.shell_port,
            "-monitor", f"unix:{r}/hmp.sock,server=on,wait=off",
            "-gdb", f"tcp:127.0.0.1:{self.gdb_port}",
            "-daemonize", "-pidfile", f"{r}/qemu.pid",
        ]
        if o.halt:
            argv.append("-S")
        return argv + o.qemu_args

    def start(self) -> None:
        say(f"booting guest in {self.run_dir} (gdb port {self.gdb_port})")
        proc = subprocess.run(self.qemu_argv(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"qemu failed: {proc.stderr.strip()}")
        self.pid = int((self.run_dir / "qemu.pid").read_text())
        self.save()

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for the console's ready marker; return the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if READY_MARKER in self.console_text():
                self._wait_shell(deadline=t0 + timeout)
                return time.monotonic() - t0
            if not self.alive():
                raise LabError(f"QEMU exited during boot; console:\n{self.console_tail()}")
            time.sleep(0.1)
        raise LabError(f"no '{READY_MARKER}' after {timeout:.0f} s; console:\n{self.console_tail()}")

    def _wait_shell(self, deadline: float) -> None:
        """Ping the command shell until it answers (input sent before it opened the port is lost)."""
        while True:
            try:
                self.sh("true", timeout=2)
                return
            except LabError:
                if time.monotonic() > deadline:
                    raise

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 20) -> str:
        return "\n".join(self.console_text().splitlines()[-lines:])

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.pid and self.alive():
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(50):
                if not self.alive():
                    break
                time.sleep(0.1)
            else:
                os.kill(self.pid, signal.SIGKILL)
        say(f"guest {self.run_dir} stopped")

    # -- talking to it ----------------------------------------------------
    def sh(self, command: str, timeout: float = 60.0) -> str:
        """Run one shell line in the guest (over its shell's serial port) and return its output.

        Raises LabError when the command exits non-zero or no answer comes in time.  A line
        the guest's shell received garbled (a syntax error in our own framing, seen once in
        a few hundred commands on a loaded host) did not run, and is sent once more.
        """
        if command.rstrip().endswith("&"):
            command += " :"          # "cmd &; echo" is a syntax error, "cmd & :; echo" is not
        for attempt in (1, 2):
            try:
                return self._sh_once(command, timeout)
            except GarbledLine:
                if attempt == 2:
                    raise
                say(f"the guest's shell received a garbled line; sending it again: {command}")
        raise AssertionError("unreachable")

    def _sh_once(self, command: str, timeout: float) -> str:
        tag = os.urandom(4).hex()
        line = f"echo '<<B:{tag}>>'; {command}; echo \"<<E:{tag}:$?>>\"\n"
        end = re.compile(rf"<<E:{tag}:(\d+)>>\n")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.shell_socket))
            s.sendall(line.encode())
            data = _read_until(s, end, timeout, garbled=f"<<B:{tag}>>")
        text = data.decode(errors="replace")
        begin = text.find(f"<<B:{tag}>>\n")
        m = end.search(text)
        body = text[begin + len(f"<<B:{tag}>>\n"): m.start()]
        if m.group(1) != "0":
            raise LabError(f"guest command failed ({m.group(1)}): {command}\n{body}")
        return body

    def hmp(self, command: str, timeout: float = 60.0) -> str:
        """Run one HMP monitor command and return its output."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run_dir / "hmp.sock"))
            _read_until(s, re.compile(rb"\(qemu\) "), timeout)
            s.sendall(command.encode() + b"\n")
            data = _read_until(s, re.compile(rb"\r?\n\(qemu\) $"), timeout)
        text = data.decode(errors="replace").replace("\r", "")
        lines = text.split("\n")
        return "\n".join(lines[1:-1]) + "\n"

    def dump(self, path: str | Path, paging: bool = False, zlib: bool = False, timeout: float = 600) -> Path:
        """Write the guest's RAM and vCPU state to `path` with QEMU's dump-guest-memory: ELF,
        with `paging` (-p) as the page tables map it, with `zlib` (-z) kdump-compressed.
        QEMU holds the vCPUs for the dump and then leaves them as they were, so a guest that
        gdb keeps stopped is dumped at that stop."""
        target = Path(path).resolve()
        target.unlink(missing_ok=True)          # QEMU creates it read-only for its owner
        flags = (" -p" if paging else "") + (" -z" if zlib else "")
        answer = self.hmp(f"dump-guest-memory{flags} {target}", timeout=timeout).strip()
        if answer or not target.exists():
            raise LabError(f"dump-guest-memory{flags} {target} failed: {answer or 'no file written'}")
        return target

    def release_debugger(self) -> None:
        """After a gdb was killed in the middle of a run: attach and detach once, which makes
        QEMU remove the breakpoints that gdb left (the guest would stay 'paused (debug)')."""
        subprocess.run(["timeout", "60", self.arch.gdb, "-nx", "-batch", "-ex", f"target remote 127.0.0.1:{self.gdb_port}",
                        "-ex", "detach"], capture_output=True)

    def gdb_argv(self, *extra: str, plugin: bool = True, connect: bool = True) -> list[str]:
        """gdb (gdb-multiarch for arm64) with the indexed vmlinux, connected to this guest
        (unless not `connect`: to read its dumps with QEMU gone), plugin sourced.  A stop (the
        attach too) prints the frame's location without its source line: the kernel's sources
        are not on the host, and gdb would say so at every stop."""
        argv = [self.arch.gdb, "-nx", "-q", "-ex", "set pagination off", "-ex", "set confirm off",
                "-ex", f"file {self.vmlinux}", "-ex", "set print frame-info location"]
        if connect:
            argv += ["-ex", f"target remote 127.0.0.1:{self.gdb_port}"]
        if plugin:
            argv += ["-x", str(REPO / "gdb_memcheck" / "gdbinit.py"), "-ex", f"set memcheck sysroot {self.sysroot}"]
        return argv + list(extra)


def _read_until(sock: socket.socket, pattern: re.Pattern, timeout: float, garbled: str = "") -> bytes:
    """Read until `pattern` matches.  With `garbled` (the line's begin tag), a shell syntax
    error before that tag was echoed means the line arrived damaged: GarbledLine."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    is_bytes = isinstance(pattern.pattern, bytes)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        if pattern.search(buf if is_bytes else buf.decode(errors="replace")):
            return buf
        if garbled and _SYNTAX_ERROR.search(buf) and garbled.encode() not in buf:
            raise GarbledLine(buf[-200:].decode(errors="replace"))
    raise LabError(f"timed out waiting for {pattern.pattern!r}; got {buf[-500:]!r}")


_SYNTAX_ERROR = re.compile(rb"sh: eval: line \d+: syntax error")


class GarbledLine(LabError):
    """The guest's shell could not parse the line we sent: it arrived damaged."""


def boot(options: BootOptions | None = None, run_dir: str | Path | None = None,
         wait: bool = True) -> Guest:
    """Build (cached) what the guest needs, start it, and wait for the ready marker."""
    options = options or BootOptions()
    if options.arch not in ARCHES:
        raise LabError(f"unknown architecture {options.arch!r}: give {' or '.join(ARCHES)}")
    kernel, initramfs = kernel_dir(options.kernel, options.arch), initramfs_dir(options.arch)
    rd = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="memcheck-guest-"))
    rd.mkdir(parents=True, exist_ok=True)
    (rd / "console.log").unlink(missing_ok=True)
    guest = Guest(run_dir=rd, gdb_port=free_port(), kernel=kernel, initramfs=initramfs, options=options)
    guest.start()
    if wait and not options.halt:
        took = guest.wait_ready()
        say(f"guest ready after {took:.1f} s")
    return guest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot", help="start a guest and wait until it is ready")
    b.add_argument("--run-dir")
    b.add_argument("--arch", default="amd64", choices=sorted(ARCHES), help="the guest's architecture (default amd64)")
    b.add_argument("--kernel", default="", help="6.1-cloud (default), 6.1, 6.1-rt, 6.12-cloud, 6.12, 6.12-rt or an ABI; "
                   "with --arch arm64 the same names pick the arm64 builds (6.1-cloud-arm64)")
    b.add_argument("--kaslr", action="store_true")
    b.add_argument("--randmaps", action="store_true", help="user address-space randomization on")
    b.add_argument("--halt", action="store_true", help="-S: stop at reset")
    b.add_argument("--smp", type=int, default=1)
    b.add_argument("--mem", type=int, default=512)
    b.add_argument("--cpu", default="", help="QEMU's -cpu: qemu64 (default on amd64), qemu64,+la57 for 5-level paging; "
                   "cortex-a72 (default on arm64), max")
    for name in ("sh", "hmp"):
        p = sub.add_parser(name)
        p.add_argument("run_dir")
        p.add_argument("command")
    d = sub.add_parser("dump", help="write the guest's memory and vCPU state with dump-guest-memory")
    d.add_argument("run_dir")
    d.add_argument("file")
    d.add_argument("--paging", action="store_true", help="-p: PT_LOADs as the page tables map memory")
    d.add_argument("--zlib", action="store_true", help="-z: kdump-compressed with zlib")
    s = sub.add_parser("stop")
    s.add_argument("run_dir")
    g = sub.add_parser("gdb", help="exec gdb connected to the guest with the plugin")
    g.add_argument("--no-plugin", action="store_true", help="plain gdb, without the plugin")
    g.add_argument("run_dir")
    g.add_argument("gdb_args", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "boot":
            opts = BootOptions(kaslr=a.kaslr, halt=a.halt, smp=a.smp, mem_mb=a.mem, cpu=a.cpu,
                               randmaps=a.randmaps, kernel=a.kernel, arch=a.arch)
            print(boot(opts, a.run_dir).run_dir)
        elif a.cmd == "sh":
            sys.stdout.write(Guest.load(a.run_dir).sh(a.command))
        elif a.cmd == "hmp":
            sys.stdout.write(Guest.load(a.run_dir).hmp(a.command))
        elif a.cmd == "dump":
            written = Guest.load(a.run_dir).dump(a.file, paging=a.paging, zlib=a.zlib)
            say(f"dump written: {written} ({written.stat().st_size >> 20} MiB)")
            print(written)
        elif a.cmd == "stop":
            Guest.load(a.run_dir).stop()
        elif a.cmd == "gdb":
            argv = Guest.load(a.run_dir).gdb_argv(*a.gdb_args, plugin=not a.no_plugin)
            os.execvp(argv[0], argv)
    except LabError as e:
        say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
