"""Load gdb_memcheck into gdb, the same way from a checkout and from `pip install --target DIR`:

    gdb -x DIR/gdb_memcheck/gdbinit.py ...                       (DIR: the checkout or the target)
    PYTHONPATH=DIR gdb -ex 'python import gdb_memcheck.gdbinit' ...

Sourced as a file, it puts DIR first on sys.path, where the package (and, after a pip
install, its dependencies) lie; gdb's embedded Python ignores an activated virtualenv."""
import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _here not in sys.path:
    sys.path.insert(0, _here)

import gdb_memcheck.frontend  # noqa: E402  (needs the path above)

gdb_memcheck.frontend.load()
