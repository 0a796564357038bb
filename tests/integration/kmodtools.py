"""The lab's kernel module in a running guest: built for the guest's kernel (cached by
qemu-scripts/kmod.sh), copied in through the guest's shell, loaded with insmod, and the
ground truth it printed read back from the kernel log."""
from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import dataclass

from labtools import REPO, guestlab

CHUNK = 3000            # base64 characters per shell line
CACHE = "memcheck_kmod"
KIND = {"definite": "definitely lost", "indirect": "indirectly lost", "possible": "possibly lost",
        "reachable": "still reachable"}        # the module's words for the leak classes


@dataclass(frozen=True)
class KmodObject:
    """One allocation the module printed: its intended class, address, size and cache."""

    kind: str
    address: int
    size: int
    cache: str


@dataclass(frozen=True)
class KmodTruth:
    objects: list[KmodObject]
    live: int                   # the module's count of live objects in its own cache
    object_size: int


def build(guest: "guestlab.Guest") -> bytes:
    """The module built for the guest's kernel, as bytes."""
    proc = subprocess.run(["bash", str(REPO / "qemu-scripts" / "kmod.sh"), guest.kernel.name],
                          stdout=subprocess.PIPE, text=True, check=True)
    return open(proc.stdout.strip().splitlines()[-1], "rb").read()


def load(guest: "guestlab.Guest") -> KmodTruth:
    """Copy the module into the guest, insmod it, and return what it printed."""
    text = base64.b64encode(build(guest)).decode()
    guest.sh("rm -f /tmp/kmod.b64")
    for i in range(0, len(text), CHUNK):
        guest.sh(f"echo '{text[i:i + CHUNK]}' >> /tmp/kmod.b64")
    guest.sh("base64 -d /tmp/kmod.b64 > /tmp/memcheck_kmod.ko && insmod /tmp/memcheck_kmod.ko")
    return truth(guest.sh("dmesg"))


def truth(log: str) -> KmodTruth:
    objects = [KmodObject(m[0], int(m[1], 16), int(m[2]), m[3])
               for m in re.findall(r"KMOD (\w+) addr=([0-9a-f]+) size=(\d+) cache=(\S+)", log)]
    count = re.search(r"KMOD count cache=\S+ live=(\d+) object_size=(\d+)", log)
    assert count and "KMOD ready" in log, f"the module did not finish: {log[-2000:]}"
    return KmodTruth(objects, int(count[1]), int(count[2]))
