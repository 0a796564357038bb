"""For scripts running inside gdb against a lab guest: let the guest run while a command
runs in its shell, then stop it again in gdb (the demo, the tests and the benchmarks)."""
from __future__ import annotations

import threading
import time

import gdb


def while_running(guest, command: str, timeout: float = 300) -> dict:
    """Continue the guest, run `command` in its shell meanwhile, interrupt the guest when the
    command is done; returns {"text": its output, "seconds": how long it ran}."""
    out: dict = {}

    def drive() -> None:
        time.sleep(0.3)                 # let gdb resume the guest first
        t0 = time.monotonic()
        out["text"] = guest.sh(command, timeout=timeout)
        out["seconds"] = time.monotonic() - t0
        gdb.post_event(lambda: gdb.execute("interrupt"))

    worker = threading.Thread(target=drive)
    worker.start()
    gdb.execute("continue")
    worker.join()
    return out
