"""Text and JSON renderings of the records: tasks, maps, page tables, walks, leak reports.
The JSON follows schema.py: addresses are hex strings, sizes and counts numbers."""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import paging
from .schema import document, hexa
from .addrinfo import AddressInfo
from .alloctrack import BadFree
from .leaks import Kind, LeakReport, LossRecord, loss_records, summary
from .rss import Usage
from .stackframes import Frame
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
                "vsz_kib": self.vsz // KIB, "rss_kib": self.rss // KIB, "mm": hexa(t.mm or None), "task": hexa(t.addr),
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
    """The schema's mappings; Rss and Anonymous are null without usages."""
    out = []
    for i, v in enumerate(vmas):
        out.append({"start": hex(v.start), "end": hex(v.end), "perms": v.perms, "offset": v.offset,
                    "dev": v.dev, "inode": v.inode, "name": v.name, "line": v.maps_line(),
                    "rss_kib": usages[i].rss // KIB if usages else None,
                    "anonymous_kib": usages[i].anonymous // KIB if usages else None})
    return out


def pagetable_text(ranges: list[paging.Range]) -> str:
    lines = [f"{'virtual range':<33} {'physical':>18} {'size':>12} {'page':>5} perms"]
    for r in ranges:
        lines.append(f"{r.virtual:016x}-{r.end:016x} {r.physical:#18x} {r.size:#12x} "
                     f"{_page_name(r.page_size):>5} {r.perms()}")
    return "\n".join(lines) + "\n"


def pagetable_json(ranges: list[paging.Range]) -> list[dict]:
    return [{"start": hex(r.virtual), "end": hex(r.end), "physical": hex(r.physical), "size": r.size,
             "page_size": r.page_size, "user": r.user, "writable": r.writable, "executable": r.executable}
            for r in ranges]


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
    return {"virtual": hexa(va), "physical": hexa(physical), "stop": stop or None,
            "steps": [{"level": s.name, "table": hexa(s.table), "index": s.index, "entry": hexa(s.entry),
                       "flags": entry_flags(s.entry).split()} for s in steps]}


def json_text(command: str, body: dict) -> str:
    """One --json output line: the schema version, the command and its fields."""
    return json.dumps(document(command, body)) + "\n"   # no indent: the C encoder, ~10x faster on 10k VMAs


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
    return {"address": hexa(info.address), "pid": info.pid, "comm": info.comm,
            "mapping": None if info.vma is None else info.vma.maps_line(), "file_offset": info.file_offset,
            "symbol": info.symbol, "source": info.source, "physical": hexa(info.physical), "note": info.note or None}


def leak_report_text(report: LeakReport, kinds: list[Kind], all_origins: bool = False) -> str:
    """valgrind-style loss records (with allocation stacks when tracked) and a LEAK SUMMARY."""
    blocks = report.reported(all_origins)
    records = loss_records(blocks, kinds)
    lines = [f"==memcheck== pid {report.pid} ({report.comm}), {report.mode} mode: {report.header}"]
    lines += [bad_free_text(bad, report.frames) for bad in report.bad_frees]
    for n, rec in enumerate(records, 1):
        origin = "" if rec.origin == "own" else f" ({rec.origin})"
        lines.append(f"{_record_bytes(rec)} bytes in {len(rec.blocks)} blocks are {rec.kind.value}{origin} in loss "
                     f"record {n} of {len(records)}")
        lines += _stack_lines(rec.stack, report) if rec.stack else [_unknown_stack(rec, report)]
    lines.append("LEAK SUMMARY:")
    for kind, (total, count) in summary(blocks).items():
        lines.append(f"   {kind.value + ':':<17} {total} bytes in {count} blocks")
    forgiven = len(report.blocks) - len(blocks)
    if forgiven:
        lines.append(f"   forgiven:         {forgiven} blocks inherited across fork, allocated before main or "
                     "before tracking began (shown with --all)")
    return "\n".join(lines) + "\n"


def _record_bytes(rec: LossRecord) -> str:
    """valgrind's byte count of a loss record: "96 (16 direct, 80 indirect)" when blocks are
    lost through it, else just its own bytes."""
    if not rec.indirect_bytes:
        return str(rec.bytes)
    return f"{rec.total_bytes} ({rec.bytes} direct, {rec.indirect_bytes} indirect)"


def _stack_lines(stack: tuple, report: LeakReport) -> list[str]:
    """valgrind's at/by lines; a pc inside inlined code gives one line per inlined call."""
    frames = [f for pc in stack for f in _with_inlined(_frame(pc, report))]
    return [f"   {'at' if i == 0 else 'by'} {f.text()}" for i, f in enumerate(frames)]


def _with_inlined(frame: Frame) -> list[Frame]:
    return [frame, *frame.inlined_into]


def _frame(pc: int, report: LeakReport) -> Frame:
    return report.frames.get(pc) or Frame(pc)


def _unknown_stack(rec: LossRecord, report: LeakReport) -> str:
    why = "scan mode" if report.mode == "scan" else "allocated before tracking began"
    return (f"   allocation stack unknown ({why}); blocks at "
            + ", ".join(f"{b.address:#x}" for b in rec.blocks[:8]) + (" ..." if len(rec.blocks) > 8 else ""))


def bad_free_text(bad: BadFree, frames: dict) -> str:
    """An invalid or double free, with the stack that did it (and, for a double free, the first free)."""
    lines = [f"Invalid free: {bad.text()}", *_free_stack(bad.stack, frames)]
    if bad.freed_by:
        lines += [" Block was free'd at", *_free_stack(bad.freed_by, frames)]
    return "\n".join(lines)


def _free_stack(stack: tuple, frames: dict) -> list[str]:
    expanded = [f for pc in stack for f in _with_inlined(frames.get(pc) or Frame(pc))]
    return [f"   {'at' if i == 0 else 'by'} {f.text()}" for i, f in enumerate(expanded)]


def leak_report_memcheck(report: LeakReport, all_origins: bool = False) -> str:
    """The per-block layout of the emulator's memcheck: each lost block, then its frames as
    PC, PC relative to its module, module path, and routine @ dir/file:line."""
    lost = [b for b in report.reported(all_origins) if b.kind is not Kind.REACHABLE]
    image = report.image or report.comm
    lines = []
    if lost:
        lines.append(f"memcheck: Process {image}[pid={report.pid}] is exiting leaking allocated blocks:")
    for n, b in enumerate(sorted(lost, key=lambda b: b.address), 1):
        lines.append(f" Leaked block {n}:")
        lines.append(f"   Block {b.address:#x} size {b.size} ({b.kind.value}"
                     + ("" if b.origin == "own" else f", {b.origin}") + f") allocated by {b.via or 'unknown'}")
        lines.append(" Call stack:" if b.stack else " Call stack: unknown")
        for i, pc in enumerate(b.stack):
            f = _frame(pc, report)
            if f.module is None:
                lines.append(f"   Frame {i}: PC={pc:#010x} in module <unknown>")
                continue
            lines.append(f"   Frame {i}: PC={pc:#010x} (relative {f.offset:#010x}) in module {f.module}")
            for n, g in enumerate(_with_inlined(f)):
                if g.function:
                    where = f" @ {g.directory}/{g.file}:{g.line}" if g.file else ""
                    lines.append(f"   {'Routine' if n == 0 else 'Inlined into'} {g.function}{where}")
    lines.append(f"memcheck: Process {image}[pid={report.pid}] is leaking {len(lost)} allocated blocks.")
    return "\n".join(lines) + "\n"


def leak_report_json(report: LeakReport, all_origins: bool = False) -> dict:
    """Every reported block (a definitely lost one with the bytes lost through it), the loss
    records of every kind in valgrind's order, bad frees and the LEAK SUMMARY."""
    blocks = report.reported(all_origins)
    return {"pid": report.pid, "comm": report.comm, "mode": report.mode, "header": report.header,
            "blocks": [{"address": hexa(b.address), "size": b.size, "kind": b.kind.value if b.kind else None,
                        "indirect_bytes": b.indirect, "origin": b.origin, "via": b.via or None,
                        "stack": [_frame(pc, report).as_dict() for pc in b.stack]} for b in blocks],
            "loss_records": [_loss_record_json(rec) for rec in loss_records(blocks, list(Kind))],
            "bad_frees": [bad_free_json(bad, report.frames) for bad in report.bad_frees],
            "summary": {k.value: {"bytes": v[0], "blocks": v[1]} for k, v in summary(blocks).items()}}


def _loss_record_json(rec: LossRecord) -> dict:
    return {"kind": rec.kind.value, "origin": rec.origin, "blocks": len(rec.blocks), "total_bytes": rec.total_bytes,
            "direct_bytes": rec.bytes, "indirect_bytes": rec.indirect_bytes,
            "addresses": [hexa(b.address) for b in rec.blocks]}


def bad_free_json(bad: BadFree, frames: dict) -> dict:
    frame = lambda pc: (frames.get(pc) or Frame(pc)).as_dict()
    return {"pid": bad.pid, "tid": bad.tid, "kind": bad.kind, "via": bad.via, "address": hexa(bad.address),
            "block_size": bad.block.size if bad.block else None, "stack": [frame(pc) for pc in bad.stack],
            "freed_by": [frame(pc) for pc in bad.freed_by],
            "allocated_by": [frame(pc) for pc in bad.block.stack] if bad.block else []}
