"""The arm64 lab: Debian's arm64 cloud kernel on QEMU's virt machine, the cross-compiled
workloads, and what gdb-multiarch and QEMU's monitor offer the plugin there.  Plain
gdb-multiarch, without the plugin (which does not know AArch64 yet).

The module boots its own arm64 guest (BOOT pins the architecture), so it runs in the
default passes of both CI kernels: GDB_MEMCHECK_KERNEL=6.1-cloud boots 6.1-cloud-arm64."""
from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from labtools import REPO, guestlab, run_gdb

BOOT = guestlab.BootOptions(arch="arm64")
BADDR = ((1 << 48) - 1) & ~1          # TTBRn_EL1 bits 47:1, the table's address (48-bit PA)
SYSTEM_REGISTERS = ("SP_EL0", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "SCTLR", "TPIDR_EL0", "TPIDR_EL1")

# Everything is read in one gdb-multiarch run: the attach stops the idle guest in the kernel
# (EL1).  QEMU translates virtual addresses with the vCPU's current permissions: stopped in
# EL0, the gdbstub cannot read kernel addresses and gva2gpa calls them Unmapped, so the
# translations are asked for here, while gdb holds the guest where it stopped.
GDB_VIEW = r"""
import re
def value(expr):
    return int(gdb.parse_and_eval(expr)) & (2**64 - 1)
def gva2gpa(va):
    answer = gdb.execute(f"monitor gva2gpa {va:#x}", to_string=True)
    m = re.search(r"gpa: (0x[0-9a-f]+)", answer)
    return int(m.group(1), 16) if m else answer.strip()
registers = {name: value("$" + name) for name in SYSTEM_REGISTERS}
current = "((struct task_struct *)$SP_EL0)"
tdesc = gdb.execute("maint print xml-tdesc", to_string=True)
feature = tdesc.split('<feature name="org.qemu.gdb.arm.sys.regs">', 1)[1].split("</feature>", 1)[0]
ram_base = 0x40000000
def packet(text):
    return re.search(r'received: "(.*)"', gdb.execute("maint packet " + text, to_string=True)).group(1)
# QEMU keeps the mode across connections: back to virtual before anything else can fail
phymem = [packet("qqemu.PhyMemMode"), packet("Qqemu.PhyMemMode:1"), packet("qqemu.PhyMemMode")]
try:
    physical = bytes(gdb.selected_inferior().read_memory(ram_base, 16))
finally:
    phymem.append(packet("Qqemu.PhyMemMode:0"))
emit({
    "release": gdb.parse_and_eval("init_uts_ns.name.release").string(),
    "machine": gdb.parse_and_eval("init_uts_ns.name.machine").string(),
    "architecture": gdb.selected_frame().architecture().name(),
    "registers": registers,
    "cpsr": value("$cpsr"),
    "current": {"pid": value(current + "->pid"), "comm": gdb.parse_and_eval(current + "->comm").string(),
                "active_mm": value(current + "->active_mm"), "pgd": value(current + "->active_mm->pgd")},
    "symbols": {name: value("(unsigned long)&" + name)
                for name in ("init_mm", "swapper_pg_dir", "reserved_pg_dir", "init_task")},
    "gpa": {"swapper_pg_dir": gva2gpa(value("(unsigned long)&swapper_pg_dir")),
            "reserved_pg_dir": gva2gpa(value("(unsigned long)&reserved_pg_dir")),
            "active_mm->pgd": gva2gpa(value(current + "->active_mm->pgd"))},
    "per_cpu_offset0": value("__per_cpu_offset[0]"),
    "sysregs_feature": re.findall(r'<reg name="([^"]+)"', feature),
    "phymem_mode": phymem,
    "physical_16": physical.hex(),
    "mtree": gdb.execute("monitor info mtree -f", to_string=True).replace("\r", ""),
    "gpa2hva": gdb.execute(f"monitor gpa2hva {ram_base + 0x1000:#x}", to_string=True),
})
""".replace("SYSTEM_REGISTERS", repr(SYSTEM_REGISTERS))


