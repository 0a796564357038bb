"""What the SMP reruns of the tracing and tracking checks share: a shell spinning on every
vCPU of the guest, so breakpoints hit while every vCPU is busy."""
from __future__ import annotations

import time

SPIN = "sh -c 'while :; do :; done'"


def spin_on_every_vcpu(guest) -> list[int]:
    """Start one spinner pinned to each vCPU; returns their pids."""
    vcpus = guest.options.smp
    guest.sh("; ".join(f"(taskset -c {cpu} {SPIN} > /dev/null 2>&1 &)" for cpu in range(vcpus)))
    deadline = time.monotonic() + 30
    while True:                     # each spinner starts in the background: wait until all run
        pids = guest.sh("ps -o pid,args | grep '[w]hile :' | awk '{print $1}'").split()
        if len(pids) >= vcpus or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(pids) == vcpus, f"{len(pids)} spinners for {vcpus} vCPUs"
    return [int(p) for p in pids]
