"""For scripts running inside gdb against a lab guest: let the guest run while a command
runs in its shell, then stop it again in gdb (the demo, the tests and the benchmarks)."""
from __future__ import annotations

import threading
import time

import gdb

# QEMU 7.2's gdbstub drops a ^C that arrives while it waits for gdb's ack of a breakpoint
# stop ("Got 0x03 when expecting ACK/NACK"), and gdb forgets the interrupt at the next stop
# reply; with breakpoints firing, 2 to 9 of 30 interrupts were lost this way on 1 and 2
# vCPUs alike.  So the interrupt is sent again until `continue` has returned.
RESEND_SECONDS = 1.0


def while_running(guest, command: str, timeout: float = 300) -> dict:
    """Continue the guest, run `command` in its shell meanwhile, interrupt the guest when the
    command is done; returns {"text": its output, "seconds": how long it ran, "interrupts":
    how many interrupts it took}."""
    out: dict = {"interrupts": 0}
    stopped = threading.Event()

    def interrupt() -> None:
        if not stopped.is_set():            # a late resend must not stop the next `continue`
            out["interrupts"] += 1
            gdb.execute("interrupt")

    def drive() -> None:
        time.sleep(0.3)                 # let gdb resume the guest first
        t0 = time.monotonic()
        try:
            out["text"] = guest.sh(command, timeout=timeout)
        finally:
            out["seconds"] = time.monotonic() - t0
            while not stopped.is_set():
                gdb.post_event(interrupt)
                stopped.wait(RESEND_SECONDS)

    worker = threading.Thread(target=drive)
    worker.start()
    try:
        gdb.execute("continue")
    finally:
        stopped.set()
        worker.join()
    if "text" not in out:
        raise RuntimeError(f"the guest's shell did not finish {command!r}")
    return out
