"""bench/evidence.py runs in `make bench` at full size (1,000,000 audit records, up to 64 hosts); here it
runs small, end to end, so a change to the audit or pack code cannot break it unnoticed."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_script_runs_end_to_end_small():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "evidence.py"), "--records", "2000", "--hosts", "1,2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "audit root: 2,000 records" in out
    assert re.search(r"audit verify: [\d.]+ s for 2,000 records = [\d,]+ records/s", out)
    assert re.search(r"verify / raw sha256: [\d.]+x", out)
    assert re.search(r"pack build, 1 host \(tests/unit/data/evidence_raw as collected\): [\d.]+ s", out)
    for count in (1, 2):
        assert re.search(rf"pack build, N={count} hosts: [\d.]+ s \([\d.]+ s per host\)", out)
    assert "pack build, N=4" not in out
    assert re.search(r"estimate, 1 host with 2,000 audit records: .* = [\d.]+ s \(goal: under 60 s\)", out)
