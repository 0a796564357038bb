"""Text and JSON renderings of the records: tasks, maps, page tables, walks, leak reports.
The JSON follows schema.py: addresses are hex strings, sizes and counts numbers."""
from __future__ import annotations

import json
from operator import attrgetter
from dataclasses import dataclass

from ..addrinfo import AddressInfo
from ..arch.x86_64 import paging
from ..leakcheck.alloctrack import BadFree
from ..leakcheck.leaks import Kind, LeakReport, LossRecord
from ..linux.rss import Usage
from ..linux.tasks import Task
from ..linux.vmas import Vma, mangle_path
from ..symbols.elfsyms import SourceLine
from ..symbols.sources import SourceFinder
from ..symbols.stackframes import Frame
from .schema import document, hexa
from .style import PLAIN, Styler

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


def _right(text: str, width: int, styled: str) -> str:
    """`styled` (text with escapes) right-aligned as `text` would be in `width` columns."""
    return " " * (width - len(text)) + styled


def ps_text(rows: list[PsRow], threads: bool, style: Styler = PLAIN) -> str:
    head = f"{'PID':>6} {'TID':>6} " if threads else f"{'PID':>6} "
    lines = [f"{head}{'PPID':>6} S {'VSZ':>8} {'RSS':>8} {'MM':>18} CPU COMMAND"]
    for r in rows:
        t = r.task
        ids = f"{t.tgid:>6} {t.pid:>6} " if threads else f"{t.tgid:>6} "
        name = f"[{t.comm}]" if t.is_kernel_thread else style.filename(r.exe) or t.comm
        if r.exe and not r.exe.endswith("/" + t.comm):
            name += f" ({t.comm})"
        cpu = f"{r.cpu:>3}" if r.cpu is not None else "  -"
        mm = _right(hex(t.mm), 18, style.address(hex(t.mm))) if t.mm else f"{'-':>18}"
        lines.append(f"{ids}{t.ppid:>6} {t.state} {r.vsz // KIB:>8} {r.rss // KIB:>8} {mm} {cpu} {name}")
    return "\n".join(lines) + "\n"


def maps_line(v: Vma, style: Styler = PLAIN) -> str:
    """A /proc/PID/maps line, its range styled as addresses and a file's path as a file name."""
    line = v.maps_line()
    if not style.enabled:
        return line
    cut = line.index(" ")
    rest = line[cut:]
    name = mangle_path(v.name)
    if name.startswith("/") and rest.endswith(name):
        rest = rest[:-len(name)] + style.filename(name)
    return style.address(line[:cut]) + rest


def maps_text(vmas: list[Vma], usages: list[Usage] | None = None, style: Styler = PLAIN) -> str:
    """/proc/PID/maps lines; with usages, Rss and Anonymous (kB) before each line and totals."""
    if usages is None:
        return "".join(maps_line(v, style) + "\n" for v in vmas)
    lines = [f"{'Rss':>8} {'Anon':>8}  mapping (sizes in kB)"]
    for v, u in zip(vmas, usages):
        lines.append(f"{u.rss // KIB:>8} {u.anonymous // KIB:>8}  {maps_line(v, style)}")
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


def pagetable_text(ranges: list[paging.Range], style: Styler = PLAIN) -> str:
    lines = [f"{'virtual range':<33} {'physical':>18} {'size':>12} {'page':>5} perms"]
    for r in ranges:
        span, physical = f"{r.virtual:016x}-{r.end:016x}", hex(r.physical)
        lines.append(f"{style.address(span)} {_right(physical, 18, style.address(physical))} "
                     f"{r.size:#12x} {_page_name(r.page_size):>5} {r.perms()}")
    return "\n".join(lines) + "\n"


def pagetable_json(ranges: list[paging.Range]) -> list[dict]:
    return [{"start": hex(r.virtual), "end": hex(r.end), "physical": hex(r.physical), "size": r.size,
             "page_size": r.page_size, "user": r.user, "writable": r.writable, "executable": r.executable}
            for r in ranges]


def _page_name(size: int) -> str:
    return {1 << 12: "4K", 1 << 21: "2M", 1 << 30: "1G"}.get(size, hex(size))


