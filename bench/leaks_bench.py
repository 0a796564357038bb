#!/usr/bin/env python3
"""Leak-check benchmark, one run:
  - tracking mode: the cost of each malloc (debug stops and milliseconds), from a program
    that makes N mallocs and exits (and again freeing its blocks first), run untraced and
    then tracked in each mode in the same session, rounds over; each mode's ratio to the
    default; what one stop costs: QEMU CPU time (TB flushes and re-translation), gdb's CPU
    time, Python, and waiting, and the remote-protocol packets gdb sends
  - scan mode on a process with 100,000 live blocks (target < 5 s)
  - scan mode on the leak program vs valgrind --leak-check=full running the same binary
    natively on the host: both times, and the lost-block counts side by side
  - with --vcpus 1,2,4: the tracking cost again on guests with that many vCPUs
  - with --qemu (repeated): only the default and the cheapest mode on guests booted with
    other QEMU options, against the first
Usage: /usr/bin/python3 bench/leaks_bench.py [--blocks N] [--tracked-mallocs N] [--rounds N] [--vcpus 1,2,4]
       /usr/bin/python3 bench/leaks_bench.py --qemu tcg --qemu tcg,tb-size=64 [--rounds N]
       /usr/bin/python3 bench/leaks_bench.py --arch arm64 [--tracked-mallocs N] [--rounds N]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from labtools import guestlab, run_gdb  # noqa: E402

SCRIPT = r"""
import gdb, json, time
def timed(cmd):
    t0 = time.perf_counter()
    doc = json.loads(gdb.execute(cmd, to_string=True))
    return time.perf_counter() - t0, doc
many_s, many = timed("memcheck leaks MANY --json")
leak_s, leak = timed("memcheck leaks wl-leak --json")
emit({"many_s": many_s, "many_blocks": len(many["blocks"]), "many_summary": many["summary"],
      "leak_s": leak_s, "leak_summary": leak["summary"]})
