"""Where audit files live (seed section 3.5), and the lock every writer and sealer takes.

<root>/YYYY-MM-DD/{generations,api_access,model_changes,user_changes,system_events}.jsonl
<root>/YYYY-MM-DD/quarantine/          torn tails cut off after a crash (reported, never chained)
<root>/integrity_hashes/SHA256SUMS     signed, chained seal/purge/archive blocks
<root>/archives/YYYY-MM/               compressed closed months
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

DEFAULT_ROOT = Path("/var/log/airlock/audit")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INTEGRITY = "integrity_hashes"
SUMS = "SHA256SUMS"
ARCHIVES = "archives"
QUARANTINE = "quarantine"


def audit_root() -> Path:
    return Path(os.environ.get("AIRLOCK_AUDIT_ROOT", DEFAULT_ROOT))


def live_days(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and DAY.match(p.name)) if root.is_dir() else []


def day_file(day: str, category: str) -> str:
    """Path of a category file relative to the root (also its name inside an archive)."""
    return f"{day}/{category}.jsonl"


def sums_path(root: Path) -> Path:
    return root / INTEGRITY / SUMS


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write data to path so that a crash leaves either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class RootLock:
    """An exclusive flock on the audit root directory: one writer/sealer at a time, across processes."""

    def __init__(self, root: Path):
        self.root = root
        self.fd = -1

    def __enter__(self) -> RootLock:
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
