"""A watch's samples drawn: one sparkline line per process in the terminal, every sample
as CSV, and a picture of RSS and heap in use over time as SVG (written here, no library)
or as PNG through matplotlib when it is installed."""
from __future__ import annotations

import csv
import importlib.util
import io
import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

from ..timeline.sampling import Sample
from ..timeline.watch import WatchResult

KIB = 1024
BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40
CSV_COLUMNS = ("sample", "time", "seconds", "pid", "comm", "rss_kib", "vsz_kib", "heap_bytes")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")


@dataclass(frozen=True)
class Series:
    """One process over the watch: the sample times and its values there (None: absent)."""

    pid: int
    comm: str
    seconds: list[float]
    rss: list[int | None]
    heap: list[int | None]


def series(samples: list[Sample]) -> list[Series]:
    """Each process seen, in pid order, with a value (or None) at every sample."""
    seen: dict[int, str] = {}
    for s in samples:
        for p in s.processes:
            seen.setdefault(p.pid, p.comm)
    out = []
    for pid in sorted(seen):
        at = [next((p for p in s.processes if p.pid == pid), None) for s in samples]
        out.append(Series(pid, seen[pid], [s.seconds for s in samples], [p.rss if p else None for p in at],
                          [p.heap if p else None for p in at]))
    return out


def sparkline(values: list[int | None], width: int = SPARK_WIDTH) -> str:
    """Bars from the lowest to the highest value; more samples than `width` are bucketed
    (the largest of each); a gap where a bucket has no value; a flat series is mid-height."""
    if len(values) > width:
        buckets = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
        values = [max((v for v in b if v is not None), default=None) for b in buckets]
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    if hi == lo:
        return "".join(" " if v is None else BARS[len(BARS) // 2 - 1] for v in values)
    return "".join(" " if v is None else BARS[(v - lo) * (len(BARS) - 1) // (hi - lo)] for v in values)


def human(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def span(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{human(known[0])} -> {human(known[-1])}" if known else "no glibc heap"


def timeline_text(result: WatchResult, every: float) -> str:
    """A summary line, then per process: RSS and heap in use as sparklines, first -> last."""
    gaps = result.intervals
    timing = f" (intervals {min(gaps):.3f}-{max(gaps):.3f} s, mean {sum(gaps) / len(gaps):.3f} s)" if gaps else ""
    ran = f"; the guest ran {100 * result.running / result.elapsed:.0f}% of the time" if result.elapsed else ""
    ended = "; ended early by a stop" if result.interrupted else ""
    skipped = f"; {result.skipped} samples skipped (sampling took longer than the interval)" if result.skipped else ""
    lines = [f"{len(result.samples)} samples every {every:g} s over {result.elapsed:.1f} s{timing}{ran}{ended}{skipped}"]
    width = min(SPARK_WIDTH, max(len(result.samples), 1))
    lines.append(f"{'PID':>6} {'COMM':<15} {'RSS':<{width}} {'first -> last':<21} {'heap in use':<{width}} first -> last")
    for s in series(result.samples):
        lines.append(f"{s.pid:>6} {s.comm:<15} {sparkline(s.rss, width)} {span(s.rss):<21} "
                     f"{sparkline(s.heap, width)} {span(s.heap)}")
    return "\n".join(lines) + "\n"


def csv_text(samples: list[Sample]) -> str:
    """One row per process per sample; heap_bytes empty without a glibc heap."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in samples:
        for p in s.processes:
            writer.writerow([s.number, f"{s.time:.3f}", f"{s.seconds:.3f}", p.pid, p.comm, p.rss // KIB,
                             p.vsz // KIB, "" if p.heap is None else p.heap])
    return out.getvalue()


def sample_json(sample: Sample) -> dict:
    """The schema's sample."""
    return {"sample": sample.number, "time": round(sample.time, 3), "seconds": round(sample.seconds, 3),
            "processes": [{"pid": p.pid, "comm": p.comm, "rss_kib": p.rss // KIB, "vsz_kib": p.vsz // KIB,
                           "heap_bytes": p.heap} for p in sample.processes]}


# -- pictures -------------------------------------------------------------------------------
WIDTH, HEIGHT, LEFT, RIGHT, TOP, PANEL, GAP = 900, 580, 80, 200, 60, 210, 50
TICKS = 4


def svg(samples: list[Sample], title: str) -> str:
    """RSS (top) and heap in use (bottom) against seconds, a line per process, as SVG."""
    lines = series(samples)
    end = max((s.seconds for s in samples), default=0.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{LEFT}" y="22" font-size="15">{escape(title)}</text>']
    for i, (name, pick) in enumerate((("RSS", lambda s: s.rss), ("heap in use", lambda s: s.heap))):
        top = TOP + i * (PANEL + GAP)
        parts += _panel(name, top, end, [(s, pick(s)) for s in lines])
    for i, s in enumerate(lines):
        y = TOP + 14 + 18 * i
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<line x1="{WIDTH - RIGHT + 20}" y1="{y - 4}" x2="{WIDTH - RIGHT + 40}" y2="{y - 4}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 46}" y="{y}">{s.pid} {escape(s.comm)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def nice_top(value: float) -> float:
    """The axis top: the first multiple of a 1, 2, 2.5 or 5 step that leaves TICKS ticks."""
    scale = 10 ** math.floor(math.log10(max(value, 1) / TICKS))
    step = next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale * TICKS >= value)
    return step * TICKS


def _panel(name: str, top: int, end: float, lines: list[tuple[Series, list]]) -> list[str]:
    right = WIDTH - RIGHT
    known = [v for _s, values in lines for v in values if v is not None]
    unit = 1 << 20 if max(known, default=0) >= 1 << 20 else 1 << 10
    high = nice_top(max(known, default=0) / unit) * unit
    x = lambda t: LEFT + (right - LEFT) * t / end
    y = lambda v: top + PANEL - PANEL * v / high
    parts = [f'<text x="{LEFT}" y="{top - 8}">{escape(name)} ({"MB" if unit > 1024 else "kB"})</text>',
             f'<rect x="{LEFT}" y="{top}" width="{right - LEFT}" height="{PANEL}" fill="none" stroke="#999"/>']
    for k in range(TICKS + 1):
        value, t = high * k / TICKS, end * k / TICKS
        parts.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value / unit:g}</text>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + PANEL + 16}" text-anchor="middle">{t:.3g} s</text>')
    for i, (s, values) in enumerate(lines):
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(s.seconds, values) if v is not None)
        if points:
            parts.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" '
                         f'stroke-width="1.5"/>')
    return parts


def png_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_png(path: str, samples: list[Sample], title: str) -> None:
    """The same picture through matplotlib (an optional extra)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, (rss_axes, heap_axes) = pyplot.subplots(2, 1, sharex=True, figsize=(9, 5.6))
    for s in series(samples):
        label = f"{s.pid} {s.comm}"
        rss_axes.plot(s.seconds, [None if v is None else v / KIB for v in s.rss], label=label)
        heap_axes.plot(s.seconds, [None if v is None else v / KIB for v in s.heap], label=label)
    rss_axes.set_ylabel("RSS (kB)")
    heap_axes.set_ylabel("heap in use (kB)")
    heap_axes.set_xlabel("seconds")
    rss_axes.set_title(title)
    rss_axes.legend(fontsize="small")
    figure.savefig(path)
    pyplot.close(figure)
