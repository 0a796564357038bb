"""Text and JSON of what changed since a previous look: processes (`ps --delta`),
mappings (`maps --delta`), and loss records (`leaks --delta`), the last as valgrind
3.19's `leak_check full increased` prints them: each number followed by its change,
"96 (+48) bytes in 2 (+1) blocks" (later valgrinds also mark a "new loss record"; the
JSON says `new`)."""
from __future__ import annotations

import re

from ..changes.history import Checkpoint
from ..changes.leaks import RecordDelta
from ..changes.mappings import CHANGED, RESIZED, MapChange
from ..changes.processes import GONE, NEW, RESIZED as PROCESS_RESIZED, ProcessChange
from ..leakcheck.leaks import Kind, LeakReport
from ..symbols.sources import SourceFinder
from ..symbols.stackframes import Frame
from .schema import hexa
from .style import PLAIN, Styler
from .views import _stack_lines, _unknown_stack, allocating_source, frame_json, maps_line

KIB = 1024
MARKS = {NEW: "+", GONE: "-", PROCESS_RESIZED: "~"}


def previous_json(previous: Checkpoint | None, now: float | None) -> dict | None:
    """Where and when the look compared against was taken (null when there was none)."""
    if previous is None:
        return None
    return {"source": previous.source, "seconds_ago": None if now is None else round(now - previous.time, 3)}


def change(now: int, before: int) -> str:
    """valgrind's delta after a number: " (+16)", " (-8)" (mc_main.c MC_(snprintf_delta))."""
    return f" (+{now - before})" if now >= before else f" (-{before - now})"


