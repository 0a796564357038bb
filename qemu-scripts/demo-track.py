"""gdb script for the demo: track the leak program from its exec, run it in the guest while
gdb waits, and show the report it left at exit.  Run by demo.sh with gdb -x; the guest's
run directory comes in the environment as LAB_RUN_DIR."""
import os
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdbdrive  # noqa: E402  (this directory)
import guestlab  # noqa: E402

guest = guestlab.Guest.load(os.environ["LAB_RUN_DIR"])

gdb.write("\n== memcheck leaks track --exec wl-leak; the guest runs wl-leak\n")
gdb.execute("memcheck leaks track --exec wl-leak")
gdbdrive.while_running(guest, "wl-leak > /dev/null")
gdb.write("\n== memcheck leaks report\n")
gdb.execute("memcheck leaks report")
gdb.execute("memcheck leaks untrack")
