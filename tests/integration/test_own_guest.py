"""The README's "Using it on your own guest" and "Installing", followed as written: QEMU
started by the README's command (not by guestlab.py) with the lab's kernel and initramfs,
then each gdb command line of the README, and a `pip install --target` copy loaded by the
README's lines.  Ground truth: the kernel's release, the processes the lab's init starts,
nm and addr2line on the sysroot's binary, QEMU's own gva2gpa."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from labtools import REPO, guestlab

PORT = 1234                                  # what QEMU's -s opens, as the README says
LOCK = Path("/tmp/gdb-memcheck-port-1234.lock")
INIT_PROGRAMS = ("wl-maps", "wl-maps-static", "wl-leak")
GDB_CHECKS = ["memcheck info --json", "memcheck ps -u --json", "python print('SYMBOL', MAKE_DATA_FILE)",
              "memcheck addr -p wl-maps-static --json MAKE_DATA_FILE + 0x10",
              "memcheck vtop --json &init_uts_ns",
              "python gdb.execute(f\"monitor gva2gpa {int(gdb.parse_and_eval('&init_uts_ns')):#x}\")",
              "python import gdb_memcheck; print('LOADED FROM', gdb_memcheck.__file__)"]


def section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def sh_blocks(title: str) -> list[list[str]]:
    """The commands of each ```sh block of a README section, comments and blank lines left out."""
    blocks = re.findall(r"```sh\n(.*?)```", section(title), re.S)
    return [[line for line in block.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
            for block in blocks]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def lab_variables(arch: str, checkout: Path) -> dict[str, str]:
    """The README's five variables, given the lab's files for `arch`."""
    names = [line.split("=", 1)[0] for line in sh_blocks("Using it on your own guest")[0]]
    assert names == ["CHECKOUT", "KERNEL", "INITRD", "VMLINUX", "SYSROOT"]
    kernel, initramfs = guestlab.kernel_dir(arch=arch), guestlab.initramfs_dir(arch)
    return {"CHECKOUT": str(checkout), "KERNEL": str(kernel / "vmlinuz"),
            "INITRD": str(initramfs / "initramfs.cpio.gz"), "VMLINUX": str(kernel / "vmlinux-indexed"),
            "SYSROOT": str(initramfs / "root")}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of this tree, as a user's checkout."""
    copy = tmp_path_factory.mktemp("checkout") / "gdb_memcheck"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    for name in listed.stdout.split():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def variables(checkout) -> dict[str, str]:
    return lab_variables("amd64", checkout)


@contextmanager
def qemu_started(qemu_line: str, variables: dict[str, str], console: Path):
    """QEMU started by a README command line; one such guest at a time on this machine."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert port_free(PORT), f"port {PORT} is taken: the README's -s needs it"
        with console.open("w") as out:
            qemu = subprocess.Popen(["bash", "-c", qemu_line], env={**os.environ, **variables},
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while "INIT ready" not in console.read_text(errors="replace"):
                assert qemu.poll() is None and time.monotonic() < deadline, console.read_text(errors="replace")
                time.sleep(0.2)
            yield {"console": console, "pid": qemu.pid}
        finally:
            os.killpg(qemu.pid, signal.SIGTERM)
            qemu.wait(timeout=30)


@pytest.fixture(scope="module")
def readme_qemu(variables, tmp_path_factory):
    (qemu_line,) = sh_blocks("Using it on your own guest")[1]
    with qemu_started(qemu_line, variables, tmp_path_factory.mktemp("console") / "console.log") as qemu:
        yield qemu


def run_line(line: str, variables: dict[str, str], checks: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A README gdb command line run as written, with -batch and `checks` appended, from a
    directory that holds no copy of the package (python3 -m looks in the current one first)."""
    extra = ["-batch", "-ex", "set pagination off"] + [arg for c in checks for arg in ("-ex", c)]
    words = ["--", *extra] if line.startswith("PYTHONPATH") and "-m gdb_memcheck" in line else extra
    command = f"{line} {' '.join(shlex.quote(w) for w in words)}"
    return subprocess.run(["timeout", "180", "bash", "-c", command], env={**os.environ, **variables},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=cwd)


def nm_address(binary: str, symbol: str) -> int:
    out = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    return next(int(l.split()[0], 16) for l in out.splitlines() if l.split()[-1] == symbol)


def checks_for(variables: dict[str, str]) -> list[str]:
    address = nm_address(f"{variables['SYSROOT']}/bin/wl-maps-static", "make_data_file")
    return [c.replace("MAKE_DATA_FILE", hex(address)) for c in GDB_CHECKS]


def assert_it_works(run: subprocess.CompletedProcess, variables: dict[str, str], loaded_from: str,
                    machine: str = "x86_64") -> None:
    out = run.stdout
    assert "Traceback" not in out + run.stderr and "Python Exception" not in out + run.stderr, out + run.stderr
    abi = Path(variables["KERNEL"]).parent.name
    load = next(l for l in out.splitlines() if l.startswith("gdb_memcheck "))
    assert f"Linux {abi} {machine}" in load and "physical reads via qemu-mem" in load, load
    docs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    info, ps, addr, walk = docs
    assert info["release"] == abi
    assert set(INIT_PROGRAMS) <= {t["comm"] for t in ps["tasks"]}
    binary = f"{variables['SYSROOT']}/bin/wl-maps-static"
    where = subprocess.run(["addr2line", "-e", binary, hex(int(addr["address"], 16))],
                           capture_output=True, text=True).stdout.strip()
    assert addr["symbol"] == "make_data_file+0x10" and addr["source"] == Path(where).name.split()[0]
    assert f"gpa: {walk['physical']}" in run.stderr, "vtop agrees with QEMU's gva2gpa (monitor output)"
    assert f"LOADED FROM {loaded_from}/gdb_memcheck/__init__.py" in out


# First in the file: the x86-64 guest below holds port 1234 until the module ends.
def test_the_readmes_arm64_lines_attach_to_an_arm64_guest(checkout, tmp_path):
    qemu_line, gdb_line = (block[0] for block in sh_blocks("Using it on your own guest")[3:5])
    assert qemu_line.startswith("qemu-system-aarch64 ") and gdb_line.startswith("gdb-multiarch ")
    variables = lab_variables("arm64", checkout)
    with qemu_started(qemu_line, variables, tmp_path / "console.log"):
        run = run_line(gdb_line, variables, checks_for(variables), tmp_path)
    assert_it_works(run, variables, variables["CHECKOUT"], machine="aarch64")


def test_the_readmes_gdb_lines_attach_to_a_qemu_started_the_readmes_way(readme_qemu, variables, tmp_path):
    lines = sh_blocks("Using it on your own guest")[2]
    assert len(lines) == 2 and lines[0].startswith("gdb ") and "python3 -m gdb_memcheck" in lines[1]
    for line in lines:
        run = run_line(line, variables, checks_for(variables), tmp_path)
        assert_it_works(run, variables, variables["CHECKOUT"])


def test_a_pip_target_copy_loads_by_the_readmes_lines(readme_qemu, variables, tmp_path):
    (assign, install, *loads) = sh_blocks("Installing")[1]
    assert assign.startswith("DIR=") and "pip install" in install and "--target" in install and len(loads) == 3
    target = tmp_path / "gdb-memcheck"
    env = {**variables, "DIR": str(target)}
    done = subprocess.run(["bash", "-c", install], env={**os.environ, **env}, capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "gdb_memcheck" / "gdbinit.py").is_file() and (target / "bin" / "gdb-memcheck").is_file()
    checks = [f"set memcheck sysroot {variables['SYSROOT']}", *checks_for(variables)]
    for line in loads:
        assert_it_works(run_line(line, env, checks, tmp_path), variables, str(target))

