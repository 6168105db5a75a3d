"""Malware scan of an extracted bundle with ClamAV (`clamscan`, Debian package `clamav`).

The signature database is a folder given by the caller (in production it arrives in its own
bundle; `freshclam` never runs inside the enclave). Fail closed: a detection (exit 1) and a scanner
error (exit 2: no database, unreadable file...) both refuse the bundle. ClamAV cannot scan files over
2 GiB; those are named in the report's notes (model weights are checked by the registry's
admission rules instead).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from airlock.bundle.errors import BundleSpecError
from airlock.bundle.verify import Finding

MAX_MIB = 2047  # ClamAV's ceiling: "scanning files greater than 2147483647 bytes is not supported"
FOUND = re.compile(r"^(.*): (\S+) FOUND$")


def clamscan(directory: Path, database: Path) -> tuple[list[Finding], list[str]]:
    """Scan every file under directory; returns (findings, notes). Paths are relative to directory."""
    scanner = shutil.which("clamscan")
    if scanner is None:
        raise BundleSpecError(
            "--scan needs clamscan: apt-get install -y clamav (do not run freshclam in the enclave; "
            "pass the signature database folder with --clamav-db)"
        )
    database = Path(database)
    if not database.is_dir() or not any(database.iterdir()):
        raise BundleSpecError(
            f"--clamav-db {database} is not a folder of ClamAV databases (.cvd/.cld/.hdb...): "
            "pass the folder that arrived with the signature bundle"
        )
    command = [
        scanner, "-r", "--no-summary", "--infected", f"--max-filesize={MAX_MIB}M",
        f"--max-scansize={MAX_MIB}M", "-d", str(database), str(directory),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    root = str(directory).rstrip("/") + "/"
    notes = [
        f"not scanned by ClamAV (over {MAX_MIB} MiB): {p.relative_to(directory)}"
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.stat().st_size > MAX_MIB << 20
    ]
    if result.returncode == 0:
        return [], notes
    if result.returncode == 1:
        findings = [
            Finding("malware", m.group(1).removeprefix(root), f"ClamAV signature {m.group(2)}")
            for line in result.stdout.splitlines()
            if (m := FOUND.match(line))
        ]
        return findings or [
            Finding("malware", "(bundle)", f"clamscan reported a detection: {result.stdout.strip()}")
        ], notes
    detail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
    return [
        Finding(
            "scan-error",
            "(clamscan)",
            f"clamscan failed (exit {result.returncode}: {detail}); the bundle is refused (fail closed): "
            "check the --clamav-db folder",
        )
    ], notes