def counted(counts: dict[str, int], order: tuple[str, ...]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


# -- processes ------------------------------------------------------------------------------
def ps_delta_text(changes: list[ProcessChange], against: str, style: Styler = PLAIN) -> str:
    """Processes new (+), gone (-) and resized (~) since `against` ("the previous ps (...)")."""
    counts = {k: sum(1 for c in changes if c.kind == k) for k in (NEW, GONE, PROCESS_RESIZED)}
    what = counted(counts, (NEW, GONE, PROCESS_RESIZED)) or "no process new, gone or resized"
    lines = [f"processes since {against}: {what}"]
    if changes:
        lines.append(f"  {'PID':>6} {'PPID':>6} S {'VSZ':>8} {'RSS':>8} {'ΔVSZ':>8} {'ΔRSS':>8} COMMAND")
    for c in changes:
        r = c.record
        name = f"[{r.comm}]" if r.kernel_thread else style.filename(r.exe) or r.comm
        if r.exe and not r.exe.endswith("/" + r.comm):
            name += f" ({r.comm})"
        lines.append(f"{MARKS[c.kind]} {r.pid:>6} {r.ppid:>6} {r.state} {r.vsz // KIB:>8} {r.rss // KIB:>8} "
                     f"{c.vsz_change // KIB:>+8} {c.rss_change // KIB:>+8} {name}")
    return "\n".join(lines) + "\n"


def ps_delta_json(changes: list[ProcessChange]) -> list[dict]:
    out = []
    for c in changes:
        r = c.record
        out.append({"change": c.kind, "pid": r.pid, "ppid": r.ppid, "state": r.state, "comm": r.comm, "exe": r.exe,
                    "kernel_thread": r.kernel_thread, "vsz_kib": r.vsz // KIB, "rss_kib": r.rss // KIB,
                    "vsz_change_kib": c.vsz_change // KIB, "rss_change_kib": c.rss_change // KIB})
    return out


# -- mappings -------------------------------------------------------------------------------
MAP_KINDS = ("added", "removed", "changed", "resized")


def maps_delta_text(changes: list[MapChange], against: str, style: Styler = PLAIN) -> str:
    """Ranges added, removed or changed, mappings resized, and Rss changes since `against`."""
    counts = {k: sum(1 for c in changes if c.kind == k) for k in MAP_KINDS}
    rss = [c.rss_change for c in changes if c.rss_change]
    what = counted(counts, MAP_KINDS) or "no range added, removed, changed or resized"
    tail = f"; Rss of {len(rss)} mapping{'s' if len(rss) != 1 else ''} changed, {sum(rss) // KIB:+d} kB in all" \
        if rss else ""
    lines = [f"mappings since {against}: {what}{tail}"]
    if changes:
        lines.append(f"{'change':<8} {'Rss':>8} {'ΔRss':>8}  mapping (sizes in kB)")
    for c in changes:
        shown = c.now or c.before
        rss_now = "-" if c.rss_now is None else str(c.rss_now // KIB)
        rss_change = "?" if c.rss_change is None else f"{c.rss_change // KIB:+d}"
        line = maps_line(shown, style).rstrip()
        was = _was(c)
        lines.append(f"{c.kind:<8} {rss_now:>8} {rss_change:>8}  {line}{'   was ' + was if was else ''}")
    return "\n".join(lines) + "\n"


def _was(c: MapChange) -> str:
    """What a changed range or a resized mapping was: its attributes, or its range."""
    if c.kind == CHANGED:
        return re.sub(r"\s+", " ", c.before.maps_line().split(" ", 1)[1]).strip()
    if c.kind == RESIZED:
        return f"{c.before.start:08x}-{c.before.end:08x}"
    return ""


def maps_delta_json(changes: list[MapChange]) -> list[dict]:
    out = []
    for c in changes:
        shown = c.now or c.before
        out.append({"change": c.kind, "start": hexa(c.start), "end": hexa(c.end), "line": shown.maps_line(),
                    "was": c.before.maps_line() if c.kind in (CHANGED, RESIZED) else None,
                    "rss_kib": None if c.rss_now is None else c.rss_now // KIB,
                    "rss_change_kib": None if c.rss_change is None else c.rss_change // KIB})
    return out


# -- loss records ---------------------------------------------------------------------------
def record_delta_line(d: RecordDelta, style: Styler = PLAIN) -> str:
    """valgrind's pp_LossRecord line in a delta leak search (mc_errors.c)."""
    now, before, rec = d.now, d.before, d.record
    if now.indirect:
        size = (f"{now.total}{change(now.total, before.total)} ({now.bytes}{change(now.bytes, before.bytes)} "
                f"direct, {now.indirect}{change(now.indirect, before.indirect)} indirect)")
    else:
        size = f"{now.bytes}{change(now.total, before.total)}"
    origin = "" if rec.origin == "own" else f" ({rec.origin})"
    return (f"{size} bytes in {now.blocks}{change(now.blocks, before.blocks)} blocks are "
            f"{style.highlight(rec.kind.value)}{origin} in loss record {d.number} of {d.of}")


def leak_delta_text(report: LeakReport, deltas: list[RecordDelta], summaries: tuple[dict, dict], against: str,
                    style: Styler = PLAIN, source: SourceFinder | None = None) -> str:
    """The loss records new or grown, then the LEAK SUMMARY with each amount's change
    (`summaries`: now and before, Kind -> (bytes, blocks))."""
    lines = [f"==memcheck== pid {report.pid} ({report.comm}), {report.mode} mode, since {against}: "
             f"{report.header}"]
    if not deltas:
        lines.append("no loss record is new or grew")
    for d in deltas:
        lines.append(record_delta_line(d, style))
        if not d.record.stack:
            lines.append(_unknown_stack(d.record, report, style))
            continue
        lines += _stack_lines(d.record.stack, report.frames, style)
        lines += allocating_source(d.record.stack, report.frames, source) if source else []
    now, before = summaries
    lines.append("LEAK SUMMARY:")
    for kind in Kind:
        (total, count), (old_total, old_count) = now[kind], before.get(kind, (0, 0))
        lines.append(f"   {kind.value + ':':<17} {total}{change(total, old_total)} bytes in "
                     f"{count}{change(count, old_count)} blocks")
    return "\n".join(lines) + "\n"


def leak_delta_json(report: LeakReport, deltas: list[RecordDelta], summaries: tuple[dict, dict]) -> dict:
    now, before = summaries
    return {"pid": report.pid, "comm": report.comm, "mode": report.mode, "header": report.header,
            "records": [_record_delta_json(d, report) for d in deltas],
            "summary": {k.value: {"bytes": now[k][0], "blocks": now[k][1],
                                  "bytes_change": now[k][0] - before.get(k, (0, 0))[0],
                                  "blocks_change": now[k][1] - before.get(k, (0, 0))[1]} for k in Kind}}


def _record_delta_json(d: RecordDelta, report: LeakReport) -> dict:
    now, before, rec = d.now, d.before, d.record
    return {"number": d.number, "of": d.of, "new": d.is_new, "kind": rec.kind.value, "origin": rec.origin,
            "blocks": now.blocks, "blocks_change": now.blocks - before.blocks,
            "total_bytes": now.total, "total_change": now.total - before.total,
            "direct_bytes": now.bytes, "direct_change": now.bytes - before.bytes,
            "indirect_bytes": now.indirect, "indirect_change": now.indirect - before.indirect,
            "addresses": [hex(b.address) for b in rec.blocks],
            "stack": [frame_json(report.frames.get(pc) or Frame(pc)) for pc in rec.stack]}

