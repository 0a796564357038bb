"""Integration fixtures: one lab guest per test module, booted with the module's BOOT options.

A module sets `BOOT = guestlab.BootOptions(...)` to change how its guest boots.
If the guest cannot be built or booted the tests fail (they are never skipped).
"""
from __future__ import annotations

import pytest

from labtools import guestlab


@pytest.fixture(scope="module")
def guest(request, tmp_path_factory):
    options = getattr(request.module, "BOOT", guestlab.BootOptions())
    g = guestlab.boot(options, tmp_path_factory.mktemp("guest"))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def uname_r(guest) -> str:
    return guest.sh("uname -r").strip()
