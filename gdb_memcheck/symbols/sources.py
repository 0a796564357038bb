"""Lines of source around a line that debug info names, found on the host and, when
styling is on, highlighted as C by pygments (the one place pygments fits: source code)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .elfsyms import SourceLine

CONTEXT = 2


@dataclass(frozen=True)
class SourceFinder:
    """Where source files are looked for: the path the debug info records, then each of
    `search` (the sysroot, gdb's `directory` list), with that path and with its base name."""

    search: tuple[str, ...] = ()
    highlight: bool = False

    def path(self, line: SourceLine) -> Path | None:
        recorded = Path(line.directory or "/") / line.file
        candidates = [recorded] + [c for d in self.search
                                   for c in (Path(d) / str(recorded).lstrip("/"), Path(d) / recorded.name)]
        return next((c for c in candidates if c.is_file()), None)

    def context(self, line: SourceLine, around: int = CONTEXT) -> list[str]:
        """The line and `around` lines each side, numbered, the line itself marked with >;
        nothing when the file is not found or is shorter."""
        path = self.path(line)
        if path is None:
            return []
        text = _lines(str(path), path.stat().st_mtime_ns, self.highlight)
        if not 1 <= line.line <= len(text):
            return []
        first, last = max(1, line.line - around), min(len(text), line.line + around)
        return [f"{n:>6}{' >' if n == line.line else '  '} {text[n - 1]}" for n in range(first, last + 1)]


@functools.lru_cache(maxsize=32)
def _lines(path: str, _mtime: int, coloured: bool) -> list[str]:
    """A file's lines, highlighted as a whole so that comments and strings spanning lines
    come out right; cached per path and modification time."""
    source = Path(path).read_text(errors="replace")
    if coloured:     # pygments' C lexer takes 40 ms to import: only when source is shown in colour
        from pygments import highlight
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import CLexer
        source = highlight(source, CLexer(stripnl=False, ensurenl=False), TerminalFormatter())
    return source.splitlines()