def walk_text(va: int, steps: list[paging.WalkStep], physical: int | None, stop: str = "",
              style: Styler = PLAIN) -> str:
    lines = [f"virtual {style.address(hex(va))}"]
    for s in steps:
        lines.append(f"  {s.name:<4} table {style.address(f'{s.table:#014x}')} [{s.index:3}] entry {s.entry:#018x}  "
                     f"{s.flags}")
    lines.append(f"  physical {style.address(hex(physical))}" if physical is not None
                 else f"  {style.highlight('walk stops:')} {stop}")
    return "\n".join(lines) + "\n"


def walk_json(va: int, steps: list[paging.WalkStep], physical: int | None, stop: str = "") -> dict:
    return {"virtual": hexa(va), "physical": hexa(physical), "stop": stop or None,
            "steps": [{"level": s.name, "table": hexa(s.table), "index": s.index, "entry": hexa(s.entry),
                       "flags": s.flags.split()} for s in steps]}


def json_text(command: str, body: dict) -> str:
    """One --json output line: the schema version, the command and its fields."""
    # no indent: the C encoder, ~10x faster on 10k VMAs; a document is a tree, so no check for cycles
    # (it kept a table of every dict and list: 10^6 blocks in a leak report)
    return json.dumps(document(command, body), check_circular=False) + "\n"


def addr_text(info: AddressInfo, style: Styler = PLAIN, source: list[str] | None = None) -> str:
    """`memcheck addr`'s lines; `source` (with --source): the lines around the address's line."""
    who = "kernel" if info.pid is None else f"pid {info.pid} ({info.comm})"
    lines = [f"address {style.address(hex(info.address))} in {who}"]
    if info.vma is not None:
        lines.append(f"  mapping   {maps_line(info.vma, style).rstrip()}")
    if info.file_offset is not None:
        lines.append(f"  file      {style.filename(info.vma.name)} + {info.file_offset:#x}")
    if info.symbol or info.source:
        at = f" @ {_source_text(info.source, style)}" if info.source else ""
        lines.append(f"  symbol    {_symbol_text(info.symbol, style) if info.symbol else '??'}{at}")
    if source is not None:
        lines += ["  source", *(f"  {line}" for line in source)]
    if info.physical is not None:
        lines.append(f"  physical  {style.address(hex(info.physical))} (page {info.physical & ~0xFFF:#x})")
    if info.note:
        lines.append(f"  note      {info.note}")
    return "\n".join(lines) + "\n"


def _source_text(source: str, style: Styler) -> str:
    """file:line with the file styled as a file name."""
    file, sep, line = source.rpartition(":")
    return f"{style.filename(file)}{sep}{line}" if sep else style.filename(source)


def _symbol_text(symbol: str, style: Styler) -> str:
    """function+offset with the function styled."""
    function, plus, offset = symbol.partition("+")
    return style.function(function) + plus + offset


def addr_json(info: AddressInfo) -> dict:
    return {"address": hexa(info.address), "pid": info.pid, "comm": info.comm,
            "mapping": None if info.vma is None else info.vma.maps_line(), "file_offset": info.file_offset,
            "symbol": info.symbol, "source": info.source, "physical": hexa(info.physical), "note": info.note or None}


def leak_report_text(report: LeakReport, kinds: list[Kind], all_origins: bool = False, style: Styler = PLAIN,
                     source: SourceFinder | None = None) -> str:
    """valgrind-style loss records (with allocation stacks when tracked) and a LEAK SUMMARY;
    with `source`, each record's allocating line with two lines of context."""
    records = report.records(all_origins)
    lines = [f"==memcheck== pid {report.pid} ({report.comm}), {report.mode} mode: {report.header}"]
    lines += [bad_free_text(bad, report.frames, style) for bad in report.bad_frees]
    for n, rec in enumerate(records, 1):
        if rec.kind not in kinds:
            continue
        origin = "" if rec.origin == "own" else f" ({rec.origin})"
        lines.append(f"{_record_bytes(rec)} bytes in {len(rec.blocks)} blocks are {style.highlight(rec.kind.value)}"
                     f"{origin} in loss record {n} of {len(records)}")
        if not rec.stack:
            lines.append(_unknown_stack(rec, report, style))
            continue
        lines += _stack_lines(rec.stack, report.frames, style)
        lines += allocating_source(rec.stack, report.frames, source) if source else []
    lines.append("LEAK SUMMARY:")
    for kind, (total, count) in report.summary(all_origins).items():
        lines.append(f"   {kind.value + ':':<17} {total} bytes in {count} blocks")
    forgiven = len(report.blocks) - len(report.reported(all_origins))
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


