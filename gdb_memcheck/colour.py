"""Terminal colour for the views through pygments, used only when the user's gdb
has styling on (`set style enabled`)."""
from __future__ import annotations

from pygments import highlight
from pygments.formatters import TerminalFormatter
from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, String, Text

_ADDR = r"(?:0x)?[0-9a-f]{8,16}"


class MemcheckLexer(RegexLexer):
    """Addresses, permissions, paths and [special] names in memcheck's tables."""

    name = "memcheck"
    tokens = {
        "root": [
            (r"^#.*\n", Comment),
            (rf"({_ADDR})(-)({_ADDR})", bygroups(Number.Hex, Text, Number.Hex)),
            (r"\b[r-][w-][x-][ps]\b|\b[uk]r[w-][x-]\b", Keyword),
            (r"\[[\w:./-]+\]", Name.Builtin),
            (r"(?<= )/[^\s]+", String),
            (r"0x[0-9a-f]+", Number.Hex),
            (r"\s+", Text),
            (r"[^\s]+", Text),
        ]
    }


def paint(text: str, enabled: bool) -> str:
    """`text` coloured for a terminal when `enabled`, unchanged otherwise."""
    if not enabled or not text:
        return text
    return highlight(text, MemcheckLexer(), TerminalFormatter())
