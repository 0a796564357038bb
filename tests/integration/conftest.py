"""Integration fixtures: one lab guest per test module, booted with the module's BOOT options.

A module sets `BOOT = guestlab.BootOptions(...)` to change how its guest boots.  The kernel
comes from GDB_MEMCHECK_KERNEL (kernel.sh names it: 6.1-cloud, 6.12-cloud, ...).  With
GDB_MEMCHECK_BOOT (a comma list of kaslr, la57, randmaps) every module that boots the
default configuration boots that one instead; modules that pin a configuration of their
own (reset, SMP, ...) are deselected in such a pass, and pytest reports them as deselected.
GDB_MEMCHECK_ARCH=arm64 boots arm64 guests instead, for the modules whose ARCHES name arm64
(a module without ARCHES runs on amd64 only); the others are deselected.
If the guest cannot be built or booted the tests fail (they are never skipped).
"""
from __future__ import annotations

import os
from dataclasses import replace

import pytest

from labtools import guestlab, kaslr_slide

BOOT_ENV = "GDB_MEMCHECK_BOOT"
ARCH_ENV = "GDB_MEMCHECK_ARCH"
CONFIGURATIONS = {"kaslr": {"kaslr": True}, "la57": {"cpu": "qemu64,+la57"}, "randmaps": {"randmaps": True}}


def boot_overlay() -> dict:
    """The BootOptions fields GDB_MEMCHECK_BOOT asks for."""
    overlay: dict = {}
    for name in filter(None, os.environ.get(BOOT_ENV, "").split(",")):
        if name not in CONFIGURATIONS:
            raise pytest.UsageError(f"{BOOT_ENV}: unknown configuration {name!r}; known: {', '.join(CONFIGURATIONS)}")
        overlay.update(CONFIGURATIONS[name])
    return overlay


def lab_arch() -> str:
    """The architecture this pass boots: amd64 unless GDB_MEMCHECK_ARCH says otherwise."""
    arch = os.environ.get(ARCH_ENV) or "amd64"
    if arch not in guestlab.ARCHES:
        raise pytest.UsageError(f"{ARCH_ENV}: unknown architecture {arch!r}; known: {', '.join(guestlab.ARCHES)}")
    return arch


def module_arches(module) -> tuple[str, ...]:
    return getattr(module, "ARCHES", ("amd64",))


def module_boot(module) -> guestlab.BootOptions:
    options = getattr(module, "BOOT", guestlab.BootOptions())
    pinned = options != guestlab.BootOptions()
    overlay = boot_overlay()
    options = replace(options, **overlay) if overlay and not pinned else options
    return replace(options, arch=lab_arch()) if lab_arch() != "amd64" else options


def pytest_report_header(config):
    return [f"lab kernel: {guestlab.default_kernel()}; architecture: {lab_arch()}; "
            f"boot configuration: {os.environ.get(BOOT_ENV) or 'default'}"]


def _deselected(item) -> bool:
    """Not for this pass: another architecture's module, or one that pins its own configuration."""
    if lab_arch() not in module_arches(item.module):
        return True
    pinned = getattr(item.module, "BOOT", guestlab.BootOptions()) != guestlab.BootOptions()
    return pinned and bool(boot_overlay())


def pytest_collection_modifyitems(config, items):
    deselected = [item for item in items if _deselected(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="module")
def guest(request, tmp_path_factory):
    g = guestlab.boot(module_boot(request.module), tmp_path_factory.mktemp("guest"))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def uname_r(guest) -> str:
    return guest.sh("uname -r").strip()


@pytest.fixture(scope="module")
def expected_load_line(guest, uname_r) -> str:
    """What the plugin's load line must say of this guest's kernel, paging and KASLR: the slide
    the guest's /proc/kallsyms shows, "off" when the kernel sits where it was linked."""
    slide = kaslr_slide(guest)
    levels = 5 if "+la57" in guest.options.cpu else 4       # arm64's cortex-a72 runs 48-bit VAs: 4 levels
    machine = "aarch64" if guest.options.arch == "arm64" else "x86_64"
    return f"Linux {uname_r} {machine}, {levels}-level paging, KASLR {f'slide {slide:#x}' if slide else 'off'}"
