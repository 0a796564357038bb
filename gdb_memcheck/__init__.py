"""gdb_memcheck: a whole-system memory checker for Linux guests behind QEMU's gdbstub.

The package root and its modules are gdb-free: they work over the `Target`
interface (target.py).  Only `gdb_memcheck.frontend` imports gdb.
"""

__version__ = "0.1.0"
