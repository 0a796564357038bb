"""Load gdb_memcheck into gdb: `source /path/to/gdbinit.py` (or gdb -x gdbinit.py)."""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

import gdb_memcheck.frontend  # noqa: E402  (needs the path above)

gdb_memcheck.frontend.load()
