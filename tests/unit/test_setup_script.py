"""setup.sh, the first step of test.sh, demo.sh and CI: one line per step, from Debian."""
from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "qemu-scripts" / "setup.sh"


def test_setup_prints_one_line_per_step_and_names_the_debian_python_packages():
    run = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    lines = (run.stdout + run.stderr).splitlines()
    assert lines and all(line.startswith("[lab] ") for line in lines), lines
    debian = next(line for line in lines if line.startswith("[lab] from Debian: "))
    for package in ("python3-pyelftools", "python3-sortedcontainers", "python3-pygments", "python3-pytest",
                    "python3-hypothesis"):
        assert f" {package} " in debian, package
    assert "--break-system-packages" not in SETUP.read_text()
