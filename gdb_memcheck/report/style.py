"""Terminal styles for the text views, taken from gdb's own (`style address`, `style
filename`, `style function`, `style highlight`) and applied while a view is rendered.
gdb-free: the frontend reads gdb's settings and hands over the escape sequences."""
from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("address", "filename", "function", "highlight")
RESET = "\x1b[m"
_COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_INTENSITY = {"normal": "", "bold": "1", "dim": "2"}


@dataclass(frozen=True)
class Styler:
    """The escape sequence of each role; with none (PLAIN) text is left as it is."""

    escapes: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.escapes)

    def __call__(self, role: str, text: str) -> str:
        escape = self.escapes.get(role)
        return f"{escape}{text}{RESET}" if escape and text else text

    def address(self, text: str) -> str:
        return self("address", text)

    def filename(self, text: str) -> str:
        return self("filename", text)

    def function(self, text: str) -> str:
        return self("function", text)

    def highlight(self, text: str) -> str:
        return self("highlight", text)


PLAIN = Styler()


def escape_sequence(foreground: str, background: str, intensity: str) -> str:
    """The SGR sequence gdb emits for a style's foreground, background and intensity
    ("" when the style changes nothing)."""
    codes = [_INTENSITY.get(intensity, "")]
    if foreground in _COLOURS:
        codes.append(str(30 + _COLOURS.index(foreground)))
    if background in _COLOURS:
        codes.append(str(40 + _COLOURS.index(background)))
    codes = [c for c in codes if c]
    return f"\x1b[{';'.join(codes)}m" if codes else ""
