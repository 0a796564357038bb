"""Text views: columns line up with their headers."""
from __future__ import annotations

from gdb_memcheck.arch.x86_64 import paging
from gdb_memcheck.report.views import pagetable_text


def test_pagetable_header_columns_line_up_with_their_values():
    """Right-aligned columns end, and the left-aligned ones start, where their values do."""
    ranges = [paging.Range(0x400000, 0x1F16C000, 0x1000, 0x1000, False, True, False),
              paging.Range(0xFFFF_8880_0000_0000, 0x0, 0x4000_0000, 0x4000_0000, True, False, False)]
    header, *rows = pagetable_text(ranges).splitlines()
    for row in rows:
        virtual, physical, size, page, perms = row.split()
        assert header.index("virtual range") == row.index(virtual) == 0
        assert header.index("physical") + len("physical") == row.index(physical) + len(physical)
        assert header.index("size") + len("size") == row.index(size, row.index(physical) + len(physical)) + len(size)
        assert header.index("page") + len("page") == row.rindex(page, 0, row.rindex(perms)) + len(page)
        assert header.index("perms") == row.rindex(perms)
