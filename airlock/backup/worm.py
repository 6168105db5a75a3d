"""The write-once copy of the audit trail: sealed days (and the signed SHA256SUMS ledger, and monthly
archives) pushed to the backup host's drop box, where this host's key may only run
`rrsync -wo -no-del -no-overwrite` and a root job on the backup host seals every file it receives
(root-owned, read-only, in sticky folders). So a compromised service host, root included, can add
files but can neither read, replace nor delete what is there.

Names are flat (no folders made by the sender): days/<YYYY-MM-DD>_<category>.jsonl,
integrity/SHA256SUMS.<first 16 hex of its SHA-256> (a new name whenever a seal is added) and
archives/<name>.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from airlock.audit.integrity import read_sums, sealed_days
from airlock.audit.layout import ARCHIVES, INTEGRITY, SUMS
from airlock.backup.config import BackupConfig
from airlock.errors import AirlockError


class WormError(AirlockError):
    pass


def stage(audit_root: Path, staging: Path) -> int:
    """Lay the sealed audit files out under staging (emptied first); returns how many."""
    if staging.exists():
        shutil.rmtree(staging)
    for sub in ("days", "integrity", "archives"):
        (staging / sub).mkdir(parents=True, mode=0o700)
    count = 0
    for day in sorted(sealed_days(read_sums(audit_root))):
        folder = audit_root / day
        if not folder.is_dir():  # archived since: its tarball goes below
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink():
                shutil.copy2(path, staging / "days" / f"{day}_{path.name}")
                count += 1
    ledger = audit_root / INTEGRITY / SUMS
    if ledger.is_file():
        digest = hashlib.sha256(ledger.read_bytes()).hexdigest()[:16]
        shutil.copy2(ledger, staging / "integrity" / f"{SUMS}.{digest}")
        count += 1
    archives = audit_root / ARCHIVES
    if archives.is_dir():
        for path in sorted(archives.rglob("*")):
            if path.is_file() and not path.is_symlink():
                shutil.copy2(path, staging / "archives" / path.name)
                count += 1
    return count


def push(config: BackupConfig, rsync: str = "rsync", rsh: str | None = None) -> int:
    """Send what is not there yet; returns how many files were sent."""
    if config.worm is None:
        raise WormError(
            "no [worm] section in the backup configuration: the audit trail has no write-once copy"
        )
    stage(config.audit_root, config.worm.staging)
    cmd = [
        rsync,
        "--recursive",
        "--times",
        "--omit-dir-times",  # the drop box's folders belong to root on the backup host
        "--ignore-existing",  # the receiver enforces it too (rrsync -no-overwrite)
        "--out-format=%n",
        "--rsh",
        rsh or config.ssh_command(config.worm.ssh_key),
        f"{config.worm.staging}/",
        config.worm.destination,
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise WormError("rsync is not installed: apt-get install rsync (from the transfer bundle)") from None
    finally:
        shutil.rmtree(config.worm.staging, ignore_errors=True)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise WormError(f"the write-once audit copy failed (rsync {result.returncode}): {tail}")
    return sum(1 for line in result.stdout.splitlines() if line.strip() and not line.endswith("/"))
