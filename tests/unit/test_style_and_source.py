"""Text views styled with gdb's own styles while they are rendered, and source context
(pygments only for C source)."""
from __future__ import annotations

import re

import pytest

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.addrinfo import AddressInfo
from gdb_memcheck.symbols.elfsyms import SourceLine
from gdb_memcheck.leakcheck.leaks import Block, Kind, LeakReport
from gdb_memcheck.symbols.sources import SourceFinder
from gdb_memcheck.symbols.stackframes import Frame
from gdb_memcheck.report.style import PLAIN, RESET, Styler, escape_sequence
from gdb_memcheck.linux.tasks import Task
from gdb_memcheck.tracing import Event
from gdb_memcheck.report.views import (PsRow, addr_text, leak_report_memcheck, leak_report_text, maps_text, pagetable_text,
                                ps_text, walk_text)
from gdb_memcheck.linux.vmas import Vma

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
GDB_DEFAULTS = Styler({"address": escape_sequence("blue", "none", "normal"),
                       "filename": escape_sequence("green", "none", "normal"),
                       "function": escape_sequence("yellow", "none", "normal"),
                       "highlight": escape_sequence("red", "none", "normal")})
PROGRAM = """\
#include <stdlib.h>
/* a comment
   over two lines */
static char *keep;
static void leak_here(void)
{
    keep = malloc(40);   /* the allocating line */
    keep = 0;
}
"""


def test_gdbs_colour_names_and_intensities_become_the_sequences_gdb_emits():
    assert escape_sequence("green", "none", "normal") == "\x1b[32m"
    assert escape_sequence("blue", "white", "bold") == "\x1b[1;34;47m"
    assert escape_sequence("none", "none", "dim") == "\x1b[2m"
    assert escape_sequence("none", "none", "normal") == ""


@pytest.fixture
def program(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "prog.c").write_text(PROGRAM)
    return tmp_path


def views(program) -> dict:
    """Every text view, as a function of the styler."""
    vma = Vma(0, 0x400000, 0x401000, 0x5, 0, 0x2 << 20 | 0x17, 23, "/bin/prog")
    heap = Vma(0, 0x4BC000, 0x4C1000, 0x3, 0, 0, 0, "[heap]")
    task = Task(0xFFFF_8880_0100_0000, 7, 7, 1, "prog", "S", 0, 0xFFFF_8880_0200_0000, 0)
    malloc = Frame(0x7FFF_F7E7_8930, "/lib/libc.so.6", 0x98930, "malloc", "malloc.c", 3281, "./malloc")
    caller = Frame(0x5555_5555_526B, "/bin/prog", 0x126B, "leak_here", "prog.c", 7, str(program / "src"))
    report = LeakReport(7, "prog", "tracking", [Block(0x1000, 40, Kind.DEFINITE, stack=(malloc.pc, caller.pc),
                                                      via="malloc")],
                        "header", "/bin/prog", {malloc.pc: malloc, caller.pc: caller})
    step = paging.step(4, 0x1FEAE000, 0, 0x1FF71067)
    info = AddressInfo(0x401800, 7, "prog", vma, 0x1800, "make_data_file+0xa2", "prog.c:7", 0x1F16D800, "",
                       SourceLine("prog.c", 7, str(program / "src")))
    return {
        "ps": lambda s: ps_text([PsRow(task, "/bin/prog", 4096, 4096, 0)], False, s),
        "maps": lambda s: maps_text([vma, heap], style=s),
        "pagetable": lambda s: pagetable_text([paging.Range(0x400000, 0x1F16C000, 0x1000, 0x1000, False, True,
                                                            True)], s),
        "vtop": lambda s: walk_text(0x401000, [step], None, "PT entry 1 not present", s),
        "addr": lambda s: addr_text(info, s),
        "leaks": lambda s: leak_report_text(report, [Kind.DEFINITE], style=s),
        "memcheck": lambda s: leak_report_memcheck(report, style=s),
        "event": lambda s: Event(1, 0, 7, 7, "prog", "mmap",
                                 {"start": 0x1000, "end": 0x2000, "path": "/tmp/x"}).text(s),
    }


