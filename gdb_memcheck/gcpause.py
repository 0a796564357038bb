"""Python's cyclic garbage collector held off while a walk makes millions of objects."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic collector (reference counting still frees everything acyclic):
    with 10^6 heap blocks alive each of its full passes walks them all, and that made a
    leak scan superlinear.  Usable as a decorator; the collector's state is restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