@pytest.fixture(scope="module")
def view(guest) -> dict:
    return run_gdb(guest, script=GDB_VIEW, plugin=False).result()


def xp_words(guest, pa: int, count: int = 2) -> list[int]:
    out = guest.hmp(f"xp /{count}gx {pa:#x}")
    return [int(w, 16) for w in re.findall(r"0x[0-9a-f]{16}", out.split(":", 1)[1])]


def mappings(guest, pid: int) -> list[tuple[int, int, str, str]]:
    rows = []
    for line in guest.sh(f"cat /proc/{pid}/maps").splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        rows.append((start, end, fields[1], fields[5] if len(fields) > 5 else ""))
    return rows


def mapping_of(rows, address: int):
    return next((r for r in rows if r[0] <= address < r[1]), None)


def test_the_guest_is_aarch64_running_debians_arm64_kernel(guest, uname_r):
    assert guest.sh("uname -m").strip() == "aarch64"
    assert uname_r == (guest.kernel / "abi").read_text().strip()
    assert uname_r.endswith("-arm64")
    assert "console=ttyAMA0" in guest.sh("cat /proc/cmdline")


def test_gdb_multiarch_reads_the_running_kernels_release_through_the_gdbstub(view, uname_r):
    assert view["architecture"].startswith("aarch64")
    assert view["release"] == uname_r
    assert view["machine"] == "aarch64"


def test_every_workload_is_built_for_aarch64_dynamic_and_static(guest):
    names = sorted(p.stem for p in (REPO / "workloads").glob("*.c"))
    for name in names:
        for binary in (f"bin/{name}", f"bin/{name}-static"):
            header = subprocess.run(["readelf", "-h", "-l", str(guest.sysroot / binary)],
                                    capture_output=True, text=True, check=True).stdout
            assert re.search(r"Machine:\s+AArch64", header), binary
            interp = "[Requesting program interpreter: /lib/ld-linux-aarch64.so.1]" in header
            assert interp == (not binary.endswith("-static")), binary
    assert sorted(guest.sh("ls /bin/wl-*").split()) == sorted(
        [f"/bin/{n}" for n in names] + [f"/bin/{n}-static" for n in names] + ["/bin/wl-leak-stripped"])


def test_the_guests_libc_is_debians_build_with_its_debug_file_in_the_sysroot(guest):
    """Leak stacks symbolize libc through libc6-dbg:arm64, which matches Debian's libc6:arm64
    by build-id (the cross toolchain's libc is another build)."""
    libc = "/lib/aarch64-linux-gnu/libc.so.6"
    in_guest = guest.sh(f"sha256sum {libc}").split()[0]
    host_copy = guest.sysroot / libc.lstrip("/")
    assert hashlib.sha256(host_copy.read_bytes()).hexdigest() == in_guest
    notes = subprocess.run(["readelf", "-n", str(host_copy)], capture_output=True, text=True, check=True).stdout
    build_id = re.search(r"Build ID: ([0-9a-f]+)", notes).group(1)
    debug = guest.sysroot / "usr/lib/debug/.build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    assert debug.is_file(), debug
    debug_notes = subprocess.run(["readelf", "-n", str(debug)], capture_output=True, text=True, check=True).stdout
    assert f"Build ID: {build_id}" in debug_notes


def test_wl_leak_prints_its_ground_truth_and_each_block_lies_in_writable_memory(guest):
    pid = int(guest.sh("pidof wl-leak").split()[0])
    log = guest.sh("cat /tmp/log/wl-leak.log")
    truth = re.findall(r"^GT (\w+) addr=(0x[0-9a-f]+) size=(\d+)", log, re.M)
    assert {kind for kind, _, _ in truth} >= {"definite", "indirect", "possible", "reachable"}, log
    rows = mappings(guest, pid)
    live = [(kind, int(addr, 16), int(size)) for kind, addr, size in truth if kind != "freed"]
    for kind, addr, size in live:
        row = mapping_of(rows, addr)
        assert row and row[2].startswith("rw") and addr + size <= row[1], (kind, hex(addr), row)
    static = guest.sh("/bin/wl-leak-static")
    assert len(re.findall(r"^GT ", static, re.M)) == len(truth) and "wl-leak done" in static