def _stack_lines(stack: tuple, frames: dict, style: Styler) -> list[str]:
    """valgrind's at/by lines; a pc inside inlined code gives one line per inlined call."""
    expanded = [f for pc in stack for f in _with_inlined(frames.get(pc) or Frame(pc))]
    return [f"   {'at' if i == 0 else 'by'} {frame_text(f, style)}" for i, f in enumerate(expanded)]


def allocating_source(stack: tuple, frames: dict, source: SourceFinder) -> list[str]:
    """The line that called the allocator (the first frame past the allocator's own whose
    source is found), with two lines of context each side."""
    for frame in (f for pc in stack[1:] for f in _with_inlined(frames.get(pc) or Frame(pc))):
        if frame.file and frame.line:
            found = source.context(SourceLine(frame.file, frame.line, frame.directory or ""))
            if found:
                return [f"   {frame.file}:{frame.line}:", *found]
    return []


def frame_text(frame: Frame, style: Styler = PLAIN) -> str:
    """valgrind's `0xPC: function (file:line)`, then where in which module."""
    where = f" ({style.filename(frame.file)}:{frame.line})" if frame.file else ""
    module = f" [{style.filename(frame.module)}+{frame.offset:#x}]" if frame.module is not None else ""
    function = style.function(frame.function) if frame.function else "???"
    return f"{style.address(hex(frame.pc))}: {function}{where}{module}"


def frame_json(frame: Frame) -> dict:
    """The schema's frame."""
    return {"pc": hexa(frame.pc), "module": frame.module, "offset": hexa(frame.offset), "function": frame.function,
            "file": frame.file, "line": frame.line, "directory": frame.directory,
            "inlined_into": [frame_json(f) for f in frame.inlined_into]}


def _with_inlined(frame: Frame) -> list[Frame]:
    return [frame, *frame.inlined_into]


def _frame(pc: int, report: LeakReport) -> Frame:
    return report.frames.get(pc) or Frame(pc)


def _unknown_stack(rec: LossRecord, report: LeakReport, style: Styler) -> str:
    why = "scan mode" if report.mode == "scan" else "allocated before tracking began"
    shown = ", ".join(style.address(hex(b.address)) for b in rec.blocks[:8])
    return f"   allocation stack unknown ({why}); blocks at {shown}" + (" ..." if len(rec.blocks) > 8 else "")


def bad_free_text(bad: BadFree, frames: dict, style: Styler = PLAIN) -> str:
    """An invalid or double free, with the stack that did it (and, for a double free, the first free)."""
    lines = [f"{style.highlight('Invalid free:')} {bad.text()}", *_stack_lines(bad.stack, frames, style)]
    if bad.freed_by:
        lines += [" Block was free'd at", *_stack_lines(bad.freed_by, frames, style)]
    return "\n".join(lines)


def leak_report_memcheck(report: LeakReport, all_origins: bool = False, style: Styler = PLAIN,
                         source: SourceFinder | None = None) -> str:
    """The per-block layout of the emulator's memcheck: each lost block, then its frames as
    PC, PC relative to its module, module path, and routine @ dir/file:line; with `source`,
    the allocating line with two lines of context."""
    lost = [b for b in report.reported(all_origins) if b.kind is not Kind.REACHABLE]
    image = report.image or report.comm
    lines = []
    if lost:
        lines.append(f"memcheck: Process {image}[pid={report.pid}] is exiting leaking allocated blocks:")
    for n, b in enumerate(sorted(lost, key=lambda b: b.address), 1):
        lines.append(f" Leaked block {n}:")
        lines.append(f"   Block {style.address(hex(b.address))} size {b.size} ({style.highlight(b.kind.value)}"
                     + ("" if b.origin == "own" else f", {b.origin}") + f") allocated by {b.via or 'unknown'}")
        lines.append(" Call stack:" if b.stack else " Call stack: unknown")
        for i, pc in enumerate(b.stack):
            lines += _memcheck_frame(i, pc, _frame(pc, report), style)
        lines += allocating_source(b.stack, report.frames, source) if source and b.stack else []
    lines.append(f"memcheck: Process {image}[pid={report.pid}] is leaking {len(lost)} allocated blocks.")
    return "\n".join(lines) + "\n"