"""

PRELOAD = "LD_PRELOAD=/lib/libmemcheck-preload.so "
# (name, gdb settings, what the guest's shell puts before the program)
MODES = [
    ("call stops, free stops (default)", [], ""),
    ("default, breakpoints always inserted", ["set breakpoint always-inserted on"], ""),
    ("return stops", ["set memcheck malloc-stops return"], ""),
    ("watch stops", ["set memcheck malloc-stops watch"], ""),
    ("return stops, frees by scan", ["set memcheck malloc-stops return", "set memcheck free-stops off"], ""),
    ("watch stops, frees by scan", ["set memcheck malloc-stops watch", "set memcheck free-stops off"], ""),
    ("cooperative (preload ring)", [], PRELOAD),
]
CHEAPEST_BREAKPOINT_MODE = MODES[5]
# arm64 guests: the return and watch stops and the preload ring are x86-64 only
ARM64_MODES = MODES[:2] + [("call stops, frees by scan", ["set memcheck free-stops off"], "")]

# One gdb session: the workload untraced, then tracked in each mode, ROUNDS times over, so
# every mode is measured against the default under the same load; then one short run per
# mode with `set debug remote 1`, whose packets the bench counts from gdb's log.
TRACK_SCRIPT = r"""
import os, re, time
MODES = MODES_LIST
def qemu_cpu():
    fields = open(f"/proc/{guest.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def gdb_cpu():
    t = os.times()
    return t.user + t.system
def flushes():
    return int(re.search(r"TB flush count\s+(\d+)", guest.hmp("info jit")).group(1))
def status():                   # the JSON line: with `set debug remote 1` gdb's log is captured too
    text = gdb.execute("memcheck leaks status --json", to_string=True)
    return json.loads(next(line for line in text.splitlines() if line.startswith("{")))
def measured(command):
    st0, q0, g0, f0 = status(), qemu_cpu(), gdb_cpu(), flushes()
    seconds = while_running(command, timeout=900)["seconds"]
    st1, q1, g1, f1 = status(), qemu_cpu(), gdb_cpu(), flushes()
    handler = lambda st: st["handler_ms_per_stop"] * st["stops"] / 1e3
    return {"seconds": seconds, "qemu_cpu": q1 - q0, "gdb_cpu": g1 - g0, "flushes": f1 - f0,
            "stops": st1["stops"] - st0["stops"], "python": handler(st1) - handler(st0), "status": st1}
def mode(settings):
    gdb.execute("memcheck leaks untrack")
    for line in ["set memcheck malloc-stops call", "set memcheck free-stops on", "set breakpoint always-inserted off"] \
            + settings:
        gdb.execute(line)
    gdb.execute("memcheck leaks track --exec wl-blocks")

out = {"untraced": [], "cold": None, "rounds": [], "packets": {}}
for workload in WORKLOADS:
    gdb.execute("memcheck leaks untrack")
    out["untraced"].append(measured(workload))
mode([])
out["cold"] = measured(WORKLOADS[0])
for _ in range(ROUNDS):
    runs = {}
    gdb.execute("memcheck leaks untrack")
    runs["untraced"] = [measured(workload) for workload in WORKLOADS]
    for name, settings, prefix in MODES:
        mode(settings)
        runs[name] = [measured(prefix + workload) for workload in WORKLOADS]
    out["rounds"].append(runs)
if not FULL:
    emit(out)
"""

# The full run goes on in the same session (no SystemExit: gdb 13 aborts in its exit
# handlers when a script's SystemExit ends it, and leaves a core file).
FULL_SCRIPT = r"""
pid = out["rounds"][-1][MODES[0][0]][0]["status"]["reports"][-1]
t0 = time.perf_counter()
report = q(f"memcheck leaks report {pid} --json")
out["render_s"], out["report_summary"] = time.perf_counter() - t0, report["summary"]
emit(out)
for name, settings, prefix in MODES:
    mode(settings)
    gdb.write(f"@@PACKETS-BEGIN {name}\n", gdb.STDLOG)
    gdb.execute("set debug remote 1")
    out["packets"][name] = measured(prefix + PACKET_WORKLOAD)
    gdb.execute("set debug remote 0")
    gdb.write(f"@@PACKETS-END {name}\n", gdb.STDLOG)

# What one bare stop costs, with a Python stop() that only counts: a breakpoint on malloc
# (a TB flush at the hit and at gdb's step over it) against a read watchpoint on the flag
# malloc reads first (QEMU flushes nothing for a watchpoint hit, and gdb needs no step)
class Counting(gdb.Breakpoint):
    hits = 0
    def stop(self):
        Counting.hits += 1
        return False
from gdb_memcheck.frontend.session import SESSION
mode([])
gdb.execute("memcheck leaks untrack")
malloc_pc = int(report["blocks"][0]["stack"][0]["pc"], 16)
libc = SESSION.symbols().get("/lib/x86_64-linux-gnu/libc.so.6")
base = malloc_pc - libc.addresses_of(["malloc"])["malloc"]
flag = base + libc.debug_companion.addresses_of(["__malloc_initialized"])["__malloc_initialized"]
stop_kinds = {}
for _ in range(ROUNDS):
    for kind, spec, args in (("untraced", None, ()), ("breakpoint", f"*{malloc_pc:#x}", ()),
                             ("watchpoint", f"*(char *){flag:#x}", (gdb.BP_WATCHPOINT, gdb.WP_READ))):
        bp = None
        if spec:
            bp = Counting(spec, *args, internal=True)
            bp.silent = True
        Counting.hits = 0
        run = measured(WORKLOADS[0])
        run["hits"] = Counting.hits
        stop_kinds.setdefault(kind, []).append(run)
        if bp is not None:
            bp.delete()
out["stop_kinds"] = stop_kinds
gdb.execute("set memcheck malloc-stops call")
gdb.execute("set memcheck free-stops on")
gdb.execute("memcheck leaks track --exec wl-leak")
while_running("wl-leak > /dev/null")
out["tracked_leak_summary"] = q("memcheck leaks report --json")["summary"]
emit(out)
"""


# The cooperative mode against the program running natively in the guest: the shell's own
# round trip (`true`) is taken off every run.  Then the leak programs' reports, tracked by
# breakpoints (the default) and through the ring, for the comparison.
COOP_SCRIPT = r"""
def timed(command):
    return while_running(command, timeout=1800)["seconds"]
def stops():
    return q("memcheck leaks status --json")["stops"]
out = {"rounds": [], "reports": {}}
for _ in range(ROUNDS):
    gdb.execute("memcheck leaks untrack")
    runs = {"shell": timed("true")}
    for n in SIZES:
        program = f"wl-blocks {n} --free-exit > /dev/null"
        runs[f"native {n}"] = timed(program)
        runs[f"preloaded, not tracked {n}"] = timed(PRELOAD + program)
    gdb.execute("memcheck leaks track --exec wl-blocks")
    for n in SIZES:
        program = f"wl-blocks {n} --free-exit > /dev/null"
        s0 = stops()
        runs[f"cooperative {n}"] = timed(PRELOAD + program)
        runs[f"cooperative stops {n}"] = stops() - s0
    out["rounds"].append(runs)
for name in LEAK_PROGRAMS:
    for label, prefix in (("breakpoints", ""), ("cooperative", PRELOAD)):
        gdb.execute("memcheck leaks untrack")
        gdb.execute(f"memcheck leaks track --exec {name}")
        while_running(LEAK_COMMANDS.get(name, "{prefix}{name} > /dev/null 2>&1").format(prefix=prefix, name=name))
        pid = q("memcheck leaks status --json")["reports"][-1]
        out["reports"][f"{name} {label}"] = q(f"memcheck leaks report {pid} --json --all")
emit(out)
"""
COOP_SIZES = (10_000, 100_000)
LEAK_PROGRAMS = ("wl-leak", "wl-cliques", "wl-arenas", "wl-badfree")
LEAK_COMMANDS = {"wl-arenas": "{prefix}wl-arenas > /tmp/log/coop-arenas.log 2>&1 & "       # it waits for SIGUSR1
                              "while ! grep -q done /tmp/log/coop-arenas.log; do sleep 0.2; done; "
                              "kill -USR1 $(pidof wl-arenas); while pidof wl-arenas > /dev/null; do sleep 0.2; done"}


def report_shape(report: dict) -> tuple:
    """What a leak report says, without addresses (the preloaded library moves the heap): the
    summary, and each block's kind, size, origin, allocator and the functions of its stack."""
    blocks = sorted((b["kind"], b["size"], b["origin"], b.get("via", ""),
                     tuple(f.get("function") for f in b["stack"][1:])) for b in report["blocks"])
    return report["summary"], blocks


def host_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return median(times)


def cooperative(guest, rounds: int) -> None:
    """The cooperative mode's slowdown against the program run natively in the guest, and
    valgrind's against the same binary run natively on the host; its reports against the
    breakpoint mode's."""
    script = (COOP_SCRIPT.replace("ROUNDS", str(rounds)).replace("SIZES", repr(COOP_SIZES))
              .replace("PRELOAD", repr(PRELOAD)).replace("LEAK_PROGRAMS", repr(LEAK_PROGRAMS))
              .replace("LEAK_COMMANDS", repr(LEAK_COMMANDS)))
    res = run_gdb(guest, script=script, timeout=7200).result()
    binary = str(guest.sysroot / "bin" / "wl-blocks")
    print("cooperative mode (LD_PRELOAD=/lib/libmemcheck-preload.so, the ring drained at gdb_memcheck's stops), "
          f"wl-blocks N --free-exit (N mallocs, 0.9 N frees), medians of {rounds} rounds:")
    for n in COOP_SIZES:
        rows = res["rounds"]
        native = median([r[f"native {n}"] - r["shell"] for r in rows])
        preloaded = median([r[f"preloaded, not tracked {n}"] - r["shell"] for r in rows])
        coop = median([r[f"cooperative {n}"] - r["shell"] for r in rows])
        coop_stops = median([r[f"cooperative stops {n}"] for r in rows])
        calls = n + n - n // 10
        host = host_seconds([binary, str(n), "--free-exit"], 5)
        vg = host_seconds(["valgrind", "--leak-check=full", binary, str(n), "--free-exit"], 3)
        print(f"  N={n}: guest native {native:.3f} s, preloaded untracked {preloaded:.3f} s, tracked {coop:.2f} s "
              f"({coop / native:.1f}x native, {(coop - native) / calls * 1e3:.3f} ms a call, {coop_stops} debug stops); "
              f"host native {host * 1e3:.1f} ms, valgrind --leak-check=full {vg:.2f} s ({vg / host:.0f}x native); "
              f"cooperative slowdown / valgrind's: {(coop / native) / (vg / host):.2f}")
    for name in LEAK_PROGRAMS:
        ours, theirs = (report_shape(res["reports"][f"{name} {label}"]) for label in ("cooperative", "breakpoints"))
        same = "equal" if ours == theirs else "DIFFERENT"
        lost = ours[0]["definitely lost"]
        print(f"  {name}: cooperative report {same} to the breakpoint mode's (summary, and each block's kind, size, "
              f"origin and stack functions); definitely lost {lost['bytes']} bytes in {lost['blocks']} blocks")


def packet_counts(log: str, name: str) -> dict[str, int]:
    """Packets gdb sent during one mode's debug-remote run, by kind (its first letters)."""
    part = log.split(f"@@PACKETS-BEGIN {name}\n", 1)[1].split(f"@@PACKETS-END {name}\n", 1)[0]
    kinds: dict[str, int] = {}
    for m in re.finditer(r"Sending packet: \$([a-zA-Z]+;?[a-zA-Z]?)", part):
        kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
    return kinds


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def per_call_ms(run: dict, base: dict, calls: int) -> float:
    return (run["seconds"] - base["seconds"]) / calls * 1e3


def cpu_ms(run: dict, base: dict, calls: int) -> float:
    """QEMU's and gdb's CPU time beyond the untraced run, a call: less disturbed than wall time by
    other work on the machine."""
    return (run["qemu_cpu"] - base["qemu_cpu"] + run["gdb_cpu"] - base["gdb_cpu"]) / calls * 1e3


def qemu_variants(specs: list[str], mallocs: int, rounds: int) -> None:
    """The default mode and the cheapest, on guests booted with other QEMU options; each
    variant's cost a malloc against the plain TCG guest's, measured first in this run."""
    modes = [MODES[0], CHEAPEST_BREAKPOINT_MODE]
    first = None
    for spec in specs:
        accel, *extra = spec.split()
        guest = guestlab.boot(guestlab.BootOptions(accel=accel, qemu_args=extra))
        try:
            script = (TRACK_SCRIPT.replace("MODES_LIST", repr(modes)).replace("ROUNDS", str(rounds))
                      .replace("FULL", "False").replace("WORKLOADS", repr([f"wl-blocks {mallocs} --exit > /dev/null"])))
            res = run_gdb(guest, script=script, timeout=7200).result()
        finally:
            guest.stop()
        base = res["untraced"][0]["seconds"]
        costs = {name: median([per_call_ms(r[name][0], r["untraced"][0], mallocs) for r in res["rounds"]])
                 for name, _, _ in modes}
        cpu = {name: median([cpu_ms(r[name][0], r["untraced"][0], mallocs) for r in res["rounds"]])
               for name, _, _ in modes}
        first = first or costs[modes[0][0]]
        print(f"QEMU -accel {accel} {' '.join(extra)}: untraced {base:.2f} s; "
              + "; ".join(f"{name}: {costs[name]:.2f} ms a malloc ({costs[name] / first:.2f}x plain TCG's default), "
                          f"CPU {cpu[name]:.2f} ms" for name, _, _ in modes))


def tracking_cost(guest, mallocs: int, rounds: int, modes: list = MODES, full: bool = True) -> dict | None:
    """Each mode's cost per call against the untraced run and the default; with `full`, the
    per-stop breakdown, the packets, a bare stop of each kind and the exit report too."""
    workloads = [f"wl-blocks {mallocs} --exit > /dev/null", f"wl-blocks {mallocs} --free-exit > /dev/null"]
    calls = [mallocs, mallocs + mallocs - mallocs // 10]
    script = ((TRACK_SCRIPT + (FULL_SCRIPT if full else "")).replace("MODES_LIST", repr(modes))
              .replace("ROUNDS", str(rounds)).replace("FULL", str(full))
              .replace("PACKET_WORKLOAD", repr(f"wl-blocks {min(mallocs, 50)} --exit > /dev/null"))
              .replace("WORKLOADS", repr(workloads)))
    gdb_run = run_gdb(guest, script=script, timeout=7200)
    res, log = gdb_run.result(), gdb_run.stderr
    if full and "stop_kinds" not in res:
        errors = [line for line in log.splitlines() if "[remote]" not in line]
        sys.exit("the tracking script stopped early:\n" + "\n".join(errors[-30:]))
    vcpus = guest.options.smp
    base = res["untraced"][0]
    print(f"tracking mode on {vcpus} {guest.options.arch} vCPU{'s' if vcpus > 1 else ''}: wl-blocks making {mallocs} mallocs (no frees) "
          f"and exiting, untraced {base['seconds']:.2f} s; the same with {calls[1] - mallocs} frees before exit, "
          f"untraced {res['untraced'][1]['seconds']:.2f} s")
    cold = res["cold"]
    print(f"  first tracked run (cold: ELF, CFI and symbols parsed): {cold['seconds']:.2f} s, "
          f"{per_call_ms(cold, base, mallocs):.1f} ms a malloc, Python {cold['python'] * 1e3 / mallocs:.1f} ms a malloc")
    print(f"  warm, {rounds} rounds; each mode's cost per call against the untraced run and the default mode's "
          "of the same round (ratios are medians):")
    default = modes[0][0]
    summary = {}
    for name, _, _ in modes:
        for w, label in ((0, "malloc"), (1, "call (mallocs and frees)")):
            costs = [per_call_ms(r[name][w], r["untraced"][w], calls[w]) for r in res["rounds"]]
            ratios = [per_call_ms(r[name][w], r["untraced"][w], calls[w]) /
                      per_call_ms(r[default][w], r["untraced"][w], calls[w]) for r in res["rounds"]]
            stops = median([r[name][w]["stops"] / calls[w] for r in res["rounds"]])
            cpu = [cpu_ms(r[name][w], r["untraced"][w], calls[w]) for r in res["rounds"]]
            cpu_ratios = [c / cpu_ms(r[default][w], r["untraced"][w], calls[w]) for c, r in zip(cpu, res["rounds"])]
            summary[(name, w)] = (median(costs), median(ratios))
            print(f"  {name:<32} {median(costs):5.2f} ms a {label:<24} ({', '.join(f'{c:.2f}' for c in costs)}), "
                  f"{median(ratios):.2f}x the default; CPU {median(cpu):4.2f} ms, {median(cpu_ratios):.2f}x; "
                  f"{stops:.2f} stops a call")
    if not full:
        return None
    print("  one stop, warm, no frees (medians over the rounds; QEMU and gdb time is CPU time, the rest waiting):")
    for name, _, _ in modes:
        rows = [(r[name][0], r["untraced"][0]) for r in res["rounds"]]
        stops = [run["stops"] for run, _ in rows]
        wall = median([(run["seconds"] - b["seconds"]) / s * 1e3 for (run, b), s in zip(rows, stops)])
        qemu = median([(run["qemu_cpu"] - b["qemu_cpu"]) / s * 1e3 for (run, b), s in zip(rows, stops)])
        python = median([run["python"] / s * 1e3 for (run, _), s in zip(rows, stops)])
        gdb_own = median([(run["gdb_cpu"] - b["gdb_cpu"] - run["python"]) / s * 1e3 for (run, b), s in zip(rows, stops)])
        flushes = median([run["flushes"] / s for (run, _), s in zip(rows, stops)])
        pk = res["packets"][name]
        kinds = packet_counts(log, name)
        sent, pstops = sum(kinds.values()), max(pk["stops"], 1)
        each = ", ".join(f"{k} {v / pstops:.1f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        print(f"  {name:<32} {wall:5.2f} ms a stop: QEMU {qemu:4.2f} (TB flushes {flushes:.1f} a stop, and "
              f"re-translation), gdb {gdb_own:4.2f}, Python {python:4.2f}, waiting {wall - qemu - gdb_own - python:5.2f}; "
              f"{sent / pstops:.1f} packets sent a stop ({each}), {sent / min(mallocs, 50):.1f} a malloc")
    kinds = res["stop_kinds"]
    print("  a bare stop (Python stop() only counts), the same workload, medians over the rounds:")
    per_hit = {}
    for kind in ("breakpoint", "watchpoint"):
        runs = list(zip(kinds[kind], kinds["untraced"]))
        wall = median([(r["seconds"] - b["seconds"]) / max(r["hits"], 1) * 1e3 for r, b in runs])
        qemu = median([(r["qemu_cpu"] - b["qemu_cpu"]) / max(r["hits"], 1) * 1e3 for r, b in runs])
        flushes = median([r["flushes"] / max(r["hits"], 1) for r, _ in runs])
        per_hit[kind] = wall
        print(f"    {kind:<10} on {'malloc' if kind == 'breakpoint' else 'the flag malloc reads first'}: "
              f"{median([r['hits'] for r, _ in runs])} hits, {wall:.2f} ms a hit, QEMU CPU {qemu:.2f} ms, "
              f"{flushes:.1f} TB flushes a hit")
    print(f"    a watchpoint hit costs {per_hit['watchpoint'] / per_hit['breakpoint']:.2f}x a breakpoint hit")
    st = res["rounds"][-1][default][0]["status"]
    lost = res["report_summary"]["definitely lost"]["blocks"]
    print(f"  exit report: {lost} definitely lost (expected {mallocs // 10}), rendered again in "
          f"{res['render_s'] * 1e3:.0f} ms; {st['repeated_hits']} repeated hits, {st['errors']} handler errors")
    return res["tracked_leak_summary"]


def valgrind(binary: Path) -> tuple[float, dict]:
    t0 = time.monotonic()
    proc = subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=all", str(binary)],
                          capture_output=True, text=True)
    took = time.monotonic() - t0
    kinds = {}
    for kind in ("definitely lost", "indirectly lost", "possibly lost", "still reachable"):
        m = re.search(rf"{kind}: ([\d,]+) bytes in ([\d,]+) blocks", proc.stderr)
        kinds[kind] = (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else (0, 0)
    return took, kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blocks", type=int, default=100_000)
    ap.add_argument("--tracked-mallocs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every tracking mode, each against the default")
    ap.add_argument("--only", choices=("tracking", "cooperative"), help="run only that part")
    ap.add_argument("--vcpus", default="1", help="vCPU counts to measure tracking on, e.g. 1,2,4")
    ap.add_argument("--arch", default="amd64", choices=guestlab.ARCHES,
                    help="arm64: only the tracking cost of the modes an arm64 guest has")
    ap.add_argument("--qemu", action="append", metavar="ACCEL [OPTIONS]",
                    help="only compare QEMU options: -accel's value and more options, e.g. 'tcg,tb-size=64' or "
                         "'tcg -singlestep' (repeatable; the first is the baseline)")
    args = ap.parse_args()
    if args.qemu:
        qemu_variants(args.qemu, args.tracked_mallocs, args.rounds)
        return 0
    if args.arch != "amd64":
        guest = guestlab.boot(guestlab.BootOptions(arch=args.arch))
        try:
            tracking_cost(guest, args.tracked_mallocs, args.rounds, ARM64_MODES, full=False)
        finally:
            guest.stop()
        return 0
    for vcpus in [int(n) for n in args.vcpus.split(",") if int(n) > 1]:
        guest = guestlab.boot(guestlab.BootOptions(smp=vcpus))
        try:
            tracking_cost(guest, args.tracked_mallocs, args.rounds)
        finally:
            guest.stop()
    guest = guestlab.boot()
    try:
        if args.only != "cooperative":
            tracked = tracking_cost(guest, args.tracked_mallocs, args.rounds)
        if args.only != "tracking":
            cooperative(guest, args.rounds)
        if args.only:
            return 0
        guest.sh(f"wl-blocks {args.blocks} > /tmp/log/blocks.log 2>&1 &")
        guest.sh("sleep 3; grep -q ready /tmp/log/blocks.log")
        pid = guest.sh("pidof wl-blocks").split()[0]
        res = run_gdb(guest, script=SCRIPT.replace("MANY", pid), timeout=600).result()
        vg_s, vg = valgrind(guest.sysroot / "bin" / "wl-leak")
    finally:
        guest.stop()
    lost = res["many_summary"]["definitely lost"]["blocks"]
    print(f"scan of a process with {res['many_blocks']} live blocks: {res['many_s']:.2f} s "
          f"({lost} definitely lost, expected {args.blocks // 10}; target < 5 s)")
    print(f"wl-leak: memcheck scan {res['leak_s'] * 1e3:.0f} ms (guest stopped, no breakpoint); "
          f"valgrind natively on the host {vg_s:.2f} s (whole run under instrumentation)")
    print(f"{'kind':<16} {'scan blocks':>11} {'tracked blocks':>14} {'valgrind blocks':>15} {'scan bytes':>10} "
          f"{'tracked bytes':>13} {'valgrind bytes':>14}")
    for kind, (vbytes, vblocks) in vg.items():
        ours, track = res["leak_summary"][kind], tracked[kind]
        print(f"{kind:<16} {ours['blocks']:>11} {track['blocks']:>14} {vblocks:>15} {ours['bytes']:>10} "
              f"{track['bytes']:>13} {vbytes:>14}")
    print("(scan bytes are usable sizes, as malloc rounded the requests; tracked and valgrind bytes are the "
          "requests.  Still reachable differs because valgrind frees glibc's own blocks at exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
