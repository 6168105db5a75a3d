"""How much a full lab cycle costs next to the unavoidable part of it, measured in one run.

Prints ratios (these machines are noisy; absolute seconds are shown only for context):
- `lab up` + `lab down` vs. extracting the cached root filesystem alone (the floor of any fresh host).
Needs root. Run with `make bench`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airlock.lab import lab, rootfs

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/lab_cycle.py needs root (it brings the lab up and down)")
    paths = lab.LabPaths(ROOT)
    tarball = rootfs.ensure_cached(paths.cache)
    scratch = Path(tempfile.mkdtemp(dir=paths.cache))

    def extract() -> None:
        rootfs.extract(tarball, scratch / "rootfs")
        shutil.rmtree(scratch / "rootfs")

    def cycle() -> None:
        cli = [sys.executable, "-m", "airlock.cli", "lab"]
        subprocess.run([*cli, "up"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run([*cli, "down"], cwd=ROOT, check=True, capture_output=True)

    try:
        floor = min(timed(extract) for _ in range(3))
        full = min(timed(cycle) for _ in range(3))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"lab cycle (up + down) / rootfs extraction: {full / floor:.1f}x  "
        f"(context: {full:.1f}s vs {floor:.1f}s, best of 3 each)"
    )


if __name__ == "__main__":
    main()