def _memcheck_frame(i: int, pc: int, f: Frame, style: Styler) -> list[str]:
    if f.module is None:
        return [f"   Frame {i}: PC={style.address(f'{pc:#010x}')} in module <unknown>"]
    lines = [f"   Frame {i}: PC={style.address(f'{pc:#010x}')} (relative {f.offset:#010x}) in module "
             f"{style.filename(f.module)}"]
    for n, g in enumerate(_with_inlined(f)):
        if g.function:
            where = f" @ {style.filename(f'{g.directory}/{g.file}')}:{g.line}" if g.file else ""
            lines.append(f"   {'Routine' if n == 0 else 'Inlined into'} {style.function(g.function)}{where}")
    return lines


def leak_report_json(report: LeakReport, all_origins: bool = False) -> dict:
    """Every reported block (a definitely lost one with the bytes lost through it), the loss
    records of every kind in valgrind's order, bad frees and the LEAK SUMMARY."""
    blocks = report.reported(all_origins)
    kinds = {k: k.value for k in Kind} | {None: None}     # one lookup a block: a scan may give 10^6 of them
    return {"pid": report.pid, "comm": report.comm, "mode": report.mode, "header": report.header,
            "blocks": [{"address": hex(b.address), "size": b.size, "kind": kinds[b.kind],
                        "indirect_bytes": b.indirect, "origin": b.origin, "via": b.via or None,
                        "stack": [frame_json(_frame(pc, report)) for pc in b.stack] if b.stack else []}
                       for b in blocks],
            "loss_records": [_loss_record_json(rec) for rec in report.records(all_origins)],
            "bad_frees": [bad_free_json(bad, report.frames) for bad in report.bad_frees],
            "summary": {k.value: {"bytes": v[0], "blocks": v[1]} for k, v in report.summary(all_origins).items()}}


_ADDRESS = attrgetter("address")


def _loss_record_json(rec: LossRecord) -> dict:
    return {"kind": rec.kind.value, "origin": rec.origin, "blocks": len(rec.blocks), "total_bytes": rec.total_bytes,
            "direct_bytes": rec.bytes, "indirect_bytes": rec.indirect_bytes,
            "addresses": list(map(hex, map(_ADDRESS, rec.blocks)))}


def bad_free_json(bad: BadFree, frames: dict) -> dict:
    frame = lambda pc: frame_json(frames.get(pc) or Frame(pc))
    return {"pid": bad.pid, "tid": bad.tid, "kind": bad.kind, "via": bad.via, "address": hexa(bad.address),
            "block_size": bad.block.size if bad.block else None, "stack": [frame(pc) for pc in bad.stack],
            "freed_by": [frame(pc) for pc in bad.freed_by],
            "allocated_by": [frame(pc) for pc in bad.block.stack] if bad.block else []}


EXIT_REPORTS = ("summary", "text", "memcheck", "off")


def exit_report_text(report: LeakReport, style: str) -> str:
    """What a tracked process's exit prints: a line, the valgrind-style report, the
    emulator memcheck's per-block report, or nothing."""
    if style == "off":
        return ""
    if style == "text":
        return leak_report_text(report, [Kind.DEFINITE, Kind.INDIRECT, Kind.POSSIBLE])
    if style == "memcheck":
        return leak_report_memcheck(report)
    lost = sum(1 for b in report.reported(False) if b.kind is not Kind.REACHABLE)
    return (f"memcheck: pid {report.pid} ({report.comm}) exited: {lost} lost blocks, {len(report.bad_frees)} "
            f"bad frees; 'memcheck leaks report {report.pid}' shows them\n")