@pytest.mark.parametrize("view", ["ps", "maps", "pagetable", "vtop", "addr", "leaks", "memcheck", "event"])
def test_styling_only_adds_gdbs_escapes_around_words(program, view):
    render = views(program)[view]
    plain, styled = render(PLAIN), render(GDB_DEFAULTS)
    assert ESCAPE.search(styled) and not ESCAPE.search(plain)
    assert ESCAPE.sub("", styled) == plain


def styled_words(text: str, role: str) -> list[str]:
    return re.findall(re.escape(GDB_DEFAULTS.escapes[role]) + r"(.*?)" + re.escape(RESET), text)


def test_each_kind_of_word_gets_its_gdb_style(program):
    v = views(program)
    maps = v["maps"](GDB_DEFAULTS)
    assert styled_words(maps, "address") == ["00400000-00401000", "004bc000-004c1000"]
    assert styled_words(maps, "filename") == ["/bin/prog"], "[heap] is not a file"
    leaks = v["leaks"](GDB_DEFAULTS)
    assert styled_words(leaks, "function") == ["malloc", "leak_here"]
    assert styled_words(leaks, "highlight") == ["definitely lost"]
    assert "0x5555555552" in "".join(styled_words(leaks, "address"))
    assert styled_words(v["ps"](GDB_DEFAULTS), "address") == ["0xffff888002000000"]
    assert styled_words(v["vtop"](GDB_DEFAULTS), "highlight") == ["walk stops:"]


def leak_report(program) -> LeakReport:
    malloc = Frame(0x7FFF_F7E7_8930, "/lib/libc.so.6", 0x98930, "malloc", "prog.c", 1, str(program / "src"))
    caller = Frame(0x5555_5555_526B, "/bin/prog", 0x126B, "leak_here", "prog.c", 7, str(program / "src"))
    return LeakReport(7, "prog", "tracking", [Block(0x1000, 40, Kind.DEFINITE, stack=(malloc.pc, caller.pc))],
                      "header", "/bin/prog", {malloc.pc: malloc, caller.pc: caller})


ALLOCATING_LINE = ["   prog.c:7:",
                   "     5   static void leak_here(void)",
                   "     6   {",
                   "     7 >     keep = malloc(40);   /* the allocating line */",
                   "     8       keep = 0;",
                   "     9   }"]


def test_the_allocating_line_is_shown_with_two_lines_of_context_past_the_allocators_own_frame(program):
    """The allocator's frame is skipped even where its source can be read (here: line 1)."""
    text = leak_report_text(leak_report(program), [Kind.DEFINITE], source=SourceFinder())
    assert "\n".join(ALLOCATING_LINE) + "\nLEAK SUMMARY:" in text
    assert "#include" not in text
    memcheck = leak_report_memcheck(leak_report(program), source=SourceFinder())
    assert "\n".join(ALLOCATING_LINE) in memcheck
    assert "prog.c:7:" not in leak_report_text(leak_report(program), [Kind.DEFINITE])


def test_source_is_found_where_recorded_then_in_the_search_directories(program, tmp_path_factory):
    elsewhere = SourceLine("prog.c", 1, "/nonexistent/build/dir")
    assert SourceFinder().context(elsewhere) == []
    assert SourceFinder((str(program / "src"),)).context(elsewhere)[0] == "     1 > #include <stdlib.h>"
    moved = tmp_path_factory.mktemp("sysroot")
    (moved / "nonexistent" / "build" / "dir").mkdir(parents=True)
    (moved / "nonexistent" / "build" / "dir" / "prog.c").write_text("int x;\n")
    assert SourceFinder((str(moved),)).context(elsewhere) == ["     1 > int x;"]
    assert SourceFinder((str(moved),)).context(SourceLine("prog.c", 2, "/nonexistent/build/dir")) == []


def test_pygments_highlights_the_source_as_c_across_lines(program):
    line = SourceLine("prog.c", 3, str(program / "src"))
    plain, coloured = SourceFinder().context(line), SourceFinder(highlight=True).context(line)
    assert [ESCAPE.sub("", c) for c in coloured] == plain
    comment_end = coloured[2]
    assert comment_end.split("> ", 1)[1].startswith("\x1b["), "the comment's second line is still a comment"
