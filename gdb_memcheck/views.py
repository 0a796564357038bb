"""Text and JSON renderings of the snapshot records (tasks, maps, page tables, walks)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import paging
from .addrinfo import AddressInfo
from .heapscan import HeapScan
from .leaks import Kind, loss_records, summary
from .rss import Usage
from .tasks import Task
from .vmas import Vma

KIB = 1024


@dataclass(frozen=True)
class PsRow:
    """One line of `memcheck ps`."""

    task: Task
    exe: str
    vsz: int
    rss: int
    cpu: int | None

    def as_dict(self) -> dict:
        t = self.task
        return {"pid": t.tgid, "tid": t.pid, "ppid": t.ppid, "state": t.state, "comm": t.comm, "exe": self.exe,
                "vsz_kib": self.vsz // KIB, "rss_kib": self.rss // KIB, "mm": t.mm, "task": t.addr,
                "kernel_thread": t.is_kernel_thread, "cpu": self.cpu}


def ps_text(rows: list[PsRow], threads: bool) -> str:
    head = f"{'PID':>6} {'TID':>6} " if threads else f"{'PID':>6} "
    lines = [f"{head}{'PPID':>6} S {'VSZ':>8} {'RSS':>8} {'MM':>18} CPU COMMAND"]
    for r in rows:
        t = r.task
        ids = f"{t.tgid:>6} {t.pid:>6} " if threads else f"{t.tgid:>6} "
        name = f"[{t.comm}]" if t.is_kernel_thread else (r.exe or t.comm)
        if r.exe and not r.exe.endswith("/" + t.comm):
            name += f" ({t.comm})"
        cpu = f"{r.cpu:>3}" if r.cpu is not None else "  -"
        mm = f"{t.mm:#18x}" if t.mm else f"{'-':>18}"
        lines.append(f"{ids}{t.ppid:>6} {t.state} {r.vsz // KIB:>8} {r.rss // KIB:>8} {mm} {cpu} {name}")
    return "\n".join(lines) + "\n"


def maps_text(vmas: list[Vma], usages: list[Usage] | None = None) -> str:
    """/proc/PID/maps lines; with usages, Rss and Anonymous (kB) before each line and totals."""
    if usages is None:
        return "".join(v.maps_line() + "\n" for v in vmas)
    lines = [f"{'Rss':>8} {'Anon':>8}  mapping (sizes in kB)"]
    for v, u in zip(vmas, usages):
        lines.append(f"{u.rss // KIB:>8} {u.anonymous // KIB:>8}  {v.maps_line()}")
    total = sum(usages, Usage())
    lines.append(f"{total.rss // KIB:>8} {total.anonymous // KIB:>8}  total of {len(vmas)} mappings, "
                 f"{sum(v.size for v in vmas) // KIB} kB mapped")
    return "\n".join(lines) + "\n"


def maps_json(vmas: list[Vma], usages: list[Usage] | None = None) -> list[dict]:
    out = []
    for i, v in enumerate(vmas):
        d = {"start": v.start, "end": v.end, "perms": v.perms, "offset": v.offset, "dev": v.dev,
             "inode": v.inode, "name": v.name, "line": v.maps_line()}
        if usages is not None:
            d.update(rss_kib=usages[i].rss // KIB, anonymous_kib=usages[i].anonymous // KIB)
        out.append(d)
    return out


def pagetable_text(ranges: list[paging.Range]) -> str:
    lines = [f"{'virtual range':<35} {'physical':>18} {'size':>12} {'page':>5} perms"]
    for r in ranges:
        lines.append(f"{r.virtual:016x}-{r.end:016x} {r.physical:#18x} {r.size:#12x} "
                     f"{_page_name(r.page_size):>5} {r.perms()}")
    return "\n".join(lines) + "\n"


def pagetable_json(ranges: list[paging.Range]) -> list[dict]:
    return [{"start": r.virtual, "end": r.end, "physical": r.physical, "size": r.size, "page_size": r.page_size,
             "user": r.user, "writable": r.writable, "executable": r.executable} for r in ranges]


def _page_name(size: int) -> str:
    return {1 << 12: "4K", 1 << 21: "2M", 1 << 30: "1G"}.get(size, hex(size))


def entry_flags(entry: int) -> str:
    """Decoded flag bits of a page-table entry, e.g. "P W U A D NX"."""
    names = [(paging.PRESENT, "P"), (paging.WRITABLE, "W"), (paging.USER, "U"), (paging.ACCESSED, "A"),
             (paging.DIRTY, "D"), (paging.HUGE, "PS"), (paging.GLOBAL, "G"), (paging.NX, "NX")]
    return " ".join(n for bit, n in names if entry & bit) or "-"


def walk_text(va: int, steps: list[paging.WalkStep], physical: int | None, stop: str = "") -> str:
    lines = [f"virtual {va:#x}"]
    for s in steps:
        lines.append(f"  {s.name:<4} table {s.table:#014x} [{s.index:3}] entry {s.entry:#018x}  {entry_flags(s.entry)}")
    lines.append(f"  physical {physical:#x}" if physical is not None else f"  walk stops: {stop}")
    return "\n".join(lines) + "\n"


def walk_json(va: int, steps: list[paging.WalkStep], physical: int | None, stop: str = "") -> dict:
    return {"virtual": va, "physical": physical, "stop": stop or None,
            "steps": [{"level": s.name, "table": s.table, "index": s.index, "entry": s.entry,
                       "flags": entry_flags(s.entry).split()} for s in steps]}


def to_json(doc) -> str:
    return json.dumps(doc)   # no indent: the C encoder, ~10x faster on 10k-VMA maps


def addr_text(info: AddressInfo) -> str:
    who = "kernel" if info.pid is None else f"pid {info.pid} ({info.comm})"
    lines = [f"address {info.address:#x} in {who}"]
    if info.vma is not None:
        lines.append(f"  mapping   {info.vma.maps_line().rstrip()}")
    if info.file_offset is not None:
        lines.append(f"  file      {info.vma.name} + {info.file_offset:#x}")
    if info.symbol or info.source:
        at = f" @ {info.source}" if info.source else ""
        lines.append(f"  symbol    {info.symbol or '??'}{at}")
    if info.physical is not None:
        lines.append(f"  physical  {info.physical:#x} (page {info.physical & ~0xFFF:#x})")
    if info.note:
        lines.append(f"  note      {info.note}")
    return "\n".join(lines) + "\n"


def addr_json(info: AddressInfo) -> dict:
    return {"address": info.address, "pid": info.pid, "comm": info.comm,
            "mapping": None if info.vma is None else info.vma.maps_line(), "file_offset": info.file_offset,
            "symbol": info.symbol, "source": info.source, "physical": info.physical, "note": info.note or None}


def leak_report_text(scan: HeapScan, kinds: list[Kind]) -> str:
    """valgrind-style loss records and LEAK SUMMARY for a scan."""
    blocks = scan.index.blocks
    records = loss_records(blocks, kinds)
    lines = [f"==memcheck== pid {scan.pid} ({scan.comm}): {len(blocks)} live heap blocks "
             f"(main heap {scan.arena.heap_start:#x}-{scan.arena.heap_end:#x}, {scan.mmapped} mmapped; "
             f"{scan.free_listed} freed chunks on tcache/fastbin lists)"]
    for n, rec in enumerate(records, 1):
        lines.append(f"{rec.bytes} bytes in {len(rec.blocks)} blocks are {rec.kind.value} in loss record "
                     f"{n} of {len(records)}")
        lines.append("   allocation stack unknown (scan mode); blocks at "
                     + ", ".join(f"{b.address:#x}" for b in rec.blocks[:8])
                     + (" ..." if len(rec.blocks) > 8 else ""))
    lines.append("LEAK SUMMARY:")
    for kind, (total, count) in summary(blocks).items():
        lines.append(f"   {kind.value + ':':<17} {total} bytes in {count} blocks")
    return "\n".join(lines) + "\n"


def leak_report_json(scan: HeapScan) -> dict:
    return {"pid": scan.pid, "comm": scan.comm, "mode": "scan",
            "heap": {"start": scan.arena.heap_start, "end": scan.arena.heap_end, "main_arena": scan.arena.address},
            "blocks": [{"address": b.address, "size": b.size, "kind": b.kind.value if b.kind else None}
                       for b in scan.index.blocks],
            "summary": {k.value: {"bytes": v[0], "blocks": v[1]} for k, v in summary(scan.index.blocks).items()}}