@pytest.mark.parametrize("program", ["wl-maps", "wl-maps-static"])
def test_wl_maps_runs_and_its_mappings_are_where_it_says(guest, program):
    pid = int(guest.sh(f"pidof {program}").split()[0])
    said = dict(re.findall(r"(\w+)=(0x[0-9a-f]+)", guest.sh(f"cat /tmp/log/{program}.log")))
    rows = mappings(guest, pid)
    assert mapping_of(rows, int(said["exe_view"], 16))[3] == f"/bin/{program}"
    assert mapping_of(rows, int(said["dat"], 16))[3] == f"/tmp/{program}.dat"
    assert mapping_of(rows, int(said["anon"], 16))[3] == ""
    assert mapping_of(rows, int(said["heap"], 16))[3] == "[heap]"
    assert len(guest.sh(f"ls /proc/{pid}/task").split()) == 2


def test_the_system_registers_the_plugin_needs_are_named_in_qemus_target_description(view):
    assert set(SYSTEM_REGISTERS) <= set(view["sysregs_feature"])
    for name, value in view["registers"].items():
        print(f"{name:<10} {value:#018x}")


def test_the_attach_stops_the_idle_guest_in_the_kernel(view):
    assert view["cpsr"] & 0b1100 == 0b0100, "PSTATE.EL is 1"


def test_ttbr1_holds_swapper_pg_dir_as_qemu_translates_it(view):
    assert view["registers"]["TTBR1_EL1"] & BADDR == view["gpa"]["swapper_pg_dir"]
    assert view["registers"]["SCTLR"] & 1, "SCTLR_EL1.M: the MMU is on"


def test_ttbr0_holds_the_page_table_of_the_mm_the_cpu_has_loaded(view):
    """The idle task borrows the last user mm (lazy TLB); init_mm means the reserved table."""
    table = "reserved_pg_dir" if view["current"]["active_mm"] == view["symbols"]["init_mm"] else "active_mm->pgd"
    assert view["registers"]["TTBR0_EL1"] & BADDR == view["gpa"][table]


def test_sp_el0_is_the_running_task_and_tpidr_el1_its_cpus_per_cpu_offset(view):
    assert (view["current"]["pid"], view["current"]["comm"]) == (0, "swapper/0")
    assert view["registers"]["SP_EL0"] == view["symbols"]["init_task"]
    assert view["registers"]["TPIDR_EL1"] == view["per_cpu_offset0"]


def test_tcr_el1_gives_48_bit_user_addresses_where_the_stack_ends(guest, view):
    t0sz = view["registers"]["TCR_EL1"] & 0x3F
    stack = next(r for r in mappings(guest, 1) if r[3] == "[stack]")
    assert 64 - t0sz == 48 and stack[1] == 1 << (64 - t0sz)


def test_physical_mode_reads_what_qemus_xp_reads(guest, view):
    assert view["phymem_mode"] == ["0", "OK", "1", "OK"], "qqemu.PhyMemMode: off, set, on, reset"
    words = xp_words(guest, 0x40000000)
    physical = bytes.fromhex(view["physical_16"])
    assert words == [int.from_bytes(physical[i:i + 8], "little") for i in (0, 8)]


def test_mtree_and_gpa2hva_locate_guest_ram_in_qemus_memory(guest, view):
    size = guest.options.mem_mb << 20
    assert re.search(rf"^  0*40000000-0*{0x40000000 + size - 1:x} \(prio 0, ram\): mach-virt\.ram$",
                     view["mtree"], re.M), view["mtree"]
    hva = int(re.search(r"is (0x[0-9a-f]+)", view["gpa2hva"]).group(1), 16)
    with open(f"/proc/{guest.pid}/mem", "rb") as mem:
        mem.seek(hva)
        page = mem.read(16)
    words = xp_words(guest, 0x40001000)
    assert words == [int.from_bytes(page[i:i + 8], "little") for i in (0, 8)]
