"""The chain of inlined calls at an address, from DWARF: the DW_TAG_inlined_subroutine
entries whose ranges hold the address, each naming the function inlined and the file
and line it was called from.  A frame at such an address stands for several calls."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64
CONTAINERS = frozenset({"DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"})


@dataclass(frozen=True)
class InlinedCall:
    """A call that was inlined: the function that made it and where in its source."""

    caller: str | None
    file: str
    line: int
    directory: str


@dataclass(frozen=True)
class InlineChain:
    """The innermost function at an address and the inlined calls leading to it, innermost first."""

    function: str | None
    calls: tuple[InlinedCall, ...]


def inline_chain(cu: Any, vaddr: int, file_names: dict[int, tuple[str, str]]) -> InlineChain | None:
    """Walk from the unit's top DIE down the DIEs whose ranges hold vaddr; None when no
    subprogram holds it.  `file_names` maps the unit's file indexes to (name, directory)."""
    path = _containing_path(cu, vaddr)
    functions = [d for d in path if d.tag in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine")]
    if not functions:
        return None
    names = [_name(d) for d in functions]
    calls = []
    for i in range(len(functions) - 1, 0, -1):       # innermost inlined call first
        site = functions[i]
        file = file_names.get(_int(site, "DW_AT_call_file"), ("??", ""))
        calls.append(InlinedCall(names[i - 1], file[0], _int(site, "DW_AT_call_line"), file[1]))
    return InlineChain(names[-1], tuple(calls))


def _containing_path(cu: Any, vaddr: int) -> list[Any]:
    path: list[Any] = []
    die = cu.get_top_DIE()
    while len(path) < MAX_DEPTH:
        inner = next((c for c in die.iter_children() if c.tag in CONTAINERS and _holds(c, cu, vaddr)), None)
        if inner is None:
            return path
        path.append(inner)
        die = inner
    return path


def _holds(die: Any, cu: Any, vaddr: int) -> bool:
    attrs = die.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        low = attrs["DW_AT_low_pc"].value
        high = attrs["DW_AT_high_pc"]
        end = high.value if high.form == "DW_FORM_addr" else low + high.value
        return low <= vaddr < end
    if "DW_AT_ranges" in attrs and attrs["DW_AT_ranges"].form == "DW_FORM_sec_offset":
        return any(lo <= vaddr < hi for lo, hi in _ranges(die, cu, attrs["DW_AT_ranges"].value))
    return False


def _ranges(die: Any, cu: Any, offset: int) -> list[tuple[int, int]]:
    lists = die.dwarfinfo.range_lists()
    if lists is None:
        return []
    top = cu.get_top_DIE().attributes
    base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
    out = []
    for entry in lists.get_range_list_at_offset(offset, cu=cu):
        if hasattr(entry, "base_address"):
            base = entry.base_address
        elif entry.is_absolute:
            out.append((entry.begin_offset, entry.end_offset))
        else:
            out.append((base + entry.begin_offset, base + entry.end_offset))
    return out


def _name(die: Any) -> str | None:
    """A function's name, following abstract origins and specifications (inlined copies name none)."""
    for _ in range(MAX_DEPTH):
        attrs = die.attributes
        if "DW_AT_name" in attrs:
            value = attrs["DW_AT_name"].value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        origin = next((a for a in ("DW_AT_abstract_origin", "DW_AT_specification") if a in attrs), None)
        if origin is None:
            return None
        die = die.get_DIE_from_attribute(origin)
    return None


def _int(die: Any, name: str) -> int:
    attr = die.attributes.get(name)
    return int(attr.value) if attr is not None else 0
