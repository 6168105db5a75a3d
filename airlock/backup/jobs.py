"""What the timers and the restore run: back up a class, check the repositories, restore the latest.

Every run leaves its outcome in the status file, failures included (with the reason), before the
exit code says it too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from airlock.audit.layout import DAY
from airlock.backup import status, worm
from airlock.backup.borg import Borg
from airlock.backup.config import BackupConfig
from airlock.errors import AirlockError

# Restored first: keys and configuration, so what follows can be read by the service that owns it.
RESTORE_ORDER = ("keys", "config", "models", "audit", "outputs")


def archive_name(klass: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{klass}-{now.strftime('%Y-%m-%dT%H%M%S')}.{now.microsecond // 1000:03d}Z"


def archive_time(name: str) -> str:
    """The UTC time in an archive's name, as YYYY-MM-DDTHH:MM:SSZ."""
    stamp = name.split("-", 1)[1]
    parsed = datetime.strptime(stamp.split(".")[0], "%Y-%m-%dT%H%M%S")
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def borg_for(config: BackupConfig, repository: str) -> Borg:
    return Borg(config, config.repositories[repository])


def init(config: BackupConfig) -> list[str]:
    """Create the repositories that are missing; returns their names (empty: nothing changed)."""
    return [name for name in config.repositories if borg_for(config, name).init()]


def run(config: BackupConfig, klass: str) -> dict:
    if klass not in config.classes:
        raise AirlockError(
            f"no asset class {klass!r} in the backup configuration (have: {', '.join(config.classes)})"
        )
    spec = config.classes[klass]
    started = status.utc_now()
    fields: dict = {
        "interval_seconds": spec.interval_seconds,
        "repository": spec.repository,
        "retention": f"keep-within {spec.keep_within}" if spec.keep_within else "permanent",
        "last_attempt": started,
    }
    try:
        paths = [p for p in spec.paths if p.exists()]
        if not paths:
            raise AirlockError(f"none of {klass}'s paths exist ({', '.join(map(str, spec.paths))})")
        borg = borg_for(config, spec.repository)
        name = archive_name(klass)
        stats = borg.create(name, paths, spec.excludes)
        if spec.keep_within:
            borg.prune(klass, spec.keep_within)
        fields.update(
            last_success=status.utc_now(),
            last_archive=name,
            last_error=None,
            files=stats.get("archive", {}).get("stats", {}).get("nfiles"),
            skipped_paths=[str(p) for p in spec.paths if p not in paths],
        )
    except AirlockError as exc:
        fields["last_error"] = str(exc)
        status.update(config.status_file, config.host, "classes", klass, **fields)
        raise
    if klass == "audit" and config.worm is not None:
        try:
            sent = worm.push(config)
            fields["worm"] = {"last_success": status.utc_now(), "last_error": None, "files_sent": sent}
        except AirlockError as exc:
            fields["worm"] = {
                **status.read(config.status_file)["classes"].get("audit", {}).get("worm", {}),
                "last_error": str(exc),
            }
            status.update(config.status_file, config.host, "classes", klass, **fields)
            raise
    status.update(config.status_file, config.host, "classes", klass, **fields)
    return fields


def check(config: BackupConfig, verify_data: bool = False) -> dict[str, dict]:
    """borg check every repository; each outcome is recorded, the first failure raised after all ran."""
    outcomes, first_error = {}, None
    for name in config.repositories:
        borg = borg_for(config, name)
        fields: dict = {"location": config.repositories[name].location, "last_check": status.utc_now()}
        try:
            fields["encryption"] = borg.info()["encryption"]["mode"]
            borg.check(verify_data)
            fields.update(last_check_ok=True, last_check_error=None)
        except AirlockError as exc:
            fields.update(last_check_ok=False, last_check_error=str(exc))
            first_error = first_error or exc
        status.update(config.status_file, config.host, "repositories", name, **fields)
        outcomes[name] = fields
    if first_error:
        raise first_error
    return outcomes


def newest_audit_record(audit_root: Path) -> str | None:
    """The newest record's timestamp in the live day files (the last line of each is its newest)."""
    newest = None
    for day in audit_root.iterdir() if audit_root.is_dir() else ():
        if not (day.is_dir() and DAY.match(day.name)):
            continue
        for path in day.glob("*.jsonl"):
            lines = path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)
            try:
                ts = json.loads(lines[-1])["ts"]
            except (ValueError, KeyError, IndexError):
                continue
            newest = max(newest or ts, ts)
    return newest


def newest_output(outputs_dir: Path) -> str | None:
    stamps = (
        [p.stat().st_mtime for p in outputs_dir.rglob("*") if p.is_file()] if outputs_dir.is_dir() else []
    )
    return datetime.fromtimestamp(max(stamps), UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if stamps else None


def trim_partial_records(audit_root: Path) -> list[str]:
    """A backup that read a day file while a record was being appended can end in half a line: cut it
    (it was never a whole record in that backup), so the restored chain verifies. Returns what was cut."""
    cut = []
    for path in sorted(audit_root.glob("*/*.jsonl")):
        data = path.read_bytes() if DAY.match(path.parent.name) else b""
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as fh:
                fh.truncate(keep)
            cut.append(f"{path.parent.name}/{path.name}: {len(data) - keep} bytes")
    return cut


def restore(config: BackupConfig, target: Path = Path("/"), force: bool = False) -> dict:
    """Extract each class's newest archive into target; refuses a host that already has audit days."""
    audit = target / config.audit_root.relative_to("/")
    if not force and audit.is_dir() and any(DAY.match(p.name) for p in audit.iterdir()):
        raise AirlockError(
            f"{audit} already holds audit days: restoring would roll this host back. Restore onto a fresh "
            "host, or pass --force if you mean to overwrite it"
        )
    restored = []
    for klass in [c for c in RESTORE_ORDER if c in config.classes]:
        spec = config.classes[klass]
        archives = borg_for(config, spec.repository).archives(klass)
        if not archives:
            raise AirlockError(f"repository {spec.repository!r} has no {klass} archive to restore")
        newest = archives[-1]["name"]
        borg_for(config, spec.repository).extract(newest, target)
        restored.append(
            {"class": klass, "repository": spec.repository, "archive": newest, "time": archive_time(newest)}
        )
    return {
        "restored_at": status.utc_now(),
        "host": config.host,
        "restored": restored,
        "trimmed_partial_records": trim_partial_records(audit),
        "newest_audit_record_at": newest_audit_record(audit),
        "newest_output_at": newest_output(target / config.outputs_dir.relative_to("/")),
    }
