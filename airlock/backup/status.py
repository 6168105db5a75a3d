"""/var/lib/airlock/backup/status.json: what each class's last run did, for operators and evidence.

Written atomically (temp file + rename) after every run, success or not: a failed backup is on record
as a failure with its reason, never as silence.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": 1, "classes": {}, "repositories": {}}
    except json.JSONDecodeError:  # a damaged status is replaced, not trusted
        return {"version": 1, "classes": {}, "repositories": {}}
    data.setdefault("classes", {})
    data.setdefault("repositories", {})
    return data


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def update(path: Path, host: str, section: str, name: str, **fields) -> dict:
    data = read(path)
    data["version"], data["host"] = 1, host
    data[section].setdefault(name, {}).update(fields)
    write(path, data)
    return data
