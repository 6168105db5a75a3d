"""Cost of the backups, as ratios measured in one run, on a local BorgBackup repository (the lab's
backup host adds SSH over a veth pair; a real one adds its network and disks).

An outputs class of encrypted images (random bytes: ciphertext does not compress or deduplicate) and
an audit class of JSONL records (text: compresses well) are backed up three times: the first backup,
a second with nothing changed (deduplication: only metadata is written), and a third after one day's
worth of new files. Then the newest archive is restored. Printed: each as a fraction of the first
backup's time, the repository's size against the data's, and the throughput of the first backup.

Run with `make bench`, or `.venv/bin/python bench/backup.py [--images N] [--audit-mb M]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from airlock.backup import config, jobs  # noqa: E402 - after the path, so it runs from a checkout

SEED = 20261204


def make_data(base: Path, images: int, audit_mb: int, rng: random.Random) -> None:
    outputs = base / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        (outputs / f"job{i:05d}-0.enc").write_bytes(b"ALOUT01\n" + rng.randbytes(1_500_000))
    day = base / "audit" / "2026-12-04"
    day.mkdir(parents=True, exist_ok=True)
    line = {"event": "generation.completed", "tenant": "bench", "model": {"name": "sd_xl_base_1.0"}}
    with open(day / "generations.jsonl", "a") as fh:
        while fh.tell() < audit_mb * 1_000_000:
            line["seq"] = rng.randrange(10**9)
            fh.write(json.dumps(line) + "\n")


def plan(base: Path) -> config.BackupConfig:
    (base / "pass").write_text("bench passphrase\n")
    return config.parse(
        {
            "host": "bench",
            "status_file": str(base / "status.json"),
            "borg_base_dir": str(base / "borg"),
            "ssh_key": str(base / "id"),
            "known_hosts": str(base / "known_hosts"),
            "audit_root": str(base / "data" / "audit"),
            "outputs_dir": str(base / "data" / "outputs"),
            "repositories": {
                "data": {"location": str(base / "repo"), "passphrase_file": str(base / "pass")},
                "keys": {"location": str(base / "repo-keys"), "passphrase_file": str(base / "pass")},
            },
            "classes": {
                "outputs": {
                    "repository": "data",
                    "paths": [str(base / "data" / "outputs")],
                    "interval_seconds": 86400,
                },
                "audit": {
                    "repository": "data",
                    "paths": [str(base / "data" / "audit")],
                    "interval_seconds": 3600,
                },
            },
        }
    )


def timed(action) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="encrypted outputs of 1.5 MB each")
    parser.add_argument("--audit-mb", type=int, default=60, help="MB of audit JSONL")
    args = parser.parse_args()
    if not shutil.which("borg"):
        sys.exit("bench/backup.py needs borg: apt-get install borgbackup")
    rng = random.Random(SEED)  # noqa: S311 - reproducible stand-in data, not secrets
    with tempfile.TemporaryDirectory(prefix="airlock-bench-backup-") as tmp:
        base = Path(tmp)
        make_data(base / "data", args.images, args.audit_mb, rng)
        backup = plan(base)
        jobs.init(backup)
        both = lambda: (jobs.run(backup, "outputs"), jobs.run(backup, "audit"))  # noqa: E731
        first = timed(both)
        unchanged = timed(both)
        make_data(base / "data", max(1, args.images // 10), max(1, args.audit_mb // 10), rng)
        grown = timed(both)
        target = base / "restored"
        target.mkdir()
        os.environ.pop("BORG_REPO", None)
        restored = timed(lambda: jobs.restore(backup, target))
        data_bytes = size(base / "data")
        repo_bytes = size(base / "repo")
    print(f"backup: {args.images} encrypted outputs + {args.audit_mb} MB audit JSONL, local repository")
    print(f"  first backup           {first:6.2f} s  ({data_bytes / first / 1e6:.0f} MB/s)")
    print(f"  nothing changed        {unchanged / first:6.1%} of the first (deduplicated)")
    print(f"  a tenth more data      {grown / first:6.1%} of the first")
    print(f"  restore of the newest  {restored / first:6.1%} of the first backup's time")
    print(f"  repository size        {repo_bytes / data_bytes:6.1%} of the data (images do not compress)")


if __name__ == "__main__":
    main()
