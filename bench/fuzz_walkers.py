#!/usr/bin/env python3
"""Run the robustness properties with many generated inputs per walker (10,000 by default;
CI runs a fixed-seed subset) and print how many each walker took: 0 hangs and 0 uncaught
exceptions means every line ends in "ok".
Usage: /usr/bin/python3 bench/fuzz_walkers.py [--examples N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["MEMCHECK_FUZZ_EXAMPLES"] = str(args.examples)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "unit")]
    import test_robust_walkers as props  # noqa: E402  (reads the example count at import)

    failures = 0
    t0 = time.monotonic()
    for name in sorted(n for n in dir(props) if n.startswith("test_")):
        start = time.monotonic()
        try:
            getattr(props, name)()
            verdict = "ok"
        except Exception as e:  # a property failed: report it and go on with the others
            failures += 1
            verdict = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0]}"
        print(f"{name}: {time.monotonic() - start:6.1f} s {verdict}", flush=True)
    print("generated inputs per walker:")
    for walker, runs in sorted(props.RUNS.items()):
        print(f"  {walker:<22} {runs:>7}")
    print(f"{failures} failed properties, {time.monotonic() - t0:.0f} s in all")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
